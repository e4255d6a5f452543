//! `spinner`: burns CPU without ever blocking, to show that preemption keeps the others
//! running (and, with a small CPU budget, that the kernel throttles it). It logs a line with
//! its uptime every few hundred million instructions.

#![no_std]
#![no_main]

use septa_syscalls as sys;

septa_runtime::entry!(main);

fn main() {
    for round in 1u32.. {
        for i in 0..50_000_000u32 {
            core::hint::black_box(i);
        }
        sys::log!("still spinning (round {round}) at {} ms", sys::info().uptime_ms);
    }
}
