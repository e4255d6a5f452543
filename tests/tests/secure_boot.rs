//! Secure boot: the loader refuses every tampered, foreign, revoked or rolled-back slot or
//! package, each with its own message, and never starts the monitor; an app whose payload
//! was altered in flash is refused by the kernel, which hashes each app as it starts it.
//!
//! An attacker without the OEM key can only change bytes in flash ([`edit_in_place`]); the
//! OEM's own build may put anything into a slot and sign its manifest ([`recompose`]).

use septa_abi::exit;
use septa_abi::keys::key_id;
use septa_abi::package::{HEADER_LEN, Kind, Package};
use septa_qemu::Images;
use septa_targets::qemu_virt as board;
use septa_tests::tamper::{
    development_key, edit_in_place, packages, reprovision, resign, stranger_key, write_packages,
};
use septa_tests::{Boot, default_images, scratch_copy};

/// Boots a copy of the default images after `tamper` changed them; the loader must refuse
/// with `message`.
fn refused(test: &str, tamper: impl FnOnce(&Images), message: &str) {
    let images = scratch_copy(&default_images(), test);
    tamper(&images);
    let outcome = Boot::new(images.clone()).run();
    outcome.expect(exit::BOOT_REFUSED, &[&format!("septa: loader: refusing to boot slot A: {message}")]);
    assert!(!outcome.console.contains("septa: monitor"), "monitor started:\n{}", outcome.console);
    let _ = std::fs::remove_dir_all(images.rom.parent().unwrap());
}

/// Index of the first package of `kind` in slot A.
fn index_of(images: &Images, kind: Kind) -> usize {
    packages(images).iter().position(|p| Package::parse(p).unwrap().header.kind == kind).unwrap()
}

/// Changes one package and composes the slot anew, its manifest signed by the OEM.
fn recompose(images: &Images, index: usize, change: impl FnOnce(&mut Vec<u8>)) {
    let mut all = packages(images);
    change(&mut all[index]);
    write_packages(images, &all);
}

#[test]
fn valid_packages_boot_every_app() {
    let count = packages(&default_images()).len();
    let mut qemu = Boot::new(default_images()).spawn();
    qemu.wait_for(&format!("septa: kernel: {} apps started", count - 2));
    let verified = format!("septa: loader: slot A: {count} packages verified and measured");
    assert!(qemu.console().contains(&verified), "{}", qemu.console());
}

#[test]
fn flipped_app_payload_byte_is_refused_by_the_kernel_and_the_app_never_runs() {
    let images = scratch_copy(&default_images(), "app-payload");
    let all = packages(&images);
    let app = index_of(&images, Kind::App);
    let name = septa_abi::app::parse_payload(Package::parse(&all[app]).unwrap().payload).unwrap().0.name;
    let name = name.to_string();
    edit_in_place(&images, app, |p| *p.last_mut().unwrap() ^= 1);
    let mut qemu = Boot::new(images.clone()).spawn();
    qemu.wait_for(&format!("septa: kernel: {} apps started", all.len() - 3));
    qemu.kill();
    let console = qemu.console();
    let refusal = format!(
        "septa: kernel: app package {app} refused: package: payload SHA-256 does not match the header"
    );
    assert!(console.contains(&refusal), "{console}");
    assert!(!console.contains(&format!("[{name}]")), "the altered app {name} ran:\n{console}");
    let _ = std::fs::remove_dir_all(images.rom.parent().unwrap());
}

#[test]
fn flipped_header_byte_is_refused() {
    refused(
        "header",
        |images| edit_in_place(images, 1, |p| p[24] ^= 0x02), // the kernel's security version
        "package 1 (kernel): its header is not the one the signed slot manifest lists (tampered header or signature)",
    );
}

#[test]
fn flipped_signature_byte_is_refused() {
    refused(
        "signature",
        |images| edit_in_place(images, 0, |p| p[HEADER_LEN - 1] ^= 0x80),
        "package 0 (monitor): its header is not the one the signed slot manifest lists (tampered header or signature)",
    );
}

#[test]
fn flipped_slot_manifest_byte_is_refused() {
    refused(
        "manifest",
        |images| {
            let mut flash = std::fs::read(&images.flash).unwrap();
            // The first byte of the kernel's entry in the manifest.
            flash[board::SLOT_A.base - board::FLASH1.base + septa_abi::slot::HEADER_LEN + 8 + 32] ^= 1;
            std::fs::write(&images.flash, flash).unwrap();
        },
        "the slot manifest's signature does not verify (tampered slot header or manifest)",
    );
}

#[test]
fn package_signed_by_another_key_is_refused() {
    let id: String = key_id(stranger_key().verifying_key()).iter().map(|b| format!("{b:02x}")).collect();
    refused(
        "other-key",
        |images| edit_in_place(images, 1, |p| *p = resign(p, &stranger_key(), |_| {})),
        &format!("package 1 (kernel): signed by an unknown key (key id {id})"),
    );
}

#[test]
fn slot_manifest_signed_by_another_key_is_refused() {
    let id: String = key_id(stranger_key().verifying_key()).iter().map(|b| format!("{b:02x}")).collect();
    refused(
        "other-manifest-key",
        |images| {
            let flash = septa_tool::image::compose_flash(&packages(images), &stranger_key()).unwrap();
            std::fs::write(&images.flash, flash).unwrap();
        },
        &format!("the slot manifest is signed by an unknown key (key id {id})"),
    );
}

#[test]
fn revoked_key_is_refused() {
    let id = key_id(development_key().verifying_key());
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    refused(
        "revoked",
        |images| reprovision(images, |fuses| fuses.revoked.push(id).unwrap()),
        &format!("the slot manifest is signed by a revoked key (key id {hex})"),
    );
}

#[test]
fn security_version_below_the_fuse_minimum_is_refused() {
    refused(
        "rollback",
        |images| {
            let kernel = septa_abi::package::KERNEL_COMPONENT_ID;
            reprovision(images, |fuses| fuses.minimum_versions.push((kernel, 2)).unwrap());
        },
        "package 1 (kernel): security version 1 is below the minimum 2 (rollback)",
    );
}

#[test]
fn a_newer_version_boots_when_the_minimum_rises() {
    let images = scratch_copy(&default_images(), "newer");
    let kernel = septa_abi::package::KERNEL_COMPONENT_ID;
    recompose(&images, 1, |p| *p = resign(p, &development_key(), |spec| spec.security_version = 2));
    reprovision(&images, |fuses| fuses.minimum_versions.push((kernel, 2)).unwrap());
    let count = packages(&images).len();
    let mut qemu = Boot::new(images.clone()).spawn();
    qemu.wait_for(&format!("septa: kernel: {} apps started", count - 2));
    let _ = std::fs::remove_dir_all(images.rom.parent().unwrap());
}

#[test]
fn kernel_larger_than_its_ram_region_is_refused_before_any_copy() {
    let len = board::KERNEL_RAM.size + 4096;
    refused(
        "too-large",
        |images| {
            recompose(images, 1, |p| *p = resign(p, &development_key(), |spec| spec.payload.resize(len, 0)))
        },
        &format!(
            "package 1 (kernel): payload of {len} bytes does not fit the {:#x}-byte region at {:#010x}",
            board::KERNEL_RAM.size,
            board::KERNEL_RAM.base
        ),
    );
}

#[test]
fn an_unprovisioned_device_boots_nothing() {
    refused(
        "unprovisioned",
        |images| {
            let mut rom = std::fs::read(&images.rom).unwrap();
            let at = board::FUSES.base - board::FLASH0.base;
            rom[at..at + board::FUSES.size].fill(0);
            std::fs::write(&images.rom, rom).unwrap();
        },
        "the fuse area is not provisioned (run `septa provision`)",
    );
}

#[test]
fn a_slot_holding_one_signed_app_twice_is_refused() {
    // The same signed package again: every signature and hash is valid, but two processes
    // would share one component id (one IPC badge, one storage identity).
    let all = packages(&default_images());
    let app = index_of(&default_images(), Kind::App);
    let message = format!(
        "package {}: its component id is also package {app}'s (a slot holds each component once)",
        all.len()
    );
    refused(
        "same-component",
        |images| {
            let mut all = packages(images);
            all.push(all[app].clone());
            write_packages(images, &all);
        },
        &message,
    );
}

#[test]
fn a_package_missing_from_the_slot_its_manifest_lists_is_refused() {
    // The last package erased in flash; the signed slot header still counts it.
    let last = packages(&default_images()).len() - 1;
    refused(
        "missing",
        |images| edit_in_place(images, last, |p| p.fill(0xff)),
        &format!("package {last}: bad magic (not a Septa package)"),
    );
}
