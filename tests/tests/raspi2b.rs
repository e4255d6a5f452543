//! The dev kit: the same loader, monitor, kernel and apps under QEMU's `raspi2b` — the
//! BCM2836 local interrupt controller instead of the GIC, the BCM2835 GPIO, RNG and
//! watchdog, and the images in a boot payload in RAM instead of flash.

use septa_abi::package::Kind;
use septa_abi::slot::Slot;
use septa_targets::raspi2b as board;
use septa_tests::{Boot, raspi2b_images};
use std::fs;

#[test]
fn the_dev_kit_boots_the_chain_and_runs_the_apps() {
    let mut qemu = Boot::new(raspi2b_images("")).raspi2b().spawn();
    qemu.wait_for("septa: supervisor: restarting crasher in 200 ms (restart 2)");
    qemu.wait_for("[logger] from 6b1c5d6e: blinky: pin 3 off");
    let console = qemu.console();
    for line in [
        "septa: loader 0.1.0 secure svc\n",
        "septa: loader: slot A:",
        "septa: monitor 0.1.0 secure mon\n",
        "septa: kernel 0.1.0 non-secure svc\n",
        "[hello] hello from hello (pid 0)",
        "[logger] from 6b1c5d6e: blinky: pin 3 on",
        "[ping] 1000 of 1000 round trips to pong checked",
        "septa: kernel: app crasher faulted: data abort at pc",
        "septa: supervisor: restarting crasher in 100 ms (restart 1)",
    ] {
        assert!(console.contains(line), "missing {line:?}:\n{console}");
    }
    // Only core 0 runs: the other three are parked by the loader.
    assert_eq!(console.matches("septa: loader 0.1.0").count(), 1, "{console}");
}

#[test]
fn the_sd_card_boots_as_the_firmware_starts_it() {
    // All four cores start at address 0 in the stub, as the firmware starts them.
    let sdcard = septa_tests::raspi2b_dir().join("sdcard");
    let config = std::fs::read_to_string(sdcard.join("config.txt")).unwrap();
    assert!(config.contains("armstub=septa-armstub.bin") && config.contains("ramfsaddr=0x38000000"));
    let mut qemu = Boot::new(septa_qemu::Images::sdcard_in_dir(&sdcard)).raspi2b_sdcard().spawn();
    qemu.wait_for("[hello] hello from hello");
    let console = qemu.console();
    assert_eq!(console.matches("septa: loader 0.1.0 secure svc").count(), 1, "{console}");
    assert!(console.contains("septa: kernel 0.1.0 non-secure svc"), "{console}");
}

#[test]
fn the_timer_preempts_a_spinning_app_on_the_dev_kit() {
    let mut qemu = Boot::new(raspi2b_images("core")).raspi2b().spawn();
    qemu.wait_for("[spinner] still spinning (round 1)");
    qemu.wait_for("[counter] count 4");
    let console = qemu.console();
    let spinning = console.find("[spinner] still spinning (round 1)").unwrap();
    assert!(spinning < console.find("[counter] count 4").unwrap(), "no preemption:\n{console}");
    assert!(!console.contains("faulted"), "{console}");
}

#[test]
fn secure_boot_on_the_dev_kit_refuses_a_tampered_package() {
    let images = raspi2b_images("");
    let dir = std::env::temp_dir().join(format!("septa-raspi2b-tamper-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let copy = septa_qemu::Images::raspi2b_in_dir(&dir);
    fs::copy(&images.rom, &copy.rom).unwrap();
    let original = fs::read(&images.flash).unwrap();
    let slot_at = board::SLOT_A.base - board::FLASH0.base;
    let find = |kind: Kind| {
        let slot = Slot::parse(&original[slot_at..]).unwrap();
        let (index, (offset, package)) = slot
            .packages()
            .map(Result::unwrap)
            .enumerate()
            .find(|(_, (_, p))| p.header.kind == kind)
            .unwrap();
        (index, slot_at + offset, slot_at + offset + package.encoded_len())
    };

    // A header byte of the kernel (its security version): the loader refuses the slot.
    let (kernel, start, _) = find(Kind::Kernel);
    let mut payload = original.clone();
    payload[start + 24] ^= 2;
    fs::write(&copy.flash, &payload).unwrap();
    let outcome = Boot::new(copy.clone()).raspi2b().run();
    outcome.expect(
        septa_abi::exit::BOOT_REFUSED,
        &[&format!(
            "septa: loader: refusing to boot slot A: package {kernel} (kernel): its header is not the one the signed slot manifest lists"
        )],
    );

    // A payload byte of an app: the kernel, which hashes each app as it starts it, refuses it.
    let (app, _, end) = find(Kind::App);
    let mut payload = original.clone();
    payload[end - 1] ^= 1;
    fs::write(&copy.flash, &payload).unwrap();
    let mut qemu = Boot::new(copy).raspi2b().spawn();
    qemu.wait_for("apps started");
    qemu.kill();
    let _ = fs::remove_dir_all(&dir);
    let refusal = format!(
        "septa: kernel: app package {app} refused: package: payload SHA-256 does not match the header"
    );
    assert!(qemu.console().contains(&refusal), "{}", qemu.console());
}
