//! Compartments hold: every attack of the `attacker` app (one instance per attack, see
//! `xtask/src/variants.rs`) is refused with an error or ends only that app with a fault,
//! while `counter` keeps running and the kernel stays alive.

use septa_tests::{Boot, variant_images};

/// Fatal attacks and the fault each must produce.
const FAULTS: [(&str, &str); 10] = [
    ("kread", "faulted: data abort"),
    ("otherapp", "faulted: data abort"),
    ("secureram", "faulted: data abort"),
    ("bootrom", "faulted: data abort"),
    ("textwrite", "faulted: data abort"),
    ("stackexec", "faulted: prefetch abort"),
    ("dataexec", "faulted: prefetch abort"),
    ("kexec", "faulted: prefetch abort"),
    ("undef", "faulted: undefined instruction"),
    ("align", "faulted: data abort"),
];

#[test]
fn every_attack_is_refused_or_contained_and_the_others_keep_running() {
    let mut qemu = Boot::new(variant_images("isolation")).spawn();
    for (attack, _) in FAULTS {
        qemu.wait_for(&format!("septa: kernel: app a-{attack} faulted"));
    }
    qemu.wait_for("septa: kernel: app a-syscalls exited with status 0");
    let console = qemu.console();
    let last_count = console.lines().filter(|l| l.starts_with("[counter] count ")).count();
    qemu.wait_for(&format!("[counter] count {}", last_count + 2));
    let console = qemu.console();

    for (attack, fault) in FAULTS {
        let line =
            console.lines().find(|l| l.starts_with(&format!("septa: kernel: app a-{attack} "))).unwrap();
        assert!(line.contains(fault) && line.ends_with("; app ended"), "a-{attack}: {line}");
    }
    assert!(!console.contains("NOT BLOCKED"), "{console}");
    assert!(!console.contains("WRONG"), "{console}");
    assert!(console.contains("[a-syscalls] 9 of 9 syscall and mode attacks refused"), "{console}");
    for expected in [
        "refused: log(kernel address) -> EFAULT",
        "refused: log(unmapped address) -> EFAULT",
        "refused: log(wrapping range) -> EFAULT",
        "refused: log(range straddling into an unmapped page) -> EFAULT",
        "refused: info(read-only buffer) -> EFAULT",
        "refused: syscall 999 -> ENOSYS",
        "refused: cps/msr to svc -> still in user mode",
    ] {
        assert!(console.contains(expected), "missing {expected:?}:\n{console}");
    }
    // The faults are decoded: a kernel read is a permission fault, secure RAM is simply
    // not mapped for an app, an unaligned load is an alignment fault.
    let line =
        |attack: &str| console.lines().find(|l| l.contains(&format!("app a-{attack} faulted"))).unwrap();
    assert!(line("kread").contains("address 0x40100000 (permission fault"), "{}", line("kread"));
    assert!(line("secureram").contains("address 0x0e000000 (translation fault"), "{}", line("secureram"));
    assert!(line("textwrite").contains("permission fault (page), write"), "{}", line("textwrite"));
    assert!(line("align").contains("alignment fault"), "{}", line("align"));
    assert!(!console.contains("CRASH"), "{console}");
}

#[test]
fn a_restarted_app_sees_only_zeros_in_its_fresh_memory() {
    let mut qemu = Boot::new(variant_images("isolation")).spawn();
    // The first run fills its memory and ends; the next runs get frames back from the
    // allocator and must find none of it.
    qemu.wait_for("septa: supervisor: restarting a-residue in 200 ms (restart 2)");
    qemu.wait_for_nth("[a-residue] left 0x5ec2e7a5 in every word", 3);
    let console = qemu.console();
    let clean = console.matches("[a-residue] fresh memory: ").count();
    assert!(clean >= 3 && console.contains("of .bss and stack checked, all zero"), "{console}");
    assert!(!console.contains("[a-residue] WRONG"), "{console}");
}

#[test]
fn two_apps_cannot_pass_a_value_through_the_thread_id_register() {
    let mut qemu = Boot::new(variant_images("isolation")).spawn();
    qemu.wait_for("[a-tls-set] TPIDRURW kept its own value over 100 switches");
    qemu.wait_for("[a-tls-get] TPIDRURW read only zero over 100 switches");
    let console = qemu.console();
    assert!(!console.contains("[a-tls-set] WRONG") && !console.contains("[a-tls-get] WRONG"), "{console}");
}
