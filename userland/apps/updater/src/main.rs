//! `updater`: installs the update bundle waiting in the inbox, if there is one.
//!
//! It maps the `inbox` device (RAM that `cargo xtask run --bundle` fills from the host),
//! hands the bundle's header to the security monitor, streams the slot image after it in
//! chunks and commits. The monitor checks everything — the updater is untrusted plumbing:
//! a bundle it garbles is refused like any other. On success the device resets into the
//! update and this app never learns more; the new software must then confirm itself.

#![no_std]
#![no_main]

use core::ptr::read_volatile;
use septa_abi::bundle::{self, HEADER_MAX};
use septa_abi::monitor::UPDATE_CHUNK_MAX;
use septa_syscalls::{self as sys, Error, HandleKind, monitor};

septa_runtime::entry!(main);

/// The inbox holds at most this much (the board's `inbox` device).
const INBOX_SIZE: usize = 2 << 20;

fn main() {
    let inbox = sys::lookup(HandleKind::Device, "inbox").expect("the manifest grants the inbox");
    let base = sys::map_device(inbox).expect("the inbox maps");
    // SAFETY: `base..base + INBOX_SIZE` is the inbox the kernel just mapped into this app.
    let byte = |at: usize| unsafe { read_volatile((base + at) as *const u8) };
    let mut header = [0u8; HEADER_MAX];
    for (at, slot) in header.iter_mut().enumerate() {
        *slot = byte(at);
    }
    if header[..4] != bundle::MAGIC {
        sys::log!("no update bundle in the inbox");
        return;
    }
    let parsed = match bundle::Header::parse(&header) {
        Ok(parsed) if parsed.len() + parsed.image_len <= INBOX_SIZE => parsed,
        Ok(_) => return fail("the bundle is larger than the inbox"),
        Err(error) => return sys::log!("the inbox holds no valid bundle: {error}"),
    };
    let (header_len, image_len) = (parsed.len(), parsed.image_len);
    sys::log!("found a {}-byte update bundle; sending it to the monitor", header_len + image_len);
    match monitor::update_begin(&header[..header_len]) {
        Ok(()) => {}
        Err(Error::Exists) => return sys::log!("the device already runs this update"),
        Err(Error::Busy) => {
            return sys::log!("an update is on trial; the next one waits for its confirmation");
        }
        Err(error) => return fail_with("the monitor refused the bundle header", error),
    }
    let mut chunk = [0u8; UPDATE_CHUNK_MAX];
    let mut sent = 0;
    while sent < image_len {
        let len = UPDATE_CHUNK_MAX.min(image_len - sent);
        for (at, slot) in chunk[..len].iter_mut().enumerate() {
            *slot = byte(header_len + sent + at);
        }
        if let Err(error) = monitor::update_write(sent as u32, &chunk[..len]) {
            return fail_with("staging failed", error);
        }
        sent += len;
    }
    sys::log!("{image_len} bytes staged; committing");
    if let Err(error) = monitor::update_commit() {
        fail_with("the monitor refused the update", error);
    }
}

fn fail_with(what: &str, error: Error) {
    sys::log!("{what}: {}", error.name());
    sys::exit(1)
}

fn fail(what: &str) {
    sys::log!("{what}");
    sys::exit(1)
}
