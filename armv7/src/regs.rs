//! CP15 system registers and the CPSR, one small function each.
//!
//! Reads are safe: they have no side effects. Writes are `unsafe fn`s because a wrong value
//! (a vector base, a security configuration, a translation table) can break every guarantee
//! the stage relies on; each caller states why its value is right.

use core::arch::asm;

macro_rules! cp15_register {
    ($(#[$doc:meta])* $read:ident, $write:ident, $op1:literal, $crn:literal, $crm:literal, $op2:literal) => {
        $(#[$doc])*
        #[inline(always)]
        pub fn $read() -> u32 {
            let value: u32;
            // SAFETY: an MRC of this register has no side effects and is permitted at the
            // privilege level every stage runs at.
            unsafe {
                asm!(concat!("mrc p15, ", $op1, ", {}, ", $crn, ", ", $crm, ", ", $op2),
                     out(reg) value, options(nomem, nostack, preserves_flags));
            }
            value
        }

        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The caller guarantees the value keeps the system in a state the running code
        /// relies on, and adds whatever barrier the architecture requires after it.
        #[inline(always)]
        #[allow(dead_code)]
        pub unsafe fn $write(value: u32) {
            // SAFETY: delegated to the caller, see `# Safety`.
            unsafe {
                asm!(concat!("mcr p15, ", $op1, ", {}, ", $crn, ", ", $crm, ", ", $op2),
                     in(reg) value, options(nostack, preserves_flags));
            }
        }
    };
}

cp15_register!(/// System Control Register.
    read_sctlr, write_sctlr, "0", "c1", "c0", "0");
cp15_register!(/// Secure Configuration Register (secure PL1 only).
    read_scr, write_scr, "0", "c1", "c1", "0");
cp15_register!(/// Non-Secure Access Control Register.
    read_nsacr, write_nsacr, "0", "c1", "c1", "2");
cp15_register!(/// Vector Base Address Register of the current security state.
    read_vbar, write_vbar, "0", "c12", "c0", "0");
cp15_register!(/// Monitor Vector Base Address Register (secure PL1 only).
    read_mvbar, write_mvbar, "0", "c12", "c0", "1");
cp15_register!(/// Data Fault Status Register.
    read_dfsr, write_dfsr, "0", "c5", "c0", "0");
cp15_register!(/// Instruction Fault Status Register.
    read_ifsr, write_ifsr, "0", "c5", "c0", "1");
cp15_register!(/// Data Fault Address Register.
    read_dfar, write_dfar, "0", "c6", "c0", "0");
cp15_register!(/// Instruction Fault Address Register.
    read_ifar, write_ifar, "0", "c6", "c0", "2");

/// The current program status register.
#[inline(always)]
pub fn read_cpsr() -> u32 {
    let value: u32;
    // SAFETY: reading the CPSR has no side effects.
    unsafe { asm!("mrs {}, cpsr", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Waits for an interrupt; returns when one is pending (even if masked).
#[inline(always)]
pub fn wait_for_interrupt() {
    // SAFETY: WFI only pauses the core until an event; it changes no state.
    unsafe { asm!("dsb", "wfi", options(nomem, nostack, preserves_flags)) };
}

/// Instruction synchronization barrier, after a system register write.
#[inline(always)]
pub fn isb() {
    // SAFETY: a barrier changes no architectural state.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
}
