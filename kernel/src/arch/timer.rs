//! The tick: the non-secure physical generic timer, firing every [`TICK_MS`].

use septa_armv7::regs;

pub use septa_kernel::machine::TICK_MS;

/// Counter ticks per second.
pub fn frequency() -> u64 {
    regs::read_cntfrq() as u64
}

/// The counter now.
pub fn now() -> u64 {
    regs::read_cntpct()
}

/// Counter ticks in `ms` milliseconds.
pub fn ms_to_ticks(ms: u64) -> u64 {
    ms * frequency() / 1000
}

/// Arms the timer to fire one tick from now, with its interrupt unmasked.
pub fn arm() {
    let ticks = ms_to_ticks(TICK_MS) as u32;
    // SAFETY: programming the non-secure physical timer only schedules its interrupt.
    unsafe {
        regs::write_cntp_tval(ticks);
        regs::write_cntp_ctl(1);
    }
}
