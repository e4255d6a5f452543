//! The dev kit's hardware as the monitor drives it: the boot payload's RAM instead of
//! flash, the BCM2836 local interrupt controller for the watchdog's FIQ, and the BCM2835
//! power-management watchdog for resets. (Entropy is in `entropy`.)

use core::ptr::{read_volatile, write_volatile};
use septa_armv7::ram_flash::RamFlash;
use septa_armv7::regs;
use septa_targets::board;

/// The flash type of this board: RAM that does not survive a power cycle.
pub type Flash = RamFlash;

/// Core 0's timer interrupt control and FIQ source registers.
const CORE0_TIMER_CONTROL: usize = 0x40;
const CORE0_FIQ_SOURCE: usize = 0x70;
/// The secure physical timer: its FIQ enable, and its bit in the FIQ source register.
const SECURE_TIMER_FIQ: u32 = 1 << 4;
const SECURE_TIMER: u32 = 1 << 0;
const PM_RSTC: usize = 0x1c;
const PM_WDOG: usize = 0x24;
const PM_PASSWORD: u32 = 0x5a00_0000;
const PM_RSTC_FULL_RESET: u32 = 0x20;

pub const fn flash0() -> Flash {
    // SAFETY: FLASH0 is the boot payload's fuse and boot-state RAM; after the loader only the
    // monitor uses it (the kernel does not map it).
    unsafe { RamFlash::new(board::FLASH0.base, board::FLASH0.size, board::FLASH_SECTOR) }
}

pub const fn flash1() -> Flash {
    // SAFETY: FLASH1 is the slot, staging, storage and report RAM; the monitor is its only
    // writer (the kernel maps it read-only).
    unsafe { RamFlash::new(board::FLASH1.base, board::FLASH1.size, board::FLASH_SECTOR) }
}

/// Nothing to do: the BCM2836 has no interrupt security; every interrupt but the watchdog's
/// FIQ reaches the normal world, which programs the controller itself.
pub fn give_interrupts_to_normal_world() {}

/// The Pi 2 has no battery-backed real-time clock: no wall-clock time.
pub fn wall_clock() -> Option<u64> {
    None
}

/// Routes the secure timer to core 0 as an FIQ.
pub fn route_watchdog_to_monitor() {
    let control = (board::LOCAL_INTC + CORE0_TIMER_CONTROL) as *mut u32;
    // SAFETY: LOCAL_INTC is the board's local interrupt controller; this only adds the
    // secure timer's FIQ enable.
    unsafe { write_volatile(control, read_volatile(control) | SECURE_TIMER_FIQ) };
}

/// An FIQ source.
#[derive(Clone, Copy)]
pub struct Fiq(u32);

impl Fiq {
    pub fn is_watchdog(self) -> bool {
        self.0 & SECURE_TIMER != 0
    }
}

pub fn acknowledge_fiq() -> Option<Fiq> {
    // SAFETY: reading core 0's FIQ source register has no side effect.
    let source = unsafe { read_volatile((board::LOCAL_INTC + CORE0_FIQ_SOURCE) as *const u32) };
    (source != 0).then_some(Fiq(source))
}

/// Nothing to acknowledge: the timer's line drops when the caller disarms it.
pub fn end_fiq(_: Fiq) {}

/// Resets the board through the power-management watchdog, which fires almost at once.
pub fn reset() -> ! {
    let register = |offset: usize| (board::POWER_MANAGEMENT + offset) as *mut u32;
    // SAFETY: POWER_MANAGEMENT is the board's BCM2835 power-management block; the password
    // makes the writes take effect: a short watchdog, then a full reset when it expires.
    unsafe {
        write_volatile(register(PM_WDOG), PM_PASSWORD | 10);
        let rstc = read_volatile(register(PM_RSTC));
        write_volatile(register(PM_RSTC), PM_PASSWORD | (rstc & !0x30) | PM_RSTC_FULL_RESET);
    }
    loop {
        regs::wait_for_interrupt();
    }
}
