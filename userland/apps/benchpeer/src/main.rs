//! `benchpeer` (benchmarks only): the other side of `bench`. It echoes every message on
//! `bench-peer` with `reply_recv`, the way a server loop should; a message starting with
//! 0xff asks it to yield back and forth with `bench` for the number of rounds in bytes 4..8.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind, MESSAGE_MAX};

septa_runtime::entry!(main);

fn main() {
    let endpoint = sys::lookup(HandleKind::Serve, "bench-peer").expect("the manifest serves bench-peer");
    let mut buffer = [0u8; MESSAGE_MAX];
    let mut reply = [0u8; MESSAGE_MAX];
    let mut received = sys::recv(endpoint, &mut buffer);
    loop {
        let len = match received {
            Ok(call) => call.len.min(MESSAGE_MAX),
            Err(_) => {
                received = sys::recv(endpoint, &mut buffer);
                continue;
            }
        };
        let message = &buffer[..len];
        if message.first() == Some(&0xff) && message.len() >= 8 {
            let rounds = u32::from_le_bytes([message[4], message[5], message[6], message[7]]);
            let _ = sys::reply(&[]);
            for _ in 0..rounds {
                sys::yield_now();
            }
            received = sys::recv(endpoint, &mut buffer);
        } else {
            reply[..len].copy_from_slice(message);
            received = sys::reply_recv(endpoint, &reply[..len], &mut buffer);
        }
    }
}
