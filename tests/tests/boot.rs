//! The boot chain: loader (secure) → monitor (secure) → kernel (non-secure), the TrustZone
//! address map as the kernel sees it, the SMC interface, and the loader's refusal of bad
//! images.

use septa_abi::exit;
use septa_abi::package::{self, Kind};
use septa_abi::slot::Slot;
use septa_qemu::Images;
use septa_targets::qemu_virt as board;
use septa_tests::{Boot, default_images, scratch_copy, variant_images};
use std::fs;

/// Lines of `console` that start with `septa: <stage> ` followed by a version.
fn stage_line<'a>(console: &'a str, stage: &str) -> &'a str {
    let prefix = format!("septa: {stage} {}", env!("CARGO_PKG_VERSION"));
    console
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{console}"))
}

#[test]
fn boot_reaches_the_kernel_with_each_stage_in_its_world() {
    let socket = std::env::temp_dir().join(format!("septa-monitor-{}.sock", std::process::id()));
    let mut qemu = Boot::new(variant_images("core")).with_monitor(socket.clone()).spawn();
    qemu.wait_for("apps started");
    let console = qemu.console();
    assert!(stage_line(&console, "loader").ends_with(" secure svc"), "{console}");
    assert!(stage_line(&console, "monitor").ends_with(" secure mon"), "{console}");
    assert!(stage_line(&console, "kernel").ends_with(" non-secure svc"), "{console}");
    let order: Vec<_> = ["loader", "monitor", "kernel"]
        .iter()
        .map(|s| console.find(stage_line(&console, s)).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stages out of order:\n{console}");

    // QEMU's own view of the CPU, independent of anything the guest prints: once `hello`'s
    // exit and the spinner's one overrun are reported (the kernel has the monitor sign each:
    // two reports), these apps make no more monitor calls, so it runs apps (non-secure user
    // mode) or the kernel (non-secure SVC, or IRQ mode on its way into an interrupt handler)
    // only.
    qemu.wait_for("septa: kernel: app hello exited");
    qemu.wait_for("septa: kernel: app spinner overran its CPU budget");
    qemu.wait_for_nth("septa: supervisor: signed report ", 2);
    for _ in 0..5 {
        let registers = qemu.monitor("info registers");
        let psr = registers.lines().find(|line| line.starts_with("PSR=")).unwrap_or_default();
        assert!(
            [" NS usr32", " NS svc32", " NS irq32"].iter().any(|mode| psr.ends_with(mode)),
            "CPU not in the non-secure world:\n{registers}"
        );
    }
    let _ = fs::remove_file(socket);
}

#[test]
fn kernel_reading_secure_ram_takes_a_data_abort() {
    let outcome = Boot::new(variant_images("probe")).poke(board::TEST_BOOT_ARG, 1).run();
    outcome.expect(
        exit::CRASH,
        &[
            "septa: probe: reading 0x0e000000",
            "septa: kernel CRASH: unexpected data abort",
            "dfsr 0x00000008 (synchronous external abort, read)  dfar 0x0e000000",
        ],
    );
    assert!(!outcome.console.contains("NOT blocked"), "{}", outcome.console);
}

#[test]
fn kernel_reading_the_boot_rom_takes_a_data_abort() {
    let outcome = Boot::new(variant_images("probe")).poke(board::TEST_BOOT_ARG, 2).run();
    outcome.expect(
        exit::CRASH,
        &[
            "septa: probe: reading 0x00000000",
            "septa: kernel CRASH: unexpected data abort",
            "dfsr 0x00000008 (synchronous external abort, read)  dfar 0x00000000",
        ],
    );
    assert!(!outcome.console.contains("NOT blocked"), "{}", outcome.console);
}

#[test]
fn unknown_smc_returns_not_supported_and_reset_then_off_work() {
    let outcome = Boot::new(variant_images("probe")).poke(board::TEST_BOOT_ARG, 3).run();
    outcome.expect(
        exit::SUCCESS,
        &[
            "septa: probe: smc 0xb2000fff returned 0xffffffff",
            "septa: probe: smc 0x12345678 returned 0xffffffff",
            "septa: probe: SMCCC_VERSION returned 0x00010001",
            "septa: probe: requesting system reset\nsepta: monitor: system reset\n",
            "septa: probe: back after reset, requesting system off\nsepta: monitor: system off (status 0)",
        ],
    );
    assert_eq!(outcome.console.matches("septa: loader 0.1.0").count(), 2, "{}", outcome.console);
}

/// The offset in flash.img of the first package of `kind` in slot A.
fn package_offset(images: &Images, kind: Kind) -> usize {
    let flash = fs::read(&images.flash).unwrap();
    let slot_at = board::SLOT_A.base - board::FLASH1.base;
    let slot = Slot::parse(&flash[slot_at..slot_at + board::SLOT_A.size]).unwrap();
    let (offset, _) = slot.packages().map(Result::unwrap).find(|(_, p)| p.header.kind == kind).unwrap();
    slot_at + offset
}

/// Boots a copy of the default images after `tamper` changed its flash image; the loader
/// must refuse it with `message` and never start the monitor.
fn refused_after(test: &str, tamper: impl FnOnce(&mut Vec<u8>, usize), message: &str) {
    let images = scratch_copy(&default_images(), test);
    let kernel = package_offset(&images, Kind::Kernel);
    let mut flash = fs::read(&images.flash).unwrap();
    tamper(&mut flash, kernel);
    fs::write(&images.flash, flash).unwrap();
    let outcome = Boot::new(images.clone()).run();
    outcome.expect(exit::BOOT_REFUSED, &[&format!("septa: loader: refusing to boot slot A: {message}")]);
    assert!(!outcome.console.contains("septa: monitor"), "monitor started:\n{}", outcome.console);
    let _ = fs::remove_dir_all(images.rom.parent().unwrap());
}

#[test]
fn corrupt_kernel_header_is_refused() {
    refused_after(
        "bad-magic",
        |flash, kernel| flash[kernel] ^= 0xff,
        "package 1: bad magic (not a Septa package)",
    );
}

#[test]
fn kernel_payload_with_a_flipped_byte_is_refused() {
    refused_after(
        "flipped-payload",
        |flash, kernel| flash[kernel + package::HEADER_LEN + 100] ^= 0x01,
        "package 1 (kernel): payload SHA-256 does not match the header (corrupt image)",
    );
}

#[test]
fn kernel_length_beyond_the_slot_is_refused() {
    refused_after(
        "huge-length",
        |flash, kernel| flash[kernel + 28..kernel + 32].copy_from_slice(&u32::MAX.to_le_bytes()),
        "package 1: truncated",
    );
}

#[test]
fn slot_without_a_kernel_is_refused() {
    // A slot the OEM signed without a kernel: the manifest is valid, the slot is not.
    let no_kernel = |flash: &mut Vec<u8>, _| {
        let slot_at = board::SLOT_A.base - board::FLASH1.base;
        let slot = Slot::parse(&flash[slot_at..slot_at + board::SLOT_A.size]).unwrap();
        let packages: Vec<Vec<u8>> = slot
            .packages()
            .map(Result::unwrap)
            .filter(|(_, p)| p.header.kind != Kind::Kernel)
            .map(|(offset, p)| flash[slot_at + offset..slot_at + offset + p.encoded_len()].to_vec())
            .collect();
        let key = septa_tests::tamper::development_key();
        *flash = septa_tool::image::compose_flash(&packages, &key).unwrap();
    };
    refused_after("no-kernel", no_kernel, "no kernel package in the slot");
}

#[test]
fn slot_listing_fewer_packages_than_its_manifest_signed_is_refused() {
    refused_after(
        "fewer",
        |flash, _| {
            let slot_at = board::SLOT_A.base - board::FLASH1.base;
            flash[slot_at + 6] = 1; // only the monitor package remains listed
        },
        "the slot manifest's signature does not verify (tampered slot header or manifest)",
    );
}
