//! Apps in user mode: the default image's `hello`, `counter` and `spinner`; what the kernel
//! holds every app to — its CPU budget and the console's rate limit (`limits` image).

use septa_tests::{Boot, scratch_copy, variant_images, verify_report_ring};

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

/// The spinner's uptime at each `still spinning (round N) at T ms` line.
fn spinner_rounds(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|l| l.strip_prefix("[spinner] still spinning (round "))
        .filter_map(|l| l.split(" at ").nth(1)?.strip_suffix(" ms")?.parse().ok())
        .collect()
}

#[test]
fn a_spinning_urgent_app_is_throttled_to_its_budget_and_reported() {
    // With the default budget (50 ms per 100 ms, core image) the spinner's rounds come at
    // some pace; with 20 ms per 100 ms they must take 2.5 times as long, and `counter`, less
    // urgent, keeps its 500 ms rate.
    let half = {
        let mut qemu = Boot::new(variant_images("core")).spawn();
        qemu.wait_for("[spinner] still spinning (round 3)");
        spinner_rounds(&qemu.console())
    };
    let images = scratch_copy(&variant_images("limits"), "budget");
    let mut qemu = Boot::new(images.clone()).persistent().spawn();
    qemu.wait_for("[spinner] still spinning (round 3)");
    qemu.kill();
    let console = qemu.console();
    assert!(
        console.contains(
            "septa: kernel: app spinner overran its CPU budget (20 ms per 100 ms); throttled until its next period"
        ),
        "{console}"
    );
    let throttled = spinner_rounds(&console);
    let round = |rounds: &[u64]| rounds[2] - rounds[1];
    let ratio = round(&throttled) as f64 / round(&half) as f64;
    assert!((2.0..=3.2).contains(&ratio), "at half {half:?}, throttled {throttled:?}:\n{console}");
    // Counter logs every 500 ms: between rounds 1 and 3 of the spinner it kept that rate.
    let counts = console.lines().filter(|l| l.starts_with("[counter] count ")).count() as u64;
    let expected = throttled[2] / 500;
    assert!(counts + 1 >= expected, "{counts} counts in {} ms:\n{console}", throttled[2]);
    // The overrun is a signed record in the report ring.
    let (ok, report) = verify_report_ring(&images);
    assert!(ok && report.contains("spinner") && report.contains("cpu budget overrun"), "{report}");
    let _ = std::fs::remove_dir_all(images.rom.parent().unwrap());
}

#[test]
fn a_console_flood_is_limited_and_the_dropped_lines_are_counted() {
    let mut qemu = Boot::new(variant_images("limits")).spawn();
    qemu.wait_for("[a-flood] flood over: ");
    let console = qemu.console();
    let printed = console.lines().filter(|l| l.starts_with("[a-flood] flood line ")).count();
    // A burst of 40 lines, then one per 100 ms: the loop takes a few ms.
    assert!((40..=42).contains(&printed), "{printed} lines printed:\n{console}");
    let dropped = 1000 - printed;
    let note = format!(
        "septa: kernel: app a-flood: {dropped} log lines dropped (rate limit: 40 lines, then one per 100 ms)"
    );
    assert!(console.contains(&note), "missing {note:?}:\n{console}");
    assert!(console.contains(&format!("[a-flood] flood over: {dropped} of 1000 lines refused with EBUSY")));
    // The others still get their lines out.
    let flood = console.find(&note).unwrap();
    qemu.wait_for_nth("[counter] count ", console.matches("[counter] count ").count() + 1);
    assert!(qemu.console()[flood..].contains("[counter] count "), "{}", qemu.console());
}
