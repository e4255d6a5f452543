//! `logger`: a server other apps `call` to log a line. It prints each line with the first
//! bytes of the caller's badge — its component id, which the kernel attaches and the
//! caller cannot choose — so a line is always attributed to the app that really sent it.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind, MESSAGE_MAX};

septa_runtime::entry!(main);

fn main() {
    let endpoint = sys::lookup(HandleKind::Serve, "logger").expect("the manifest serves logger");
    let mut buffer = [0u8; MESSAGE_MAX];
    loop {
        let Ok(call) = sys::recv(endpoint, &mut buffer) else {
            continue;
        };
        let line = core::str::from_utf8(&buffer[..call.len.min(MESSAGE_MAX)]).unwrap_or("<not UTF-8>");
        let [a, b, c, d, ..] = call.badge;
        sys::log!("from {a:02x}{b:02x}{c:02x}{d:02x}: {line}");
        let _ = sys::reply(&[]);
    }
}
