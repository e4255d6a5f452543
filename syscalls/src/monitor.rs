//! The security monitor's services, through the one narrow syscall `monitor_call`.
//!
//! Each needs the matching `monitor = [...]` capability in the app's manifest; without it
//! the kernel answers `EACCES` and the monitor is never called. Keys are the app's own:
//! derived by the monitor from the boot's CDI and the app's component id, never exported.

use crate::request::encode;
use crate::{Error, Handle, HandleKind, Syscall, lengths, lookup, raw_syscall7};
use core::sync::atomic::{AtomicU32, Ordering};
use septa_abi::monitor::{REQUEST_MAX, Request};

/// The process's `monitor` handle, looked up on first use (`u32::MAX`: not yet). A handle
/// stays valid for the whole life of the process, so one lookup is enough.
static MONITOR: AtomicU32 = AtomicU32::new(u32::MAX);

fn call(request: &Request<'_>, response: &mut [u8]) -> Result<usize, Error> {
    call_apart(request, &[], response)
}

/// [`call`] with `tail`, the request's last field, left where it lies for the kernel to
/// copy (`crate::request`).
fn call_apart(request: &Request<'_>, tail: &[u8], response: &mut [u8]) -> Result<usize, Error> {
    let monitor = match MONITOR.load(Ordering::Relaxed) {
        u32::MAX => {
            let handle = lookup(HandleKind::Monitor, "monitor")?;
            MONITOR.store(handle.0, Ordering::Relaxed);
            handle
        }
        cached => Handle(cached),
    };
    send(monitor, request, tail, response)
}

/// One `monitor_call` with an explicit handle.
pub fn call_with(monitor: Handle, request: &Request<'_>, response: &mut [u8]) -> Result<usize, Error> {
    send(monitor, request, &[], response)
}

#[inline(never)] // one copy for every service's stub
fn send(monitor: Handle, request: &Request<'_>, tail: &[u8], response: &mut [u8]) -> Result<usize, Error> {
    let mut encoded = heapless::Vec::<u8, REQUEST_MAX>::new();
    encode(request, tail, &mut encoded)?;
    let args = [
        monitor.0,
        request.service() as u32,
        encoded.as_ptr() as u32,
        lengths(encoded.len(), tail.len()),
        response.as_mut_ptr() as u32,
        response.len() as u32,
    ];
    raw_syscall7(Syscall::MonitorCall as u32, args, tail.as_ptr() as u32).map(|n| n as usize)
}

/// Fills `buffer` (at most 256 bytes) with random bytes from the monitor's DRBG.
pub fn random(buffer: &mut [u8]) -> Result<(), Error> {
    let len = call(&Request::Random { len: buffer.len() as u16 }, buffer)?;
    if len == buffer.len() { Ok(()) } else { Err(Error::Invalid) }
}

/// SHA-256 of `data`, computed in the secure world.
pub fn sha256(data: &[u8]) -> Result<[u8; 32], Error> {
    let mut digest = [0u8; 32];
    call_apart(&Request::Sha256 { data }, data, &mut digest)?;
    Ok(digest)
}

/// The app's own P-256 public key (SEC1 uncompressed, 65 bytes).
pub fn public_key() -> Result<[u8; 65], Error> {
    let mut key = [0u8; 65];
    call(&Request::PublicKey, &mut key)?;
    Ok(key)
}

/// ECDSA P-256 (SHA-256) signature of `message` with the app's own key: r ‖ s.
pub fn sign(message: &[u8]) -> Result<[u8; 64], Error> {
    let mut signature = [0u8; 64];
    call_apart(&Request::Sign { message }, message, &mut signature)?;
    Ok(signature)
}

/// Whether `signature` is valid for `message` under `public_key`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<bool, Error> {
    let mut answer = [0u8; 1];
    call(&Request::Verify { public_key, message, signature }, &mut answer)?;
    Ok(answer[0] == 1)
}

/// An attestation token over `nonce`, written into `token`; returns its length.
pub fn attest(nonce: &[u8], token: &mut [u8]) -> Result<usize, Error> {
    call(&Request::Attest { nonce }, token)
}

/// The app's value under `key` (at most 32 bytes), written into `value`; returns its
/// length. `ENOENT` if there is none. Needs `monitor = ["storage"]` and `storage-kib`.
pub fn storage_get(key: &[u8], value: &mut [u8]) -> Result<usize, Error> {
    call(&Request::StorageGet { key }, value)
}

/// Stores `value` (at most 256 bytes) under `key`, sealed to this device and app, in flash.
/// `ENOSPC` if it would exceed the app's quota (the old value stays).
pub fn storage_put(key: &[u8], value: &[u8]) -> Result<(), Error> {
    call(&Request::StoragePut { key, value }, &mut []).map(|_| ())
}

/// Deletes the app's value under `key` (`ENOENT` if there is none).
pub fn storage_delete(key: &[u8]) -> Result<(), Error> {
    call(&Request::StorageDelete { key }, &mut []).map(|_| ())
}

/// Starts an update with the bundle's header; the monitor checks its signature now.
/// `EPERM` for a bundle it refuses, `EEXIST` if the device already runs it, `EBUSY` while
/// an update is on trial. Needs `monitor = ["update"]`.
pub fn update_begin(header: &[u8]) -> Result<(), Error> {
    call(&Request::UpdateBegin { header }, &mut []).map(|_| ())
}

/// The next chunk (at most [`septa_abi::monitor::UPDATE_CHUNK_MAX`] bytes, a multiple of 4
/// except the last) of the bundle's slot image, which starts right after the header.
pub fn update_write(offset: u32, data: &[u8]) -> Result<(), Error> {
    call_apart(&Request::UpdateWrite { offset, data }, data, &mut []).map(|_| ())
}

/// Has the monitor check the whole bundle and install it; on success the device resets
/// into the update and this never returns. `EPERM` if the bundle is refused.
pub fn update_commit() -> Result<(), Error> {
    call(&Request::UpdateCommit, &mut []).map(|_| ())
}

/// The TLS 1.3 client CertificateVerify signature (ECDSA P-256, r ‖ s) for
/// `transcript_hash`, by the device identity key. The monitor builds the signed content
/// itself (RFC 8446 §4.4.3), so this signs nothing else. Needs `monitor = ["device-auth"]`.
pub fn device_auth_sign(transcript_hash: &[u8; 32]) -> Result<[u8; 64], Error> {
    let mut signature = [0u8; 64];
    call(&Request::DeviceAuthSign { transcript_hash: *transcript_hash }, &mut signature)?;
    Ok(signature)
}

/// The device's current certificate (DER) into `out`; returns its length. `ENOENT` if the
/// device has none. Needs `monitor = ["device-auth"]`.
pub fn device_certificate(out: &mut [u8]) -> Result<usize, Error> {
    call(&Request::DeviceCertificate, out)
}

/// Installs a newer device certificate (DER, for the device key, at most
/// [`septa_abi::device_auth::CERTIFICATE_MAX`] bytes): from now on it is the device's
/// certificate, across reboots. `EPERM` for a certificate of another key. Needs
/// `monitor = ["device-cert"]`.
pub fn device_certificate_install(certificate: &[u8]) -> Result<(), Error> {
    call(&Request::DeviceCertificateInstall { certificate }, &mut []).map(|_| ())
}

/// A copy of the oldest signed report in the monitor's report ring that comes after `after`
/// (the boot count and first sequence number of the last report handed on; `None`: the
/// oldest) into `out`; returns its length. `ENOENT` when there is none. Needs
/// `monitor = ["reports"]`.
pub fn report_read(after: Option<(u32, u64)>, out: &mut [u8]) -> Result<usize, Error> {
    call(&Request::ReportRead { after }, out)
}

/// Wall-clock time from the board's real-time clock, in seconds since 1970 (the PL031 on
/// `qemu-virt`; `EIO` on a board without one). Needs `monitor = ["time"]`.
pub fn wall_clock() -> Result<u64, Error> {
    let mut now = [0u8; 8];
    match call(&Request::WallClock, &mut now)? {
        8 => Ok(u64::from_le_bytes(now)),
        _ => Err(Error::Invalid),
    }
}
