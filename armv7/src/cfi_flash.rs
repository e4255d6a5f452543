//! A CFI parallel NOR flash with the Intel command set, as QEMU's `virt` board has: two
//! 16-bit devices side by side on a 32-bit bus, so every command is written to both halves
//! of a word.
//!
//! Reads come straight from the array. To erase a sector: `0x20` then `0xD0` at its start.
//! To program, a buffered write per write block: `0xE8`, the number of words less one, the
//! words, `0xD0` (one device operation for many words — QEMU also writes its backing file
//! once per buffer instead of once per word). After each, the status register is polled
//! until ready (bit 7) and its error bits (erase, program, voltage, lock) are checked. The
//! device goes back to read-array mode (`0xFF`) once per operation. While it is in a command mode the
//! flash answers every read with status, so nothing may execute from it meanwhile — the
//! callers run from RAM.

use core::ptr::{read_volatile, write_volatile};
use septa_abi::flash::{Error, Flash, check_erase, check_program};

const BOTH: u32 = 0x0001_0001;
const READ_ARRAY: u32 = 0xff * BOTH;
const CLEAR_STATUS: u32 = 0x50 * BOTH;
const BLOCK_ERASE: u32 = 0x20 * BOTH;
const CONFIRM: u32 = 0xd0 * BOTH;
const WRITE_TO_BUFFER: u32 = 0xe8 * BOTH;
const STATUS_READY: u32 = 0x80 * BOTH;
/// Erase, program, voltage and block-lock errors.
const STATUS_ERRORS: u32 = 0x3a * BOTH;

/// A CFI flash bank at a fixed physical address.
pub struct CfiFlash {
    base: usize,
    size: usize,
    sector: usize,
    /// Bytes one buffered write may program (a power of two, within one write block).
    buffer: usize,
}

impl CfiFlash {
    /// # Safety
    ///
    /// `base..base + size` must be a CFI flash bank (Intel command set, 32-bit bus) with
    /// `sector`-byte erase blocks and write buffers of at least `buffer` bytes, owned by the
    /// caller: nothing else may issue commands to it or execute from it while the value is
    /// used.
    pub const unsafe fn new(base: usize, size: usize, sector: usize, buffer: usize) -> CfiFlash {
        CfiFlash { base, size, sector, buffer }
    }

    fn command(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract: the bank is ours; `offset` was range-checked by the caller.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) };
    }

    /// Waits for the device and checks the status; after an error, clears it and returns
    /// to read-array mode.
    fn wait(&self, offset: usize) -> Result<(), Error> {
        let status = loop {
            // SAFETY: as in `command`; in a command mode every read returns the status.
            let status = unsafe { read_volatile((self.base + offset) as *const u32) };
            if status & STATUS_READY == STATUS_READY {
                break status;
            }
        };
        if status & STATUS_ERRORS != 0 {
            self.command(offset, CLEAR_STATUS);
            self.command(offset, READ_ARRAY);
            return Err(Error::Failed);
        }
        Ok(())
    }
}

impl Flash for CfiFlash {
    fn sector_size(&self) -> usize {
        self.sector
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        // SAFETY: the bank is mapped and reads as memory in read-array mode, which it is in
        // whenever no `&mut self` method runs.
        unsafe { crate::mapped::read(self.base, self.size, offset, out) }
    }

    fn slice(&self, offset: usize, len: usize) -> Result<&[u8], Error> {
        // SAFETY: as in `read`; the slice borrows `self`, so no erase or program runs while
        // it lives.
        unsafe { crate::mapped::slice(self.base, self.size, offset, len) }
    }

    fn erase(&mut self, offset: usize) -> Result<(), Error> {
        check_erase(offset, self.sector, self.size)?;
        self.command(offset, BLOCK_ERASE);
        self.command(offset, CONFIRM);
        self.wait(offset)?;
        self.command(offset, READ_ARRAY);
        Ok(())
    }

    fn program(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        check_program(offset, data.len(), self.size)?;
        let (mut at, mut rest) = (offset, data);
        while !rest.is_empty() {
            // One buffered write never crosses a buffer boundary.
            let (now, later) = rest.split_at((self.buffer - at % self.buffer).min(rest.len()));
            self.command(at, WRITE_TO_BUFFER);
            self.wait(at)?;
            self.command(at, (now.len() / 4 - 1) as u32 * BOTH);
            for (index, word) in now.chunks_exact(4).enumerate() {
                self.command(at + 4 * index, u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
            }
            self.command(at, CONFIRM);
            self.wait(at)?;
            (at, rest) = (at + now.len(), later);
        }
        self.command(offset, READ_ARRAY);
        Ok(())
    }
}
