//! `nethello`: talks to a service on the development host over TCP. It connects to
//! `devhost:7` (the only destination its manifest names), sends one line, logs the answer
//! and closes. `cargo xtask run` starts a small service on the host's loopback and forwards
//! `devhost:7` to it; without one, the app logs why it could not connect.

#![no_std]
#![no_main]

use septa_syscalls::net::TcpStream;
use septa_syscalls::{self as sys, Error};

septa_runtime::entry!(main);

fn talk() -> Result<(), Error> {
    let mut stream = TcpStream::connect("devhost", 7)?;
    stream.write_all(b"hello from Septa\n")?;
    let mut answer = [0u8; 128];
    let mut len = 0;
    // Read one line (or until the buffer is full or the host closes).
    while len < answer.len() && !answer[..len].contains(&b'\n') {
        match stream.read(&mut answer[len..])? {
            0 => break,
            n => len += n,
        }
    }
    let line = core::str::from_utf8(&answer[..len]).unwrap_or("<not UTF-8>").trim_end();
    sys::log!("devhost:7 answered: {line}");
    stream.close()
}

fn main() {
    if let Err(e) = talk() {
        sys::log!("devhost:7: {e} (cargo xtask run starts a service there)");
    }
}
