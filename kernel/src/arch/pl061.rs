//! The ARM PL061 GPIO controller: `qemu-virt`'s [`GpioController`].
//!
//! A write to the data register at offset `pins << 2` changes only the pins in `pins`
//! (address masking), so setting one app's pins never disturbs another's.

use super::GpioController;
use super::mmu::device_va;
use septa_targets::board;

const GPIODIR: usize = 0x400;

/// The board's PL061.
pub struct Pl061;

impl GpioController for Pl061 {
    fn set(&self, pins: u32, values: u32) {
        let base = device_va(board::GPIO);
        // SAFETY: the PL061 lies in one of the board's device windows, mapped as device
        // memory by `mmu::enable`. GPIODIR only gains `pins` as outputs, and the masked data
        // write changes only `pins`.
        unsafe {
            let dir = (base + GPIODIR) as *mut u32;
            dir.write_volatile(dir.read_volatile() | pins);
            ((base + ((pins as usize) << 2)) as *mut u32).write_volatile(values & pins);
        }
    }
}
