//! Copies of physical memory for the kernel's [`Machine`](septa_kernel::machine::Machine):
//! word-aligned data moves sixteen bytes per `ldm`/`stm` pair, about six times fewer
//! instructions than `compiler_builtins`' `memcpy`, which moves one word per loop turn on
//! this target. IPC messages in memory and the requests and responses of monitor calls are
//! copied this way; whatever is not word-aligned, and the tail, goes through `memcpy`.

/// Copies `len` bytes from `from` to `to`.
///
/// # Safety
///
/// Both ranges are valid for `len` bytes and do not overlap.
#[inline(always)] // a few instructions around the loop; small copies pay nothing for it
pub unsafe fn copy(from: *const u8, to: *mut u8, len: usize) {
    let blocks = len / 16;
    if blocks == 0 || !(from as usize | to as usize).is_multiple_of(4) {
        // SAFETY: both ranges valid and not overlapping, as the caller promised.
        unsafe { core::ptr::copy_nonoverlapping(from, to, len) };
        return;
    }
    // SAFETY: both ranges are valid for `blocks * 16 <= len` bytes and do not overlap (the
    // caller's promise); both start word-aligned, as `ldm`/`stm` need. The asm touches no
    // memory but these ranges, no stack, and names every register it changes.
    unsafe {
        core::arch::asm!(
            "1:",
            "ldmia {from}!, {{r3, r4, r5, r8}}",
            "stmia {to}!, {{r3, r4, r5, r8}}",
            "subs {blocks}, {blocks}, #1",
            "bne 1b",
            from = inout(reg) from => _,
            to = inout(reg) to => _,
            blocks = inout(reg) blocks => _,
            out("r3") _, out("r4") _, out("r5") _, out("r8") _,
            options(nostack),
        );
    }
    let done = len - len % 16;
    if done < len {
        // SAFETY: the rest of both ranges, valid and not overlapping as the caller promised.
        unsafe { core::ptr::copy_nonoverlapping(from.add(done), to.add(done), len - done) };
    }
}
