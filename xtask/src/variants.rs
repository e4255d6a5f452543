//! The image sets only the integration tests use, besides the default image.
//!
//! - `probe/`: a kernel built with the `probe` feature (boot-chain tests), no apps; with
//!   `hang.bundle`, an update to that kernel (which the watchdog test makes hang);
//! - `core/`: `hello`, `counter` and `spinner` (kernel-core tests);
//! - `limits/`: `spinner` at priority 1 with a CPU budget of 20 ms per 100 ms, next to
//!   `counter` at priority 2, and an `attacker` instance `a-flood` that floods the console;
//! - `fuzz/`: a kernel built with `smcfuzz` (random SMCs before the apps start) and the
//!   `sysfuzz` syscall fuzzer next to `counter` and `attest`; `fuzz-long/` (built by
//!   `cargo xtask fuzz` only) the same with `sysfuzz-long`, which runs far longer;
//! - `trust/`: `keys` and `attest`, which use the security monitor's services;
//! - `devauth/`: `devauth` (the device-auth service and the device certificate) and the
//!   same app as `noauth`, without the `device-auth` and `device-cert` capabilities;
//! - `compartments/`: IPC, capabilities, GPIO and the supervisor, with the `prober` app;
//! - `isolation/`: `counter` and `spinner` next to one `attacker` instance per attack, each
//!   named `a-<attack>` (the name selects the attack; see `userland/apps/attacker`;
//!   `a-residue` restarts whenever it ends);
//! - `update/`: `hello`, `counter`, `notes`, `peeker` (a second `notes`) and `updater`, with
//!   three bundles next to it: `v1.bundle` (the same software), `v2.bundle` (security
//!   version 2 everywhere) and `v2-crash.bundle` (version 2 plus a `crasher` that must
//!   always run and faults at start);
//! - `net/`: the network driver and service with `netclient` instances (`echo-big`,
//!   `echo-small`, `denied`, `nocap`, `cutoff`, `server`), each with its own destinations
//!   and listening ports;
//! - `net-crash/`: the same with a driver that faults mid-transfer (`netdev-crash`), a
//!   `survivor` client, `leaker` (which faults holding all its sockets, restarted each
//!   time) and `counter` (an app without network, which must not notice);
//! - `agent/`: the network apps, `agent` and `crasher` (which faults now and then), with
//!   `v1.bundle` (the same software: the factory release the service must know) and
//!   `v2.bundle` (security version 2 everywhere) and `v3-crash.bundle` (version 3 with a
//!   `crasher` that must keep running, so its trial fails) for `tests/tests/agent.rs`;
//! - `tls/`: `tlshello` against loopback TLS services, and `tls-noauth` without `device-auth`;
//! - `bench/`: the benchmark apps (also what `cargo xtask bench` runs);
//! - `net-bench/`: `netbench` with the network apps (`cargo xtask bench` only).

use crate::images::{AppSpec, BundleSpec, ImageSpec};
use anyhow::Result;
use septa_abi::app::Restart;
use std::path::Path;

/// The attacks `tests/tests/isolation.rs` expects, one attacker instance each.
pub const ATTACKS: [&str; 14] = [
    "syscalls",
    "kread",
    "otherapp",
    "secureram",
    "bootrom",
    "textwrite",
    "stackexec",
    "dataexec",
    "kexec",
    "undef",
    "align",
    "residue",
    "tls-set",
    "tls-get",
];

pub fn test_images(root: &Path) -> Result<Vec<ImageSpec>> {
    let attacker = AppSpec::from_crate(root, "attacker")?;
    let mut isolation = vec![AppSpec::from_crate(root, "counter")?, AppSpec::from_crate(root, "spinner")?];
    for (index, attack) in ATTACKS.iter().enumerate() {
        let mut manifest = attacker.manifest.clone();
        manifest.name = format!("a-{attack}");
        // Each instance is its own component.
        manifest.component_id[15] = manifest.component_id[15].wrapping_add(index as u8);
        if *attack == "residue" {
            // Restarted after each run, on frames an earlier run may have had.
            manifest.restart = Restart::Always;
        }
        isolation.push(AppSpec { binary: "attacker".into(), manifest });
    }
    let devauth = AppSpec::from_crate(root, "devauth")?;
    let mut noauth = devauth.clone();
    noauth.manifest.name = "noauth".into();
    noauth.manifest.component_id[15] ^= 0x80;
    noauth.manifest.devices.clear();
    noauth.manifest.monitor.retain(|s| s != "device-auth" && s != "device-cert");
    let apps =
        |names: &[&str]| names.iter().map(|n| AppSpec::from_crate(root, n)).collect::<Result<Vec<_>>>();
    let image = |dir: &str, kernel_features: Vec<String>, apps: Vec<AppSpec>| ImageSpec {
        dir: dir.into(),
        kernel_features,
        apps,
        bundles: Vec::new(),
    };
    Ok(vec![
        ImageSpec {
            bundles: vec![BundleSpec { file: "hang.bundle".into(), security_version: 2, apps: Vec::new() }],
            ..image("probe", vec!["probe".into()], Vec::new())
        },
        image("core", Vec::new(), apps(&["hello", "counter", "spinner"])?),
        image(
            "compartments",
            Vec::new(),
            apps(&["logger", "blinky", "pong", "ping", "crasher", "prober", "counter", "clock"])?,
        ),
        image("limits", Vec::new(), limits_apps(root)?),
        fuzz_image(root, false)?,
        image("trust", Vec::new(), apps(&["keys", "attest", "hello"])?),
        image("devauth", Vec::new(), vec![devauth, noauth]),
        image("isolation", Vec::new(), isolation),
        update_image(root)?,
        ImageSpec {
            dir: "update-cut".into(),
            kernel_features: vec!["septa-monitor/powercut".into()],
            ..update_image(root)?
        },
        net_image(root, "net", false)?,
        net_image(root, "net-crash", true)?,
        agent_image(root)?,
        tls_image(root)?,
    ])
}

/// `tls/`: the network apps and `tlshello` granted `devhost:8443`-`8448` (one good service
/// and five that must be refused), and `tls-noauth`, the same app without `device-auth`.
fn tls_image(root: &Path) -> Result<ImageSpec> {
    let mut apps = vec![AppSpec::from_crate(root, "netdev")?, AppSpec::from_crate(root, "netsvc")?];
    let mut client = AppSpec::from_crate(root, "tlshello")?;
    client.manifest.connect = (8443..=8448).map(|port| format!("devhost:{port}")).collect();
    let mut noauth = client.clone();
    noauth.manifest.name = "tls-noauth".into();
    noauth.manifest.component_id[15] ^= 0x80;
    noauth.manifest.monitor.retain(|s| s != "device-auth");
    apps.extend([client, noauth]);
    Ok(ImageSpec { dir: "tls".into(), kernel_features: Vec::new(), apps, bundles: Vec::new() })
}

/// A `netclient` instance with its own name, component id and destinations.
fn net_client(base: &AppSpec, name: &str, index: u8, connect: &[&str]) -> AppSpec {
    let mut manifest = base.manifest.clone();
    manifest.name = name.into();
    manifest.component_id[15] = manifest.component_id[15].wrapping_add(index);
    manifest.connect = connect.iter().map(|d| d.to_string()).collect();
    manifest.call = if connect.is_empty() { Vec::new() } else { vec!["net".into()] };
    AppSpec { binary: "netclient".into(), manifest }
}

/// A `netclient` instance that may listen on `ports` (and connect nowhere).
fn net_server(base: &AppSpec, name: &str, index: u8, ports: &[u16]) -> AppSpec {
    let mut spec = net_client(base, name, index, &[]);
    spec.manifest.listen = ports.to_vec();
    spec.manifest.call = vec!["net".into()];
    spec
}

/// The network test images (see the module documentation).
fn net_image(root: &Path, dir: &str, crash: bool) -> Result<ImageSpec> {
    let client = AppSpec::from_crate(root, "netclient")?;
    let mut driver = AppSpec::from_crate(root, "netdev")?;
    let mut apps = Vec::new();
    if crash {
        driver.manifest.name = "netdev-crash".into();
        apps.extend([driver, AppSpec::from_crate(root, "netsvc")?]);
        apps.push(net_client(&client, "survivor", 1, &["devhost:7"]));
        let mut leaker = net_client(&client, "leaker", 7, &["devhost:7"]);
        leaker.manifest.restart = Restart::Always;
        apps.push(leaker);
        apps.push(AppSpec::from_crate(root, "counter")?);
    } else {
        apps.extend([driver, AppSpec::from_crate(root, "netsvc")?]);
        apps.push(net_client(&client, "echo-big", 0, &["devhost:7"]));
        apps.push(net_client(&client, "echo-small", 2, &["devhost:7"]));
        apps.push(net_client(&client, "denied", 3, &["devhost:7"]));
        apps.push(net_client(&client, "nocap", 4, &[]));
        apps.push(net_client(&client, "cutoff", 5, &["devhost:9"]));
        apps.push(net_server(&client, "server", 6, &[8080]));
    }
    Ok(ImageSpec { dir: dir.into(), kernel_features: Vec::new(), apps, bundles: Vec::new() })
}

/// The agent's image and its releases: `v2` (security version 2 everywhere) and
/// `v3-crash` (version 3, with a `crasher` that must keep running: it fails its trial).
fn agent_image(root: &Path) -> Result<ImageSpec> {
    let apps = ["netdev", "netsvc", "agent", "crasher"]
        .iter()
        .map(|n| AppSpec::from_crate(root, n))
        .collect::<Result<Vec<_>>>()?;
    let version = |security_version: u32| -> Vec<AppSpec> {
        apps.iter()
            .map(|app| {
                let mut manifest = app.manifest.clone();
                manifest.version = security_version;
                if security_version == 3 && manifest.name == "crasher" {
                    manifest.restart = Restart::Always;
                }
                AppSpec { binary: app.binary.clone(), manifest }
            })
            .collect()
    };
    Ok(ImageSpec {
        dir: "agent".into(),
        kernel_features: Vec::new(),
        bundles: vec![
            BundleSpec { file: "v1.bundle".into(), security_version: 1, apps: apps.clone() },
            BundleSpec { file: "v2.bundle".into(), security_version: 2, apps: version(2) },
            BundleSpec { file: "v3-crash.bundle".into(), security_version: 3, apps: version(3) },
        ],
        apps,
    })
}

/// The fuzzers' image: `long` for `cargo xtask fuzz`.
pub fn fuzz_image(root: &Path, long: bool) -> Result<ImageSpec> {
    let mut fuzzer = AppSpec::from_crate(root, "sysfuzz")?;
    if long {
        fuzzer.manifest.name = "sysfuzz-long".into();
    }
    let apps = vec![fuzzer, AppSpec::from_crate(root, "counter")?, AppSpec::from_crate(root, "attest")?];
    let dir = if long { "fuzz-long" } else { "fuzz" };
    Ok(ImageSpec { dir: dir.into(), kernel_features: vec!["smcfuzz".into()], apps, bundles: Vec::new() })
}

/// A spinner more urgent than `counter`, which only its CPU budget keeps from starving it,
/// and a console flood.
fn limits_apps(root: &Path) -> Result<Vec<AppSpec>> {
    let mut spinner = AppSpec::from_crate(root, "spinner")?;
    spinner.manifest.priority = 1;
    spinner.manifest.cpu_budget_ms = 20;
    spinner.manifest.cpu_period_ms = 100;
    let mut flood = AppSpec::from_crate(root, "attacker")?;
    flood.manifest.name = "a-flood".into();
    Ok(vec![spinner, AppSpec::from_crate(root, "counter")?, flood])
}

/// The update image and its bundles.
fn update_image(root: &Path) -> Result<ImageSpec> {
    let mut peeker = AppSpec::from_crate(root, "notes")?;
    peeker.manifest.name = "peeker".into();
    peeker.manifest.component_id[15] ^= 0xff;
    let mut apps = vec![AppSpec::from_crate(root, "hello")?, AppSpec::from_crate(root, "counter")?];
    apps.extend([AppSpec::from_crate(root, "notes")?, peeker, AppSpec::from_crate(root, "updater")?]);
    let version = |apps: &[AppSpec], security_version: u32| -> Vec<AppSpec> {
        apps.iter()
            .map(|app| {
                let mut manifest = app.manifest.clone();
                manifest.version = security_version;
                AppSpec { binary: app.binary.clone(), manifest }
            })
            .collect()
    };
    let v1 = version(&apps, 1);
    let v2 = version(&apps, 2);
    let mut crasher = AppSpec::from_crate(root, "crasher")?;
    crasher.manifest.restart = Restart::Always;
    let mut v2_crash = v2.clone();
    v2_crash.push(crasher);
    let bundle =
        |file: &str, security_version, apps| BundleSpec { file: file.into(), security_version, apps };
    Ok(ImageSpec {
        dir: "update".into(),
        kernel_features: Vec::new(),
        apps: v1.clone(),
        bundles: vec![
            bundle("v1.bundle", 1, v1),
            bundle("v2.bundle", 2, v2),
            bundle("v2-crash.bundle", 2, v2_crash),
        ],
    })
}

/// The dev kit's `core/` image: `hello`, `counter` and `spinner` (preemption).
pub fn raspi2b_core_image(root: &Path) -> Result<ImageSpec> {
    let apps = ["hello", "counter", "spinner"]
        .iter()
        .map(|n| AppSpec::from_crate(root, n))
        .collect::<Result<Vec<_>>>()?;
    Ok(ImageSpec { dir: "core".into(), kernel_features: Vec::new(), apps, bundles: Vec::new() })
}

/// The benchmark image: `bench` first (it measures the time to the first app), `benchpeer`
/// for IPC and switches, and a kernel that lets them read the counters.
pub fn bench_image(root: &Path) -> Result<ImageSpec> {
    let apps =
        ["bench", "benchpeer"].iter().map(|n| AppSpec::from_crate(root, n)).collect::<Result<Vec<_>>>()?;
    Ok(ImageSpec { dir: "bench".into(), kernel_features: vec!["bench".into()], apps, bundles: Vec::new() })
}

/// The network benchmark image: the driver, the service and `netbench`, with a kernel that
/// lets it program the counters.
pub fn net_bench_image(root: &Path) -> Result<ImageSpec> {
    let apps = ["netdev", "netsvc", "netbench"]
        .iter()
        .map(|n| AppSpec::from_crate(root, n))
        .collect::<Result<Vec<_>>>()?;
    Ok(ImageSpec {
        dir: "net-bench".into(),
        kernel_features: vec!["bench".into()],
        apps,
        bundles: Vec::new(),
    })
}
