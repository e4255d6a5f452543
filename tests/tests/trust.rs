//! The security monitor's services and attestation, end to end: apps reach the monitor only
//! through `monitor_call`, get their own stable keys, and a token from QEMU verifies with
//! `septa attest verify` — and stops verifying when anything about it changes.

use septa_tests::tamper::{development_key, packages, resign, stranger_key, write_packages};
use septa_tests::{Boot, images_dir, scratch_copy, septa, variant_images};
use sha2::Digest;

/// What the `keys` and `attest` apps printed in one boot.
struct Boot1 {
    console: String,
}

impl Boot1 {
    fn run() -> Boot1 {
        let mut qemu = Boot::new(variant_images("trust")).spawn();
        qemu.wait_for("[keys] mismatched service number");
        qemu.wait_for("septa: kernel: app attest exited with status 0");
        Boot1 { console: qemu.console() }
    }

    fn value(&self, prefix: &str) -> String {
        let line = self.console.lines().find_map(|l| l.strip_prefix(prefix));
        line.unwrap_or_else(|| panic!("no {prefix:?} line:\n{}", self.console)).trim().to_string()
    }

    fn token(&self) -> String {
        self.console
            .lines()
            .filter_map(|l| l.strip_prefix("[attest] token "))
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect()
    }
}

#[test]
fn monitor_services_give_random_bytes_hashes_and_stable_per_app_keys() {
    let first = Boot1::run();
    let second = Boot1::run();
    let random = first.value("[keys] random ");
    let (a, b) = random.split_once(' ').unwrap();
    assert_ne!(a, b, "two calls gave the same bytes");
    assert_ne!(random, second.value("[keys] random "), "two boots gave the same bytes");
    assert_eq!(
        first.value("[keys] sha256(abc) "),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // Data the kernel copies from the app's memory, across a page, from each place in a word.
    let pattern: Vec<u8> = (0..700usize).map(|i| (i * 7 + 1) as u8).collect();
    let expected = hex::encode(sha2::Sha256::digest(&pattern));
    for misaligned in 0..4 {
        assert_eq!(first.value(&format!("[keys] sha256 of 700 bytes at +{misaligned} ")), expected);
    }
    let key = first.value("[keys] public key ");
    assert_eq!(key.len(), 130);
    assert_eq!(key, second.value("[keys] public key "), "an app's key changed across reboots");
    assert_ne!(key, first.value("[attest] public key "), "two apps share a key");
    assert_eq!(first.value("[keys] sign/verify: "), "own message Ok(true), altered message Ok(false)");
    assert_eq!(first.value("[keys] malformed request -> "), "Err(Invalid)");
    assert_eq!(first.value("[keys] mismatched service number -> "), "Err(Invalid)");
}

/// The `septa` host tool, built by `cargo xtask test`.
fn verify(
    token: &str,
    nonce: &str,
    device_key: &std::path::Path,
    image: Option<&std::path::Path>,
) -> (bool, String) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("septa-token-{}-{n}", std::process::id()));
    std::fs::write(&file, token).unwrap();
    let mut command = septa();
    command.args(["attest", "verify", "--device-key"]).arg(device_key).args(["--nonce", nonce]);
    if let Some(image) = image {
        command.arg("--image").arg(image);
    }
    let output = command.arg(&file).output().expect("running septa (cargo xtask test builds it)");
    let _ = std::fs::remove_file(file);
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn attestation_token_verifies_and_any_change_breaks_it() {
    let boot = Boot1::run();
    let token = boot.token();
    let nonce = boot.value("[attest] nonce ");
    let device_key = images_dir().join("keys/device.pub.pem");
    let image = variant_images("trust").flash;

    let (ok, text) = verify(&token, &nonce, &device_key, Some(&image));
    assert!(ok, "{text}");
    assert!(text.contains("token verified"), "{text}");
    assert!(text.contains("kernel  5e97a000-0000-4000-8000-000000000002  version 1"), "{text}");

    // One altered byte, anywhere in the token.
    let mut altered = token.clone().into_bytes();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
    let (ok, text) = verify(&String::from_utf8(altered).unwrap(), &nonce, &device_key, None);
    assert!(!ok, "an altered token verified: {text}");

    // Another nonce: a replayed token.
    let other = "00".repeat(32);
    let (ok, text) = verify(&token, &other, &device_key, None);
    assert!(!ok && text.contains("answers another nonce"), "{text}");

    // Another device.
    let stranger = std::env::temp_dir().join(format!("septa-stranger-{}.pem", std::process::id()));
    septa_tool::keys::write_public_key(&stranger, stranger_key().verifying_key()).unwrap();
    let (ok, text) = verify(&token, &nonce, &stranger, None);
    let _ = std::fs::remove_file(&stranger);
    assert!(!ok && text.contains("another device"), "{text}");

    // The reference image has another kernel than the device booted.
    let changed = scratch_copy(&variant_images("trust"), "changed-kernel");
    let mut all = packages(&changed);
    all[1] = resign(&all[1], &development_key(), |spec| spec.security_version = 2);
    write_packages(&changed, &all);
    let (ok, text) = verify(&token, &nonce, &device_key, Some(&changed.flash));
    let _ = std::fs::remove_dir_all(changed.rom.parent().unwrap());
    assert!(!ok && text.contains("booted a different kernel"), "{text}");
}

#[test]
fn failure_reports_are_signed_and_verify_offline() {
    let mut qemu = Boot::new(variant_images("compartments")).spawn();
    qemu.wait_for("(restart 2)");
    qemu.wait_for_nth("septa: supervisor: signed report ", 3);
    // Only whole lines: QEMU may be in the middle of printing the next report.
    let console = qemu.console();
    let whole = &console[..console.rfind('\n').map_or(0, |end| end + 1)];
    let reports: String = whole
        .lines()
        .filter(|l| l.starts_with("septa: supervisor: signed report "))
        .map(|l| format!("{l}\n"))
        .collect();
    let device_key = images_dir().join("keys/device.pub.pem");
    let file = std::env::temp_dir().join(format!("septa-reports-{}", std::process::id()));
    std::fs::write(&file, &reports).unwrap();
    let output =
        septa().args(["report", "verify", "--device-key"]).arg(&device_key).arg(&file).output().unwrap();
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    let crash = text
        .lines()
        .find(|l| l.contains(" crasher ") && l.contains("restarts 1"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(crash.contains("data abort") && crash.contains(" address 0x00000000 exit 0 "), "{text}");

    // One flipped hex digit in the first report.
    let mut altered = reports.clone().into_bytes();
    let at = altered.iter().position(|&b| b == b'\n').unwrap() - 10;
    altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&file, altered).unwrap();
    let output =
        septa().args(["report", "verify", "--device-key"]).arg(&device_key).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(!output.status.success(), "an altered report verified");
}
