//! `notes`: persistent storage in use. Each boot it counts itself in its own storage,
//! leaves a note for the next boot, and shows that its 1 KiB quota holds: a write that
//! would exceed it fails and the earlier values stay.
//!
//! The same binary runs under another name and component id as `peeker` in the tests: it
//! looks for the note under the same key and must find nothing, because storage is keyed
//! by the component id the kernel vouches for.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, Error, monitor};

septa_runtime::entry!(main);

fn main() {
    let mut note = [0u8; 64];
    match monitor::storage_get(b"note", &mut note) {
        Ok(len) => {
            sys::log!("note from an earlier boot: {}", core::str::from_utf8(&note[..len]).unwrap_or("?"))
        }
        Err(error) => sys::log!("no note ({})", error.name()),
    }
    if sys::info().name() != "notes" {
        return;
    }
    let mut count = [0u8; 4];
    let boots = match monitor::storage_get(b"boots", &mut count) {
        Ok(4) => u32::from_le_bytes(count) + 1,
        _ => 1,
    };
    let stored = monitor::storage_put(b"boots", &boots.to_le_bytes())
        .and_then(|()| monitor::storage_put(b"note", b"written by notes"));
    match stored {
        Ok(()) => sys::log!("boot {boots} of this app, counted in flash"),
        Err(error) => return sys::log!("storage failed: {}", error.name()),
    }
    // 1 KiB quota: each value costs its length plus 64 bytes.
    let big = [0x5a; 256];
    let mut written = 0;
    let refused = loop {
        let key = [b'b', b'0' + written];
        match monitor::storage_put(&key, &big) {
            Ok(()) => written += 1,
            Err(error) => break error,
        }
    };
    let intact = monitor::storage_get(b"boots", &mut count).is_ok() && u32::from_le_bytes(count) == boots;
    sys::log!(
        "quota: {written} big values fit, the next was refused with {}{}",
        refused.name(),
        if refused == Error::NoSpace && intact { "; earlier values intact" } else { "" }
    );
    for index in 0..written {
        let _ = monitor::storage_delete(&[b'b', b'0' + index]);
    }
}
