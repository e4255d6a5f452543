//! `cargo xtask`: the project's commands — build, run, test.
//!
//! Each command first makes sure what it needs is installed (the `armv7a-none-eabi` standard
//! library through rustup, QEMU through apt-get) and says what it is doing.

#![forbid(unsafe_code)]

mod bench;
mod images;
mod profile;
mod setup;
mod sideload;
mod tally;
mod tls_demo;
mod variants;

/// Crates whose tests run on the host: everything except the device binaries and apps (the
/// kernel's and monitor's libraries are host-tested; their binaries only link for the device).
const HOST_TESTED: [&str; 14] = [
    "septa-abi",
    "septa-tls",
    "septa-targets",
    "septa-armv7",
    "septa-monitor",
    "septa-kernel",
    "septa-syscalls",
    "septa-net",
    "septa-dma",
    "septa-qemu",
    "septa-tool",
    "septa-service",
    "septa-tests",
    "xtask",
];

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use septa_qemu::{Board, Config, Images, Network};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(about = "Build, run and test Septa", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build loader, monitor and kernel and compose the board images under target/septa/.
    Build {
        /// `qemu-virt` (the reference board) or `raspi2b` (the dev kit).
        #[arg(long, default_value = "qemu-virt")]
        board: BoardName,
        /// Build only this test image set (e.g. `net`) under target/septa/qemu-virt/NAME/.
        #[arg(long)]
        variant: Option<String>,
    },
    /// Build if needed and boot the images under QEMU (console on stdio; quit with Ctrl-A X).
    Run {
        #[arg(long, default_value = "qemu-virt")]
        board: BoardName,
        /// Put this update bundle in the device's inbox, where the `updater` app finds it.
        /// Boots the images as they are (no rebuild), so the device keeps its state.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// An app project outside the tree (made by `septa new`) to build, sign with the
        /// development key and add to the image; repeat for several.
        #[arg(long = "app", value_name = "DIR")]
        apps: Vec<PathBuf>,
        /// Start QEMU stopped, with its gdb stub on 127.0.0.1, and print the gdb-multiarch
        /// command; with APP, with that app's symbols and a breakpoint in its `main`.
        #[arg(long, value_name = "APP", num_args = 0..=1, default_missing_value = "")]
        gdb: Option<String>,
        /// The gdb stub's port.
        #[arg(long, default_value_t = 1234)]
        gdb_port: u16,
        /// Boot the device alone, without starting septa-service beside it.
        #[arg(long)]
        no_service: bool,
        /// Arguments passed to QEMU unchanged, after `--` (e.g. `-- -d int`).
        #[arg(last = true)]
        qemu_args: Vec<String>,
    },
    /// Build the current sources into a signed update bundle (development OEM key), without
    /// touching the device images.
    Bundle {
        #[arg(long)]
        out: PathBuf,
        /// The monitor's and kernel's security version (apps take theirs from app.toml).
        #[arg(long, default_value_t = 2)]
        security_version: u32,
    },
    /// Write an SD card boot directory for a real Raspberry Pi 2B (docs/devkit.md).
    Sdcard {
        #[arg(long, default_value = "raspi2b")]
        board: BoardName,
        /// Where to write it (default: target/septa/raspi2b/sdcard).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Host unit tests and the QEMU integration tests.
    Test,
    /// The fuzzers, far longer than `test` runs them: the randomized parser tests with 50
    /// times the rounds, half a million random syscalls and 30,000 random monitor calls.
    Fuzz,
    /// rustfmt check and clippy (no warnings) for host and device crates.
    Lint,
    /// Benchmarks: Septa's hot paths in instructions (QEMU icount) and wall time, next to
    /// Linux on the same QEMU machine (bench/linux/run.sh).
    Bench {
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Skip the Linux peer (it downloads and builds things on first use).
        #[arg(long)]
        no_linux: bool,
        /// Instead: the septa-service load benchmark (10,000 simulated devices checking in, on
        /// SQLite and, with SEPTA_TEST_POSTGRES_URL set, on PostgreSQL).
        #[arg(long)]
        service: bool,
        /// Simulated devices for --service.
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Instead: the per-function instruction profile of boot and of each benchmark
        /// (QEMU's execution log); with BENCH, of the phases whose name starts with it.
        #[arg(long, value_name = "BENCH", num_args = 0..=1, default_missing_value = "")]
        profile: Option<String>,
        /// Functions shown per phase with --profile.
        #[arg(long, default_value_t = 15)]
        top: usize,
    },
}

/// The boards `--board` names.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BoardName {
    QemuVirt,
    Raspi2b,
}

fn main() -> std::process::ExitCode {
    match run_command(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli) -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root).context("entering the workspace root")?;
    match cli.command {
        Cmd::Build { board: BoardName::QemuVirt, variant: None } => {
            let dir = images::build(&root, &[images::default_image(&root)?])?;
            println!("xtask: images in {}", dir.display());
        }
        Cmd::Build { board: BoardName::QemuVirt, variant: Some(name) } => {
            let spec = variants::test_images(&root)?.into_iter().find(|s| s.dir == name);
            let spec = spec
                .with_context(|| format!("no test image set named {name:?} (see xtask/src/variants.rs)"))?;
            images::build(&root, &[spec])?;
            println!("xtask: images in {}", images::image_dir(&root).join(&name).display());
        }
        Cmd::Build { board: BoardName::Raspi2b, .. } => {
            let dir = images::build_raspi2b(&root, &images::raspi2b_image(&root)?)?;
            println!("xtask: images in {}", dir.display());
        }
        Cmd::Run { board: BoardName::QemuVirt, bundle, apps, gdb, gdb_port, no_service, qemu_args } => {
            let gdb = gdb.map(|app| (Some(app).filter(|a| !a.is_empty()), gdb_port));
            run(&root, bundle.as_deref(), &apps, gdb, !no_service, &qemu_args)?
        }
        Cmd::Run { board: BoardName::Raspi2b, bundle, apps, gdb, qemu_args, .. } => {
            if bundle.is_some() || !apps.is_empty() || gdb.is_some() {
                bail!(
                    "--bundle, --app and --gdb are for qemu-virt; on the dev kit, add apps to userland/image.toml"
                );
            }
            let dir = images::build_raspi2b(&root, &images::raspi2b_image(&root)?)?;
            let config = Config::new(Board::Raspi2b, Images::raspi2b_in_dir(&dir));
            boot_interactive(Config { interactive: true, ..config }, &qemu_args)?
        }
        Cmd::Bundle { out, security_version } => images::build_bundle(&root, security_version, &out)?,
        Cmd::Sdcard { board: BoardName::QemuVirt, .. } => {
            bail!("qemu-virt has no SD card: use --board raspi2b")
        }
        Cmd::Sdcard { board: BoardName::Raspi2b, out } => {
            let dir = images::build_raspi2b(&root, &images::raspi2b_image(&root)?)?;
            let out = out.unwrap_or_else(|| dir.join("sdcard"));
            images::write_sdcard(&dir, &out)?;
        }
        Cmd::Test => test(&root)?,
        Cmd::Fuzz => fuzz(&root)?,
        Cmd::Lint => lint()?,
        Cmd::Bench { service: true, devices, .. } => bench::service(&root, devices)?,
        Cmd::Bench { profile: Some(only), top, .. } => bench::profile(&root, &only, top)?,
        Cmd::Bench { json, no_linux, .. } => bench::run(&root, json.as_deref(), !no_linux)?,
    }
    Ok(())
}

/// The checkout `cargo xtask` runs in. Cargo tells the program it runs where the xtask
/// crate is (`CARGO_MANIFEST_DIR` at run time); without it, the nearest directory above the
/// current one that has `xtask/Cargo.toml`. Never the path compiled into this binary: a
/// copied checkout that reuses `target/` would otherwise build the original tree.
fn workspace_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    root_from(std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from), &cwd)
}

fn root_from(manifest_dir: Option<PathBuf>, cwd: &Path) -> PathBuf {
    if let Some(parent) = manifest_dir.as_deref().and_then(Path::parent) {
        return parent.to_path_buf();
    }
    let found = cwd.ancestors().find(|dir| dir.join("xtask/Cargo.toml").exists());
    found.unwrap_or(cwd).to_path_buf()
}

/// The cargo that runs `cargo xtask` (at run time, like the workspace).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo xtask run` on `qemu-virt`: with `gdb`, the app to debug (if any) and the stub's port.
fn run(
    root: &Path,
    bundle: Option<&Path>,
    apps: &[PathBuf],
    gdb: Option<(Option<String>, u16)>,
    with_service: bool,
    qemu_args: &[String],
) -> Result<()> {
    if let Some(bundle) = bundle.filter(|b| !b.exists()) {
        bail!("{}: no such bundle (make one with `cargo xtask bundle --out FILE`)", bundle.display())
    }
    let mut spec = if apps.is_empty() { images::default_image(root)? } else { sideload::image(root, apps)? };
    // The factory release the service must know to trust the device: the same software.
    let factory =
        images::BundleSpec { file: FACTORY_BUNDLE.into(), security_version: 1, apps: spec.apps.clone() };
    spec.bundles.push(factory);
    let dir = images::image_dir(root).join(&spec.dir);
    let existing = Images::in_dir(&dir);
    // An update is offered to the device as it is; anything else boots the current sources.
    let factory_missing = !dir.join(FACTORY_BUNDLE).exists();
    if bundle.is_none() || !existing.rom.exists() || !existing.flash.exists() || factory_missing {
        images::build(root, std::slice::from_ref(&spec))?;
    }
    let mut qemu_args = qemu_args.to_vec();
    if let Some((app, port)) = gdb {
        setup::ensure_gdb()?;
        let script = sideload::write_gdb_script(&dir, &spec, app.as_deref())?;
        qemu_args.extend(["-gdb".into(), format!("tcp:{}:{port}", sideload::GDB_HOST), "-S".into()]);
        println!("xtask: in another terminal: {}", sideload::gdb_command(&script, port, app.as_deref()));
        println!("xtask: QEMU waits for gdb on {}:{port}", sideload::GDB_HOST);
    }
    let septa = build_septa_tool(root)?;
    let service = demo_service()?;
    println!("xtask: a demo service listens on {service}; the device reaches it as devhost:7 (nethello)");
    let agent_service = if with_service { Some(start_service(root, &dir)?) } else { None };
    // tlshello presents whatever device certificate the monitor holds: after the agent's
    // first check-in, one from septa-service's CA.
    let client_cas = match &agent_service {
        Some(service) => vec![service.ca_certificate_der()?],
        None => Vec::new(),
    };
    let tls_service = tls_demo::start(&images::keys_dir(&dir), &client_cas)?;
    println!(
        "xtask: a mutual-TLS demo service listens on {tls_service}; the device reaches it as devhost:8443 (tlshello)"
    );
    let mut network = Network::default().relay(7, &septa, service).relay(8443, &septa, tls_service);
    let service = agent_service;
    if let Some(service) = &service {
        network = network.relay(AGENT_PORT, &septa, service.device_address);
        println!(
            "xtask: septa-service on {}; its mutual-TLS device port {} is the device's devhost:{AGENT_PORT}",
            service.url(),
            service.device_address
        );
        println!("xtask: dashboard: {}/login?token={}", service.url(), service.token);
        println!(
            "xtask: admin CLI: export SEPTA_SERVICE_URL={} SEPTA_SERVICE_TOKEN={}",
            service.url(),
            service.token
        );
    }
    let config = Config::new(Board::QemuVirt, existing);
    let config =
        Config { interactive: true, inbox: bundle.map(Path::to_path_buf), network: Some(network), ..config };
    let result = boot_interactive(config, &qemu_args);
    // Quitting QEMU stops the service too.
    drop(service);
    result
}

/// The file the factory release of the image being run is written to.
const FACTORY_BUNDLE: &str = "factory.bundle";
/// The port the `agent` app reaches the service's device port on (its manifest's destination).
const AGENT_PORT: u16 = 443;

/// Starts septa-service beside the device, its SQLite database under target/septa/service,
/// and enrolls the development device (idempotent: a second run keeps its history).
fn start_service(root: &Path, image_dir: &Path) -> Result<septa_tool::devfleet::DevService> {
    let binary = build_service(root)?;
    let data = root.join("target/septa/service");
    let keys = images::keys_dir(image_dir);
    let start = |listen: &str| -> Result<septa_tool::devfleet::DevService> {
        let any = "127.0.0.1:0".parse()?;
        septa_tool::devfleet::DevService::start(&binary, &data, None, listen.parse()?, any, &keys)
    };
    // The usual dashboard port when it is free, else any.
    let service = start("127.0.0.1:8080").or_else(|_| start("127.0.0.1:0"))?;
    service
        .enroll(&keys.join("oem-dev.pub.pem"), &keys.join("device.pub.pem"), &image_dir.join(FACTORY_BUNDLE))
        .context("enrolling the development device")?;
    println!("xtask: septa-service data in {} (log: {})", data.display(), septa_tool::devfleet::LOG_FILE);
    Ok(service)
}

/// Builds the `septa-service` binary.
pub(crate) fn build_service(root: &Path) -> Result<PathBuf> {
    println!("xtask: building septa-service");
    let status = cargo().args(["build", "-p", "septa-service", "--bin", "septa-service"]).status()?;
    if !status.success() {
        bail!("building septa-service failed");
    }
    Ok(root.join("target/debug/septa-service"))
}

/// Builds the `septa` host tool (the relay QEMU's forwards run, and what tests call).
fn fuzz(root: &Path) -> Result<()> {
    setup::ensure_qemu()?;
    let dir = images::build(root, &[variants::fuzz_image(root, true)?])?;
    let tool = build_septa_tool(root)?;
    let runs: [&[&str]; 3] = [
        &["-p", "septa-abi", "--lib", "fuzz::"],
        &["-p", "septa-kernel", "--lib", "elf::tests::mutated"],
        &["-p", "septa-tests", "--test", "fuzz", "--", "--ignored", "long_fuzz_run"],
    ];
    for args in runs {
        println!("xtask: cargo test {}", args.join(" "));
        let status = cargo()
            .arg("test")
            .args(args)
            .env("SEPTA_FUZZ_ROUNDS", "50")
            .env("SEPTA_IMAGES", &dir)
            .env("SEPTA_TOOL", &tool)
            .status()?;
        if !status.success() {
            bail!("a fuzzer found something (see above)");
        }
    }
    println!("xtask: the fuzzers found nothing");
    Ok(())
}

pub(crate) fn build_septa_tool(root: &Path) -> Result<PathBuf> {
    println!("xtask: building the septa host tool");
    let status = cargo().args(["build", "-p", "septa-tool", "--bin", "septa"]).status()?;
    if !status.success() {
        bail!("building the septa host tool failed");
    }
    Ok(root.join("target/debug/septa"))
}

/// A small service on the host's loopback for `cargo xtask run`: it answers each line with
/// `host says: <line>`.
fn demo_service() -> Result<std::net::SocketAddr> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the demo service")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut writer) = stream.try_clone() else { return };
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if writeln!(writer, "host says: {line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(address)
}

/// Boots `config` with the console on this terminal.
fn boot_interactive(config: Config, qemu_args: &[String]) -> Result<()> {
    setup::ensure_qemu()?;
    println!("xtask: {}", config.command_line(qemu_args));
    println!("xtask: quit QEMU with Ctrl-A X");
    let status = config
        .command(qemu_args)
        .status()
        .with_context(|| format!("starting {}", septa_qemu::binary().display()))?;
    if !status.success() {
        bail!("QEMU exited with {status} (the guest reports a failure this way: see the console above)");
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    setup::ensure_qemu()?;
    setup::ensure_chromium()?;
    setup::ensure_gdb()?;
    let mut specs = vec![images::default_image(root)?];
    specs.extend(variants::test_images(root)?);
    specs.push(variants::bench_image(root)?);
    let dir = images::build(root, &specs)?;
    let raspi2b_dir = images::build_raspi2b(root, &images::raspi2b_image(root)?)?;
    images::write_sdcard(&raspi2b_dir, &raspi2b_dir.join("sdcard"))?;
    images::build_raspi2b(root, &variants::raspi2b_core_image(root)?)?;
    let tool = build_septa_tool(root)?;
    let service = build_service(root)?;
    println!("xtask: running host unit tests and QEMU integration tests");
    let mut command = cargo();
    command.args(["test", "--no-fail-fast"]);
    for package in HOST_TESTED {
        command.args(["-p", package]);
    }
    // The developer-experience tests run `cargo xtask run` through this very binary.
    command.env("SEPTA_XTASK", std::env::current_exe().context("finding the xtask binary")?);
    command.env("SEPTA_IMAGES", &dir).env("SEPTA_RASPI2B_IMAGES", raspi2b_dir).env("SEPTA_TOOL", tool);
    command.env("SEPTA_SERVICE", service);
    // The QEMU tests run with only the files `apt-get install --no-install-recommends
    // qemu-system-arm` brings, whatever else this machine has installed.
    match septa_qemu::prepare_package_only(&root.join("target/septa/qemu-package-only")) {
        Ok(Some(qemu)) => {
            println!("xtask: QEMU tests see only the files of {} and its dependencies", septa_qemu::PACKAGE);
            command.env(septa_qemu::QEMU_ENV, qemu);
        }
        Ok(None) => {
            println!("xtask: no dpkg here: the QEMU tests use the installed QEMU with all of its data files")
        }
        Err(error) => bail!("preparing the package-only QEMU for the tests: {error}"),
    }
    let summary = tally::run(&mut command)?;
    println!("tests: {} passed, {} failed", summary.passed, summary.failed);
    if summary.failed > 0 || !summary.success {
        bail!("tests failed");
    }
    Ok(())
}

fn lint() -> Result<()> {
    setup::ensure_target()?;
    // Apps embed the trust anchors they name while they build, clippy's build too.
    let trust = images::trust_dir(septa_targets::qemu_virt::NAME)?;
    let cargo = |args: &[&str]| -> Result<()> {
        println!("xtask: cargo {}", args.join(" "));
        let status = cargo().args(args).env(images::TRUST_DIR_VARIABLE, &trust).status()?;
        if !status.success() {
            bail!("`cargo {}` found problems", args.join(" "));
        }
        Ok(())
    };
    cargo(&["fmt", "--all", "--check"])?;
    // Host: libraries and tests (device binaries only link for the device).
    let mut host = vec!["clippy", "--lib", "--tests"];
    host.extend(HOST_TESTED.iter().flat_map(|p| ["-p", *p]));
    host.extend(["--", "-D", "warnings"]);
    cargo(&host)?;
    // Device: every crate that runs on the board.
    let apps = images::app_crates(&workspace_root())?;
    let mut device = vec!["clippy", "--release", "--target", setup::DEVICE_TARGET, "--bins"];
    for package in images::DEVICE_BINARIES.iter().copied().chain(apps.iter().map(String::as_str)) {
        device.extend(["-p", package]);
    }
    let stages = images::device_features().join(",");
    device.extend(["--features", &stages]);
    device.extend(["--", "-D", "warnings"]);
    cargo(&device)?;
    // The TLS library apps link, as the device builds it.
    cargo(&[
        "clippy",
        "--release",
        "--target",
        setup::DEVICE_TARGET,
        "--lib",
        "-p",
        "septa-tls",
        "--",
        "-D",
        "warnings",
    ])?;
    // The dev kit's build of the three stages.
    let mut features: Vec<String> =
        images::DEVICE_BINARIES.iter().map(|stage| format!("{stage}/raspi2b")).collect();
    features.extend(images::device_features());
    let features = features.join(",");
    let mut raspi2b = vec!["clippy", "--release", "--target", setup::DEVICE_TARGET, "--bins"];
    for package in images::DEVICE_BINARIES {
        raspi2b.extend(["-p", package]);
    }
    raspi2b.extend(["--features", &features, "--target-dir", "target/raspi2b", "--", "-D", "warnings"]);
    cargo(&raspi2b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_is_the_current_checkout_not_the_compiled_in_one() {
        let copy = std::env::temp_dir().join(format!("septa-copy-{}", std::process::id()));
        std::fs::create_dir_all(copy.join("xtask/src")).unwrap();
        std::fs::write(copy.join("xtask/Cargo.toml"), "").unwrap();
        // What cargo sets when it runs the copy's xtask, and the fallback from a subdirectory.
        assert_eq!(root_from(Some(copy.join("xtask")), Path::new("/")), copy);
        assert_eq!(root_from(None, &copy.join("xtask/src")), copy);
        assert_ne!(root_from(None, &copy), Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap());
        let _ = std::fs::remove_dir_all(&copy);
    }
}
