//! `bench` (benchmarks only): measures Septa's hot paths from user mode and prints one
//! `BENCH <name> <value> <unit>` line each.
//!
//! It reads the PMU cycle counter, which the kernel lets user mode read in benchmark builds.
//! Under QEMU with `-icount shift=0` a cycle is one instruction, so the numbers are path
//! lengths, identical run to run; without icount they are nanoseconds of host time. Each
//! metric runs a warm-up batch, then five batches (10,000 operations for the kernel paths
//! and `monitor_call`), and reports the median batch's cost per operation. The TLS pieces
//! (the monitor's CertificateVerify signature, a chain check in the app) are measured once
//! each, like the monitor's ECDSA operations.
//!
//! For `cargo xtask bench --profile`, every measured phase is cut out of QEMU's execution
//! log by a call of [`bench_profile_mark`] before and after it, and named by a
//! `PROFILE <phase> <operations>` line after it; the first mark, at the start of `main`,
//! ends boot.

#![no_std]
#![no_main]

use core::arch::asm;
use septa_syscalls::{self as sys, HandleKind, monitor};

septa_runtime::entry!(main);

const BATCHES: usize = 5;
/// Operations per batch for the short paths: 5 × 2,000 = 10,000 measured.
const ITERATIONS: u32 = 2000;

fn cycles() -> u32 {
    let value: u32;
    // SAFETY: PMCCNTR is readable from user mode in benchmark builds (PMUSERENR.EN).
    unsafe { asm!("mrc p15, 0, {}, c9, c13, 0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Nanoseconds since reset from the virtual counter (instructions under icount).
fn since_reset_ns() -> u64 {
    let (low, high, frequency): (u32, u32, u32);
    // SAFETY: CNTVCT and CNTFRQ are readable from user mode in benchmark builds (CNTKCTL).
    unsafe {
        asm!("isb", "mrrc p15, 1, {}, {}, c14", out(reg) low, out(reg) high, options(nomem, nostack));
        asm!("mrc p15, 0, {}, c14, c0, 0", out(reg) frequency, options(nomem, nostack));
    }
    ((high as u64) << 32 | low as u64) * 1_000_000_000 / frequency as u64
}

/// A phase boundary for the profiler, which recognises the execution of this function's
/// first instruction (a call and a return: outside every measured batch).
#[inline(never)]
#[unsafe(no_mangle)]
extern "C" fn bench_profile_mark() {
    // SAFETY: an empty instruction sequence; as inline assembly it keeps the call.
    unsafe { asm!("", options(nomem, nostack, preserves_flags)) };
}

/// Runs `op` `iterations` times per batch after one warm-up batch; returns the median cost
/// per operation, divided by `per_op`. `phase` names it in the profile.
fn measure(phase: &str, iterations: u32, per_op: u32, mut op: impl FnMut()) -> u32 {
    bench_profile_mark();
    let mut batch = || {
        let start = cycles();
        for _ in 0..iterations {
            op();
        }
        cycles().wrapping_sub(start) / (iterations * per_op)
    };
    batch();
    let mut results = [0u32; BATCHES];
    for result in results.iter_mut() {
        *result = batch();
    }
    bench_profile_mark();
    let operations = (BATCHES as u32 + 1) * iterations * per_op;
    sys::log!("PROFILE {phase} {operations}");
    results.sort_unstable();
    results[BATCHES / 2]
}

fn report(name: &str, value: impl core::fmt::Display, unit: &str) {
    sys::log!("BENCH {name} {value} {unit}");
}

fn main() {
    let boot = since_reset_ns();
    bench_profile_mark();
    report("boot_to_first_app", boot, "instructions");

    report(
        "null_syscall",
        measure("null_syscall", ITERATIONS, 1, || {
            sys::raw_syscall(0xffff, 0, 0, 0);
        }),
        "instructions",
    );

    let peer = sys::lookup(HandleKind::Call, "bench-peer").expect("the manifest calls bench-peer");
    let message = [7u8; 64];
    let mut reply = [0u8; 64];
    report(
        "ipc_roundtrip",
        measure("ipc_roundtrip", ITERATIONS, 1, || {
            let _ = sys::call(peer, &message[..16], &mut reply[..16]);
        }),
        "instructions",
    );
    report(
        "ipc_roundtrip_64",
        measure("ipc_roundtrip_64", ITERATIONS, 1, || {
            let _ = sys::call(peer, &message, &mut reply);
        }),
        "instructions",
    );

    // Yield ping-pong: each of our yields switches to the peer and its yield switches back.
    let rounds: u32 = ITERATIONS * (BATCHES as u32 + 1) + 10;
    let mut start = [0u8; 16];
    start[0] = 0xff;
    start[4..8].copy_from_slice(&rounds.to_le_bytes());
    let _ = sys::call(peer, &start, &mut []);
    report("ctx_switch", measure("ctx_switch", ITERATIONS, 2, sys::yield_now), "instructions");

    let mut random = [0u8; 16];
    report(
        "monitor_call",
        measure("monitor_call", ITERATIONS, 1, || {
            let _ = monitor::random(&mut random);
        }),
        "instructions",
    );

    // One request carries at most 512 bytes, so the cost of hashing is the difference
    // between hashing 448 bytes and hashing none (the call itself), scaled to 4 KiB.
    let data = [0x5au8; 448];
    let full = measure("sha256_448", 20, 1, || {
        let _ = monitor::sha256(&data);
    });
    let empty = measure("sha256_0", 20, 1, || {
        let _ = monitor::sha256(&[]);
    });
    report("sha256_4k", full.saturating_sub(empty) * 4096 / data.len() as u32, "instructions");

    let mut signature = [0u8; 64];
    report(
        "ecdsa_sign",
        measure("ecdsa_sign", 1, 1, || {
            signature = monitor::sign(b"benchmark").unwrap_or([0; 64]);
        }),
        "instructions",
    );
    let key = monitor::public_key().unwrap_or([0; 65]);
    report(
        "ecdsa_verify",
        measure("ecdsa_verify", 1, 1, || {
            let _ = monitor::verify(&key, b"benchmark", &signature);
        }),
        "instructions",
    );

    // The device-side pieces of a mutual TLS handshake: the client CertificateVerify
    // signature by the device key in the monitor, and a certificate-chain check in the app
    // (the device certificate against the device CA: one P-256 verify plus parsing).
    let hash = [0x42u8; 32];
    report(
        "tls_client_sign",
        measure("tls_client_sign", 1, 1, || {
            let _ = monitor::device_auth_sign(&hash);
        }),
        "instructions",
    );
    let mut certificate = [0u8; septa_abi::device_auth::CERTIFICATE_MAX];
    let len = monitor::device_certificate(&mut certificate).unwrap_or(0);
    let certificate = &certificate[..len];
    let now = septa_tls::unix_time(1_800_000_000);
    match septa_tls::TrustAnchors::new(ANCHORS) {
        Ok(anchors) if !certificate.is_empty() => {
            let mut result = Ok(());
            let cost = measure("tls_chain_verify", 1, 1, || {
                result = septa_tls::verify_chain(&anchors, &[certificate], now, septa_tls::Usage::Client);
            });
            match result {
                Ok(()) => report("tls_chain_verify", cost, "instructions"),
                Err(error) => sys::log!("chain check failed: {error}"),
            }
        }
        _ => sys::log!("no device certificate or trust anchor for the chain benchmark"),
    }
    sys::log!("BENCH done");
}

static ANCHORS: &[septa_tls::CertificateDer<'static>] = &septa_tls::trust_anchors!();
