//! Compartments: IPC between apps, capabilities that say no, GPIO through a pin capability,
//! and the supervisor restarting a crashing app while the others keep running.

use septa_tests::{Boot, Running, variant_images};

fn boot() -> Running {
    Boot::new(variant_images("compartments")).spawn()
}

#[test]
fn ping_and_pong_exchange_a_thousand_checked_messages() {
    let mut qemu = boot();
    qemu.wait_for("[ping] 1000 of 1000 round trips to pong checked");
    qemu.wait_for("septa: kernel: app ping exited with status 0");
}

#[test]
fn every_capability_check_refuses_and_changes_nothing() {
    let mut qemu = boot();
    qemu.wait_for("[prober] 18 of 18 capability checks refused");
    let console = qemu.console();
    for expected in [
        "refused: lookup(call, logger) not in call -> EACCES",
        "refused: lookup(serve, pong) not in serve -> EACCES",
        "refused: lookup(device, rtc) not granted -> EACCES",
        "refused: lookup(gpio) not granted -> EACCES",
        "refused: lookup(monitor) not granted -> EACCES",
        "refused: dma_pool without dma-kib -> EACCES",
        "refused: monitor_call(call handle) -> EACCES",
        "refused: call(closed handle) -> EACCES",
        "refused: call(out-of-range handle) -> EACCES",
        "refused: recv(call handle) serving pong -> EACCES",
        "refused: map_device(call handle) -> EACCES",
        "refused: irq_ack(call handle) -> EACCES",
        "refused: gpio_set(call handle) -> EACCES",
        "refused: call with a kernel reply buffer -> EFAULT",
        "[prober] pong still answers",
    ] {
        assert!(console.contains(expected), "missing {expected:?}:\n{console}");
    }
    assert!(!console.contains("WRONG"), "{console}");
}

#[test]
fn a_server_that_dies_wakes_its_caller_with_epipe() {
    let mut qemu = boot();
    qemu.wait_for("[prober] call to a dying server -> EPIPE");
    assert!(!qemu.console().contains("WRONG"), "{}", qemu.console());
}

#[test]
fn crasher_is_restarted_with_growing_delays_while_the_others_run() {
    let mut qemu = boot();
    qemu.wait_for("septa: supervisor: restarting crasher in 800 ms (restart 4)");
    let console = qemu.console();
    for delay in [(100, 1), (200, 2), (400, 3), (800, 4)] {
        let line = format!("septa: supervisor: restarting crasher in {} ms (restart {})", delay.0, delay.1);
        assert!(console.contains(&line), "missing {line:?}:\n{console}");
    }
    assert!(console.matches("app crasher faulted: data abort").count() >= 4, "{console}");
    // Between two restarts (700 ms and more) the others carry on.
    let third = console.find("(restart 3)").unwrap();
    let fourth = console.find("(restart 4)").unwrap();
    let between = &console[third..fourth];
    assert!(between.contains("[counter] count "), "counter stopped:\n{console}");
    assert!(between.contains("[logger] from 6b1c5d6e: blinky: pin 3"), "blinky stopped:\n{console}");
}

#[test]
fn blinky_drives_its_gpio_pin() {
    // Real time, so the 500 ms between toggles is wall time to read the pin in.
    let socket = std::env::temp_dir().join(format!("septa-gpio-{}.sock", std::process::id()));
    let mut qemu = Boot::new(variant_images("compartments")).real_time().with_monitor(socket.clone()).spawn();
    let mut readings = Vec::new();
    for (nth, state) in [(1, "on"), (1, "off"), (2, "on"), (2, "off")] {
        qemu.wait_for_nth(&format!("[logger] from 6b1c5d6e: blinky: pin 3 {state}"), nth);
        // The PL061 data register with all pins selected; pin 3 is bit 3.
        let reply = qemu.monitor("xp /1wx 0x090303fc");
        let value = reply.lines().find_map(|l| l.split(": ").nth(1)).unwrap_or_default().trim();
        let value =
            u32::from_str_radix(value.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{reply}"));
        readings.push((state, value & (1 << 3) != 0));
    }
    let _ = std::fs::remove_file(socket);
    assert_eq!(readings, [("on", true), ("off", false), ("on", true), ("off", false)]);
}

#[test]
fn a_driver_app_maps_its_device_and_gets_its_interrupts() {
    // Real time: QEMU's PL031 counts host seconds.
    let mut qemu = Boot::new(variant_images("compartments")).real_time().spawn();
    qemu.wait_for("septa: kernel: app clock exited with status 0");
    let console = qemu.console();
    let ticks: Vec<&str> =
        console.lines().filter(|l| l.starts_with("[clock] rtc interrupt (bits 0x")).collect();
    assert_eq!(ticks.len(), 3, "{console}");
    assert!(ticks.iter().all(|l| l.contains(" 1 s after ")), "{console}");
}
