//! Test builds only (`--features probe`): tries, from the non-secure kernel, what the
//! TrustZone configuration must forbid, and reports what happened on the console.
//!
//! The test chooses the probe by writing a word at [`board::TEST_BOOT_ARG`] with QEMU's
//! `-device loader`:
//! 1. read secure RAM — must take a synchronous external abort (crash report);
//! 2. read secure flash 0 (the boot ROM and fuses) — likewise;
//! 3. SMC checks: an unknown function id must return `NOT_SUPPORTED`; then a system reset,
//!    and on the boot after it a system off;
//! 4. wait forever with interrupts masked (a kernel that never confirms an update: the secure
//!    watchdog must roll it back).

use crate::console::console;
use crate::monitor;
use core::fmt::Write;
use core::ptr::{read_volatile, write_volatile};
use septa_abi::smc;
use septa_targets::board;

const RESET_MARKER: u32 = 0x5e70_7a11;

pub fn run() {
    let mut out = console();
    // SAFETY: TEST_BOOT_ARG is the last page of non-secure RAM, unused by this kernel.
    let (arg, marker) = unsafe {
        (read_volatile(board::TEST_BOOT_ARG as *const u32), (board::TEST_BOOT_ARG + 4) as *mut u32)
    };
    match arg {
        1 => read_and_report(board::SECURE_RAM.base),
        2 => read_and_report(board::FLASH0.base),
        3 => {
            for function in [0xB200_0FFF, 0x1234_5678] {
                let [r0, ..] = monitor::call(function, [0; 3]);
                let _ = writeln!(out, "septa: probe: smc {function:#010x} returned {r0:#010x}");
            }
            let [r0, ..] = monitor::call(smc::SMCCC_VERSION, [0; 3]);
            let _ = writeln!(out, "septa: probe: SMCCC_VERSION returned {r0:#010x}");
            // SAFETY: the marker word is in the same unused page; QEMU keeps RAM across a
            // system reset, which is what lets the second boot see it.
            unsafe {
                if read_volatile(marker) != RESET_MARKER {
                    write_volatile(marker, RESET_MARKER);
                    let _ = writeln!(out, "septa: probe: requesting system reset");
                    monitor::call(smc::PSCI_SYSTEM_RESET, [0; 3]);
                } else {
                    write_volatile(marker, 0);
                    let _ = writeln!(out, "septa: probe: back after reset, requesting system off");
                    monitor::call(smc::PSCI_SYSTEM_OFF, [0; 3]);
                }
            }
        }
        4 => {
            // A deadlock: waiting, with interrupts masked, for one that never comes.
            let _ = writeln!(out, "septa: probe: hanging with interrupts masked");
            loop {
                septa_armv7::regs::wait_for_interrupt();
            }
        }
        other => {
            let _ = writeln!(out, "septa: probe: no probe {other:#x}");
        }
    }
}

fn read_and_report(address: usize) {
    let _ = writeln!(console(), "septa: probe: reading {address:#010x}");
    // SAFETY: deliberately unsound — this is the attack under test. If the address map is
    // right the read aborts and the crash report ends the boot.
    let value = unsafe { read_volatile(address as *const u32) };
    let _ = writeln!(console(), "septa: probe: read {address:#010x} = {value:#010x}, NOT blocked");
}
