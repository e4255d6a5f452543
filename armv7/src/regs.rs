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
cp15_register!(/// Auxiliary Control Register (Cortex-A7: bit 6 is SMP, coherency).
    read_actlr, write_actlr, "0", "c1", "c0", "1");
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

cp15_register!(/// Translation Table Base Register 0 (the current process).
    read_ttbr0, write_ttbr0, "0", "c2", "c0", "0");
cp15_register!(/// Translation Table Base Register 1 (the kernel).
    read_ttbr1, write_ttbr1, "0", "c2", "c0", "1");
cp15_register!(/// Translation Table Base Control Register.
    read_ttbcr, write_ttbcr, "0", "c2", "c0", "2");
cp15_register!(/// Domain Access Control Register.
    read_dacr, write_dacr, "0", "c3", "c0", "0");
cp15_register!(/// Context ID Register: the ASID of the running process.
    read_contextidr, write_contextidr, "0", "c13", "c0", "1");
cp15_register!(/// Counter-timer frequency.
    read_cntfrq, write_cntfrq, "0", "c14", "c0", "0");
cp15_register!(/// Physical timer of the current security state: timer value (down-counter).
    read_cntp_tval, write_cntp_tval, "0", "c14", "c2", "0");
cp15_register!(/// Physical timer of the current security state: control.
    read_cntp_ctl, write_cntp_ctl, "0", "c14", "c2", "1");

macro_rules! cp15_operation {
    ($(#[$doc:meta])* $name:ident, $op1:literal, $crn:literal, $crm:literal, $op2:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The caller guarantees the operation is what the surrounding code expects
        /// (TLB and cache maintenance change what later accesses see).
        #[inline(always)]
        pub unsafe fn $name(value: u32) {
            // SAFETY: delegated to the caller, see `# Safety`.
            unsafe {
                asm!(concat!("mcr p15, ", $op1, ", {}, ", $crn, ", ", $crm, ", ", $op2),
                     in(reg) value, options(nostack, preserves_flags));
            }
        }
    };
}

cp15_operation!(/// Invalidates the whole unified TLB.
    tlbiall, "0", "c8", "c7", "0");
cp15_operation!(/// Invalidates the TLB entries of one ASID.
    tlbiasid, "0", "c8", "c7", "2");
cp15_operation!(/// Invalidates the whole instruction cache to the point of unification.
    iciallu, "0", "c7", "c5", "0");
cp15_operation!(/// Invalidates the branch predictor.
    bpiall, "0", "c7", "c5", "6");
cp15_operation!(/// Cleans one data-cache line by address to the point of unification.
    dccmvau, "0", "c7", "c11", "1");

/// The physical counter (CNTPCT).
#[inline(always)]
pub fn read_cntpct() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: reading the counter has no side effects.
    unsafe {
        asm!("isb", "mrrc p15, 0, {}, {}, c14", out(reg) low, out(reg) high, options(nomem, nostack, preserves_flags))
    };
    ((high as u64) << 32) | low as u64
}

/// Data synchronization barrier.
#[inline(always)]
pub fn dsb() {
    // SAFETY: a barrier changes no architectural state.
    unsafe { asm!("dsb", options(nostack, preserves_flags)) };
}

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
