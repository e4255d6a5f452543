//! End to end: the device's `agent` app and the real `septa-service` (SQLite under a
//! temporary directory, on loopback ports). QEMU's user network forwards `devhost:443` to
//! the service's mutual-TLS device port through `septa relay`; the service is set up as `cargo xtask run` does it
//! (`septa_tool::devfleet`): development OEM key, product, group, the claim of the
//! development device and its factory release (the `agent/` image's `v1.bundle`).

use septa_qemu::{Images, Network};
use septa_tests::{Boot, Running, scratch_copy, septa, septa_path, variant_images};
use septa_tool::devfleet::{self, DevService};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn service_binary() -> PathBuf {
    std::env::var_os("SEPTA_SERVICE")
        .map(PathBuf::from)
        .unwrap_or_else(|| septa_path().with_file_name("septa-service"))
}

fn image_dir() -> PathBuf {
    variant_images("agent").rom.parent().unwrap().to_path_buf()
}

fn keys_dir() -> PathBuf {
    image_dir().parent().unwrap().join("keys")
}

/// The PostgreSQL server the PostgreSQL variants use (`.ci/run` sets it).
const POSTGRES_ENV: &str = "SEPTA_TEST_POSTGRES_URL";

/// Where a fleet's service keeps its data: SQLite in the fleet's folder, or a fresh
/// database on the test PostgreSQL (dropped with the fleet).
enum Db {
    Sqlite,
    Postgres { admin_url: String, name: String },
}

impl Db {
    /// A new database on the test PostgreSQL; `None`, and a line saying so, without one.
    fn postgres(test: &str) -> Option<Db> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            println!("SKIPPED {test} on PostgreSQL: {POSTGRES_ENV} is not set (.ci/run sets it)");
            return None;
        };
        let name = format!("septa_agent_{test}_{}", std::process::id());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        Some(Db::Postgres { admin_url, name })
    }

    fn url(&self) -> Option<String> {
        match self {
            Db::Sqlite => None,
            Db::Postgres { admin_url, name } => {
                let (base, _) = admin_url.rsplit_once('/').expect("the URL ends in /database");
                Some(format!("{base}/{name}"))
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { admin_url, name } = self {
            psql(admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs one SQL statement with `psql` (PostgreSQL's own client, installed with the server).
fn psql(url: &str, statement: &str) {
    let output = Command::new("psql").args([url, "-q", "-c", statement]).output().expect("running psql");
    assert!(output.status.success(), "psql {statement}: {}", String::from_utf8_lossy(&output.stderr));
}

struct Fleet {
    service: DevService,
    data: PathBuf,
    images: Images,
    db: Db,
}

impl Fleet {
    /// A fresh service (SQLite) with the development device enrolled, and a private copy of
    /// the images.
    fn new(test: &str) -> Fleet {
        Fleet::with_factory(test, "v1.bundle", Db::Sqlite)
    }

    /// The same with `factory` (a bundle of the `agent/` image set) as the only release, on
    /// `db`.
    fn with_factory(test: &str, factory: &str, db: Db) -> Fleet {
        let data = std::env::temp_dir().join(format!("septa-agent-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let any = "127.0.0.1:0".parse().unwrap();
        let service = start(&data, &db, any, any);
        let keys = keys_dir();
        service
            .enroll(&keys.join("oem-dev.pub.pem"), &keys.join("device.pub.pem"), &image_dir().join(factory))
            .expect("enrolling the development device");
        // Enrolling twice changes nothing (what a second `cargo xtask run` does).
        service
            .enroll(&keys.join("oem-dev.pub.pem"), &keys.join("device.pub.pem"), &image_dir().join(factory))
            .expect("enrolling again");
        let images = scratch_copy(&variant_images("agent"), &format!("agent-{test}"));
        Fleet { service, data, images, db }
    }

    fn boot(&self) -> Running {
        let network = Network::default().relay(443, &septa_path(), self.service.device_address);
        Boot::new(self.images.clone()).persistent().network(network).spawn()
    }

    /// `septa service ARGS` against the service, as JSON (or the text, for non-JSON output).
    fn cli(&self, args: &[&str]) -> Value {
        let output = septa()
            .arg("service")
            .args(args)
            .env("SEPTA_SERVICE_URL", self.service.url())
            .env("SEPTA_SERVICE_TOKEN", &self.service.token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "septa service {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

impl Fleet {
    /// Deploys `release` to the development group in one phase; the deployment's id.
    fn deploy(&self, release: &str) -> String {
        let deployed =
            self.cli(&["deploy", "--release", release, "--group", devfleet::GROUP, "--phases", "100"]);
        // "deployment <id> of <release> to dev started"
        deployed.as_str().and_then(|t| t.split_whitespace().nth(1)).unwrap().to_string()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_dir_all(self.images.rom.parent().unwrap());
    }
}

fn start(data: &std::path::Path, db: &Db, listen: SocketAddr, device_listen: SocketAddr) -> DevService {
    DevService::start(&service_binary(), data, db.url().as_deref(), listen, device_listen, &keys_dir())
        .expect("starting septa-service (cargo xtask test builds it)")
}

/// The device id the agent prints at start.
fn device_id(device: &mut Running) -> String {
    device.wait_for("agent: device ");
    device_id_of(&device.console())
}

fn device_id_of(console: &str) -> String {
    let line = console.lines().find(|l| l.contains("agent: device ")).unwrap();
    line.split("agent: device ").nth(1).unwrap().split(';').next().unwrap().trim().to_string()
}

/// Polls `check` until it is true or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn the_device_checks_in_attests_and_is_listed_trusted_with_a_certificate() {
    checks_in_and_is_trusted(Fleet::new("checkin"));
}

#[test]
fn on_postgres_the_device_checks_in_attests_and_is_listed_trusted_with_a_certificate() {
    let Some(db) = Db::postgres("checkin") else { return };
    checks_in_and_is_trusted(Fleet::with_factory("checkin-pg", "v1.bundle", db));
}

fn checks_in_and_is_trusted(fleet: Fleet) {
    let mut device = fleet.boot();
    let id = device_id(&mut device);
    device.wait_for("agent: checked in: trusted; certificate valid until");
    device.wait_for("septa: monitor: installed a new device certificate");
    let shown = fleet.cli(&["device", &id]);
    assert_eq!(shown["device"]["trusted"], Value::Bool(true), "{shown:#}");
    let release = shown["device"]["release"].as_str().unwrap_or_default();
    assert_eq!(
        release,
        devfleet::release_name("factory", &image_dir().join("v1.bundle")).unwrap(),
        "{shown:#}"
    );
    assert!(shown["device"]["cert_not_after"].as_u64().unwrap_or(0) > 0, "{shown:#}");
    // The attestation carried the measurements of the factory release.
    let attestation = &shown["attestations"][0];
    assert_eq!(attestation["trusted"], Value::Bool(true), "{shown:#}");
    assert_eq!(attestation["fingerprint"].as_str().map(str::len), Some(64), "{shown:#}");
    // The service sets the interval (the development service: every 5 s), and the agent
    // keeps to it.
    assert!(
        device.console().contains(&format!("next check-in in {} s", devfleet::CHECK_IN_INTERVAL_S)),
        "{}",
        device.console()
    );
    // The certificate is for the device's own key: the monitor refuses one for any other.
    // Each check-in renews it, over a session authenticated with the previous one.
    device.wait_for_nth("agent: checked in: trusted", 2);
    device.wait_for_nth("septa: monitor: installed a new device certificate", 2);
    assert!(!device.console().contains("refused a device certificate"));
}

#[test]
fn a_v2_is_installed_and_updated_only_after_attesting_then_a_crashing_v3_rolls_back() {
    updates_then_rolls_back(Fleet::new("update"));
}

#[test]
fn on_postgres_a_v2_is_installed_and_updated_only_after_attesting_then_a_crashing_v3_rolls_back() {
    let Some(db) = Db::postgres("update") else { return };
    updates_then_rolls_back(Fleet::with_factory("update-pg", "v1.bundle", db));
}

fn updates_then_rolls_back(fleet: Fleet) {
    let mut device = fleet.boot();
    device.wait_for("agent: checked in: trusted");
    let v2 = image_dir().join("v2.bundle");
    fleet.cli(&["release", "--product", devfleet::PRODUCT, "--name", "v2", v2.to_str().unwrap()]);
    let deployment = fleet.deploy("v2");
    device.wait_for("agent: offered a");
    device.wait_for("agent: downloaded");
    let targets = |fleet: &Fleet, deployment: &str| fleet.cli(&["targets", deployment]).to_string();
    let status = |fleet: &Fleet| targets(fleet, &deployment);
    let after_download = status(&fleet);
    assert!(!after_download.contains("updated"), "updated before any new attestation: {after_download}");
    device.wait_for("confirming the update");
    device.wait_for("applied and confirmed");
    let checked = "agent: checked in: trusted";
    let console = device.console();
    let confirmed_at = console.find("applied and confirmed").unwrap();
    let first_after = console[..confirmed_at].matches(checked).count() + 1;
    device.wait_for_nth(checked, first_after);
    assert!(eventually(Duration::from_secs(10), || status(&fleet).contains("updated")), "{}", status(&fleet));
    // No offer after that: the device runs the release. A check-in's offer comes after its
    // line, while the device may still be printing, so each check-in is judged by the console
    // up to the next one's line: none in the first check-in after the confirmation or the next.
    device.wait_for_nth(checked, first_after + 2);
    let console = device.console();
    let line_of = |n: usize| console.match_indices(checked).nth(n - 1).unwrap().0;
    let offers = console[..line_of(first_after)].matches("agent: offered a").count();
    assert_eq!(console[..line_of(first_after + 2)].matches("agent: offered a").count(), offers, "{console}");

    // v3 (on the same device, now running v2): its crasher must keep running but faults at
    // start, so the trial fails and the device rolls back to v2 by itself; the service sees
    // v2's measurements in the next attestation and marks the device rolled back.
    let v3 = image_dir().join("v3-crash.bundle");
    fleet.cli(&["release", "--product", devfleet::PRODUCT, "--name", "v3", v3.to_str().unwrap()]);
    let deployment = fleet.deploy("v3");
    device.wait_for_nth("agent: offered a", offers + 1);
    device.wait_for("rolled back: app crasher failed during the trial");
    let console = device.console();
    let rolled_at = console.find("rolled back: app crasher failed during the trial").unwrap();
    device.wait_for_nth(
        "agent: checked in: trusted",
        console[..rolled_at].matches("agent: checked in: trusted").count() + 1,
    );
    assert!(
        eventually(Duration::from_secs(10), || targets(&fleet, &deployment).contains("rolled back")),
        "{}\n{}",
        targets(&fleet, &deployment),
        device.console()
    );
    let id = device_id_of(&device.console());
    let shown = fleet.cli(&["device", &id]);
    assert_eq!(shown["device"]["release"], "v2", "still v2 after the roll-back: {shown:#}");
    // Handshakes and two downloads fit the agent's CPU budget.
    assert!(!device.console().contains("app agent overran"), "{}", device.console());
    assert_eq!(shown["device"]["trusted"], Value::Bool(true), "{shown:#}");
}

#[test]
fn the_service_restarts_while_the_device_runs_and_reports_arrive_once_grouped_into_one_issue() {
    let mut fleet = Fleet::new("restart");
    let mut device = fleet.boot();
    let id = device_id(&mut device);
    device.wait_for("agent: checked in: trusted");
    device.wait_for("agent: uploaded");
    let (address, device_address) = (fleet.service.address, fleet.service.device_address);
    let token = fleet.service.token.clone();
    // Stop the service; the device keeps running and retries.
    let any = "127.0.0.1:0".parse().unwrap();
    let placeholder = start(&fleet.data.join("other"), &Db::Sqlite, any, any);
    std::mem::replace(&mut fleet.service, placeholder).stop();
    let failures = device.console().matches("agent: check-in failed").count();
    device.wait_for_nth("agent: check-in failed", failures + 2);
    fleet.service = start(&fleet.data, &fleet.db, address, device_address);
    assert_eq!(fleet.service.token, token);
    let checked = device.console().matches("agent: checked in: trusted").count();
    device.wait_for_nth("agent: checked in: trusted", checked + 1);
    let uploads = device.console().matches("agent: uploaded").count();
    device.wait_for_nth("agent: uploaded", uploads + 1);
    device.kill();

    // Every report the service has is in the device's ring, byte for byte, once; and every
    // ring record up to the last the service acknowledged has reached it.
    let out = fleet.data.join("reports.hex");
    fleet.cli(&["reports", &id, "--out", out.to_str().unwrap()]);
    let stored: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(str::to_string).collect();
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "a report stored twice");
    assert!(stored.len() >= 2, "the crasher's reports: {stored:?}");
    // The ring as the device left it in its flash: the service has every record up to the
    // newest one it stored; anything missing came after (a crash since the last upload).
    let key = |bytes: &[u8]| {
        let report: septa_abi::report::Report = postcard::from_bytes(bytes).expect("a ring record decodes");
        (report.batch.boot_count, report.batch.first)
    };
    let ring = septa_tool::report::from_flash(&fleet.images.flash).unwrap();
    let ring: Vec<String> = ring.iter().map(|(_, bytes)| hex::encode(bytes)).collect();
    let newest_stored = stored.iter().map(|h| key(&hex::decode(h).unwrap())).max().unwrap();
    for record in &ring {
        if key(&hex::decode(record).unwrap()) <= newest_stored {
            assert!(stored.contains(record), "a report older than the newest uploaded was lost: {record}");
        }
    }
    for record in &stored {
        assert!(ring.contains(record), "the service has a report the device never wrote: {record}");
    }
    // The stored reports verify offline with the device key.
    let verified = Command::new(septa_path())
        .args(["report", "verify", "--device-key"])
        .arg(keys_dir().join("device.pub.pem"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));

    let issues = fleet.cli(&["issues"]);
    let text = issues.to_string();
    assert!(text.contains("crasher"), "{issues:#}");
    let list = issues
        .as_array()
        .cloned()
        .unwrap_or_else(|| issues["issues"].as_array().cloned().unwrap_or_default());
    let crasher: Vec<&Value> = list.iter().filter(|i| i.to_string().contains("crasher")).collect();
    assert_eq!(crasher.len(), 1, "the crasher's faults group into one issue: {issues:#}");
}

#[test]
fn a_device_whose_measurements_the_service_does_not_know_gets_no_certificate_and_is_untrusted() {
    // The service knows only v2: the device booting v1 matches no release.
    let fleet = Fleet::with_factory("untrusted", "v2.bundle", Db::Sqlite);
    let mut device = fleet.boot();
    let id = device_id(&mut device);
    device.wait_for_nth("agent: checked in: untrusted (no certificate)", 2);
    let console = device.console();
    assert!(!console.contains("installed a new device certificate"), "{console}");
    assert!(!console.contains("agent: offered"), "no recovery release, no offer: {console}");
    let shown = fleet.cli(&["device", &id]);
    assert_eq!(shown["device"]["trusted"], Value::Bool(false), "{shown:#}");
    assert_eq!(shown["attestations"][0]["trusted"], Value::Bool(false), "{shown:#}");
}

#[test]
fn a_device_whose_agent_was_tampered_with_never_runs_it_and_never_reaches_the_service() {
    use septa_abi::package::{Kind, Package};
    use septa_tests::tamper::{edit_in_place, packages};
    let fleet = Fleet::new("tampered");
    // One flipped byte in the agent's code, the signed slot manifest left as it was (what an
    // attacker without the OEM key can do).
    let agent_id =
        [0x9a, 0x61, 0xc0, 0xd2, 0x54, 0xb7, 0x4e, 0x0a, 0x8f, 0x3c, 0x2d, 0x7e, 0x5b, 0x18, 0xa6, 0xc4];
    let all = packages(&fleet.images);
    let index = all
        .iter()
        .position(|p| {
            let header = Package::parse(p).unwrap().header;
            header.kind == Kind::App && header.component_id == agent_id
        })
        .expect("the agent is in the image");
    edit_in_place(&fleet.images, index, |p| *p.last_mut().unwrap() ^= 1);
    let mut device = fleet.boot();
    device.wait_for(&format!("septa: kernel: {} apps started", all.len() - 3));
    device.kill();
    let console = device.console();
    let refusal = format!(
        "septa: kernel: app package {index} refused: package: payload SHA-256 does not match the header"
    );
    assert!(console.contains(&refusal), "{console}");
    assert!(!console.contains("[agent]"), "the altered agent ran:\n{console}");
    // The service never heard from the device.
    let key = septa_tool::keys::load_verifying_key(&keys_dir().join("device.pub.pem")).unwrap();
    let id = hex::encode(septa_abi::keys::key_id(&key));
    let shown = fleet.cli(&["device", &id]);
    assert_eq!(shown["attestations"].as_array().map(Vec::len), Some(0), "{shown:#}");
    assert_eq!(shown["device"]["last_seen"], Value::Null, "never checked in: {shown:#}");
    assert_eq!(shown["device"]["trusted"], Value::Null, "never judged: {shown:#}");
}
