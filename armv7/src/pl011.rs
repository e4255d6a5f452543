//! A transmit-only PL011 UART driver: the console every stage prints on.
//!
//! Polling, no interrupts, no buffering: the console is for boot lines, logs and crash
//! reports, and a crash report must get out even when nothing else works.

use core::fmt;
use core::ptr::{read_volatile, write_volatile};

const DR: usize = 0x00;
const FR: usize = 0x18;
const CR: usize = 0x30;
const FR_TXFF: u32 = 1 << 5;
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;

/// A PL011 at a fixed (physical or virtual) address.
#[derive(Clone, Copy)]
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// # Safety
    ///
    /// `base` must be the address of a PL011's registers, mapped as device memory, for as
    /// long as the value is used.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    /// Enables the UART and its transmitter (the baud rate is left as firmware set it).
    pub fn enable(&self) {
        // SAFETY: `new`'s contract says `base` is a mapped PL011; CR is one of its registers.
        unsafe { write_volatile((self.base + CR) as *mut u32, CR_UARTEN | CR_TXE | CR_RXE) };
    }

    pub fn write_byte(&self, byte: u8) {
        // SAFETY: as in `enable`; FR and DR are PL011 registers, accessed as 32-bit words.
        unsafe {
            while read_volatile((self.base + FR) as *const u32) & FR_TXFF != 0 {}
            write_volatile((self.base + DR) as *mut u32, byte as u32);
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}
