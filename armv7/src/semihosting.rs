//! ARM semihosting `SYS_EXIT_EXTENDED`: how a secure stage hands an exit status to QEMU.
//!
//! QEMU (`-semihosting-config enable=on,target=native`) traps `svc 0x123456` from a
//! privileged A32 mode and exits the emulator with the given status. Without semihosting the
//! `svc` is an ordinary supervisor call, so the caller's SVC vector must be one that never
//! returns: every stage that uses this installs crash vectors first.

use core::arch::asm;

const SYS_EXIT_EXTENDED: u32 = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: u32 = 0x2_0026;

/// Ends the emulation with `status`. If the host does not implement semihosting, the core
/// stops here in a low-power loop.
pub fn exit(status: u32) -> ! {
    // The parameter block must be in RAM: it lives on the caller's stack.
    let block = [ADP_STOPPED_APPLICATION_EXIT, status];
    // SAFETY: the semihosting call reads the two-word block, which is valid for the whole
    // call, and writes nothing but r0.
    unsafe {
        asm!("svc 0x123456",
             inout("r0") SYS_EXIT_EXTENDED => _,
             in("r1") block.as_ptr(),
             options(nostack, readonly));
    }
    loop {
        crate::regs::wait_for_interrupt();
    }
}
