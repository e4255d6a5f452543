//! Installing what the commands need on a fresh Debian machine with Rust.

use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};

pub const DEVICE_TARGET: &str = "armv7a-none-eabi";

/// Adds the device target's standard library to the pinned toolchain if it is missing.
pub fn ensure_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (is Rust installed through rustup?)")?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == DEVICE_TARGET) {
        return Ok(());
    }
    println!("xtask: installing the {DEVICE_TARGET} standard library: rustup target add {DEVICE_TARGET}");
    let status = Command::new("rustup").args(["target", "add", DEVICE_TARGET]).status()?;
    if !status.success() {
        bail!("`rustup target add {DEVICE_TARGET}` failed; run it by hand and retry");
    }
    Ok(())
}

/// Installs QEMU from Debian's packages if `qemu-system-arm` is not on the PATH.
pub fn ensure_qemu() -> Result<()> {
    if found(septa_qemu::QEMU) {
        return Ok(());
    }
    println!("xtask: {} not found; installing Debian's qemu-system-arm with apt-get", septa_qemu::QEMU);
    apt_get(&["update"])?;
    apt_get(&["install", "-y", "--no-install-recommends", "qemu-system-arm"])?;
    Ok(())
}

/// Installs Debian's Chromium (the dashboard tests drive it headless) if it is missing.
pub fn ensure_chromium() -> Result<()> {
    if found("chromium") {
        return Ok(());
    }
    println!(
        "xtask: chromium not found; installing Debian's chromium with apt-get (for the dashboard tests)"
    );
    apt_get(&["update"])?;
    apt_get(&["install", "-y", "--no-install-recommends", "chromium"])?;
    Ok(())
}

/// Installs Debian's gdb-multiarch (the debugger for `cargo xtask run --gdb`) if missing.
pub fn ensure_gdb() -> Result<()> {
    if found("gdb-multiarch") {
        return Ok(());
    }
    println!("xtask: gdb-multiarch not found; installing Debian's gdb-multiarch with apt-get");
    apt_get(&["update"])?;
    apt_get(&["install", "-y", "--no-install-recommends", "gdb-multiarch"])?;
    Ok(())
}

/// Runs apt-get with `args`, through sudo unless already root.
fn apt_get(args: &[&str]) -> Result<()> {
    let mut command = if is_root() { Command::new("apt-get") } else { Command::new("sudo") };
    if !is_root() {
        command.arg("apt-get");
    }
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    println!("xtask: apt-get {}", args.join(" "));
    let status = command.status().context("running apt-get")?;
    if !status.success() {
        bail!("`apt-get {}` failed; run it by hand (with sudo) and retry", args.join(" "));
    }
    Ok(())
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
