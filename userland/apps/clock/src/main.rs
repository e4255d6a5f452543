//! `clock`: a device driver as an ordinary app. It maps the board's PL031 real-time clock
//! (granted by `devices = ["rtc"]`), arms its match interrupt for the next second, waits for
//! the interrupt as a notification, clears it in the device, acknowledges it to the kernel
//! and logs the time — three times, then exits.

#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};
use septa_syscalls::{self as sys, HandleKind};

septa_runtime::entry!(main);

/// PL031 registers (ARM PrimeCell RTC technical reference manual).
const DATA: usize = 0x00;
const MATCH: usize = 0x04;
const INTERRUPT_MASK: usize = 0x10;
const INTERRUPT_CLEAR: usize = 0x1c;

fn main() {
    let rtc = sys::lookup(HandleKind::Device, "rtc").expect("the manifest grants rtc");
    let base = sys::map_device(rtc).expect("rtc maps");
    let register = |offset: usize| (base + offset) as *mut u32;
    for _ in 0..3 {
        // SAFETY: `base` is the PL031 the kernel just mapped into this app as device memory;
        // these are its registers.
        let now = unsafe {
            let now = read_volatile(register(DATA));
            write_volatile(register(MATCH), now.wrapping_add(1));
            write_volatile(register(INTERRUPT_MASK), 1);
            now
        };
        // The mask is not empty, so the wait cannot fail.
        let bits = sys::wait(sys::irq_bit(rtc.0)).unwrap_or(0);
        // SAFETY: as above; writing 1 to the clear register ends the device's interrupt.
        unsafe { write_volatile(register(INTERRUPT_CLEAR), 1) };
        let _ = sys::irq_ack(rtc);
        sys::log!(
            "rtc interrupt (bits {bits:#x}): {} s after {now}",
            unsafe { read_volatile(register(DATA)) } - now
        );
    }
}
