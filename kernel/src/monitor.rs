//! The kernel's side of the SMC Calling Convention: the one path to the security monitor.

use septa_abi::smc;

/// Issues `smc #0` with a function id and three arguments; returns r0–r3.
pub fn call(function: u32, args: [u32; 3]) -> [u32; 4] {
    let (mut r0, mut r1, mut r2, mut r3) = (function, args[0], args[1], args[2]);
    // SAFETY: the monitor preserves every register but r0–r3 (SMCCC). The only normal-world
    // memory it touches is the shared page (board::MONITOR_SHARED), which it reads and
    // writes: the kernel holds that page as its one `SharedPage` and makes no Rust
    // reference to it across this call but through that token (`Machine::smc` borrows it).
    // No other memory of the kernel's changes, so the asm may claim nothing else.
    unsafe {
        core::arch::asm!(".arch_extension sec", "smc #0",
            inout("r0") r0, inout("r1") r1, inout("r2") r2, inout("r3") r3,
            options(nostack));
    }
    [r0, r1, r2, r3]
}

/// The monitor's version and the world it says the caller runs in.
pub fn version() -> (u32, u32) {
    let [version, world, ..] = call(smc::MONITOR_VERSION, [0; 3]);
    (version, world)
}

/// Asks the monitor to power off with `status`; never returns.
pub fn power_off(status: u32) -> ! {
    call(smc::POWER_OFF, [status, 0, 0]);
    // The monitor does not return from POWER_OFF; should it ever, stay down.
    loop {
        septa_armv7::regs::wait_for_interrupt();
    }
}
