//! `hello`: logs who it is and exits with status 0.

#![no_std]
#![no_main]

use septa_syscalls as sys;

septa_runtime::entry!(main);

fn main() {
    let info = sys::info();
    sys::log!("hello from {} (pid {}), {} ms after start", info.name(), info.pid, info.uptime_ms);
}
