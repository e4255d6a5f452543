//! `crasher`: serves `fragile` but never answers: 300 ms after it starts it reads address
//! 0 and dies. The supervisor restarts it with growing delays; a caller queued on `fragile`
//! gets `EPIPE` when it dies.

#![no_std]
#![no_main]

use septa_syscalls as sys;

septa_runtime::entry!(main);

fn main() {
    sys::log!("up, {} ms after boot", sys::info().uptime_ms);
    sys::sleep(300);
    // SAFETY: deliberately faults: the crash under test.
    unsafe { core::ptr::read_volatile(core::ptr::null::<u32>()) };
}
