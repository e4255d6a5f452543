//! `netclient`: the network tests' client, one binary whose instance name picks the case
//! (the test image gives each instance its own manifest):
//!
//! - `echo-big`, `echo-small`: send 1 MiB (256 KiB) of a pattern seeded by the name to
//!   `devhost:7`, read the echo and log its length and SHA-256;
//! - `denied`: connect to `devhost:8`, which its manifest does not name (`EACCES`), and
//!   listen on port 8080 without any `listen` capability (`EACCES`);
//! - `server`: listen on port 8081, which its manifest does not name (`EACCES`), then on
//!   8080 (`listen = [8080]`): accept one connection from the host and echo it to its end,
//!   logging how long `accept` and the first `read` waited and how many syscalls that took;
//! - `nocap`: no network capability at all: cannot even look the service up;
//! - `cutoff`: transfer to `devhost:9`, whose server goes away mid-transfer;
//! - `survivor`: echo 1 MiB while the driver is killed, then connect again and echo 4 KiB;
//! - `leaker`: open its whole share of sockets to `devhost:7`, then fault with all of them
//!   open (restarted each time: every run must get its whole share again).
//!
//! Every outcome is logged as one line the test checks; nothing here panics (`leaker`
//! faults on purpose).

#![no_std]
#![no_main]

use septa_syscalls::net::{READABLE, SOCKETS_PER_APP, TcpListener, TcpStream, WRITABLE};
use septa_syscalls::{self as sys, Error, HandleKind, Hex};
use sha2::{Digest, Sha256};

septa_runtime::entry!(main);

/// The test pattern: xorshift32 from `seed`, one byte per step (the host test computes it
/// the same way).
struct Pattern(u32);

impl Pattern {
    fn fill(&mut self, buffer: &mut [u8]) {
        for byte in buffer {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            *byte = self.0 as u8;
        }
    }
}

fn seed(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

/// Sends `total` bytes of the pattern and reads as many back; returns the echo's hash, or
/// the error and how many bytes had come back.
fn echo(stream: &mut TcpStream, total: usize, seed: u32) -> Result<[u8; 32], (Error, usize)> {
    let mut pattern = Pattern(seed);
    let mut hash = Sha256::new();
    let (mut sent, mut received) = (0, 0);
    let mut out = [0u8; 2000];
    let (mut start, mut end) = (0, 0);
    let mut buffer = [0u8; 2000];
    while received < total {
        let interest = if sent < total { READABLE | WRITABLE } else { READABLE };
        let ready = stream.wait(interest).map_err(|e| (e, received))?;
        if ready & WRITABLE != 0 && sent < total {
            if start == end {
                let len = out.len().min(total - sent);
                pattern.fill(&mut out[..len]);
                (start, end) = (0, len);
            }
            let n = stream.write(&out[start..end]).map_err(|e| (e, received))?;
            start += n;
            sent += n;
        }
        if ready & READABLE != 0 {
            match stream.try_read(&mut buffer) {
                Ok(0) => return Err((Error::ConnectionReset, received)),
                Ok(n) => {
                    hash.update(&buffer[..n]);
                    received += n;
                }
                Err(Error::WouldBlock) => {}
                Err(e) => return Err((e, received)),
            }
        }
    }
    Ok(hash.finalize().into())
}

fn echo_case(name: &str, total: usize) {
    let result = TcpStream::connect("devhost", 7).map_err(|e| (e, 0)).and_then(|mut s| {
        let hash = echo(&mut s, total, seed(name))?;
        s.close().map_err(|e| (e, total))?;
        Ok(hash)
    });
    match result {
        Ok(hash) => sys::log!("echoed {total} bytes, sha256 {}", Hex(&hash)),
        Err((e, got)) => sys::log!("echo failed after {got} bytes: {e}"),
    }
}

/// Opens [`SOCKETS_PER_APP`] connections and faults with them open, as a crashing app
/// would; a connection that fails is logged instead (and the app ends normally).
fn leak_then_fault() {
    let mut open: [Option<TcpStream>; SOCKETS_PER_APP] = Default::default();
    for (n, slot) in open.iter_mut().enumerate() {
        match TcpStream::connect("devhost", 7) {
            Ok(stream) => *slot = Some(stream),
            Err(e) => {
                sys::log!("leaker: connection {} of {SOCKETS_PER_APP}: {e}", n + 1);
                return;
            }
        }
    }
    sys::log!("leaker: {SOCKETS_PER_APP} connections open; faulting");
    // SAFETY: deliberately faults (nothing is mapped at 0): the crash under test.
    unsafe { core::ptr::read_volatile(core::ptr::null::<u32>()) };
}

/// Accepts one connection on `listener` and echoes it until the peer ends it; returns the
/// bytes echoed.
fn serve_one(listener: &TcpListener) -> Result<usize, Error> {
    let before = sys::info();
    let mut stream = listener.accept()?;
    log_wait("accept", &before);
    stream.set_timeout(Some(30_000));
    let (mut buffer, mut total) = ([0u8; 2000], 0);
    let before = sys::info();
    let mut n = stream.read(&mut buffer)?;
    log_wait("first read", &before);
    while n > 0 {
        stream.write_all(&buffer[..n])?;
        total += n;
        n = stream.read(&mut buffer)?;
    }
    stream.close()?;
    Ok(total)
}

/// Kept out of `main`, whose frame every case would otherwise share on the small stack.
#[inline(never)]
fn server_case() {
    sys::log!("listen 8081: {}", listen_result(8081));
    match TcpListener::bind(8080) {
        Ok(listener) => {
            sys::log!("listening on 8080");
            match serve_one(&listener) {
                Ok(total) => sys::log!("served {total} bytes"),
                Err(e) => sys::log!("serving failed: {e}"),
            }
        }
        Err(e) => sys::log!("listen 8080: {e}"),
    }
}

/// How long a blocking call since `before` took, in guest time and in the app's own
/// syscalls (this `info` included): a call that sleeps until woken makes a handful.
fn log_wait(what: &str, before: &sys::Info) {
    let after = sys::info();
    let ms = after.uptime_ms.wrapping_sub(before.uptime_ms);
    sys::log!("{what} waited {ms} ms with {} syscalls", after.syscalls.wrapping_sub(before.syscalls));
}

fn listen_result(port: u16) -> &'static str {
    TcpListener::bind(port).err().map_or("ok", Error::name)
}

fn main() {
    let info = sys::info();
    match info.name() {
        "echo-big" => echo_case(info.name(), 1 << 20),
        "echo-small" => echo_case(info.name(), 256 << 10),
        "denied" => match TcpStream::connect("devhost", 8) {
            Ok(_) => sys::log!("connect devhost:8: connected (wrong)"),
            Err(e) => sys::log!("connect devhost:8: {e}, listen 8080: {}", listen_result(8080)),
        },
        "server" => server_case(),
        "nocap" => {
            let lookup = sys::lookup(HandleKind::Call, "net").map(drop);
            let connect = TcpStream::connect("devhost", 7).map(drop);
            sys::log!(
                "lookup net: {}, connect devhost:7: {}",
                lookup.err().map_or("ok", Error::name),
                connect.err().map_or("ok", Error::name)
            );
        }
        "cutoff" => {
            let result = TcpStream::connect("devhost", 9)
                .map_err(|e| (e, 0))
                .and_then(|mut s| echo(&mut s, 1 << 20, 1));
            match result {
                Ok(_) => sys::log!("cutoff: the whole transfer came back (wrong)"),
                Err((e, got)) => sys::log!("cutoff: the server went away after {got} bytes: {e}"),
            }
        }
        "survivor" => {
            match TcpStream::connect("devhost", 7)
                .map_err(|e| (e, 0))
                .and_then(|mut s| echo(&mut s, 1 << 20, 2))
            {
                Ok(_) => sys::log!("survivor: the transfer outlived the driver (wrong)"),
                Err((e, got)) => sys::log!("survivor: transfer failed after {got} bytes: {e}"),
            }
            // The supervisor restarts the driver; connect again until it is back.
            for attempt in 1..=50 {
                match TcpStream::connect("devhost", 7)
                    .map_err(|e| (e, 0))
                    .and_then(|mut s| echo(&mut s, 4096, 3))
                {
                    Ok(hash) => {
                        sys::log!("survivor: new connection echoed 4096 bytes, sha256 {}", Hex(&hash));
                        return;
                    }
                    Err((e, _)) => sys::log!("survivor: attempt {attempt}: {e}"),
                }
                sys::sleep(200);
            }
        }
        "leaker" => leak_then_fault(),
        other => sys::log!("no test case named {other}"),
    }
}
