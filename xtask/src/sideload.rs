//! `cargo xtask run --app DIR --gdb APP`: apps from outside the tree, and the debugger.
//!
//! A sideloaded app is a project made by `septa new`: xtask builds it with its own cargo
//! configuration, signs it with the development key and adds it to the default apps in an
//! image of its own (`target/septa/qemu-virt/sideload/`), so the default image and its
//! device state stay as they are. The image checks are the ones every image gets.
//!
//! Every app is linked at the same virtual addresses, so a breakpoint address is ambiguous
//! between processes. What tells them apart is the address space: the kernel gives the
//! process in slot `p` the ASID `p + 1` (`kernel/src/system.rs`), in CONTEXTIDR, which QEMU's
//! gdb stub shows as `$CONTEXTIDR_EL1`. The gdb script this writes makes breakpoints in the
//! debugged app conditional on its ASID.

use crate::images::{self, AppSpec, ImageSpec};
use anyhow::{Context, Result, bail};
use septa_tool::manifest::AppManifest;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The image directory of a run with sideloaded apps, under the board's image directory.
pub const IMAGE_DIR: &str = "sideload";

/// Apps of the default image that only demonstrate a connection to the host; a sideload
/// image leaves them out to make room for yours (the kernel runs at most 16 apps).
const DEMO_CLIENTS: [&str; 2] = ["nethello", "tlshello"];

/// The default image (less [`DEMO_CLIENTS`]) plus the apps of the projects in `dirs`,
/// built for the device.
pub fn image(root: &Path, dirs: &[PathBuf]) -> Result<ImageSpec> {
    let mut spec = images::default_image(root)?;
    spec.dir = IMAGE_DIR.into();
    spec.apps.retain(|app| !DEMO_CLIENTS.contains(&app.manifest.name.as_str()));
    for dir in dirs {
        spec.apps.push(build_app(dir)?);
    }
    Ok(spec)
}

/// Builds the app project in `dir` (`cargo build --release` there) and reads its manifest.
fn build_app(dir: &Path) -> Result<AppSpec> {
    let dir = dir.canonicalize().with_context(|| format!("{}: no such app project", dir.display()))?;
    let manifest = AppManifest::load(&dir.join("app.toml"))?;
    println!("xtask: building app {:?} in {}", manifest.name, dir.display());
    // In the project's folder, so its `.cargo/config.toml` (target, linker script) applies.
    let mut child = crate::cargo()
        .args(["build", "--release", "--message-format=json-render-diagnostics"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo build")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut executables = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let message: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if let Some(path) = message.get("executable").and_then(|v| v.as_str()) {
            executables.push(PathBuf::from(path));
        }
    }
    if !child.wait()?.success() {
        bail!("building the app in {} failed (see the errors above)", dir.display());
    }
    let [elf] = executables.as_slice() else {
        bail!("{}: the project must build exactly one binary, it built {}", dir.display(), executables.len());
    };
    Ok(AppSpec { binary: elf.display().to_string(), manifest })
}

/// The gdb stub's address: loopback only.
pub const GDB_HOST: &str = "127.0.0.1";

/// Writes `dir/debug.gdb` for an image `spec` composed in `dir`: the kernel's symbols, the
/// secure world's, and those of `app` with the `septa-break` command for its breakpoints.
pub fn write_gdb_script(dir: &Path, spec: &ImageSpec, app: Option<&str>) -> Result<PathBuf> {
    let symbols = dir.join(images::SYMBOLS_DIR);
    let elf = |name: &str| symbols.join(format!("{name}.elf")).display().to_string();
    let mut script = format!(
        "# Written by `cargo xtask run --gdb`: the symbols of the image in {image}.\n\
         set architecture armv7\n\
         set pagination off\n\
         set confirm off\n\
         # The kernel (non-secure, linked where it runs).\n\
         file {kernel}\n\
         # The secure world: QEMU reads memory in the CPU's current security state.\n\
         add-symbol-file {monitor}\n\
         add-symbol-file {loader}\n",
        image = dir.display(),
        kernel = elf("kernel"),
        monitor = elf("monitor"),
        loader = elf("loader"),
    );
    if let Some(name) = app {
        let Some(slot) = spec.apps.iter().position(|a| a.manifest.name == name) else {
            let names: Vec<&str> = spec.apps.iter().map(|a| a.manifest.name.as_str()).collect();
            bail!("--gdb {name}: no app of that name in the image (its apps: {})", names.join(", "));
        };
        let asid = slot + 1;
        script.push_str(&format!(
            "# App {name:?}: process slot {slot}, ASID {asid}. Every app is linked at the same\n\
             # addresses: `septa-break LOCATION` stops there only while {name:?} runs.\n\
             add-symbol-file {app_elf}\n\
             define septa-break\n  break $arg0 if ($CONTEXTIDR_EL1 & 0xff) == {asid}\nend\n\
             document septa-break\nBreak at LOCATION only in app {name:?} (its ASID is {asid}).\nend\n",
            app_elf = elf(name),
        ));
    }
    let path = dir.join("debug.gdb");
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The gdb-multiarch command that attaches to the stub on `port` with `script`, and, for an
/// app, stops in its `main`.
pub fn gdb_command(script: &Path, port: u16, app: Option<&str>) -> String {
    let mut command =
        format!("gdb-multiarch -q -x {} -ex 'target remote {GDB_HOST}:{port}'", script.display());
    if let Some(name) = app {
        let function = name.replace('-', "_");
        command.push_str(&format!(" -ex 'septa-break {function}::main' -ex continue"));
    }
    command
}
