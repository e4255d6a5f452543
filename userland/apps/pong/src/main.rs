//! `pong`: serves `pong`; answers each message with its bytes reversed.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind, MESSAGE_MAX};

septa_runtime::entry!(main);

fn main() {
    let endpoint = sys::lookup(HandleKind::Serve, "pong").expect("the manifest serves pong");
    let mut buffer = [0u8; MESSAGE_MAX];
    loop {
        let Ok(call) = sys::recv(endpoint, &mut buffer) else {
            continue;
        };
        let message = &mut buffer[..call.len.min(MESSAGE_MAX)];
        message.reverse();
        let _ = sys::reply(message);
    }
}
