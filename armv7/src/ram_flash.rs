//! RAM standing in for flash on a board without one (the Raspberry Pi 2B's boot payload):
//! the same [`Flash`] interface, so the journals work unchanged — but nothing survives a
//! power cycle.

use core::ptr::write_volatile;
use septa_abi::flash::{Error, Flash, check_erase, check_program};

pub struct RamFlash {
    base: usize,
    size: usize,
    sector: usize,
}

impl RamFlash {
    /// # Safety
    ///
    /// `base..base + size` must be RAM owned by the caller and used for nothing else while
    /// the value lives.
    pub const unsafe fn new(base: usize, size: usize, sector: usize) -> RamFlash {
        RamFlash { base, size, sector }
    }
}

impl Flash for RamFlash {
    fn sector_size(&self) -> usize {
        self.sector
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        // SAFETY: the caller's RAM (`new`).
        unsafe { crate::mapped::read(self.base, self.size, offset, out) }
    }

    fn slice(&self, offset: usize, len: usize) -> Result<&[u8], Error> {
        // SAFETY: as in `read`; the slice borrows `self`, so nothing writes it meanwhile.
        unsafe { crate::mapped::slice(self.base, self.size, offset, len) }
    }

    fn erase(&mut self, offset: usize) -> Result<(), Error> {
        check_erase(offset, self.sector, self.size)?;
        for at in (offset..offset + self.sector).step_by(4) {
            // SAFETY: as in `read`.
            unsafe { write_volatile((self.base + at) as *mut u32, u32::MAX) };
        }
        Ok(())
    }

    fn program(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        check_program(offset, data.len(), self.size)?;
        for (index, word) in data.chunks_exact(4).enumerate() {
            let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            // SAFETY: as in `read`.
            unsafe { write_volatile((self.base + offset + 4 * index) as *mut u32, value) };
        }
        Ok(())
    }
}
