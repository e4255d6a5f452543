//! `blinky`: drives GPIO pin 3 on and off every 500 ms and reports each change through the
//! `logger` server.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind};

septa_runtime::entry!(main);

const PIN: u32 = 1 << 3;

fn main() {
    let gpio = sys::lookup(HandleKind::Gpio, "gpio").expect("the manifest grants pin 3");
    let logger = sys::lookup(HandleKind::Call, "logger").expect("the manifest calls logger");
    let mut on = false;
    loop {
        on = !on;
        if let Err(error) = sys::gpio_set(gpio, PIN, if on { PIN } else { 0 }) {
            sys::log!("gpio_set failed: {error}");
        }
        let line: &[u8] = if on { b"blinky: pin 3 on" } else { b"blinky: pin 3 off" };
        if let Err(error) = sys::call(logger, line, &mut []) {
            sys::log!("logger unavailable ({error}); {}", core::str::from_utf8(line).unwrap_or(""));
        }
        sys::sleep(500);
    }
}
