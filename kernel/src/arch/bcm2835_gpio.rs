//! The BCM2835 GPIO controller: the dev kit's [`GpioController`]. Each pin has a 3-bit
//! function field (output = 1); set and clear registers change only the pins written as 1.

use super::GpioController;
use super::mmu::device_va;
use core::ptr::{read_volatile, write_volatile};
use septa_targets::board;

const GPFSEL0: usize = 0x00;
const GPSET0: usize = 0x1c;
const GPCLR0: usize = 0x28;

/// The board's GPIO controller (pins 0–31).
pub struct Bcm2835Gpio;

impl GpioController for Bcm2835Gpio {
    fn set(&self, pins: u32, values: u32) {
        let register = |offset: usize| device_va(board::GPIO + offset) as *mut u32;
        // SAFETY: the GPIO block is in the kernel's device window. Only the function fields
        // of `pins` change (to output), and the set/clear registers touch only `pins`.
        unsafe {
            for pin in (0..32).filter(|pin| pins & (1 << pin) != 0) {
                let select = register(GPFSEL0 + 4 * (pin / 10));
                let shift = 3 * (pin % 10);
                write_volatile(select, (read_volatile(select) & !(0b111 << shift)) | (1 << shift));
            }
            write_volatile(register(GPSET0), pins & values);
            write_volatile(register(GPCLR0), pins & !values);
        }
    }
}
