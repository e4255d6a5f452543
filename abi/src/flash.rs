//! Flash as the secure world drives it: read anywhere, erase whole sectors, program erased
//! words.
//!
//! The device driver (a CFI parallel flash on `qemu-virt`) and the in-memory flash of the
//! host tools and tests implement the same [`Flash`] trait, so the journal, the boot state,
//! app storage and the report ring run unchanged in host unit tests — including tests that
//! cut the power after every single word.

use core::fmt;

/// Why a flash operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The range lies outside the flash.
    OutOfRange,
    /// Programming needs word-aligned offsets and lengths; erasing a sector start.
    Misaligned,
    /// The device reported an error (or, in tests, the power was cut).
    Failed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::OutOfRange => "flash range out of bounds",
            Error::Misaligned => "misaligned flash operation",
            Error::Failed => "the flash device reported an error",
        })
    }
}

/// A flash device. Offsets are relative to its start.
pub trait Flash {
    /// Bytes per erase sector.
    fn sector_size(&self) -> usize;
    /// Reads `out.len()` bytes at `offset`.
    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error>;
    /// The `len` bytes at `offset` in place (memory-mapped flash), borrowed so nothing can
    /// erase or program the flash meanwhile.
    fn slice(&self, offset: usize, len: usize) -> Result<&[u8], Error>;
    /// Sets the sector starting at `offset` to 0xff.
    fn erase(&mut self, offset: usize) -> Result<(), Error>;
    /// Programs `data` at `offset` (both multiples of 4) into erased flash.
    fn program(&mut self, offset: usize, data: &[u8]) -> Result<(), Error>;
}

/// Checks an erase: `offset` is the start of a `sector`-byte sector inside `size` bytes.
pub fn check_erase(offset: usize, sector: usize, size: usize) -> Result<(), Error> {
    check_range(offset, sector, size)?;
    if !offset.is_multiple_of(sector) {
        return Err(Error::Misaligned);
    }
    Ok(())
}

/// Checks a program: `len` bytes at `offset` inside `size` bytes, both multiples of 4.
pub fn check_program(offset: usize, len: usize, size: usize) -> Result<(), Error> {
    check_range(offset, len, size)?;
    if !offset.is_multiple_of(4) || !len.is_multiple_of(4) {
        return Err(Error::Misaligned);
    }
    Ok(())
}

/// Checks that `len` bytes at `offset` lie in a flash of `size` bytes.
pub fn check_range(offset: usize, len: usize, size: usize) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange),
    }
}

/// Flash in memory, for the host tools (reading flash image files) and for tests, which can
/// cut the power after a number of programmed words or erased sectors.
#[cfg(any(test, feature = "alloc"))]
pub struct MemFlash {
    pub bytes: alloc::vec::Vec<u8>,
    sector: usize,
    /// Words and sectors that may still be written before the power is cut.
    pub budget: Option<usize>,
}

#[cfg(any(test, feature = "alloc"))]
impl MemFlash {
    pub fn new(bytes: alloc::vec::Vec<u8>, sector: usize) -> MemFlash {
        MemFlash { bytes, sector, budget: None }
    }

    /// A blank (all 0xff) flash of `sectors` sectors.
    pub fn blank(sectors: usize, sector: usize) -> MemFlash {
        MemFlash::new(alloc::vec![0xff; sectors * sector], sector)
    }

    fn spend(&mut self) -> Result<(), Error> {
        match &mut self.budget {
            Some(0) => Err(Error::Failed),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(any(test, feature = "alloc"))]
impl Flash for MemFlash {
    fn sector_size(&self) -> usize {
        self.sector
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        check_range(offset, out.len(), self.bytes.len())?;
        out.copy_from_slice(&self.bytes[offset..offset + out.len()]);
        Ok(())
    }

    fn slice(&self, offset: usize, len: usize) -> Result<&[u8], Error> {
        check_range(offset, len, self.bytes.len())?;
        Ok(&self.bytes[offset..offset + len])
    }

    fn erase(&mut self, offset: usize) -> Result<(), Error> {
        check_erase(offset, self.sector, self.bytes.len())?;
        self.spend()?;
        self.bytes[offset..offset + self.sector].fill(0xff);
        Ok(())
    }

    fn program(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        check_program(offset, data.len(), self.bytes.len())?;
        for (index, word) in data.chunks(4).enumerate() {
            self.spend()?;
            let at = offset + 4 * index;
            // Programming only clears bits, as on real NOR flash.
            for (cell, byte) in self.bytes[at..at + 4].iter_mut().zip(word) {
                *cell &= byte;
            }
        }
        Ok(())
    }
}
