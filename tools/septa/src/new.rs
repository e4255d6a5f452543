//! `septa new`: a standalone app project outside the Septa repository.
//!
//! The project depends on `septa-runtime` and `septa-syscalls` by path to a Septa checkout,
//! so it builds offline and follows that checkout exactly: to pin a Septa release, check the
//! release's tag out there. It is its own Cargo workspace with Septa's pinned toolchain and
//! lock file, the device target and the app linker script (which `septa-runtime` puts on the
//! linker's search path) in `.cargo/config.toml`, a manifest with a fresh component id, and
//! a VS Code set-up for building, sideloading and debugging it.

use anyhow::{Context, Result, bail};
use septa_abi::app::{NAME_MAX, is_valid_name};
use std::fs;
use std::path::{Path, PathBuf};

/// The files of a new app project, as (path inside the project, contents).
pub fn project_files(name: &str, septa: &Path, component_id: [u8; 16]) -> Result<Vec<(PathBuf, String)>> {
    if !is_valid_name(name) {
        bail!("app name {name:?}: must be 1 to {NAME_MAX} characters of a-z, 0-9, '-' and '_'");
    }
    let septa = septa.display().to_string();
    if septa.contains(['"', '\\', '\n']) {
        bail!("the Septa checkout's path {septa:?} cannot be written into Cargo.toml");
    }
    let toolchain = fs::read_to_string(Path::new(&septa).join("rust-toolchain.toml"))
        .with_context(|| format!("{septa} is not a Septa checkout (no rust-toolchain.toml)"))?;
    // Septa's own lock file, so the app builds with the dependency versions Septa pins
    // (cargo adds the app and drops what it does not use).
    let lock = fs::read_to_string(Path::new(&septa).join("Cargo.lock"))
        .with_context(|| format!("{septa} is not a Septa checkout (no Cargo.lock)"))?;
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{septa}", &septa)
            .replace("{component_id}", &uuid(component_id))
    };
    Ok(vec![
        ("Cargo.toml".into(), fill(CARGO_TOML)),
        ("rust-toolchain.toml".into(), toolchain),
        ("Cargo.lock".into(), lock),
        (".cargo/config.toml".into(), fill(CARGO_CONFIG)),
        ("app.toml".into(), fill(APP_TOML)),
        ("src/main.rs".into(), fill(MAIN_RS)),
        ("README.md".into(), fill(README)),
        (".gitignore".into(), "/target\n".into()),
        (".vscode/settings.json".into(), fill(VSCODE_SETTINGS)),
        (".vscode/extensions.json".into(), fill(VSCODE_EXTENSIONS)),
        (".vscode/tasks.json".into(), fill(VSCODE_TASKS)),
        (".vscode/launch.json".into(), fill(VSCODE_LAUNCH)),
    ])
}

/// Writes a new project into `dir` (which must not exist yet, or be empty).
pub fn create(dir: &Path, name: &str, septa: &Path) -> Result<()> {
    if dir.exists()
        && fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some()
    {
        bail!("{}: already exists and is not empty; choose a new folder", dir.display());
    }
    let mut component_id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut component_id);
    // A version 4 (random) UUID.
    component_id[6] = (component_id[6] & 0x0f) | 0x40;
    component_id[8] = (component_id[8] & 0x3f) | 0x80;
    for (path, contents) in project_files(name, septa, component_id)? {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The Septa checkout this `septa` binary was built in (it lives in the checkout's
/// `target/<profile>/`), or the current directory's.
pub fn find_checkout() -> Option<PathBuf> {
    let is_checkout =
        |dir: &Path| dir.join("syscalls/Cargo.toml").is_file() && dir.join("userland/runtime").is_dir();
    let exe = std::env::current_exe().ok()?;
    let cwd = std::env::current_dir().ok()?;
    exe.ancestors()
        .chain(cwd.ancestors())
        .find(|dir| is_checkout(dir))
        .and_then(|dir| fs::canonicalize(dir).ok())
}

fn uuid(bytes: [u8; 16]) -> String {
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[[bin]]
name = "{name}"
path = "src/main.rs"
test = false
bench = false

[dependencies]
# The app API and runtime of the Septa checkout at this path.
septa-runtime = { path = "{septa}/userland/runtime" }
septa-syscalls = { path = "{septa}/syscalls" }

# Its own workspace, wherever the folder is.
[workspace]

[profile.release]
debug = true
lto = true
codegen-units = 1
opt-level = 3
"#;

const CARGO_CONFIG: &str = r#"# Septa apps run on the armv7a-none-eabi target and link with the app linker script,
# which septa-runtime puts on the linker's search path.
[build]
target = "armv7a-none-eabi"

[target.armv7a-none-eabi]
rustflags = ["-C", "link-arg=-Tsepta-app.ld"]
"#;

const APP_TOML: &str = r#"# The manifest: who the app is and what it may do (docs/manifest.md in the Septa checkout).
[app]
name = "{name}"
component-id = "{component_id}"
version = 1
priority = 1
memory-kib = 128
restart = "never"

# Nothing is granted by default: name endpoints, devices and monitor services here.
[capabilities]
"#;

const MAIN_RS: &str = r#"//! {name}: a Septa app.

#![no_std]
#![no_main]

use septa_syscalls as sys;

septa_runtime::entry!(main);

fn main() {
    let info = sys::info();
    let started_ms = info.uptime_ms;
    sys::log!("{} is running (pid {}), {} ms after start", info.name(), info.pid, started_ms);
}
"#;

const README: &str = r#"# {name}

A Septa app, built against the Septa checkout at `{septa}`.

```
cargo build --release                                  # builds target/armv7a-none-eabi/release/{name}
cd {septa} && cargo xtask run --app $OLDPWD            # signs it with the development key and boots it
cd {septa} && cargo xtask run --app $OLDPWD --gdb {name}   # the same, stopped for gdb-multiarch
```

`app.toml` is the app's manifest; `{septa}/docs/writing-an-app.md` is the guide and
`{septa}/docs/debugging.md` shows a debugging session. Open this folder in VS Code for
completion (rust-analyzer), the build/run/debug tasks and the debugger configuration.
"#;

const VSCODE_SETTINGS: &str = r#"{
  "rust-analyzer.cargo.target": "armv7a-none-eabi",
  "rust-analyzer.check.allTargets": false
}
"#;

const VSCODE_EXTENSIONS: &str = r#"{
  "recommendations": ["rust-lang.rust-analyzer", "ms-vscode.cpptools"]
}
"#;

const VSCODE_TASKS: &str = r#"{
  "version": "2.0.0",
  "tasks": [
    {
      "label": "septa: build",
      "type": "process",
      "command": "cargo",
      "args": ["build", "--release"],
      "group": { "kind": "build", "isDefault": true },
      "problemMatcher": ["$rustc"]
    },
    {
      "label": "septa: run",
      "type": "process",
      "command": "cargo",
      "args": ["xtask", "run", "--app", "${workspaceFolder}"],
      "options": { "cwd": "{septa}" },
      "problemMatcher": []
    },
    {
      "label": "septa: debug",
      "type": "process",
      "command": "cargo",
      "args": ["xtask", "run", "--app", "${workspaceFolder}", "--gdb", "{name}"],
      "options": { "cwd": "{septa}" },
      "isBackground": true,
      "problemMatcher": {
        "owner": "septa",
        "pattern": { "regexp": "^xtask: error: (.*)$", "message": 1 },
        "background": { "activeBegins": true, "beginsPattern": "^xtask: ", "endsPattern": "^xtask: QEMU waits for gdb" }
      }
    }
  ]
}
"#;

const VSCODE_LAUNCH: &str = r#"{
  "version": "0.2.0",
  "configurations": [
    {
      "name": "Debug {name} under QEMU",
      "type": "cppdbg",
      "request": "launch",
      "program": "${workspaceFolder}/target/armv7a-none-eabi/release/{name}",
      "cwd": "${workspaceFolder}",
      "MIMode": "gdb",
      "miDebuggerPath": "gdb-multiarch",
      "miDebuggerServerAddress": "127.0.0.1:1234",
      "preLaunchTask": "septa: debug",
      "setupCommands": [
        { "text": "source {septa}/target/septa/qemu-virt/sideload/debug.gdb" }
      ]
    }
  ]
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn project_files_name_the_app_and_the_checkout() {
        let files = project_files("weather", &checkout(), [0x11; 16]).unwrap();
        let text = |name: &str| &files.iter().find(|(path, _)| path == Path::new(name)).unwrap().1;
        assert!(text("Cargo.toml").contains("name = \"weather\""));
        assert!(text("Cargo.toml").contains("/syscalls\" }"));
        assert!(text("app.toml").contains("component-id = \"11111111-1111-1111-1111-111111111111\""));
        let manifest = crate::manifest::AppManifest::parse(text("app.toml")).unwrap();
        assert_eq!(manifest.name, "weather");
        for (path, contents) in &files {
            assert!(!contents.contains("{name}") && !contents.contains("{septa}"), "{}", path.display());
        }
    }

    #[test]
    fn bad_app_names_are_refused() {
        for name in ["", "Weather", "a-very-long-app-name", "../escape"] {
            let error = project_files(name, &checkout(), [0; 16]).unwrap_err();
            assert!(format!("{error}").contains("app name"), "{name}: {error}");
        }
    }

    #[test]
    fn a_folder_that_is_not_a_checkout_is_refused() {
        let error = project_files("weather", Path::new("/nonexistent"), [0; 16]).unwrap_err();
        assert!(format!("{error}").contains("not a Septa checkout"), "{error}");
    }
}
