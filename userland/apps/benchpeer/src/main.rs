//! `benchpeer` (benchmarks only): the other side of `bench`. It echoes every message on
//! `bench-peer` with `reply_recv` at the level of the IPC registers, the way a server loop
//! that answers in registers should (and as seL4's benchmark peer does): a message of at
//! most 16 bytes goes back in the very registers it came in, a longer one from the buffer
//! the kernel wrote it into. A message starting with 0xff asks it to yield back and forth
//! with `bench` for the number of rounds in bytes 4..8.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind, MESSAGE_MAX, REGISTER_MESSAGE, Syscall, lengths};

septa_runtime::entry!(main);

fn main() {
    let endpoint = sys::lookup(HandleKind::Serve, "bench-peer").expect("the manifest serves bench-peer");
    let mut buffer = [0u8; MESSAGE_MAX];
    let at = buffer.as_mut_ptr() as u32;
    let recv = || sys::raw_ipc(Syscall::Recv as u32, endpoint.0, lengths(0, MESSAGE_MAX), [0; 4], at);
    let mut received = recv();
    loop {
        if received.status != 0 {
            received = recv();
            continue;
        }
        let len = (received.value as usize).min(MESSAGE_MAX);
        let reply = lengths(len, MESSAGE_MAX);
        received = if len > REGISTER_MESSAGE {
            sys::raw_ipc(Syscall::ReplyRecv as u32, endpoint.0, reply, [at, 0, 0, 0], at)
        } else if len >= 8 && sys::bytes_of(received.words)[0] == 0xff {
            let bytes = sys::bytes_of(received.words);
            let rounds = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let _ = sys::reply(&[]);
            for _ in 0..rounds {
                sys::yield_now();
            }
            recv()
        } else {
            sys::raw_ipc(Syscall::ReplyRecv as u32, endpoint.0, reply, received.words, at)
        };
    }
}
