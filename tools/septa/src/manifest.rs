//! `app.toml`: reading an app's manifest and checking it before it is packed.
//!
//! Unknown fields and malformed values are refused with a message naming the file, the
//! field and the fix; the same rules the kernel applies (`Manifest::validate`) run here
//! first, so a bad manifest fails the build rather than the boot.

use anyhow::{Context, Result, bail};
use septa_abi::app::{self, Manifest, Restart};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    app: AppSection,
    #[serde(default)]
    capabilities: Capabilities,
    #[serde(default)]
    tls: Tls,
}

/// `[tls]`: the CA certificates the app trusts for servers, by name. The app's build embeds
/// each named anchor (a DER file from the build's trust-anchor folder), so they ship in the
/// signed, measured image and nothing at run time can add one.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Tls {
    #[serde(default)]
    trust_anchors: Vec<String>,
}

/// The most trust anchors one app names.
pub const MAX_TRUST_ANCHORS: usize = 8;

/// `[capabilities]`: everything defaults to none.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Capabilities {
    serve: Option<String>,
    #[serde(default)]
    call: Vec<String>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default)]
    gpio: Vec<u8>,
    #[serde(default)]
    monitor: Vec<String>,
    #[serde(default)]
    connect: Vec<String>,
    #[serde(default)]
    listen: Vec<u16>,
    #[serde(default)]
    dma_kib: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AppSection {
    name: String,
    component_id: String,
    version: u32,
    priority: u8,
    memory_kib: u32,
    restart: RestartPolicy,
    #[serde(default)]
    storage_kib: u32,
    #[serde(default = "default_stack_kib")]
    stack_kib: u32,
    #[serde(default = "default_cpu_budget_ms")]
    cpu_budget_ms: u32,
    #[serde(default = "default_cpu_period_ms")]
    cpu_period_ms: u32,
}

fn default_stack_kib() -> u32 {
    app::STACK_KIB_MIN
}

fn default_cpu_budget_ms() -> u32 {
    app::DEFAULT_CPU_BUDGET_MS
}

fn default_cpu_period_ms() -> u32 {
    app::DEFAULT_CPU_PERIOD_MS
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RestartPolicy {
    Always,
    Never,
    OnFailure,
}

/// A manifest read from `app.toml`, owning its strings.
#[derive(Clone, Debug)]
pub struct AppManifest {
    pub name: String,
    pub component_id: [u8; 16],
    pub version: u32,
    pub priority: u8,
    pub memory_kib: u32,
    pub restart: Restart,
    pub serve: Option<String>,
    pub call: Vec<String>,
    pub devices: Vec<String>,
    pub gpio: Vec<u8>,
    pub monitor: Vec<String>,
    pub storage_kib: u32,
    pub connect: Vec<String>,
    /// TCP ports this app may listen on; enforced by the network service through the
    /// policy the build composes (`crate::netpolicy`), not by the kernel.
    pub listen: Vec<u16>,
    pub dma_kib: u32,
    pub stack_kib: u32,
    /// `[tls] trust-anchors`: names of the CA certificates the app's build embeds.
    pub trust_anchors: Vec<String>,
    pub cpu_budget_ms: u32,
    pub cpu_period_ms: u32,
}

/// Copies `items` into a bounded list, naming the field when there are too many.
fn bounded<'a, T: Clone + 'a, const N: usize>(
    items: impl ExactSizeIterator<Item = T>,
) -> heapless::Vec<T, N> {
    let mut out = heapless::Vec::new();
    for item in items.take(N) {
        let _ = out.push(item);
    }
    out
}

impl AppManifest {
    /// The manifest as the device sees it.
    pub fn to_abi(&self) -> Manifest<'_> {
        Manifest {
            name: &self.name,
            component_id: self.component_id,
            version: self.version,
            priority: self.priority,
            memory_kib: self.memory_kib,
            restart: self.restart,
            serve: self.serve.as_deref(),
            call: bounded(self.call.iter().map(String::as_str)),
            devices: bounded(self.devices.iter().map(String::as_str)),
            gpio: bounded(self.gpio.iter().copied()),
            monitor: bounded(self.monitor.iter().map(String::as_str)),
            storage_kib: self.storage_kib,
            connect: bounded(self.connect.iter().map(String::as_str)),
            dma_kib: self.dma_kib,
            stack_kib: self.stack_kib,
            cpu_budget_ms: self.cpu_budget_ms,
            cpu_period_ms: self.cpu_period_ms,
        }
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<AppManifest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AppManifest> {
        let file: File = toml::from_str(text)?;
        let app = file.app;
        let caps = file.capabilities;
        for (field, len, max) in [
            ("call", caps.call.len(), app::MAX_CALLS),
            ("devices", caps.devices.len(), app::MAX_DEVICES),
            ("gpio", caps.gpio.len(), 8),
            ("monitor", caps.monitor.len(), app::MAX_MONITOR_SERVICES),
            ("connect", caps.connect.len(), septa_abi::net::MAX_CONNECT),
            ("listen", caps.listen.len(), septa_abi::net::MAX_LISTEN),
        ] {
            if len > max {
                bail!("app {:?}: [capabilities] {field}: {len} entries, at most {max} allowed", app.name);
            }
        }
        for (i, destination) in caps.connect.iter().enumerate() {
            if let Err(error) = septa_abi::net::Destination::parse(destination) {
                bail!("app {:?}: [capabilities] connect: {destination:?}: {error}", app.name);
            }
            if caps.connect[..i].contains(destination) {
                bail!("app {:?}: [capabilities] connect: {destination:?} is listed twice", app.name);
            }
        }
        for (i, port) in caps.listen.iter().enumerate() {
            if *port == 0 {
                bail!(
                    "app {:?}: [capabilities] listen: 0: the port must be a number from 1 to 65535",
                    app.name
                );
            }
            if caps.listen[..i].contains(port) {
                bail!("app {:?}: [capabilities] listen: {port} is listed twice", app.name);
            }
        }
        let needs_service = [
            ("connect", "destinations", caps.connect.is_empty()),
            ("listen", "ports", caps.listen.is_empty()),
        ];
        for (field, what, empty) in needs_service {
            if !empty && !caps.call.iter().any(|c| c == septa_abi::net::SERVICE_ENDPOINT) {
                bail!(
                    "app {:?}: [capabilities] {field}: {what} need call = [\"{}\"] (the network service)",
                    app.name,
                    septa_abi::net::SERVICE_ENDPOINT
                );
            }
        }
        let anchors = file.tls.trust_anchors;
        if anchors.len() > MAX_TRUST_ANCHORS {
            bail!(
                "app {:?}: [tls] trust-anchors: {} entries, at most {MAX_TRUST_ANCHORS} allowed",
                app.name,
                anchors.len()
            );
        }
        if let Some(bad) = anchors.iter().find(|a| !app::is_valid_name(a)) {
            bail!(
                "app {:?}: [tls] trust-anchors: {bad:?} is not a name of 1 to {} characters of a-z, 0-9, '-' and '_'",
                app.name,
                app::NAME_MAX
            );
        }
        if anchors.iter().enumerate().any(|(i, a)| anchors[..i].contains(a)) {
            bail!("app {:?}: [tls] trust-anchors: a trust anchor is listed twice", app.name);
        }
        let component_id = parse_uuid(&app.component_id).with_context(|| {
            format!(
                "[app] component-id {:?}: expected a UUID like \"6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b71\"",
                app.component_id
            )
        })?;
        let manifest = AppManifest {
            name: app.name,
            component_id,
            version: app.version,
            priority: app.priority,
            memory_kib: app.memory_kib,
            restart: match app.restart {
                RestartPolicy::Always => Restart::Always,
                RestartPolicy::Never => Restart::Never,
                RestartPolicy::OnFailure => Restart::OnFailure,
            },
            serve: caps.serve,
            call: caps.call,
            devices: caps.devices,
            gpio: caps.gpio,
            monitor: caps.monitor,
            storage_kib: app.storage_kib,
            connect: caps.connect,
            listen: caps.listen,
            dma_kib: caps.dma_kib,
            stack_kib: app.stack_kib,
            trust_anchors: anchors,
            cpu_budget_ms: app.cpu_budget_ms,
            cpu_period_ms: app.cpu_period_ms,
        };
        if let Err(error) = manifest.to_abi().validate() {
            let field = match error {
                app::Error::BadName => "[app] name",
                app::Error::BadPriority(_) => "[app] priority",
                app::Error::BadMemory(_) => "[app] memory-kib",
                app::Error::BadPin(_) => "[capabilities] gpio",
                app::Error::UnknownService => "[capabilities] monitor",
                app::Error::BadStorage(_) => "[app] storage-kib",
                app::Error::BadDma(_) => "[capabilities] dma-kib",
                app::Error::BadStack(_) => "[app] stack-kib",
                app::Error::BadDestination(_) => "[capabilities] connect",
                app::Error::BadCpuBudget { .. } => "[app] cpu-budget-ms",
                _ => "[capabilities]",
            };
            bail!("app {:?}: {field}: {error}", manifest.name);
        }
        Ok(manifest)
    }
}

/// The payload of an app package: the manifest and the ELF stripped to its segments, after
/// checking that `memory-kib` covers what the kernel will map for this ELF (the kernel
/// would otherwise refuse the app at boot).
pub fn app_payload(manifest: &AppManifest, elf: &[u8]) -> Result<Vec<u8>> {
    let needed = crate::elf::app_memory_kib(elf, manifest.stack_kib)? + manifest.dma_kib;
    if manifest.memory_kib < needed {
        let dma = if manifest.dma_kib > 0 {
            format!(", its {} KiB DMA pool", manifest.dma_kib)
        } else {
            String::new()
        };
        bail!(
            "app {:?}: [app] memory-kib: {} KiB is too small: the app needs {needed} KiB (its segments \
             in whole 4 KiB pages, the {} KiB stack and {} KiB of translation tables{dma}); set memory-kib = {needed}",
            manifest.name,
            manifest.memory_kib,
            manifest.stack_kib,
            app::TABLES_KIB
        );
    }
    let stripped = crate::elf::strip_to_segments(elf)?;
    Ok(app::encode_payload(&manifest.to_abi(), &stripped))
}

pub use septa_kernel::boot::Board;
use septa_kernel::boot::{Refusal, plan};

/// Checks the apps of one image against each other and against `board`: at most
/// [`app::MAX_PROCESSES`] apps, unique names and component ids, one listener per port,
/// storage and memory quotas that fit — and then the kernel's own boot plan
/// (`septa_kernel::boot::plan`, the function the kernel runs at boot), so an app the kernel
/// would refuse on this board fails the build instead, with the field to fix.
pub fn check_image(apps: &[AppManifest], board: &Board) -> Result<()> {
    if apps.len() > app::MAX_PROCESSES {
        bail!(
            "the image has {} apps; the kernel runs at most {} (one process slot each): leave some out",
            apps.len(),
            app::MAX_PROCESSES
        );
    }
    let mut total_kib = 0u64;
    let mut storage_kib = 0;
    for (i, app) in apps.iter().enumerate() {
        let name = &app.name;
        let earlier = &apps[..i];
        if earlier.iter().any(|a| a.name == *name) {
            bail!("app {name:?}: [app] name: another app in the image is also named {name:?}; rename one");
        }
        if earlier.iter().any(|a| a.component_id == app.component_id) {
            bail!("app {name:?}: [app] component-id: already used by another app; generate a new UUID");
        }
        for port in &app.listen {
            if let Some(other) = earlier.iter().find(|a| a.listen.contains(port)) {
                bail!(
                    "app {name:?}: [capabilities] listen: port {port} is already {:?}'s; a port has one listener",
                    other.name
                );
            }
        }
        storage_kib += app.storage_kib;
        if storage_kib > app::STORAGE_KIB_TOTAL {
            bail!(
                "app {name:?}: [app] storage-kib: the apps' storage quotas add up to {storage_kib} KiB, more \
                 than the {} KiB of the storage area; lower storage-kib",
                app::STORAGE_KIB_TOTAL
            );
        }
        let board_kib = (board.frames / 1024) as u64;
        total_kib += app.memory_kib as u64;
        if total_kib > board_kib {
            bail!(
                "app {name:?}: [app] memory-kib: the apps' quotas add up to {total_kib} KiB, more than the \
                 {board_kib} KiB the {} board has for apps; lower memory-kib",
                board.name
            );
        }
    }
    let manifests: Vec<Manifest<'_>> = apps.iter().map(AppManifest::to_abi).collect();
    let slots: Vec<Option<&Manifest<'_>>> = manifests.iter().map(Some).collect();
    let refusals: Vec<(usize, Refusal<'_>)> =
        plan(&slots, board).into_iter().enumerate().filter_map(|(i, d)| Some((i, d?.err()?))).collect();
    // A client refused because its server was refused says less than the server's refusal.
    let served_in_image = |endpoint: &str| apps.iter().any(|a| a.serve.as_deref() == Some(endpoint));
    let first = refusals
        .iter()
        .find(|(_, r)| !matches!(r, Refusal::NobodyServes { endpoint } if served_in_image(endpoint)))
        .or(refusals.first());
    let Some(&(index, refusal)) = first else {
        return Ok(());
    };
    let name = &apps[index].name;
    let other = |by: usize| &apps[by].name;
    let field = refusal.field();
    match refusal {
        Refusal::EndpointTaken { endpoint, by } => bail!(
            "app {name:?}: [capabilities] serve: {endpoint:?} is already served by {:?}; an endpoint has one server",
            other(by)
        ),
        Refusal::NobodyServes { endpoint } if !served_in_image(endpoint) => bail!(
            "app {name:?}: [capabilities] call: no app in the image serves {endpoint:?}; \
             add the app that serves it or remove it from call"
        ),
        Refusal::NoSuchDevice { device } => {
            let known: Vec<&str> = board.devices.iter().map(|d| d.name).collect();
            bail!(
                "app {name:?}: [capabilities] devices: the {} board has no device {device:?} (it has: {})",
                board.name,
                known.join(", ")
            )
        }
        Refusal::DeviceTaken { device, by } => bail!(
            "app {name:?}: [capabilities] devices: {device:?} is already granted to {:?}; a device belongs to one app",
            other(by)
        ),
        Refusal::NoSuchPin { pin } => bail!(
            "app {name:?}: [capabilities] gpio: the {} board has pins 0 to {}, not {pin}",
            board.name,
            board.gpio_pins.saturating_sub(1)
        ),
        Refusal::PinTaken { pin, by } => bail!(
            "app {name:?}: [capabilities] gpio: pin {pin} is already granted to {:?}; a pin belongs to one app",
            other(by)
        ),
        _ => bail!(
            "app {name:?}: [capabilities] {field}: the kernel would refuse it on the {} board: {refusal}",
            board.name
        ),
    }
}

/// Parses the canonical 8-4-4-4-12 hex form of a UUID.
pub fn parse_uuid(text: &str) -> Result<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        bail!("not in 8-4-4-4-12 form");
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).context("not hexadecimal")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[app]
name = "blinky"
component-id = "6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b71"
version = 1
priority = 3
memory-kib = 64
restart = "always"
"#;

    #[test]
    fn a_good_manifest_parses() {
        let m = AppManifest::parse(GOOD).unwrap();
        assert_eq!(m.name, "blinky");
        assert_eq!(m.component_id[0], 0x6b);
        assert_eq!(m.component_id[15], 0x71);
        assert_eq!(m.restart, Restart::Always);
    }

    #[test]
    fn trust_anchors_are_names_listed_once() {
        let m = AppManifest::parse(&format!("{GOOD}\n[tls]\ntrust-anchors = [\"dev-service\"]")).unwrap();
        assert_eq!(m.trust_anchors, ["dev-service"]);
        assert!(AppManifest::parse(GOOD).unwrap().trust_anchors.is_empty());
        for bad in ["[\"../keys\"]", "[\"a\", \"a\"]", "[\"\"]"] {
            let error = AppManifest::parse(&format!("{GOOD}\n[tls]\ntrust-anchors = {bad}")).unwrap_err();
            assert!(format!("{error:#}").contains("[tls] trust-anchors"), "{bad}: {error:#}");
        }
        assert!(AppManifest::parse(&format!("{GOOD}\n[tls]\nanchors = []")).is_err(), "unknown field");
    }

    fn app(name: &str, extra: &str) -> AppManifest {
        let tag = name.bytes().fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        let id = format!("6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b{tag:02x}");
        let text = GOOD.replace("blinky", name).replace("6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b71", &id);
        AppManifest::parse(&format!("{text}\n[capabilities]\n{extra}")).unwrap()
    }

    fn image_error(apps: &[AppManifest]) -> String {
        format!("{:#}", check_image(apps, &Board::QEMU_VIRT).unwrap_err())
    }

    #[test]
    fn capabilities_parse_and_default_to_none() {
        let m = app("ping", "call = [\"pong\"]\ngpio = [3]\nmonitor = [\"random\"]");
        assert_eq!(m.call, ["pong"]);
        assert_eq!(m.gpio, [3]);
        let none = AppManifest::parse(GOOD).unwrap();
        assert!(
            none.serve.is_none() && none.call.is_empty() && none.devices.is_empty() && none.gpio.is_empty()
        );
    }

    #[test]
    fn a_consistent_image_passes() {
        check_image(&[app("pong", "serve = \"pong\""), app("ping", "call = [\"pong\"]")], &Board::QEMU_VIRT)
            .unwrap();
    }

    #[test]
    fn more_apps_than_process_slots_are_refused() {
        let apps: Vec<AppManifest> = (0..=app::MAX_PROCESSES)
            .map(|i| {
                let id = format!("6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a{i:04x}");
                let text = GOOD
                    .replace("blinky", &format!("app{i}"))
                    .replace("6b1c5d6e-8a57-4f3a-9d1e-0c6f9e2a4b71", &id);
                AppManifest::parse(&text).unwrap()
            })
            .collect();
        assert!(image_error(&apps).contains("the kernel runs at most 16"), "{}", image_error(&apps));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let text = image_error(&[app("ping", ""), app("ping", "")]);
        assert!(text.contains("app \"ping\": [app] name: another app"), "{text}");
    }

    #[test]
    fn duplicate_component_ids_are_refused() {
        let mut second = app("pong", "");
        second.component_id = app("ping", "").component_id;
        let text = image_error(&[app("ping", ""), second]);
        assert!(text.contains("app \"pong\": [app] component-id"), "{text}");
    }

    #[test]
    fn calling_an_endpoint_nobody_serves_is_refused() {
        let text = image_error(&[app("ping", "call = [\"pong\"]")]);
        assert!(
            text.contains("app \"ping\": [capabilities] call: no app in the image serves \"pong\""),
            "{text}"
        );
    }

    #[test]
    fn two_servers_for_one_endpoint_are_refused() {
        let text = image_error(&[app("a", "serve = \"x\""), app("bb", "serve = \"x\"")]);
        assert!(text.contains("app \"bb\": [capabilities] serve"), "{text}");
    }

    #[test]
    fn a_device_or_pin_claimed_twice_is_refused() {
        let text = image_error(&[app("a", "devices = [\"rtc\"]"), app("bb", "devices = [\"rtc\"]")]);
        assert!(
            text.contains("app \"bb\": [capabilities] devices: \"rtc\" is already granted to \"a\""),
            "{text}"
        );
        let text = image_error(&[app("a", "gpio = [3]"), app("bb", "gpio = [1, 3]")]);
        assert!(
            text.contains("app \"bb\": [capabilities] gpio: pin 3 is already granted to \"a\""),
            "{text}"
        );
    }

    #[test]
    fn unknown_devices_and_pins_are_refused() {
        let text = image_error(&[app("a", "devices = [\"lasers\"]")]);
        assert!(
            text.contains("app \"a\": [capabilities] devices: the qemu-virt board has no device \"lasers\""),
            "{text}"
        );
        let text = image_error(&[app("a", "gpio = [9]")]);
        assert!(text.contains("app \"a\": [capabilities] gpio"), "{text}");
    }

    #[test]
    fn every_board_is_checked_with_its_own_devices() {
        // The Pi has no "rtc": an image fine for qemu-virt is refused for it, by name.
        let apps = [app("clock", "devices = [\"rtc\"]")];
        check_image(&apps, &Board::QEMU_VIRT).unwrap();
        let text = format!("{:#}", check_image(&apps, &Board::RASPI2B).unwrap_err());
        assert!(text.contains("the raspi2b board has no device \"rtc\""), "{text}");
        // A client of a server the kernel would refuse is named after the server's fault.
        let apps =
            [app("a", "gpio = [3]"), app("srv", "serve = \"x\"\ngpio = [3]"), app("cli", "call = [\"x\"]")];
        let text = image_error(&apps);
        assert!(
            text.contains("app \"srv\": [capabilities] gpio: pin 3 is already granted to \"a\""),
            "{text}"
        );
    }

    #[test]
    fn quotas_larger_than_the_board_are_refused() {
        let mut big = app("a", "");
        big.memory_kib = 16 * 1024;
        let many: Vec<AppManifest> = (0..9)
            .map(|i| {
                let mut m = big.clone();
                m.name = format!("a{i}");
                m.component_id[0] = i;
                m
            })
            .collect();
        let text = image_error(&many);
        assert!(text.contains("[app] memory-kib: the apps' quotas add up to"), "{text}");
    }

    #[test]
    fn unknown_monitor_services_are_refused() {
        let error =
            AppManifest::parse(&format!("{GOOD}\n[capabilities]\nmonitor = [\"teleport\"]")).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("app \"blinky\": [capabilities] monitor: unknown monitor service"), "{text}");
    }

    #[test]
    fn network_destinations_parse_and_bad_ones_name_file_field_and_entry() {
        let m = app("client", "call = [\"net\"]\nconnect = [\"devhost:7\", \"10.0.2.2:80\"]");
        assert_eq!(m.connect, ["devhost:7", "10.0.2.2:80"]);
        for (entry, expected) in [
            ("\"devhost\"", "connect: \"devhost\": expected \"host:port\""),
            ("\"devhost:0\"", "connect: \"devhost:0\": the port must be"),
            ("\"example.com:443\"", "connect: \"example.com:443\": the host must be"),
            ("\"devhost:7\", \"devhost:7\"", "connect: \"devhost:7\" is listed twice"),
        ] {
            let text = format!("{GOOD}\n[capabilities]\ncall = [\"net\"]\nconnect = [{entry}]");
            let error = format!("{:#}", AppManifest::parse(&text).unwrap_err());
            assert!(error.contains(&format!("app \"blinky\": [capabilities] {expected}")), "{error}");
        }
        let error =
            AppManifest::parse(&format!("{GOOD}\n[capabilities]\nconnect = [\"devhost:7\"]")).unwrap_err();
        assert!(format!("{error:#}").contains("destinations need call = [\"net\"]"), "{error:#}");
    }

    #[test]
    fn listening_ports_parse_and_bad_ones_name_file_field_and_entry() {
        let m = app("server", "call = [\"net\"]\nlisten = [8080, 23]");
        assert_eq!(m.listen, [8080, 23]);
        for (entry, expected) in [
            ("0", "listen: 0: the port must be a number from 1 to 65535"),
            ("8080, 8080", "listen: 8080 is listed twice"),
            ("1, 2, 3, 4, 5", "listen: 5 entries, at most 4 allowed"),
        ] {
            let text = format!("{GOOD}\n[capabilities]\ncall = [\"net\"]\nlisten = [{entry}]");
            let error = format!("{:#}", AppManifest::parse(&text).unwrap_err());
            assert!(error.contains(&format!("app \"blinky\": [capabilities] {expected}")), "{error}");
        }
        for entry in ["65536", "-1", "\"80\""] {
            let text = format!("{GOOD}\n[capabilities]\ncall = [\"net\"]\nlisten = [{entry}]");
            let error = format!("{:#}", AppManifest::parse(&text).unwrap_err());
            assert!(error.contains("listen"), "{entry}: {error}");
        }
        let error = AppManifest::parse(&format!("{GOOD}\n[capabilities]\nlisten = [80]")).unwrap_err();
        assert!(format!("{error:#}").contains("listen: ports need call = [\"net\"]"), "{error:#}");
        // The file is named too.
        let path = std::env::temp_dir().join(format!("septa-listen-{}.toml", std::process::id()));
        std::fs::write(&path, format!("{GOOD}\n[capabilities]\ncall = [\"net\"]\nlisten = [0]")).unwrap();
        let error = format!("{:#}", AppManifest::load(&path).unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert!(
            error.starts_with(&format!("{}: app \"blinky\": [capabilities] listen", path.display())),
            "{error}"
        );
    }

    #[test]
    fn a_port_has_one_listener_in_an_image() {
        let net = "call = [\"net\"]\nlisten = ";
        let service = || app("netsvc", "serve = \"net\"");
        let apps =
            [service(), app("web", &format!("{net}[8080]")), app("admin", &format!("{net}[23, 8080]"))];
        let text = image_error(&apps);
        assert!(
            text.contains("app \"admin\": [capabilities] listen: port 8080 is already \"web\"'s"),
            "{text}"
        );
        check_image(
            &[service(), app("web", &format!("{net}[8080]")), app("admin", &format!("{net}[23]"))],
            &Board::QEMU_VIRT,
        )
        .unwrap();
    }

    #[test]
    fn a_bad_dma_pool_names_the_field() {
        let error = AppManifest::parse(&format!("{GOOD}\n[capabilities]\ndma-kib = 12")).unwrap_err();
        assert!(format!("{error:#}").contains("[capabilities] dma-kib"), "{error:#}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = AppManifest::parse(&GOOD.replace("version = 1", "version = 1\ncolour = 3")).unwrap_err();
        assert!(format!("{error:#}").contains("unknown field `colour`"), "{error:#}");
    }

    #[test]
    fn malformed_uuid_names_the_field() {
        let error = AppManifest::parse(&GOOD.replace("6b1c5d6e-8a57", "6b1c5d6e8a57")).unwrap_err();
        assert!(format!("{error:#}").contains("component-id"), "{error:#}");
    }

    #[test]
    fn out_of_range_values_name_app_and_field() {
        let error = AppManifest::parse(&GOOD.replace("priority = 3", "priority = 9")).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("\"blinky\"") && text.contains("priority"), "{text}");
        let error = AppManifest::parse(&GOOD.replace("memory-kib = 64", "memory-kib = 1")).unwrap_err();
        assert!(format!("{error:#}").contains("memory-kib"), "{error:#}");
    }
}
