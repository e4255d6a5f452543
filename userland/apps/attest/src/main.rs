//! `attest`: asks the security monitor for an attestation token over a fresh random nonce
//! and prints both, hex encoded, for a verifier (`septa attest verify`). The token is split
//! over numbered lines `token <i>/<n> <hex>`.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, Hex, monitor};

septa_runtime::entry!(main);

const LINE_BYTES: usize = 96;

fn main() {
    let mut nonce = [0u8; 32];
    if let Err(error) = monitor::random(&mut nonce) {
        sys::log!("no nonce: {error}");
        return;
    }
    let mut token = [0u8; 3072];
    let len = match monitor::attest(&nonce, &mut token) {
        Ok(len) => len,
        Err(error) => {
            sys::log!("attestation failed: {error}");
            return;
        }
    };
    if let Ok(key) = monitor::public_key() {
        sys::log!("public key {}", Hex(&key));
    }
    sys::log!("nonce {}", Hex(&nonce));
    let lines = len.div_ceil(LINE_BYTES);
    for (i, chunk) in token[..len].chunks(LINE_BYTES).enumerate() {
        sys::log!("token {}/{lines} {}", i + 1, Hex(chunk));
    }
}
