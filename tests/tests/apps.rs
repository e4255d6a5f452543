//! Apps in user mode: the default image's `hello`, `counter` and `spinner`.

use septa_tests::{Boot, variant_images};

#[test]
fn hello_runs_in_user_mode_and_exits_with_zero() {
    let mut qemu = Boot::new(variant_images("core")).spawn();
    qemu.wait_for("septa: kernel: app hello exited with status 0");
    let console = qemu.console();
    assert!(console.contains("septa: kernel: 3 apps started"), "{console}");
    let hello = console.lines().find(|l| l.starts_with("[hello] ")).unwrap_or_else(|| panic!("{console}"));
    assert!(hello.starts_with("[hello] hello from hello (pid "), "{hello}");
}

#[test]
fn counter_keeps_counting_while_spinner_spins() {
    let mut qemu = Boot::new(variant_images("core")).spawn();
    qemu.wait_for("[spinner] still spinning (round 1)");
    qemu.wait_for("[counter] count 4");
    let console = qemu.console();
    // The spinner never blocks, so every count after it started proves preemption.
    let spinning = console.find("[spinner] still spinning (round 1)").unwrap();
    let later_count = console.find("[counter] count 4").unwrap();
    assert!(spinning < later_count, "counter stopped once spinner ran:\n{console}");
    assert!(!console.contains("faulted"), "{console}");
}
