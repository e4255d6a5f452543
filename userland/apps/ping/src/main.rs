//! `ping`: sends 1,000 messages to `pong` and checks that every reply is its message
//! reversed.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind};

septa_runtime::entry!(main);

const ROUNDS: u32 = 1000;

fn main() {
    let pong = sys::lookup(HandleKind::Call, "pong").expect("the manifest calls pong");
    let mut good = 0;
    for round in 0..ROUNDS {
        // 16 bytes that differ every round.
        let mut message = [0u8; 16];
        for (i, byte) in message.iter_mut().enumerate() {
            *byte = (round as u8).wrapping_mul(31).wrapping_add(i as u8 * 7);
        }
        let mut reply = [0u8; 16];
        match sys::call(pong, &message, &mut reply) {
            Ok(16) if reply.iter().eq(message.iter().rev()) => good += 1,
            other => sys::log!("round {round}: bad reply {other:?} {reply:?}"),
        }
    }
    sys::log!("{good} of {ROUNDS} round trips to pong checked");
}
