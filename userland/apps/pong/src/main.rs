//! `pong`: serves `pong`; answers each message with its bytes reversed. The loop is the
//! usual server shape: `recv` once, then `reply_recv` — answer and wait in one syscall.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind, MESSAGE_MAX};

septa_runtime::entry!(main);

fn main() {
    let endpoint = sys::lookup(HandleKind::Serve, "pong").expect("the manifest serves pong");
    let mut buffer = [0u8; MESSAGE_MAX];
    let mut answer = [0u8; MESSAGE_MAX];
    let mut received = sys::recv(endpoint, &mut buffer);
    loop {
        received = match received {
            Ok(call) => {
                let len = call.len.min(MESSAGE_MAX);
                for (to, from) in answer[..len].iter_mut().zip(buffer[..len].iter().rev()) {
                    *to = *from;
                }
                sys::reply_recv(endpoint, &answer[..len], &mut buffer)
            }
            Err(_) => sys::recv(endpoint, &mut buffer),
        };
    }
}
