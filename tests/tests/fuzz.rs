//! The fuzzers' bounded runs: `sysfuzz` (random syscalls from an app with no capabilities)
//! and the kernel's `smcfuzz` feature (random SMCs to the monitor before the apps start),
//! in the `fuzz` image. Neither may crash or hang the kernel or the monitor; `counter` keeps
//! running and `attest` still gets a token that verifies. `cargo xtask fuzz` runs the
//! ignored test below, the same on the `fuzz-long` image with many more calls.

use septa_tests::{Boot, Running, images_dir, septa, variant_images};

/// Waits for both fuzzers' summaries and checks the rest of the system is still sound.
fn check(mut qemu: Running, fuzzer: &str) {
    qemu.wait_for("septa: smcfuzz: ");
    qemu.wait_for("septa: kernel: app attest exited with status 0");
    qemu.wait_for(&format!("septa: kernel: app {fuzzer} exited with status 0"));
    let counts = qemu.console().matches("[counter] count ").count();
    qemu.wait_for_nth("[counter] count ", counts + 1);
    let console = qemu.console();
    assert!(console.contains(", 0 wrong answers; the monitor still answers (version 1.0)"), "{console}");
    let summary = format!("[{fuzzer}] ");
    let line = console.lines().find(|l| l.starts_with(&summary) && l.contains(" random syscalls (seed "));
    let line = line.unwrap_or_else(|| panic!("no summary:\n{console}"));
    assert!(line.ends_with("every answer a result, r2-r5 kept, own memory intact"), "{line}");
    println!("{line}");
    // (The fuzzer logs random bytes of its own memory, its strings included: only lines
    // that start with a finding count.)
    let findings =
        |l: &&str| l.starts_with(&format!("{summary}WRONG")) || l.starts_with("septa: smcfuzz: WRONG");
    assert!(!console.lines().any(|l| findings(&l)), "{console}");
    assert!(!console.contains("CRASH"), "{console}");
    // Attestation still verifies after the monitor took thousands of random calls.
    let nonce = console.lines().find_map(|l| l.strip_prefix("[attest] nonce ")).unwrap().trim().to_string();
    let token: String = console
        .lines()
        .filter_map(|l| l.strip_prefix("[attest] token "))
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    let file = std::env::temp_dir().join(format!("septa-fuzz-token-{}-{fuzzer}", std::process::id()));
    std::fs::write(&file, token).unwrap();
    let output = septa()
        .args(["attest", "verify", "--device-key"])
        .arg(images_dir().join("keys/device.pub.pem"))
        .args(["--nonce", &nonce])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(file);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn random_syscalls_and_monitor_calls_get_only_answers_and_the_system_stays_sound() {
    check(Boot::new(variant_images("fuzz")).spawn(), "sysfuzz");
}

/// `cargo xtask fuzz`: half a million random syscalls and 30,000 random monitor calls.
#[test]
#[ignore = "long: run by `cargo xtask fuzz`"]
fn long_fuzz_run() {
    check(
        Boot::new(variant_images("fuzz-long")).poke(septa_targets::qemu_virt::TEST_BOOT_ARG, 30_000).spawn(),
        "sysfuzz-long",
    );
}
