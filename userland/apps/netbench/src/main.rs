//! `netbench` (benchmarks only): TCP through the network service and the driver, measured
//! in instructions the whole device executes — this app, the service, the driver, the
//! kernel — with the PMU's instructions-retired counter (which the kernel lets user mode
//! program in benchmark builds; under QEMU's icount it counts executed instructions and
//! not the idle time icount skips). The host side (`cargo xtask bench`) serves `devhost:10`
//! (sends 1 MiB, then closes), `devhost:11` (reads 1 MiB, then closes) and `devhost:7`
//! (echo). Prints `BENCH <name> <value> <unit>` lines, then `BENCH done`.

#![no_std]
#![no_main]

use core::arch::asm;
use septa_syscalls::net::TcpStream;
use septa_syscalls::{self as sys, Error};

septa_runtime::entry!(main);

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

fn main() {
    start_counting();
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
