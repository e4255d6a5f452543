//! `benchpeer` (benchmarks only): the other side of `bench`. It echoes every message on
//! `bench-peer` with `reply_recv`, the way a server loop should; a message starting with
//! 0xff asks it to yield back and forth with `bench` for the number of rounds in bytes 4..8.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind, MESSAGE_MAX};

septa_runtime::entry!(main);

/// A message buffer, word-aligned so that copies of it move words.
#[repr(align(4))]
struct Buffer([u8; MESSAGE_MAX]);

fn main() {
    let endpoint = sys::lookup(HandleKind::Serve, "bench-peer").expect("the manifest serves bench-peer");
    let (mut buffer, mut reply) = (Buffer([0; MESSAGE_MAX]), Buffer([0; MESSAGE_MAX]));
    let mut received = sys::recv(endpoint, &mut buffer.0);
    loop {
        let len = match received {
            Ok(call) => call.len.min(MESSAGE_MAX),
            Err(_) => {
                received = sys::recv(endpoint, &mut buffer.0);
                continue;
            }
        };
        let message = &buffer.0[..len];
        if message.first() == Some(&0xff) && message.len() >= 8 {
            let rounds = u32::from_le_bytes([message[4], message[5], message[6], message[7]]);
            let _ = sys::reply(&[]);
            for _ in 0..rounds {
                sys::yield_now();
            }
            received = sys::recv(endpoint, &mut buffer.0);
        } else {
            // The echo: a message that fits in registers in one fixed-size copy.
            if len <= sys::REGISTER_MESSAGE {
                reply.0[..sys::REGISTER_MESSAGE].copy_from_slice(&buffer.0[..sys::REGISTER_MESSAGE]);
            } else {
                reply.0[..len].copy_from_slice(&buffer.0[..len]);
            }
            received = sys::reply_recv(endpoint, &reply.0[..len], &mut buffer.0);
        }
    }
}
