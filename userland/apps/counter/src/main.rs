//! `counter`: logs a count every 500 ms, forever.

#![no_std]
#![no_main]

use septa_syscalls as sys;

septa_runtime::entry!(main);

fn main() {
    for count in 1u32.. {
        sys::log!("count {count}");
        sys::sleep(500);
    }
}
