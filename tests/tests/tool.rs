//! The `septa` host tool end to end, the way an OEM would use it: a new signing key and
//! device secret, packages signed with it, images composed and provisioned — and the board
//! boots them, while `inspect` tells valid signatures from foreign ones.

use septa_tests::{Boot, default_images};
use std::path::{Path, PathBuf};
use std::process::Command;

fn septa(args: &[&str]) -> String {
    let tool = std::env::var_os("SEPTA_TOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/septa"));
    let output = Command::new(tool).args(args).output().expect("running septa (cargo xtask test builds it)");
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "septa {args:?} failed:\n{text}");
    text
}

fn built(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/armv7a-none-eabi/release").join(name);
    path.to_str().unwrap().to_string()
}

#[test]
fn an_oem_signs_provisions_and_boots_with_its_own_key() {
    let dir = std::env::temp_dir().join(format!("septa-oem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    septa(&["keygen", "--out", &path("oem")]);
    std::fs::write(dir.join("secret.bin"), [0x42u8; 32]).unwrap();
    let hello_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../userland/apps/hello/app.toml");
    for (kind, elf, out) in [("monitor", "monitor", "monitor.spkg"), ("kernel", "kernel", "kernel.spkg")] {
        septa(&[
            "pack",
            "--kind",
            kind,
            "--elf",
            &built(elf),
            "--key",
            &path("oem.pem"),
            "--out",
            &path(out),
        ]);
    }
    septa(&[
        "pack",
        "--kind",
        "app",
        "--elf",
        &built("hello"),
        "--manifest",
        hello_manifest.to_str().unwrap(),
        "--key",
        &path("oem.pem"),
        "--out",
        &path("hello.spkg"),
    ]);
    let loader = built("loader");
    let (monitor, kernel, hello) = (path("monitor.spkg"), path("kernel.spkg"), path("hello.spkg"));
    let (key, images) = (path("oem.pem"), path("images"));
    septa(&["image", "--loader", &loader, "--key", &key, "--out-dir", &images, &monitor, &kernel, &hello]);
    let rom = path("images/rom.img");
    septa(&[
        "provision",
        "--rom",
        &rom,
        "--device-secret",
        &path("secret.bin"),
        "--oem-key",
        &path("oem.pub.pem"),
    ]);

    let listing = septa(&["inspect", &path("images/flash.img"), "--key", &path("oem.pub.pem")]);
    assert_eq!(listing.matches("signature valid").count(), 4, "{listing}");
    assert!(
        listing.contains("manifest signature valid") && !listing.contains("NOT IN MANIFEST"),
        "{listing}"
    );
    assert!(listing.contains("app     hello "), "{listing}");
    let foreign =
        septa(&["inspect", default_images().flash.to_str().unwrap(), "--key", &path("oem.pub.pem")]);
    assert!(foreign.contains("signature unknown key") && !foreign.contains("signature valid"), "{foreign}");

    let images = septa_qemu::Images::in_dir(&dir.join("images"));
    let mut qemu = Boot::new(images).spawn();
    qemu.wait_for("septa: kernel: app hello exited with status 0");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_memory_quota_too_small_for_the_app_is_refused_when_packing() {
    let dir = std::env::temp_dir().join(format!("septa-quota-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    septa(&["keygen", "--out", &path("oem")]);
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../userland/apps/attacker/app.toml"),
    )
    .unwrap();
    let pack = |kib: u32| {
        let text = manifest.replace("memory-kib = 96", &format!("memory-kib = {kib}"));
        std::fs::write(dir.join("app.toml"), text).unwrap();
        let tool = std::env::var_os("SEPTA_TOOL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/septa"));
        let output = Command::new(tool)
            .args(["pack", "--kind", "app", "--elf", &built("attacker"), "--manifest", &path("app.toml")])
            .args(["--key", &path("oem.pem"), "--out", &path("attacker.spkg")])
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    // 16 KiB is a valid quota, but less than the stack and tables alone.
    let (ok, error) = pack(16);
    assert!(!ok, "packed with 16 KiB");
    let needed: u32 = error
        .split("the app needs ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{error}"));
    assert!(
        error.contains("app \"attacker\": [app] memory-kib: 16 KiB is too small")
            && error.contains(&format!("set memory-kib = {needed}")),
        "{error}"
    );
    assert!(needed > 24 && needed <= 96, "{error}");
    assert!(!pack(needed - 4).0);
    assert!(pack(needed).0, "{}", pack(needed).1);
    let _ = std::fs::remove_dir_all(&dir);
}
