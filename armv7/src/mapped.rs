//! Reading a flash bank (or the RAM standing in for one) that is mapped into the address
//! space — shared by the [`crate::cfi_flash`] and [`crate::ram_flash`] drivers.

use core::ptr::read_volatile;
use septa_abi::flash::{Error, check_range};

/// Reads `out.len()` bytes at `offset` of the `size`-byte mapping at `base`.
///
/// # Safety
///
/// `base..base + size` must be mapped and readable as memory.
pub unsafe fn read(base: usize, size: usize, offset: usize, out: &mut [u8]) -> Result<(), Error> {
    check_range(offset, out.len(), size)?;
    for (index, byte) in out.iter_mut().enumerate() {
        // SAFETY: inside the mapping (the caller's contract), range checked above. Byte
        // reads through a raw pointer: a bank may start at address 0, where no Rust
        // reference may point.
        *byte = unsafe { read_volatile((base + offset + index) as *const u8) };
    }
    Ok(())
}

/// The `len` bytes at `offset` of the `size`-byte mapping at `base`, in place.
///
/// # Safety
///
/// As for [`read`], and nothing may write the range while the slice lives.
pub unsafe fn slice<'a>(base: usize, size: usize, offset: usize, len: usize) -> Result<&'a [u8], Error> {
    check_range(offset, len, size)?;
    if base + offset == 0 {
        // No Rust slice may start at address 0.
        return Err(Error::OutOfRange);
    }
    // SAFETY: inside the mapping, range checked, not at address 0; the caller keeps writers
    // away while the slice lives.
    Ok(unsafe { core::slice::from_raw_parts((base + offset) as *const u8, len) })
}
