//! Building the device crates and composing the board images.

use crate::setup::{self, DEVICE_TARGET};
use anyhow::{Context, Result, bail};
use septa_abi::package::{self, Kind};
use septa_targets::{Region, qemu_virt as board};
use septa_tool::elf;
use septa_tool::image::{self, PackageSpec};
use std::collections::HashMap;
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Crates built only for the device; host `cargo test` leaves them out.
pub const DEVICE_ONLY: [&str; 2] = ["septa-loader", "septa-kernel"];
/// Crates with a device binary (which links only for the device).
pub const DEVICE_BINARIES: [&str; 3] = ["septa-loader", "septa-monitor", "septa-kernel"];

/// Where the images of the default build go.
pub fn image_dir(root: &Path) -> PathBuf {
    root.join("target/septa").join(board::NAME)
}

/// Builds loader, monitor and kernel and composes `rom.img` and `flash.img`.
pub fn build(root: &Path) -> Result<PathBuf> {
    let dir = image_dir(root);
    compose(&build_stages(&[])?, &dir)?;
    Ok(dir)
}

/// Test-only image sets: `probe/` holds a kernel built with the `probe` feature.
pub fn build_test_variants(root: &Path) -> Result<()> {
    let stages = build_stages(&["septa-kernel/probe"])?;
    compose(&stages, &image_dir(root).join("probe"))
}

/// The linked ELF of each stage, by binary name.
type Stages = HashMap<String, PathBuf>;

fn build_stages(features: &[&str]) -> Result<Stages> {
    setup::ensure_target()?;
    println!(
        "xtask: building loader, monitor and kernel for {DEVICE_TARGET} (release){}",
        if features.is_empty() {
            String::new()
        } else {
            format!(" with {}", features.join(","))
        }
    );
    let mut command = Command::new(env!("CARGO"));
    command.args([
        "build",
        "--release",
        "--target",
        DEVICE_TARGET,
        "--message-format=json-render-diagnostics",
    ]);
    for package in DEVICE_BINARIES {
        command.args(["-p", package]);
    }
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo build")?;
    // Cargo reports each linked executable's path; with features switching between builds
    // this is the reliable way to get the binary that was just built.
    let mut stages = Stages::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in std::io::BufReader::new(stdout).lines() {
        let message: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if let (Some(name), Some(path)) = (
            message.pointer("/target/name").and_then(|v| v.as_str()),
            message.get("executable").and_then(|v| v.as_str()),
        ) {
            stages.insert(name.to_string(), PathBuf::from(path));
        }
    }
    if !child.wait()?.success() {
        bail!("building the device crates failed (see the errors above)");
    }
    Ok(stages)
}

fn stage<'a>(stages: &'a Stages, name: &str) -> Result<&'a Path> {
    stages
        .get(name)
        .map(PathBuf::as_path)
        .with_context(|| format!("cargo built no `{name}` binary"))
}

fn compose(stages: &Stages, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let flat = |name: &str, region: Region| elf::flatten_file(stage(stages, name)?, region.base);
    let loader = flat("loader", board::LOADER_ROM)?;
    let packages = [
        PackageSpec {
            kind: Kind::Monitor,
            component_id: package::MONITOR_COMPONENT_ID,
            security_version: 1,
            payload: flat("monitor", board::MONITOR_RAM)?,
        },
        PackageSpec {
            kind: Kind::Kernel,
            component_id: package::KERNEL_COMPONENT_ID,
            security_version: 1,
            payload: flat("kernel", board::KERNEL_RAM)?,
        },
    ];
    image::write_atomically(
        &dir.join(septa_qemu::ROM_FILE),
        &image::compose_rom(&loader)?,
    )?;
    image::write_atomically(
        &dir.join(septa_qemu::FLASH_FILE),
        &image::compose_flash(&packages)?,
    )?;
    Ok(())
}
