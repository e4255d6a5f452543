//! Renewable security: updates through the monitor into the inactive slot, trial boots that
//! confirm or roll back, anti-rollback minimums raised only after confirmation, power cuts
//! during an update, persistent app storage and the failure-report ring in flash.
//!
//! Every test works on a private copy of the `update/` image set, booted with its flash
//! writes kept (`Boot::persistent`), and restarts QEMU on the same files to reboot.

use septa_abi::boot_state::BootState;
use septa_abi::bundle::Header;
use septa_abi::package;
use septa_qemu::Images;
use septa_targets::qemu_virt as board;
use septa_tests::tamper::stranger_key;
use septa_tests::{Boot, boot_state, scratch_copy, variant_images, verify_report_ring};
use std::fs;
use std::path::PathBuf;

fn update_images(test: &str) -> Images {
    scratch_copy(&variant_images("update"), test)
}

fn bundle(name: &str) -> PathBuf {
    septa_tests::images_dir().join("update").join(name)
}

fn cleanup(images: &Images) {
    let _ = fs::remove_dir_all(images.rom.parent().unwrap());
}

fn slot_a(images: &Images) -> Vec<u8> {
    let flash = fs::read(&images.flash).unwrap();
    let at = board::SLOT_A.base - board::FLASH1.base;
    flash[at..at + board::SLOT_A.size].to_vec()
}

/// Boots `images` with `bundle` in the inbox until `text` appears, then cuts the power.
fn boot_until(images: &Images, bundle: Option<&PathBuf>, text: &str) -> String {
    let mut boot = Boot::new(images.clone()).persistent();
    if let Some(bundle) = bundle {
        boot = boot.inbox(bundle);
    }
    let mut qemu = boot.spawn();
    qemu.wait_for(text);
    qemu.kill();
    qemu.console()
}

#[test]
fn an_update_is_tried_confirmed_and_raises_the_minimum_then_older_bundles_are_refused() {
    let images = update_images("update-happy");
    let console = boot_until(&images, Some(&bundle("v2.bundle")), "update in slot B applied and confirmed");
    for line in [
        "septa: monitor: update verified and installed in slot B",
        "septa: monitor: system reset into the update",
        "septa: loader: slot B: 7 packages verified and measured",
        "septa: kernel: boot 2, slot B on trial",
        "septa: supervisor: healthy for 2000 ms on trial; confirming the update",
    ] {
        assert!(console.contains(line), "missing {line:?}:\n{console}");
    }
    let state = boot_state(&images);
    assert_eq!((state.active, state.pending, state.trying), (1, None, None));
    assert_eq!(state.minimum(&package::KERNEL_COMPONENT_ID), 2, "{state:?}");
    assert_eq!(state.minimum(&package::MONITOR_COMPONENT_ID), 2, "{state:?}");

    // The next boot runs the confirmed slot, no trial; the updater finds the same bundle.
    let console =
        boot_until(&images, Some(&bundle("v2.bundle")), "[updater] the device already runs this update");
    assert!(console.contains("septa: kernel: boot 3, slot B\n"), "{console}");

    // Version 1 is now below the minimum: refused before anything is written.
    let console = boot_until(&images, Some(&bundle("v1.bundle")), "[updater] the monitor refused the update");
    assert!(
        console
            .contains("septa: monitor: update refused: package 0 (monitor): security version 1 is below the minimum 2 (rollback)"),
        "{console}"
    );
    assert_eq!(boot_state(&images).active, 1);

    let (ok, report) = verify_report_ring(&images);
    assert!(ok && report.contains("boot 2  update in slot B applied and confirmed"), "{report}");
    cleanup(&images);
}

#[test]
fn bad_bundles_are_refused_and_leave_the_slots_alone() {
    let images = update_images("update-refused");
    let original = slot_a(&images);
    let good = fs::read(bundle("v2.bundle")).unwrap();
    let header_len = Header::parse(&good).unwrap().len();
    let dir = images.rom.parent().unwrap().to_path_buf();

    let mut bad_signature = good.clone();
    bad_signature[header_len - 10] ^= 1;
    let mut wrong_key = good.clone();
    {
        use p256::ecdsa::signature::Signer;
        let key = stranger_key();
        wrong_key[12..20].copy_from_slice(&septa_abi::keys::key_id(key.verifying_key()));
        let signature: p256::ecdsa::Signature = key.sign(&wrong_key[..header_len - 64]);
        wrong_key[header_len - 64..header_len].copy_from_slice(&signature.to_bytes());
    }
    let truncated = good[..good.len() / 2].to_vec();
    let mut altered_image = good.clone();
    altered_image[header_len + 5000] ^= 1;
    for (name, bytes, reason) in [
        ("bad-signature", bad_signature, "the bundle signature does not verify"),
        ("wrong-key", wrong_key, "signed by an unknown key"),
        ("truncated", truncated, "the slot image does not match the signed hash"),
        ("altered", altered_image, "the slot image does not match the signed hash"),
    ] {
        let file = dir.join(name);
        fs::write(&file, bytes).unwrap();
        let console = boot_until(&images, Some(&file), "[updater] the monitor refused");
        assert!(console.contains(&format!("septa: monitor: update refused: {reason}")), "{name}:\n{console}");
        let state = boot_state(&images);
        assert_eq!((state.active, state.pending, state.trying), (0, None, None), "{name}");
        assert_eq!(slot_a(&images), original, "{name}: slot A changed");
    }
    // After all that the device boots slot A as before.
    let console = boot_until(&images, None, "[hello] hello");
    assert!(console.contains("septa: loader: slot A: 7 packages verified"), "{console}");
    cleanup(&images);
}

#[test]
fn an_update_whose_app_crashes_is_rolled_back_with_a_report() {
    let images = update_images("update-crash");
    let console = boot_until(
        &images,
        Some(&bundle("v2-crash.bundle")),
        "septa: loader: update in slot B rolled back: app crasher failed during the trial",
    );
    assert!(console.contains("septa: kernel: boot 2, slot B on trial"), "{console}");
    assert!(console.contains("septa: supervisor: crasher failed during the update's trial; rolling back"));
    let console = boot_until(&images, None, "septa: kernel: boot 4, slot A\n");
    assert!(!console.contains("on trial"), "{console}");
    let state = boot_state(&images);
    assert_eq!((state.active, state.pending, state.trying), (0, None, None));
    assert_eq!(state.minimum(&package::KERNEL_COMPONENT_ID), 0, "no minimum raised by a failed trial");
    let (ok, report) = verify_report_ring(&images);
    assert!(ok, "{report}");
    assert!(report.contains("crasher") && report.contains("data abort"), "{report}");
    assert!(report.contains("update in slot B rolled back: app crasher failed during the trial"), "{report}");
    cleanup(&images);
}

#[test]
fn an_update_that_hangs_is_rolled_back_by_the_secure_watchdog() {
    let images = update_images("update-hang");
    // The probe kernel in `hang.bundle` hangs with interrupts masked when told to (probe 4);
    // the kernel in slot A ignores the word.
    let hang = septa_tests::images_dir().join("probe/hang.bundle");
    let mut qemu = Boot::new(images.clone()).persistent().inbox(&hang).poke(board::TEST_BOOT_ARG, 4).spawn();
    qemu.wait_for("septa: probe: hanging with interrupts masked");
    qemu.wait_for("septa: loader: update in slot B rolled back: not confirmed before the watchdog fired");
    qemu.wait_for("septa: kernel: boot 3, slot A");
    qemu.kill();
    let console = qemu.console();
    assert!(console.contains("septa: monitor: watchdog armed"), "{console}");
    let state = boot_state(&images);
    assert_eq!((state.active, state.trying), (0, None));
    cleanup(&images);
}

/// Where a power cut falls, named by the device's own progress: the `k`-th flash operation
/// (erase or program call) of the monitor on one target (`monitor/src/powercut.rs`).
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The staging area: `UpdateBegin`'s erase, `UpdateWrite`'s programs.
    Staging(u32),
    /// Slot B, as `UpdateCommit` installs the update into it.
    SlotB(u32),
    /// The boot state once slot B is written: the record that marks it pending.
    Marking(u32),
    /// The boot state during the update's trial boot.
    Trial(u32),
}

impl Cut {
    fn word(self) -> u32 {
        let (target, k) = match self {
            Cut::Staging(k) => (1, k),
            Cut::SlotB(k) => (2, k),
            Cut::Marking(k) => (3, k),
            Cut::Trial(k) => (4, k),
        };
        (target << 24) | k
    }
}

#[test]
fn a_power_cut_at_any_point_of_an_update_leaves_a_bootable_device() {
    // Cut points chosen by the device's progress (deterministic under icount), spread over
    // the whole update: staging, installing, marking the slot pending, the trial boot.
    let cut_images = || septa_tests::images_dir().join("update-cut");
    let bundle = cut_images().join("v2.bundle");
    let image_len = Header::parse(&fs::read(&bundle).unwrap()).unwrap().image_len as u32;
    let sectors = image_len.div_ceil(board::FLASH_SECTOR as u32);
    let chunks = image_len.div_ceil(septa_abi::monitor::UPDATE_CHUNK_MAX as u32);
    let copies = image_len.div_ceil(4096);
    let cuts = [
        (Cut::Staging(1), "erase of staging"),
        (Cut::Staging(sectors + chunks / 2), "program of staging"),
        (Cut::Staging(sectors + chunks), "program of staging"),
        (Cut::SlotB(1), "erase of slot B"),
        (Cut::SlotB(sectors + copies / 2), "program of slot B"),
        (Cut::SlotB(sectors + copies), "program of slot B"),
        (Cut::Marking(1), " of boot state"),
        (Cut::Trial(1), " of boot state"),
    ];
    for (round, (cut, phase)) in cuts.into_iter().enumerate() {
        let images = scratch_copy(&variant_images("update-cut"), &format!("update-cut-{round}"));
        let outcome = Boot::new(images.clone())
            .persistent()
            .inbox(&bundle)
            .poke(board::TEST_POWER_CUT, cut.word())
            .run();
        let before = outcome.console.clone();
        outcome.expect(septa_abi::exit::POWER_CUT, &["septa: monitor: test power cut before "]);
        let line = before.lines().find(|l| l.contains("test power cut before ")).unwrap();
        assert!(line.contains(phase), "{cut:?} should cut the {phase:?} phase: {line}");
        let trial = matches!(cut, Cut::Trial(_));
        assert_eq!(
            before.contains("septa: kernel: boot 2, slot B on trial"),
            trial,
            "{cut:?}: the cut came in the wrong boot:\n{before}"
        );
        if !trial {
            // Cut before the pending mark was complete: nothing is pending, slot A boots.
            let state = boot_state(&images);
            assert_eq!((state.active, state.pending), (0, None), "{cut:?}: {state:?}");
        }

        // Power back on without the bundle: a verified slot must boot and run its apps,
        // and boot again after that; an interrupted trial is rolled back to slot A.
        for _ in 0..2 {
            let console = boot_until(&images, None, "[notes] quota:");
            assert!(
                console.contains("packages verified and measured, entering the monitor")
                    && console.contains(", slot A"),
                "{cut:?}; before the cut:\n{before}\nafter:\n{console}"
            );
        }
        let state: BootState = boot_state(&images);
        assert_eq!((state.active, state.trying, state.pending), (0, None, None), "{cut:?}: {state:?}");
        cleanup(&images);
    }
}

#[test]
fn app_storage_survives_reboots_is_private_and_bounded() {
    let images = update_images("storage");
    let console = boot_until(&images, None, "[notes] quota:");
    for line in [
        "[notes] no note (ENOENT)",
        "[notes] boot 1 of this app, counted in flash",
        "the next was refused with ENOSPC; earlier values intact",
    ] {
        assert!(console.contains(line), "missing {line:?}:\n{console}");
    }
    let console = boot_until(&images, None, "[peeker] no note");
    for line in [
        "[notes] note from an earlier boot: written by notes",
        "[notes] boot 2 of this app, counted in flash",
        "[peeker] no note (ENOENT)",
    ] {
        assert!(console.contains(line), "missing {line:?}:\n{console}");
    }
    // Nothing an app stored is readable in the storage area (the app's own code, in its
    // slot, does hold the text).
    let flash = fs::read(&images.flash).unwrap();
    let storage = &flash[board::STORAGE.base - board::FLASH1.base..][..board::STORAGE.size];
    assert!(storage.iter().any(|&b| b != 0xff), "nothing was stored");
    assert!(!storage.windows(16).any(|w| w == b"written by notes"));
    cleanup(&images);
}

#[test]
fn fault_reports_survive_reboots_and_a_flipped_byte_fails_verification() {
    let images = scratch_copy(&variant_images("compartments"), "report-ring");
    boot_until(&images, None, "(restart 1)");
    boot_until(&images, None, "(restart 1)");
    let (ok, report) = verify_report_ring(&images);
    assert!(ok, "{report}");
    for boot in [1, 2] {
        let crash = report
            .lines()
            .find(|l| {
                l.contains(&format!("boot {boot} ")) && l.contains(" crasher ") && l.contains("restarts 0")
            })
            .unwrap_or_else(|| panic!("no crash in boot {boot}:\n{report}"));
        assert!(crash.contains("data abort") && crash.contains(" address 0x00000000 exit 0 "), "{report}");
    }
    // Flip one byte inside the first report of the ring.
    let mut flash = fs::read(&images.flash).unwrap();
    let first_record = board::REPORTS.base - board::FLASH1.base + 16;
    flash[first_record + 8 + 30] ^= 0x01;
    fs::write(&images.flash, flash).unwrap();
    let (ok, report) = verify_report_ring(&images);
    assert!(!ok && report.contains("report ring at offset"), "{report}");
    cleanup(&images);
}

#[test]
fn app_storage_put_back_from_an_older_copy_of_flash_is_refused() {
    let images = update_images("storage-replay");
    boot_until(&images, None, "[notes] quota:");
    let older = fs::read(&images.flash).unwrap();
    let console = boot_until(&images, None, "[notes] quota:");
    assert!(console.contains("[notes] boot 2 of this app, counted in flash"), "{console}");
    // An attacker with the flash file puts the older copy back: storage would count boot 2
    // again. Its digest in secure flash says otherwise.
    fs::write(&images.flash, older).unwrap();
    // Up to the end of the line: stopping at its start could cut the error name off.
    let console = boot_until(&images, None, "[notes] storage failed: EPERM");
    for line in [
        "septa: monitor: app storage refused: it does not match its digest in secure flash (an older or altered copy)",
        "[notes] no note (EPERM)",
        "[notes] storage failed: EPERM",
    ] {
        assert!(console.contains(line), "missing {line:?}:\n{console}");
    }
    assert!(!console.contains("counted in flash"), "{console}");
    cleanup(&images);
}
