//! `netbench` (benchmarks only): TCP through the network service and the driver, measured
//! in instructions the whole device executes — this app, the service, the driver, the
//! kernel — with the PMU's instructions-retired counter (which the kernel lets user mode
//! program in benchmark builds; under QEMU's icount it counts executed instructions and
//! not the idle time icount skips). The host side (`cargo xtask bench`) serves `devhost:10`
//! (sends 1 MiB, then closes), `devhost:11` (reads 1 MiB, then closes) and `devhost:7`
//! (echo), and a mutual TLS 1.3 session with the host's TLS service (`septa-tls`, the
//! monitor signing with the device key). Prints `BENCH <name> <value> <unit>` lines, then
//! `BENCH done`.

#![no_std]
#![no_main]

use core::arch::asm;
use septa_abi::device_auth::CERTIFICATE_MAX;
use septa_syscalls::monitor;
use septa_syscalls::net::TcpStream;
use septa_syscalls::{self as sys, Error};
use septa_tls::{Buffers, CertificateDer, ClientIdentity, ServerCheck, StaticBuffers, TrustAnchors};
use septa_tls_device::{DeviceKey, Rng, Socket};

septa_runtime::entry!(main);
septa_runtime::heap!(4 * 1024);

extern crate alloc;

const MIB: u32 = 1 << 20;
const ECHOES: usize = 9;

/// Starts PMU event counter 0 on instructions retired (event 0x08).
fn start_counting() {
    // SAFETY: PMSELR, PMXEVTYPER and PMCNTENSET are writable from user mode in benchmark
    // builds (PMUSERENR.EN); they only configure the counter.
    unsafe {
        asm!(
            "mcr p15, 0, {zero}, c9, c12, 5",
            "mcr p15, 0, {event}, c9, c13, 1",
            "mcr p15, 0, {one}, c9, c12, 1",
            zero = in(reg) 0u32,
            event = in(reg) 0x08u32,
            one = in(reg) 1u32,
            options(nostack)
        );
    }
}

fn instructions() -> u32 {
    let value: u32;
    // SAFETY: as above; PMSELR still selects counter 0 (nothing else in the app changes it).
    unsafe { asm!("mrc p15, 0, {}, c9, c13, 2", out(reg) value, options(nomem, nostack)) };
    value
}

fn report(name: &str, value: u32, unit: &str) {
    sys::log!("BENCH {name} {value} {unit}");
}

/// Reads until the end of the stream; returns the bytes read.
fn drain(stream: &mut TcpStream) -> Result<u32, Error> {
    let mut buffer = [0u8; 2040];
    let mut total = 0;
    loop {
        match stream.read(&mut buffer)? {
            0 => return Ok(total),
            n => total += n as u32,
        }
    }
}

fn receive() -> Result<(u32, u32), Error> {
    let mut stream = TcpStream::connect("devhost", 10)?;
    let start = instructions();
    let got = drain(&mut stream)?;
    let spent = instructions().wrapping_sub(start);
    stream.close()?;
    Ok((got, spent))
}

fn send() -> Result<(u32, u32), Error> {
    let mut stream = TcpStream::connect("devhost", 11)?;
    let chunk = [0x5au8; 2040];
    let start = instructions();
    let mut sent = 0;
    while sent < MIB {
        let n = (MIB - sent).min(chunk.len() as u32) as usize;
        stream.write_all(&chunk[..n])?;
        sent += n as u32;
    }
    // The server closes once it has every byte: the transfer is complete.
    drain(&mut stream)?;
    let spent = instructions().wrapping_sub(start);
    stream.close()?;
    Ok((sent, spent))
}

fn echo() -> Result<u32, Error> {
    let start = instructions();
    let mut stream = TcpStream::connect("devhost", 7)?;
    let message = [0xa5u8; 64];
    stream.write_all(&message)?;
    let mut back = [0u8; 64];
    stream.read_exact(&mut back)?;
    let spent = instructions().wrapping_sub(start);
    stream.close()?;
    if back != message {
        return Err(Error::Io);
    }
    Ok(spent)
}

/// The TLS service `cargo xtask bench` runs (`devhost:8443`) and the name in its certificate.
const TLS_PORT: u16 = 8443;
const TLS_NAME: &str = "devhost";
const HANDSHAKES: usize = 3;

static ANCHORS: &[CertificateDer<'static>] = &septa_tls::trust_anchors!();
static BUFFERS: StaticBuffers = StaticBuffers::new();

/// Opens the socket in a frame of its own (the handshake after it needs the stack).
#[inline(never)]
fn open(port: u16) -> Result<TcpStream, Error> {
    TcpStream::connect("devhost", port)
}

/// One mutual TLS 1.3 handshake with the host's service, whole device counted: connect,
/// the handshake (the server's chain and CertificateVerify checked here, ours signed by the
/// monitor with the device key) and one short line each way.
fn tls_session(buffers: &mut Buffers, certificate: &[u8]) -> Result<u32, septa_tls::Error> {
    let now_unix = monitor::wall_clock().map_err(|_| septa_tls::Error::Transport)?;
    let anchors = TrustAnchors::new(ANCHORS)?;
    let server = ServerCheck { anchors: &anchors, name: TLS_NAME, now_unix };
    let mut identity = ClientIdentity { certificate, signer: DeviceKey };
    let mut rng = Rng::from_monitor().map_err(|_| septa_tls::Error::Transport)?;
    let start = instructions();
    let stream = open(TLS_PORT).map_err(|_| septa_tls::Error::Transport)?;
    let mut session = septa_tls::connect(Socket(stream), buffers, &server, &mut identity, &mut rng)?;
    session.write_all(b"bench\n")?;
    let mut answer = [0u8; 128];
    let mut len = 0;
    while len < answer.len() && !answer[..len].contains(&b'\n') {
        match session.read(&mut answer[len..])? {
            0 => break,
            n => len += n,
        }
    }
    let spent = instructions().wrapping_sub(start);
    let _ = session.close();
    Ok(spent)
}

fn handshakes() {
    let Some(buffers) = BUFFERS.take() else { return };
    let mut certificate = alloc::vec![0u8; CERTIFICATE_MAX];
    let Ok(len) = monitor::device_certificate(&mut certificate) else {
        sys::log!("tls: no device certificate");
        return;
    };
    let mut costs = [0u32; HANDSHAKES];
    for cost in costs.iter_mut() {
        match tls_session(buffers, &certificate[..len]) {
            Ok(spent) => *cost = spent,
            Err(e) => {
                sys::log!("tls: {e}");
                return;
            }
        }
    }
    costs.sort_unstable();
    report("tls_mutual_handshake", costs[HANDSHAKES / 2], "instructions");
}

fn main() {
    start_counting();
    handshakes();
    match receive() {
        Ok((got, spent)) if got == MIB => {
            report("tcp_recv_1mib", spent, "instructions");
            report("tcp_recv_per_kib", spent / 1024, "instructions/KiB");
        }
        Ok((got, _)) => sys::log!("receive: only {got} bytes"),
        Err(e) => sys::log!("receive: {e}"),
    }
    match send() {
        Ok((_, spent)) => {
            report("tcp_send_1mib", spent, "instructions");
            report("tcp_send_per_kib", spent / 1024, "instructions/KiB");
        }
        Err(e) => sys::log!("send: {e}"),
    }
    let mut costs = [0u32; ECHOES];
    for cost in costs.iter_mut() {
        match echo() {
            Ok(spent) => *cost = spent,
            Err(e) => sys::log!("connect + echo: {e}"),
        }
    }
    costs.sort_unstable();
    report("tcp_connect_echo64", costs[ECHOES / 2], "instructions");
    sys::log!("BENCH done");
}
