//! `cargo xtask test` boots every image with a QEMU that sees only the files of its own
//! package and that package's dependencies, as on a fresh machine that ran `apt-get install
//! --no-install-recommends qemu-system-arm`. This test shows that the check has teeth: a
//! command line that needs a file from a recommended package fails, naming the file.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn qemu_under_test_lacks_the_network_card_rom_a_fresh_machine_lacks() {
    let Some(qemu) = std::env::var_os(septa_qemu::QEMU_ENV) else {
        eprintln!(
            "skipped: {} is not set (`cargo xtask test` sets it where dpkg exists)",
            septa_qemu::QEMU_ENV
        );
        return;
    };
    // `virt` without `-nodefaults` adds a PCI network card, whose option ROM comes from the
    // `ipxe-qemu` package. `-S` keeps the CPU stopped, so a QEMU that found the ROM idles.
    let mut child = Command::new(&qemu)
        .args(["-M", "virt", "-cpu", "cortex-a7", "-display", "none", "-monitor", "none", "-S"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the package-only QEMU");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("waiting for QEMU").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "QEMU started a machine that needs efi-virtio.rom: the package-only QEMU sees files of other packages"
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("reading QEMU's messages");
    let messages = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "QEMU exited successfully: {messages}");
    assert!(messages.contains("efi-virtio.rom"), "QEMU failed for another reason: {messages}");
}
