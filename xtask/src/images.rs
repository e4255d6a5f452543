//! Building the device crates and apps, and composing the board images.

use crate::setup::{self, DEVICE_TARGET};
use anyhow::{Context, Result, bail};
use p256::ecdsa::SigningKey;
use septa_abi::fuses::Fuses;
use septa_abi::package::{self, Kind};
use septa_targets::{Region, qemu_virt as board, raspi2b};
use septa_tool::image::{self, PackageSpec};
use septa_tool::manifest::AppManifest;
use septa_tool::{elf, keys, netpolicy};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Crates with a device binary (which links only for the device).
pub const DEVICE_BINARIES: [&str; 3] = ["septa-loader", "septa-monitor", "septa-kernel"];

/// The feature that enables each stage's device binary (a plain `cargo build` builds only
/// their host-testable libraries).
pub fn device_features() -> Vec<String> {
    DEVICE_BINARIES.iter().map(|stage| format!("{stage}/device")).collect()
}

/// The app list of an image: `userland/image.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageList {
    apps: Vec<String>,
}

/// One app in an image: which binary, under which manifest.
#[derive(Clone)]
pub struct AppSpec {
    /// The binary of an app crate under `userland/apps/`, or the absolute path of an app
    /// ELF built outside the tree ([`AppSpec::sideloaded`]).
    pub binary: String,
    pub manifest: AppManifest,
}

impl AppSpec {
    /// The app crate `name` with its own `app.toml`.
    pub fn from_crate(root: &Path, name: &str) -> Result<AppSpec> {
        let dir = root.join("userland/apps").join(name);
        if !dir.join("Cargo.toml").exists() {
            bail!(
                "app {name:?}: no crate at {} (create it, or remove the name from userland/image.toml)",
                dir.display()
            );
        }
        Ok(AppSpec { binary: name.to_string(), manifest: AppManifest::load(&dir.join("app.toml"))? })
    }
}

/// An image to compose: its directory name under `target/septa/<board>/` ("" for the
/// default), kernel features, apps, and update bundles to make next to it.
pub struct ImageSpec {
    pub dir: String,
    /// Kernel features; `crate/feature` for another stage's (the monitor's `powercut`).
    pub kernel_features: Vec<String>,
    pub apps: Vec<AppSpec>,
    pub bundles: Vec<BundleSpec>,
}

impl ImageSpec {
    /// The app crates the image and its bundles need built, each once.
    fn binaries(&self) -> Vec<&str> {
        let bundled = self.bundles.iter().flat_map(|b| &b.apps);
        let mut binaries: Vec<&str> = self
            .apps
            .iter()
            .chain(bundled)
            .map(|a| a.binary.as_str())
            .filter(|binary| !Path::new(binary).is_absolute())
            .collect();
        binaries.sort();
        binaries.dedup();
        binaries
    }
}

/// An update bundle of the same loader-less software: monitor and kernel at
/// `security_version`, and `apps` (with their manifests' versions).
pub struct BundleSpec {
    /// The file name in the image directory.
    pub file: String,
    pub security_version: u32,
    pub apps: Vec<AppSpec>,
}

/// Every app crate under `userland/apps/`.
pub fn app_crates(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("userland/apps");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").exists() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Where the images of the default build go.
pub fn image_dir(root: &Path) -> PathBuf {
    root.join("target/septa").join(board::NAME)
}

/// The default image: the apps listed in `userland/image.toml`.
pub fn default_image(root: &Path) -> Result<ImageSpec> {
    let path = root.join("userland/image.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let list: ImageList = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let apps = list.apps.iter().map(|name| AppSpec::from_crate(root, name)).collect::<Result<_>>()?;
    Ok(ImageSpec { dir: String::new(), kernel_features: Vec::new(), apps, bundles: Vec::new() })
}

/// Builds what `images` need (one cargo invocation per kernel feature set) and composes
/// each under `target/septa/<board>/<dir>/`. Returns the default image directory.
pub fn build(root: &Path, images: &[ImageSpec]) -> Result<PathBuf> {
    setup::ensure_target()?;
    for spec in images {
        let built = build_binaries(&spec.binaries(), &spec.kernel_features)?;
        let dir = image_dir(root).join(&spec.dir);
        compose(&built, spec, &dir)?;
        for bundle in &spec.bundles {
            let packages = signed_packages(&built, 1.max(bundle.security_version), &bundle.apps, &dir)?;
            let bytes = image::bundle(&packages, &development_key(&dir)?)?;
            image::write_atomically(&dir.join(&bundle.file), &bytes)?;
        }
    }
    Ok(image_dir(root))
}

/// Builds the default image's software at `security_version` into a signed update bundle
/// at `out`, leaving the device images alone.
pub fn build_bundle(root: &Path, security_version: u32, out: &Path) -> Result<()> {
    setup::ensure_target()?;
    let spec = default_image(root)?;
    let binaries: Vec<&str> = spec.apps.iter().map(|a| a.binary.as_str()).collect();
    let built = build_binaries(&binaries, &[])?;
    let packages = signed_packages(&built, security_version, &spec.apps, &image_dir(root))?;
    let bytes = image::bundle(&packages, &development_key(&image_dir(root))?)?;
    image::write_atomically(out, &bytes)?;
    println!("xtask: wrote {} ({} packages, {} bytes)", out.display(), packages.len(), bytes.len());
    Ok(())
}

/// The linked ELF of each binary, by name.
type Built = HashMap<String, PathBuf>;

fn build_binaries(apps: &[&str], kernel_features: &[String]) -> Result<Built> {
    build_binaries_for(apps, kernel_features, None)
}

/// Builds for `board` (`None`: `qemu-virt`); another board builds with the stages' board
/// feature into its own target directory, so switching boards rebuilds nothing.
fn build_binaries_for(apps: &[&str], kernel_features: &[String], board: Option<&str>) -> Result<Built> {
    let mut features = device_features();
    features.extend(kernel_features.iter().map(|f| {
        // A feature of another stage names its crate (`septa-monitor/powercut`).
        if f.contains('/') { f.clone() } else { format!("septa-kernel/{f}") }
    }));
    if let Some(board) = board {
        features.extend(DEVICE_BINARIES.iter().map(|stage| format!("{stage}/{board}")));
    }
    let features = features.join(",");
    println!(
        "xtask: building loader, monitor, kernel{} and apps {} for {DEVICE_TARGET}",
        if features.is_empty() { String::new() } else { format!(" ({features})") },
        apps.join(", ")
    );
    let mut command = crate::cargo();
    command.args([
        "build",
        "--release",
        "--target",
        DEVICE_TARGET,
        "--message-format=json-render-diagnostics",
    ]);
    for package in DEVICE_BINARIES.iter().chain(apps) {
        command.args(["-p", package]);
    }
    if !features.is_empty() {
        command.args(["--features", &features]);
    }
    if let Some(board) = board {
        command.args(["--target-dir", &format!("target/{board}")]);
    }
    command.env(TRUST_DIR_VARIABLE, trust_dir(board.unwrap_or(board::NAME))?);
    let mut child = command.stdout(Stdio::piped()).spawn().context("running cargo build")?;
    // Cargo reports each linked executable's path; with features switching between builds
    // this is the reliable way to get the binary that was just built.
    let mut built = Built::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in std::io::BufReader::new(stdout).lines() {
        let message: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if let (Some(name), Some(path)) = (
            message.pointer("/target/name").and_then(|v| v.as_str()),
            message.get("executable").and_then(|v| v.as_str()),
        ) {
            built.insert(name.to_string(), PathBuf::from(path));
        }
    }
    if !child.wait()?.success() {
        bail!("building the device crates failed (see the errors above)");
    }
    Ok(built)
}

/// The ELF of binary `name`: one cargo just built, or a sideloaded app's own.
fn binary<'a>(built: &'a Built, name: &'a str) -> Result<&'a Path> {
    if Path::new(name).is_absolute() {
        return Ok(Path::new(name));
    }
    built.get(name).map(PathBuf::as_path).with_context(|| format!("cargo built no `{name}` binary"))
}

/// Where an image keeps the ELF files of its stages and apps, with their symbols, for the
/// debugger (`cargo xtask run --gdb`) and for reading addresses in fault reports.
pub const SYMBOLS_DIR: &str = "symbols";

/// The monitor, kernel and apps, signed with the development key: monitor and kernel at
/// `security_version`, apps at their manifests' versions.
fn signed_packages(
    built: &Built,
    security_version: u32,
    apps: &[AppSpec],
    dir: &Path,
) -> Result<Vec<Vec<u8>>> {
    signed_packages_at(built, security_version, apps, dir, (board::MONITOR_RAM, board::KERNEL_RAM))
}

/// [`signed_packages`] for a board whose monitor and kernel load at `stages`.
fn signed_packages_at(
    built: &Built,
    security_version: u32,
    apps: &[AppSpec],
    dir: &Path,
    (monitor_ram, kernel_ram): (Region, Region),
) -> Result<Vec<Vec<u8>>> {
    let flat = |name: &str, region: Region| elf::flatten_file(binary(built, name)?, region.base);
    let mut packages = vec![
        PackageSpec {
            kind: Kind::Monitor,
            component_id: package::MONITOR_COMPONENT_ID,
            security_version,
            payload: flat("monitor", monitor_ram)?,
        },
        PackageSpec {
            kind: Kind::Kernel,
            component_id: package::KERNEL_COMPONENT_ID,
            security_version,
            payload: flat("kernel", kernel_ram)?,
        },
    ];
    // The network service carries the image's network policy in its own signed package.
    let manifests: Vec<AppManifest> = apps.iter().map(|a| a.manifest.clone()).collect();
    let policy = netpolicy::compose(&manifests)?;
    for app in apps {
        let path = binary(built, &app.binary)?;
        let mut elf = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        netpolicy::patch(&mut elf, &policy).with_context(|| format!("{}", path.display()))?;
        let payload = septa_tool::manifest::app_payload(&app.manifest, &elf)
            .with_context(|| format!("{}", path.display()))?;
        packages.push(PackageSpec {
            kind: Kind::App,
            component_id: app.manifest.component_id,
            security_version: app.manifest.version,
            payload,
        });
    }
    let key = development_key(dir)?;
    Ok(packages.iter().map(|p| p.sign(&key)).collect())
}

/// Composes the boot ROM (loader, provisioned fuses) and flash 1 (slot A) of an image. The
/// files are rewritten only when what is composed changed: until then they keep what the
/// device wrote into them (boot state, storage, reports, updates), like a real device
/// between power cycles.
fn compose(built: &Built, spec: &ImageSpec, dir: &Path) -> Result<()> {
    let manifests: Vec<AppManifest> = spec.apps.iter().map(|a| a.manifest.clone()).collect();
    septa_tool::manifest::check_image(&manifests, &septa_tool::manifest::Board::QEMU_VIRT).with_context(
        || format!("the apps of image {}", if spec.dir.is_empty() { "default" } else { &spec.dir }),
    )?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let loader = elf::flatten_file(binary(built, "loader")?, board::LOADER_ROM.base)?;
    let key = development_key(dir)?;
    let signed = signed_packages(built, 1, &spec.apps, dir)?;
    let mut rom = image::compose_rom(&loader)?;
    image::provision(&mut rom, &development_fuses(dir, &key)?)?;
    let flash = image::compose_flash(&signed, &key)?;
    let digest = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(&rom);
        hasher.update(&flash);
        hex::encode(hasher.finalize())
    };
    keep_symbols(built, spec, dir)?;
    let stamp = dir.join("composed.sha256");
    let images = septa_qemu::Images::in_dir(dir);
    if fs::read_to_string(&stamp).is_ok_and(|s| s == digest) && images.rom.exists() && images.flash.exists() {
        return Ok(());
    }
    // A factory-new device gets a factory certificate from the development device CA.
    let mut flash = flash;
    let ca = septa_tool::device_cert::DeviceCa::load(&keys_dir(dir).join("device-ca"))?;
    let device_key = keys::device_public_key(&development_fuses(dir, &key)?.device_secret);
    let not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    septa_tool::device_cert::store(&mut flash, &ca.issue(&device_key, not_before, 3650)?)?;
    image::write_atomically(&images.rom, &rom)?;
    image::write_atomically(&images.flash, &flash)?;
    image::write_atomically(&stamp, digest.as_bytes())
}

/// Copies the ELF files of `spec`'s stages and apps into `dir/symbols/` as `<name>.elf`.
fn keep_symbols(built: &Built, spec: &ImageSpec, dir: &Path) -> Result<()> {
    let symbols = dir.join(SYMBOLS_DIR);
    fs::create_dir_all(&symbols).with_context(|| format!("creating {}", symbols.display()))?;
    let stages = ["loader", "monitor", "kernel"].map(|stage| (stage, stage));
    let apps = spec.apps.iter().map(|app| (app.manifest.name.as_str(), app.binary.as_str()));
    for (name, binary_name) in stages.into_iter().chain(apps) {
        let elf = binary(built, binary_name)?;
        let copy = symbols.join(format!("{name}.elf"));
        fs::copy(elf, &copy).with_context(|| format!("copying {} to {}", elf.display(), copy.display()))?;
    }
    Ok(())
}

/// The dev kit's apps: the default image's, less those needing devices it lacks.
pub fn raspi2b_image(root: &Path) -> Result<ImageSpec> {
    let mut spec = default_image(root)?;
    // Apps for devices the Pi lacks go (its QEMU model has no network card: so the network
    // driver goes), and then every app calling an endpoint nobody serves any more (so the
    // network service and its clients go too).
    spec.apps.retain(|app| app.manifest.devices.iter().all(|d| raspi2b::DEVICES.iter().any(|b| b.name == d)));
    loop {
        let served: Vec<String> = spec.apps.iter().filter_map(|a| a.manifest.serve.clone()).collect();
        let before = spec.apps.len();
        spec.apps.retain(|app| app.manifest.call.iter().all(|c| served.contains(c)));
        if spec.apps.len() == before {
            break;
        }
    }
    spec.dir = String::new();
    Ok(spec)
}

/// Builds an image for the Raspberry Pi 2B under `target/septa/raspi2b/<dir>/`: the loader
/// ELF (what QEMU's `-kernel` or the firmware starts) and the boot payload — the fuse and
/// boot-state area, then slot A — which goes to `raspi2b::FLASH0`.
pub fn build_raspi2b(root: &Path, spec: &ImageSpec) -> Result<PathBuf> {
    setup::ensure_target()?;
    let manifests: Vec<AppManifest> = spec.apps.iter().map(|a| a.manifest.clone()).collect();
    septa_tool::manifest::check_image(&manifests, &septa_tool::manifest::Board::RASPI2B)
        .context("the apps of the raspi2b image")?;
    let built = build_binaries_for(&spec.binaries(), &spec.kernel_features, Some(raspi2b::NAME))?;
    let dir = root.join("target/septa").join(raspi2b::NAME).join(&spec.dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = development_key(&dir)?;
    let signed =
        signed_packages_at(&built, 1, &spec.apps, &dir, (raspi2b::MONITOR_RAM, raspi2b::KERNEL_RAM))?;
    let mut payload = vec![0u8; raspi2b::FLASH0.size];
    let fuses = raspi2b::FUSES.base - raspi2b::FLASH0.base;
    development_fuses(&dir, &key)?
        .encode_into(&mut payload[fuses..fuses + raspi2b::FUSES.size])
        .map_err(|e| anyhow::anyhow!("encoding the fuses: {e}"))?;
    let slot = image::compose_slot(&signed, &key)?;
    if slot.len() > raspi2b::SLOT_A.size {
        bail!("slot A needs {} bytes; the dev kit gives it {}", slot.len(), raspi2b::SLOT_A.size);
    }
    payload.extend_from_slice(&slot);
    fs::copy(binary(&built, "loader")?, dir.join(septa_qemu::LOADER_ELF_FILE))
        .context("copying the loader")?;
    image::write_atomically(&dir.join(septa_qemu::PAYLOAD_FILE), &payload)?;
    Ok(dir)
}

/// The firmware files a Raspberry Pi 2B boot partition needs besides ours; they are not
/// redistributed here.
const PI_FIRMWARE: [&str; 3] = ["bootcode.bin", "start.elf", "fixup.dat"];

/// Writes the boot directory of an SD card for a real Raspberry Pi 2B from the dev kit
/// images in `dir`: our stub, the loader, the boot payload and a `config.txt` that makes
/// the firmware start the stub in the secure world. The firmware files are the user's to add.
pub fn write_sdcard(dir: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The stub the firmware runs at address 0 on every core, in Secure SVC:
    // `ldr pc, [pc, #-4]` then the loader's address. The loader parks cores 1-3.
    let mut stub = 0xe51f_f004u32.to_le_bytes().to_vec();
    stub.extend_from_slice(&(raspi2b::LOADER_ROM.base as u32).to_le_bytes());
    image::write_atomically(&out.join(septa_qemu::ARMSTUB_FILE), &stub)?;
    let loader = elf::flatten_file(&dir.join(septa_qemu::LOADER_ELF_FILE), raspi2b::LOADER_ROM.base)?;
    image::write_atomically(&out.join("loader.bin"), &loader)?;
    fs::copy(dir.join(septa_qemu::PAYLOAD_FILE), out.join(septa_qemu::PAYLOAD_FILE))
        .with_context(|| format!("copying the boot payload into {}", out.display()))?;
    let config = format!(
        "# Septa on the Raspberry Pi 2B (docs/devkit.md).\n\
         # The firmware runs our stub at address 0 in the secure world; the stub jumps to the\n\
         # loader, which verifies the images in the boot payload before anything else runs.\n\
         arm_64bit=0\n\
         armstub={}\n\
         kernel=loader.bin\n\
         kernel_address={:#010x}\n\
         ramfsfile={}\n\
         ramfsaddr={:#010x}\n\
         device_tree=\n\
         disable_commandline_tags=1\n\
         enable_uart=1\n",
        septa_qemu::ARMSTUB_FILE,
        raspi2b::LOADER_ROM.base,
        septa_qemu::PAYLOAD_FILE,
        raspi2b::FLASH0.base
    );
    image::write_atomically(&out.join("config.txt"), config.as_bytes())?;
    let missing: Vec<&str> = PI_FIRMWARE.iter().copied().filter(|f| !out.join(f).exists()).collect();
    image::write_atomically(
        &out.join("FIRMWARE.txt"),
        format!(
            "Copy these Raspberry Pi firmware files into this directory (from the `boot/` folder of\n\
             https://github.com/raspberrypi/firmware, or the boot partition of Raspberry Pi OS):\n{}\n",
            PI_FIRMWARE.join("\n")
        )
        .as_bytes(),
    )?;
    println!("xtask: SD card boot directory in {}", out.display());
    if !missing.is_empty() {
        println!(
            "xtask: add the Raspberry Pi firmware files {} (see {}), then copy the directory to a FAT32 card",
            missing.join(", "),
            out.join("FIRMWARE.txt").display()
        );
    }
    Ok(())
}

/// The directory holding the development OEM key and device secret, shared by every image
/// of the board (`target/septa/<board>/keys/`). Never committed: `target/` is ignored.
pub fn keys_dir(image_dir: &Path) -> PathBuf {
    let board_dir = image_dir.ancestors().find(|d| d.file_name().is_some_and(|n| n == board::NAME));
    board_dir.unwrap_or(image_dir).join("keys")
}

/// The variable that tells an app's build where the trust anchors it names are.
pub const TRUST_DIR_VARIABLE: &str = "SEPTA_TRUST_DIR";

/// The folder of trust anchors apps may name in `[tls] trust-anchors` (DER files the apps'
/// build embeds, so they are part of the signed, measured image): `dev-device-ca`, the
/// development device CA, and `dev-service`, the development service CA (created on first
/// use under `keys/device-ca/` and `keys/service-ca/`, the latter with the development
/// service's certificate for `devhost`). Files are written once, so the apps
/// and images stay the same from build to build.
pub fn trust_dir(board_name: &str) -> Result<PathBuf> {
    let keys = std::env::current_dir()?.join("target/septa").join(board_name).join("keys");
    let trust = keys.join("trust");
    fs::create_dir_all(&trust).with_context(|| format!("creating {}", trust.display()))?;
    let ca_dir = keys.join("device-ca");
    if !ca_dir.join(septa_tool::device_cert::CA_KEY_FILE).exists() {
        println!("xtask: creating a development device CA in {}", ca_dir.display());
        septa_tool::device_cert::DeviceCa::create(&ca_dir)?;
    }
    let service_dir = keys.join("service-ca");
    if !service_dir.join(septa_tool::device_cert::SERVICE_CA_KEY_FILE).exists() {
        println!("xtask: creating a development service CA in {}", service_dir.display());
        septa_tool::device_cert::ServiceCa::load_or_create(&service_dir)?;
    }
    // The development septa-service presents a certificate from this CA (`cargo xtask run`).
    septa_tool::device_cert::development_server_identity(&service_dir)?;
    for (name, der) in [
        ("dev-device-ca", ca_dir.join(septa_tool::device_cert::CA_CERT_DER_FILE)),
        ("dev-service", service_dir.join(septa_tool::device_cert::SERVICE_CA_DER_FILE)),
    ] {
        let anchor = trust.join(format!("{name}.der"));
        if !anchor.exists() {
            fs::copy(&der, &anchor).with_context(|| format!("copying {}", der.display()))?;
        }
    }
    Ok(trust)
}

/// The development OEM signing key, created on first use.
fn development_key(image_dir: &Path) -> Result<SigningKey> {
    let dir = keys_dir(image_dir);
    let private = dir.join("oem-dev.pem");
    if private.exists() {
        return keys::load_signing_key(&private);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("xtask: creating a development OEM signing key in {}", private.display());
    keys::generate(&private, &dir.join("oem-dev.pub.pem"))
}

/// Fuses for development: the development key, no revocations, no minimum versions, and a
/// device secret created on first use.
fn development_fuses(image_dir: &Path, key: &SigningKey) -> Result<Fuses> {
    let path = keys_dir(image_dir).join("device-secret.bin");
    let device_secret = if path.exists() { keys::load_secret(&path)? } else { keys::generate_secret(&path)? };
    let device_key = keys_dir(image_dir).join("device.pub.pem");
    if !device_key.exists() {
        keys::write_public_key(&device_key, &keys::device_public_key(&device_secret))?;
    }
    let public =
        heapless::Vec::from_slice(key.verifying_key().to_encoded_point(false).as_bytes()).expect("65 bytes");
    Ok(Fuses {
        device_secret,
        oem_keys: heapless::Vec::from_slice(&[public]).expect("one key"),
        revoked: heapless::Vec::new(),
        minimum_versions: heapless::Vec::new(),
    })
}
