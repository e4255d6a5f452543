//! The image sets only the integration tests use, besides the default image.
//!
//! - `probe/`: a kernel built with the `probe` feature (boot-chain tests), no apps;
//! - `core/`: `hello`, `counter` and `spinner` (kernel-core tests);
//! - `trust/`: `keys` and `attest`, which use the security monitor's services;
//! - `compartments/`: IPC, capabilities, GPIO and the supervisor, with the `prober` app;
//! - `isolation/`: `counter` and `spinner` next to one `attacker` instance per attack, each
//!   named `a-<attack>` (the name selects the attack; see `userland/apps/attacker`);
//! - `bench/`: the benchmark apps (also what `cargo xtask bench` runs).

use crate::images::{AppSpec, ImageSpec};
use anyhow::Result;
use std::path::Path;

/// The attacks `tests/tests/isolation.rs` expects, one attacker instance each.
pub const ATTACKS: [&str; 11] = [
    "syscalls",
    "kread",
    "otherapp",
    "secureram",
    "bootrom",
    "textwrite",
    "stackexec",
    "dataexec",
    "kexec",
    "undef",
    "align",
];

pub fn test_images(root: &Path) -> Result<Vec<ImageSpec>> {
    let attacker = AppSpec::from_crate(root, "attacker")?;
    let mut isolation = vec![AppSpec::from_crate(root, "counter")?, AppSpec::from_crate(root, "spinner")?];
    for (index, attack) in ATTACKS.iter().enumerate() {
        let mut manifest = attacker.manifest.clone();
        manifest.name = format!("a-{attack}");
        // Each instance is its own component.
        manifest.component_id[15] = manifest.component_id[15].wrapping_add(index as u8);
        isolation.push(AppSpec { binary: "attacker".into(), manifest });
    }
    let apps =
        |names: &[&str]| names.iter().map(|n| AppSpec::from_crate(root, n)).collect::<Result<Vec<_>>>();
    Ok(vec![
        ImageSpec { dir: "probe".into(), kernel_features: vec!["probe".into()], apps: Vec::new() },
        ImageSpec {
            dir: "core".into(),
            kernel_features: Vec::new(),
            apps: apps(&["hello", "counter", "spinner"])?,
        },
        ImageSpec {
            dir: "compartments".into(),
            kernel_features: Vec::new(),
            apps: apps(&["logger", "blinky", "pong", "ping", "crasher", "prober", "counter", "clock"])?,
        },
        ImageSpec {
            dir: "trust".into(),
            kernel_features: Vec::new(),
            apps: apps(&["keys", "attest", "hello"])?,
        },
        ImageSpec { dir: "isolation".into(), kernel_features: Vec::new(), apps: isolation },
    ])
}

/// The benchmark image: `bench` first (it measures the time to the first app), `benchpeer`
/// for IPC and switches, and a kernel that lets them read the counters.
pub fn bench_image(root: &Path) -> Result<ImageSpec> {
    let apps =
        ["bench", "benchpeer"].iter().map(|n| AppSpec::from_crate(root, n)).collect::<Result<Vec<_>>>()?;
    Ok(ImageSpec { dir: "bench".into(), kernel_features: vec!["bench".into()], apps })
}
