//! `septa`: the host tool — keys, packages, images, provisioning, inspection.
//!
//! Every command names the file it could not use and why; outputs are written through a
//! temporary file, so a failed command leaves no partial output behind.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use septa_abi::app;
use septa_abi::fuses::Fuses;
use septa_abi::keys::key_id;
use septa_abi::package::Kind;
use septa_abi::slot::Slot;
use septa_targets::qemu_virt as board;
use septa_tool::device_cert::{self, DeviceCa};
use septa_tool::image::{self, PackageSpec};
use septa_tool::manifest::AppManifest;
use septa_tool::{elf, keys};
use std::fs;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "septa", about = "Septa host tool: keys, packages, images, provisioning")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an OEM signing key pair: <OUT>.pem (private, PKCS#8) and <OUT>.pub.pem.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign an ELF into a package: an app (with its app.toml), the monitor or the kernel.
    Pack {
        #[arg(long, value_enum)]
        kind: PackKind,
        #[arg(long)]
        elf: PathBuf,
        /// The app's manifest (apps only).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Security version (monitor and kernel; an app's comes from its manifest).
        #[arg(long, default_value_t = 1)]
        version: u32,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Compose rom.img (loader, blank fuses) and flash.img (slot A with the packages, in order,
    /// and the slot manifest listing them, signed by the OEM key).
    Image {
        #[arg(long)]
        loader: PathBuf,
        /// The OEM private key that signs the slot manifest.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out_dir: PathBuf,
        packages: Vec<PathBuf>,
    },
    /// Write the device secret, OEM keys, revocations and minimum versions into a ROM image.
    Provision {
        #[arg(long)]
        rom: PathBuf,
        #[arg(long)]
        device_secret: PathBuf,
        /// An accepted OEM public key (repeat for several).
        #[arg(long = "oem-key", required = true)]
        oem_keys: Vec<PathBuf>,
        /// A revoked OEM key (repeat for several).
        #[arg(long = "revoke")]
        revoked: Vec<PathBuf>,
        /// A minimum security version: <component-id UUID>=<version> (repeat for several).
        #[arg(long = "minimum")]
        minimums: Vec<String>,
        /// The OEM device CA's folder (device-ca.pem, device-ca.key.pem; created if empty):
        /// issue a device certificate for the device key and store it in `--flash`.
        #[arg(long, requires = "flash")]
        device_ca: Option<PathBuf>,
        /// The flash 1 image that receives the device certificate.
        #[arg(long, requires = "device_ca")]
        flash: Option<PathBuf>,
        /// How long the factory device certificate is valid, in days.
        #[arg(long, default_value_t = 3650)]
        certificate_days: u32,
    },
    /// Write the public device identity key of a device secret (for `attest verify`).
    DeviceKey {
        #[arg(long)]
        device_secret: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Attestation tokens.
    Attest {
        #[command(subcommand)]
        command: AttestCommand,
    },
    /// Signed failure reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Make a signed update bundle of packages (made by `septa pack`), in slot order.
    Bundle {
        /// The OEM private key that signs the bundle header and the slot manifest.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(required = true)]
        packages: Vec<PathBuf>,
    },
    /// Administer a septa-service: tokens, keys, products, devices, releases, rollouts,
    /// failures and the fleet audit (docs/service.md).
    Service {
        /// The service's management URL (or SEPTA_SERVICE_URL).
        #[arg(long, env = "SEPTA_SERVICE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An API token (or SEPTA_SERVICE_TOKEN).
        #[arg(long, env = "SEPTA_SERVICE_TOKEN", hide_env_values = true)]
        token: String,
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Create a standalone app project in a new folder (docs/writing-an-app.md).
    New {
        /// The folder to create; its last component is the app's name unless --name says.
        path: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// The Septa checkout the app builds against (default: the one this tool was built in).
        #[arg(long)]
        septa: Option<PathBuf>,
    },
    /// Relay standard input and output to a TCP server on the host's loopback (QEMU's
    /// `guestfwd=...-cmd:` starts one per guest connection).
    Relay {
        /// The server: a loopback IP:PORT.
        target: String,
    },
    /// List the packages in a flash image, and check their signatures against OEM keys.
    Inspect {
        flash: PathBuf,
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AttestCommand {
    /// Check a token (hex, whitespace ignored) against the device key and the nonce, and
    /// print what the device booted. With --image, also require the measurements of the
    /// packages in that flash image.
    Verify {
        #[arg(long)]
        device_key: PathBuf,
        /// The nonce the token must answer, in hex.
        #[arg(long)]
        nonce: String,
        #[arg(long)]
        image: Option<PathBuf>,
        token: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Check signed reports with the device key and print one line per event: from a file
    /// of hex lines (`septa: supervisor: signed report <hex>` console lines, or bare), or
    /// from the report ring of a flash image (`--flash flash.img`).
    Verify {
        #[arg(long)]
        device_key: PathBuf,
        #[arg(long, conflicts_with = "reports")]
        flash: Option<PathBuf>,
        #[arg(required_unless_present = "flash")]
        reports: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Show the token's tenant and role.
    Whoami,
    /// Create an API token (admin): prints it once.
    TokenCreate {
        #[arg(long)]
        name: String,
        /// admin, deployer or viewer.
        #[arg(long)]
        role: String,
    },
    /// List the tenant's API tokens (admin).
    Tokens,
    /// Revoke an API token by id (admin).
    TokenRevoke { id: String },
    /// Register an OEM public key (PEM) that signs the tenant's bundles (admin).
    OemKey {
        #[arg(long)]
        key: PathBuf,
    },
    /// Create a product (admin).
    Product { name: String },
    /// Create a device group in a product (admin).
    Group {
        #[arg(long)]
        product: String,
        name: String,
    },
    /// Claim a device into a product, by its public device key (`septa device-key`); one-way.
    Claim {
        #[arg(long)]
        product: String,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        device_key: PathBuf,
    },
    /// Move a device into a group of its product (deployer).
    SetGroup {
        device: String,
        #[arg(long)]
        group: String,
    },
    /// List the tenant's devices.
    Devices,
    /// One device: state, attestation history, reports.
    Device { id: String },
    /// Write a device's stored reports as hex lines (check them with `septa report verify`).
    Reports {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Upload a signed update bundle (`septa bundle`) as a release (deployer).
    Release {
        #[arg(long)]
        product: String,
        #[arg(long)]
        name: String,
        /// Offer it to devices whose measurements match no release.
        #[arg(long)]
        recovery: bool,
        bundle: PathBuf,
    },
    /// List releases.
    Releases,
    /// Deploy a release to a group in phases (deployer).
    Deploy {
        #[arg(long)]
        release: String,
        #[arg(long)]
        group: String,
        /// Rising percentages of the group, ending at 100.
        #[arg(long, default_value = "1,10,100")]
        phases: String,
        /// Halt when more than this percentage of decided devices failed.
        #[arg(long, default_value_t = 10)]
        threshold: u32,
        /// Seconds a device has to attest the release once its phase opened.
        #[arg(long, default_value_t = 86400)]
        deadline: u32,
    },
    /// List deployments with their progress.
    Deployments,
    /// Per-device status of a deployment.
    Targets { id: String },
    /// Failure issues (grouped by app, kind and pc) with counts per release and day.
    Issues,
    /// Mark an issue fixed as of the newest release (deployer); it reopens if seen in a later one.
    Fix { id: String },
    /// The fleet audit: untrusted, shared keys, silent, expiring certificates, halted rollouts.
    Audit {
        #[arg(long, default_value_t = 7)]
        silent_days: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PackKind {
    App,
    Monitor,
    Kernel,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("septa: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => {
            let private = out.with_extension("pem");
            let public = out.with_extension("pub.pem");
            let key = keys::generate(&private, &public)?;
            println!(
                "wrote {} and {} (key id {})",
                private.display(),
                public.display(),
                hex::encode(key_id(key.verifying_key()))
            );
        }
        Command::Pack { kind, elf: elf_path, manifest, version, key, out } => {
            let key = keys::load_signing_key(&key)?;
            let spec = match kind {
                PackKind::App => {
                    let manifest = manifest.context("--manifest is required for an app")?;
                    let manifest = AppManifest::load(&manifest)?;
                    let bytes =
                        fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
                    let payload = septa_tool::manifest::app_payload(&manifest, &bytes)
                        .with_context(|| format!("{}", elf_path.display()))?;
                    PackageSpec {
                        kind: Kind::App,
                        component_id: manifest.component_id,
                        security_version: manifest.version,
                        payload,
                    }
                }
                PackKind::Monitor => PackageSpec {
                    kind: Kind::Monitor,
                    component_id: septa_abi::package::MONITOR_COMPONENT_ID,
                    security_version: version,
                    payload: elf::flatten_file(&elf_path, board::MONITOR_RAM.base)?,
                },
                PackKind::Kernel => PackageSpec {
                    kind: Kind::Kernel,
                    component_id: septa_abi::package::KERNEL_COMPONENT_ID,
                    security_version: version,
                    payload: elf::flatten_file(&elf_path, board::KERNEL_RAM.base)?,
                },
            };
            image::write_atomically(&out, &spec.sign(&key))?;
            println!("wrote {}", out.display());
        }
        Command::Image { loader, key, out_dir, packages } => {
            let key = keys::load_signing_key(&key)?;
            let loader = elf::flatten_file(&loader, board::LOADER_ROM.base)?;
            let packages = packages
                .iter()
                .map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
                .collect::<Result<Vec<_>>>()?;
            fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
            image::write_atomically(&out_dir.join("rom.img"), &image::compose_rom(&loader)?)?;
            image::write_atomically(&out_dir.join("flash.img"), &image::compose_flash(&packages, &key)?)?;
            println!("wrote {0}/rom.img and {0}/flash.img", out_dir.display());
        }
        Command::Provision {
            rom,
            device_secret,
            oem_keys,
            revoked,
            minimums,
            device_ca,
            flash,
            certificate_days,
        } => {
            let fuses = fuses(&device_secret, &oem_keys, &revoked, &minimums)?;
            let mut image = fs::read(&rom).with_context(|| format!("reading {}", rom.display()))?;
            image::provision(&mut image, &fuses).with_context(|| format!("{}", rom.display()))?;
            if let (Some(ca), Some(flash)) = (device_ca, flash) {
                // Only the public half of the device key goes to the CA.
                let device_key = keys::device_public_key(&fuses.device_secret);
                let ca = DeviceCa::load_or_create(&ca)?;
                let not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
                let certificate = ca.issue(&device_key, not_before, certificate_days)?;
                let mut flash_image =
                    fs::read(&flash).with_context(|| format!("reading {}", flash.display()))?;
                device_cert::store(&mut flash_image, &certificate)
                    .with_context(|| format!("{}", flash.display()))?;
                image::write_atomically(&flash, &flash_image)?;
                println!("stored a device certificate ({} bytes) in {}", certificate.len(), flash.display());
            }
            image::write_atomically(&rom, &image)?;
            println!("provisioned {}", rom.display());
        }
        Command::Inspect { flash, keys: key_files } => inspect(&flash, &key_files)?,
        Command::Service { url, token, command } => {
            service(&septa_tool::service::Api::new(&url, &token), command)?
        }
        Command::New { path, name, septa } => {
            let name = match name {
                Some(name) => name,
                None => path
                    .file_name()
                    .context("the folder has no name; add --name")?
                    .to_string_lossy()
                    .into_owned(),
            };
            let septa = match septa {
                Some(dir) => fs::canonicalize(&dir).with_context(|| format!("{}", dir.display()))?,
                None => septa_tool::new::find_checkout()
                    .context("no Septa checkout found around this tool or here; add --septa DIR")?,
            };
            septa_tool::new::create(&path, &name, &septa)?;
            println!("created app {name:?} in {} (Septa checkout {})", path.display(), septa.display());
            println!("next: cd {} && cargo build --release", path.display());
        }
        Command::Relay { target } => septa_tool::relay::run(septa_tool::relay::target(&target)?)?,
        Command::DeviceKey { device_secret, out } => {
            let key = septa_tool::keys::device_public_key(&keys::load_secret(&device_secret)?);
            septa_tool::keys::write_public_key(&out, &key)?;
            println!("wrote {}", out.display());
        }
        Command::Report { command: ReportCommand::Verify { device_key, flash, reports } } => {
            let key = keys::load_verifying_key(&device_key)?;
            let reports = match (flash, reports) {
                (Some(flash), _) => septa_tool::report::from_flash(&flash)?,
                (None, Some(file)) => septa_tool::report::from_hex_lines(&file)?,
                (None, None) => bail!("name a file of reports or --flash"),
            };
            let mut events = 0;
            for (place, bytes) in &reports {
                let batch =
                    septa_abi::report::verify(bytes, &key).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
                septa_abi::report::describe(&batch, |line| println!("{line}"));
                events += batch.events.len();
            }
            println!(
                "{events} events in {} reports, all signed by device {}",
                reports.len(),
                hex::encode(key_id(&key))
            );
        }
        Command::Bundle { key, out, packages } => {
            let key = keys::load_signing_key(&key)?;
            let packages = packages
                .iter()
                .map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
                .collect::<Result<Vec<_>>>()?;
            let bundle = image::bundle(&packages, &key)?;
            image::write_atomically(&out, &bundle)?;
            println!("wrote {} ({} packages, {} bytes)", out.display(), packages.len(), bundle.len());
        }
        Command::Attest { command: AttestCommand::Verify { device_key, nonce, image, token } } => {
            let key = keys::load_verifying_key(&device_key)?;
            let nonce = hex::decode(nonce.trim()).context("--nonce is not hex")?;
            let text = fs::read_to_string(&token).with_context(|| format!("reading {}", token.display()))?;
            let bytes = hex::decode(text.split_whitespace().collect::<String>())
                .with_context(|| format!("{}: not hex", token.display()))?;
            let claims = septa_abi::attest::verify(&bytes, &key, &nonce)
                .map_err(|e| anyhow::anyhow!("{}: {e}", token.display()))?;
            if let Some(image) = image {
                septa_tool::attest::check_against_image(&claims, &image)?;
            }
            println!("token verified: device {}, nonce {}", hex::encode(key_id(&key)), hex::encode(&nonce));
            for m in &claims.measurements {
                let kind = Kind::from_u16(m.kind as u16).map_or("loader", Kind::name);
                println!(
                    "  {kind:<7} {}  version {}  {}",
                    uuid(&m.component_id),
                    m.security_version,
                    hex::encode(m.digest)
                );
            }
        }
    }
    Ok(())
}

fn service(api: &septa_tool::service::Api, command: ServiceCommand) -> Result<()> {
    use septa_tool::service::{claim_body, key_text, print};
    use serde_json::json;
    let path_id = |id: &str| -> Result<String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{id:?} is not an id (hex digits)");
        }
        Ok(id.to_string())
    };
    match command {
        ServiceCommand::Whoami => print(&api.get("/api/v1/whoami")?),
        ServiceCommand::TokenCreate { name, role } => {
            let answer = api.post("/api/v1/tokens", json!({ "name": name, "role": role }))?;
            println!("{}", answer["token"].as_str().unwrap_or_default());
            eprintln!("token id {} ({})", answer["id"].as_str().unwrap_or_default(), role);
        }
        ServiceCommand::Tokens => print(&api.get("/api/v1/tokens")?),
        ServiceCommand::TokenRevoke { id } => {
            api.delete(&format!("/api/v1/tokens/{}", path_id(&id)?))?;
            println!("revoked token {id}");
        }
        ServiceCommand::OemKey { key } => {
            let answer = api.post("/api/v1/oem-keys", json!({ "public_key": key_text(&key)? }))?;
            println!("registered OEM key {}", answer["key_id"].as_str().unwrap_or_default());
        }
        ServiceCommand::Product { name } => {
            api.post("/api/v1/products", json!({ "name": name }))?;
            println!("created product {name}");
        }
        ServiceCommand::Group { product, name } => {
            api.post("/api/v1/groups", json!({ "product": product, "name": name }))?;
            println!("created group {name} in {product}");
        }
        ServiceCommand::Claim { product, group, device_key } => {
            let answer =
                api.post("/api/v1/devices", claim_body(&product, group.as_deref(), &key_text(&device_key)?))?;
            println!("claimed device {} into {product}", answer["device_id"].as_str().unwrap_or_default());
        }
        ServiceCommand::SetGroup { device, group } => {
            api.put(&format!("/api/v1/devices/{}/group", path_id(&device)?), json!({ "group": group }))?;
            println!("device {device} is in group {group}");
        }
        ServiceCommand::Devices => print(&api.get("/api/v1/devices")?),
        ServiceCommand::Device { id } => print(&api.get(&format!("/api/v1/devices/{}", path_id(&id)?))?),
        ServiceCommand::Reports { id, out } => {
            let device = api.get(&format!("/api/v1/devices/{}", path_id(&id)?))?;
            let lines = septa_tool::service::reports_as_hex_lines(&device);
            image::write_atomically(&out, lines.as_bytes())?;
            println!("wrote {} reports to {}", lines.lines().count(), out.display());
        }
        ServiceCommand::Release { product, name, recovery, bundle } => {
            let answer = api.upload_release(&product, &name, recovery, &bundle)?;
            println!(
                "release {name} of {product} accepted (measurements {})",
                answer["fingerprint"].as_str().unwrap_or_default()
            );
        }
        ServiceCommand::Releases => print(&api.get("/api/v1/releases")?),
        ServiceCommand::Deploy { release, group, phases, threshold, deadline } => {
            let answer = api.post(
                "/api/v1/deployments",
                json!({ "release": release, "group": group, "phases": phases, "threshold_percent": threshold, "deadline_s": deadline }),
            )?;
            println!(
                "deployment {} of {release} to {group} started",
                answer["id"].as_str().unwrap_or_default()
            );
        }
        ServiceCommand::Deployments => print(&api.get("/api/v1/deployments")?),
        ServiceCommand::Targets { id } => {
            print(&api.get(&format!("/api/v1/deployments/{}/targets", path_id(&id)?))?)
        }
        ServiceCommand::Issues => print(&api.get("/api/v1/issues")?),
        ServiceCommand::Fix { id } => {
            api.post(&format!("/api/v1/issues/{}/fixed", path_id(&id)?), json!({}))?;
            println!("issue {id} marked fixed");
        }
        ServiceCommand::Audit { silent_days } => {
            print(&api.get(&format!("/api/v1/audit?silent_days={silent_days}"))?)
        }
    }
    Ok(())
}

fn fuses(
    secret: &std::path::Path,
    oem: &[PathBuf],
    revoked: &[PathBuf],
    minimums: &[String],
) -> Result<Fuses> {
    let mut fuses = Fuses {
        device_secret: keys::load_secret(secret)?,
        oem_keys: heapless::Vec::new(),
        revoked: heapless::Vec::new(),
        minimum_versions: heapless::Vec::new(),
    };
    for path in oem {
        let key = keys::load_verifying_key(path)?;
        let bytes = heapless::Vec::from_slice(key.to_encoded_point(false).as_bytes()).expect("65 bytes");
        if fuses.oem_keys.push(bytes).is_err() {
            bail!("at most {} OEM keys fit in the fuses", septa_abi::fuses::MAX_KEYS);
        }
    }
    for path in revoked {
        let id = key_id(&keys::load_verifying_key(path)?);
        if fuses.revoked.push(id).is_err() {
            bail!("at most {} revoked keys fit in the fuses", septa_abi::fuses::MAX_REVOKED);
        }
    }
    for entry in minimums {
        let (uuid, version) = entry
            .split_once('=')
            .with_context(|| format!("--minimum {entry:?}: expected <uuid>=<version>"))?;
        let id = septa_tool::manifest::parse_uuid(uuid).with_context(|| format!("--minimum {entry:?}"))?;
        let version =
            version.parse().with_context(|| format!("--minimum {entry:?}: version is not a number"))?;
        if fuses.minimum_versions.push((id, version)).is_err() {
            bail!("at most {} minimum versions fit in the fuses", septa_abi::fuses::MAX_MINIMUMS);
        }
    }
    Ok(fuses)
}

fn inspect(flash: &std::path::Path, key_files: &[PathBuf]) -> Result<()> {
    let image = fs::read(flash).with_context(|| format!("reading {}", flash.display()))?;
    let at = board::SLOT_A.base - board::FLASH1.base;
    let region = image.get(at..at + board::SLOT_A.size).context("the image is smaller than slot A")?;
    let slot = Slot::parse(region).map_err(|e| anyhow::anyhow!("{}: slot A: {e}", flash.display()))?;
    let keys = key_files.iter().map(|p| keys::load_verifying_key(p)).collect::<Result<Vec<_>>>()?;
    let manifest_key = slot.manifest_key_id();
    let manifest = match keys.iter().find(|k| key_id(k) == manifest_key) {
        Some(key) if slot.manifest_signed_by(key) => "valid",
        Some(_) => "INVALID",
        None if keys.is_empty() => "not checked (no --key)",
        None => "unknown key",
    };
    println!(
        "slot A: {} packages, manifest key {}  manifest signature {manifest}",
        slot.package_count(),
        hex::encode(manifest_key)
    );
    for (index, entry) in slot.packages().enumerate() {
        let (offset, package) = entry.map_err(|e| anyhow::anyhow!("{}: {e}", flash.display()))?;
        let header = &package.header;
        let name = match header.kind {
            Kind::App => {
                app::parse_payload(package.payload).map(|(m, _)| m.name.to_string()).unwrap_or("?".into())
            }
            kind => kind.name().to_string(),
        };
        let signer = keys.iter().find(|k| key_id(k) == header.key_id);
        let signature = match signer {
            Some(key) if package.verify_signature(key).is_ok() && package.verify_payload().is_ok() => "valid",
            Some(_) => "INVALID",
            None if keys.is_empty() => "not checked (no --key)",
            None => "unknown key",
        };
        let listed = if slot.manifest_entry(index) == Some(package.header_digest()) {
            ""
        } else {
            "  NOT IN MANIFEST"
        };
        println!(
            "{offset:#09x} {:>8} bytes  {:<7} {:<16} {}  version {}  key {}  signature {signature}{listed}",
            package.encoded_len(),
            header.kind.name(),
            name,
            uuid(&header.component_id),
            header.security_version,
            hex::encode(header.key_id),
        );
    }
    Ok(())
}

fn uuid(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
