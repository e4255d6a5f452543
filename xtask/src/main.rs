//! `cargo xtask`: the project's commands — build, run, test.
//!
//! Each command first makes sure what it needs is installed (the `armv7a-none-eabi` standard
//! library through rustup, QEMU through apt-get) and says what it is doing.

mod images;
mod setup;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use septa_qemu::{Config, Images, QEMU};
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
    Build,
    /// Build if needed and boot the images under QEMU (console on stdio; quit with Ctrl-A X).
    Run {
        /// Arguments passed to QEMU unchanged, after `--` (e.g. `-- -d int`).
        #[arg(last = true)]
        qemu_args: Vec<String>,
    },
    /// Host unit tests and the QEMU integration tests.
    Test,
    /// rustfmt check and clippy (no warnings) for host and device crates.
    Lint,
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
        Cmd::Build => {
            let dir = images::build(&root)?;
            println!("xtask: images in {}", dir.display());
        }
        Cmd::Run { qemu_args } => run(&root, &qemu_args)?,
        Cmd::Test => test(&root)?,
        Cmd::Lint => lint()?,
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .into()
}

fn run(root: &Path, qemu_args: &[String]) -> Result<()> {
    let dir = images::build(root)?;
    setup::ensure_qemu()?;
    let config = Config {
        images: Images::in_dir(&dir),
        interactive: true,
        icount: false,
        readonly: false,
        monitor_socket: None,
    };
    println!("xtask: {}", config.command_line(qemu_args));
    println!("xtask: quit QEMU with Ctrl-A X");
    let status = Command::new(QEMU)
        .args(config.args())
        .args(qemu_args)
        .status()
        .with_context(|| format!("starting {QEMU}"))?;
    if !status.success() {
        bail!(
            "QEMU exited with {status} (the guest reports a failure this way: see the console above)"
        );
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    setup::ensure_qemu()?;
    let dir = images::build(root)?;
    images::build_test_variants(root)?;
    println!("xtask: running host unit tests and QEMU integration tests");
    let status = Command::new(env!("CARGO"))
        .args(["test", "--workspace"])
        .args(images::DEVICE_ONLY.iter().flat_map(|p| ["--exclude", p]))
        .env("SEPTA_IMAGES", &dir)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    Ok(())
}

fn lint() -> Result<()> {
    setup::ensure_target()?;
    let cargo = |args: &[&str]| -> Result<()> {
        println!("xtask: cargo {}", args.join(" "));
        let status = Command::new(env!("CARGO")).args(args).status()?;
        if !status.success() {
            bail!("`cargo {}` found problems", args.join(" "));
        }
        Ok(())
    };
    cargo(&["fmt", "--all", "--check"])?;
    // Device binaries only link for the device; their libraries are linted on the host too.
    let mut host = vec!["clippy", "--workspace", "--all-targets"];
    host.extend(
        images::DEVICE_BINARIES
            .iter()
            .flat_map(|p| ["--exclude", *p]),
    );
    host.extend(["--", "-D", "warnings"]);
    cargo(&host)?;
    cargo(&[
        "clippy",
        "-p",
        "septa-monitor",
        "--lib",
        "--tests",
        "--",
        "-D",
        "warnings",
    ])?;
    let mut device = vec!["clippy", "--release", "--target", setup::DEVICE_TARGET];
    device.extend(images::DEVICE_BINARIES.iter().flat_map(|p| ["-p", *p]));
    device.extend(["--", "-D", "warnings"]);
    cargo(&device)
}
