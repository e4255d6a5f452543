//! `keys`: uses the security monitor's services — random bytes, SHA-256, its own key pair,
//! signing and verifying — and shows that a malformed request is refused.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, HandleKind, Hex, Syscall, monitor};

septa_runtime::entry!(main);

fn main() {
    let mut first = [0u8; 16];
    let mut second = [0u8; 16];
    if monitor::random(&mut first).and(monitor::random(&mut second)).is_ok() {
        sys::log!("random {} {}", Hex(&first), Hex(&second));
    }
    if let Ok(digest) = monitor::sha256(b"abc") {
        sys::log!("sha256(abc) {}", Hex(&digest));
    }
    hash_across_a_page();
    let Ok(key) = monitor::public_key() else {
        sys::log!("no public key");
        return;
    };
    sys::log!("public key {}", Hex(&key));
    let signature = monitor::sign(b"septa").unwrap_or([0; 64]);
    let good = monitor::verify(&key, b"septa", &signature);
    let forged = monitor::verify(&key, b"Septa", &signature);
    sys::log!("sign/verify: own message {good:?}, altered message {forged:?}");
    // A request the monitor must refuse: bytes that are no request at all.
    let handle = sys::lookup(HandleKind::Monitor, "monitor").expect("the manifest grants monitor services");
    let garbage = [0xffu8; 8];
    let mut response = [0u8; 64];
    let args = [handle.0, 0, garbage.as_ptr() as u32, 8, response.as_mut_ptr() as u32, 64];
    let result = sys::raw_syscall6(Syscall::MonitorCall as u32, args);
    sys::log!("malformed request -> {result:?}");
    // The same request under another service's number.
    let mut encoded = [0u8; 16];
    let encoded =
        postcard::to_slice(&septa_abi::monitor::Request::Random { len: 4 }, &mut encoded).unwrap_or(&mut []);
    let args = [handle.0, 3, encoded.as_ptr() as u32, encoded.len() as u32, response.as_mut_ptr() as u32, 64];
    let result = sys::raw_syscall6(Syscall::MonitorCall as u32, args);
    sys::log!("mismatched service number -> {result:?}");
}

/// Hashes the same 700 bytes (`i * 7 + 1` for byte `i`) from four addresses, one at each
/// place within a word, each range crossing a page: the kernel takes the data from there.
fn hash_across_a_page() {
    const LEN: usize = 700;
    let mut buffer = [0u8; 5000];
    // A page boundary inside the buffer with 300 bytes before it and room after.
    let first = (buffer.as_ptr() as usize).wrapping_neg() % 4096;
    let boundary = if first >= 300 { first } else { first + 4096 };
    for misaligned in 0..4 {
        let data = &mut buffer[boundary - 300 + misaligned..][..LEN];
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = (i * 7 + 1) as u8;
        }
        match monitor::sha256(data) {
            Ok(digest) => sys::log!("sha256 of 700 bytes at +{misaligned} {}", Hex(&digest)),
            Err(error) => sys::log!("sha256 of 700 bytes at +{misaligned} {error:?}"),
        }
    }
}
