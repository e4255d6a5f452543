//! Copies of physical memory for the kernel's [`Machine`](septa_kernel::machine::Machine):
//! data whose two ends lie at the same place within a word moves sixteen bytes per
//! `ldm`/`stm` pair, two pairs a loop turn, about seven times fewer instructions than
//! `compiler_builtins`' `memcpy`, which moves one word per loop turn on this target. IPC
//! messages in memory and the requests and responses of monitor calls are copied this way;
//! the bytes before the first whole word, the tail, and ranges that lie differently within a
//! word go through `memcpy`.

/// Copies `len` bytes from `from` to `to`.
///
/// # Safety
///
/// Both ranges are valid for `len` bytes and do not overlap.
#[inline(always)] // a few instructions around the loop; small copies pay nothing for it
pub unsafe fn copy(from: *const u8, to: *mut u8, len: usize) {
    if len < 16 || !(from as usize ^ to as usize).is_multiple_of(4) {
        // SAFETY: both ranges valid and not overlapping, as the caller promised.
        unsafe { core::ptr::copy_nonoverlapping(from, to, len) };
        return;
    }
    if !(from as usize).is_multiple_of(4) {
        // SAFETY: as the caller promised; both lie at the same place within a word.
        unsafe { copy_from_word(from, to, len) };
        return;
    }
    let whole = len & !15;
    // SAFETY: both ranges are valid for `whole <= len` bytes and do not overlap (the
    // caller's promise); both are word-aligned (checked above), as `ldm`/`stm` need. `whole`
    // is a multiple of 16: the loop moves 32 bytes a turn while at least 32 are left, then
    // 16 if bit 4 of what is left says so. The asm touches no memory but these ranges, no
    // stack, and names every register it changes.
    unsafe {
        core::arch::asm!(
            "subs {left}, {left}, #32",
            "blo 2f",
            "1:",
            "ldmia {from}!, {{r3, r4, r5, r8}}",
            "stmia {to}!, {{r3, r4, r5, r8}}",
            "ldmia {from}!, {{r3, r4, r5, r8}}",
            "stmia {to}!, {{r3, r4, r5, r8}}",
            "subs {left}, {left}, #32",
            "bhs 1b",
            "2:",
            // `left` is what is left less 32, so its bit 4 is that of what is left.
            "tst {left}, #16",
            "ldmiane {from}!, {{r3, r4, r5, r8}}",
            "stmiane {to}!, {{r3, r4, r5, r8}}",
            from = inout(reg) from => _,
            to = inout(reg) to => _,
            left = inout(reg) whole => _,
            out("r3") _, out("r4") _, out("r5") _, out("r8") _,
            options(nostack),
        );
    }
    if whole < len {
        // SAFETY: the rest of both ranges, valid and not overlapping as the caller promised.
        unsafe { core::ptr::copy_nonoverlapping(from.add(whole), to.add(whole), len - whole) };
    }
}

/// [`copy`] of ranges that start at the same place inside a word: the bytes up to the next
/// word, then the rest from there. Out of line: IPC messages and buffers are mostly aligned.
///
/// # Safety
///
/// Both ranges are valid for `len` bytes (at least 16), do not overlap, and
/// `from % 4 == to % 4`.
#[cold]
#[inline(never)]
unsafe fn copy_from_word(from: *const u8, to: *mut u8, len: usize) {
    let lead = (from as usize).wrapping_neg() % 4;
    // SAFETY: `lead < 4 <= len` bytes of both ranges, valid and not overlapping; what follows
    // starts word-aligned on both sides.
    unsafe {
        core::ptr::copy_nonoverlapping(from, to, lead);
        copy(from.add(lead), to.add(lead), len - lead);
    }
}
