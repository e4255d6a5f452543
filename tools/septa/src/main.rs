//! `septa`: the host tool — keys, packages, images, provisioning, inspection.
//!
//! Every command names the file it could not use and why; outputs are written through a
//! temporary file, so a failed command leaves no partial output behind.

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
    /// Compose rom.img (loader, blank fuses) and flash.img (slot A with the packages, in order).
    Image {
        #[arg(long)]
        loader: PathBuf,
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
        /// The OEM private key that signs the bundle header.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(required = true)]
        packages: Vec<PathBuf>,
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
        Command::Image { loader, out_dir, packages } => {
            let loader = elf::flatten_file(&loader, board::LOADER_ROM.base)?;
            let packages = packages
                .iter()
                .map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
                .collect::<Result<Vec<_>>>()?;
            fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
            image::write_atomically(&out_dir.join("rom.img"), &image::compose_rom(&loader)?)?;
            image::write_atomically(&out_dir.join("flash.img"), &image::compose_flash(&packages)?)?;
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
    println!("slot A: {} packages", slot.package_count());
    for entry in slot.packages() {
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
        println!(
            "{offset:#09x} {:>8} bytes  {:<7} {:<16} {}  version {}  key {}  signature {signature}",
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
