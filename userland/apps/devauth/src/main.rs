//! `devauth`: the monitor's `device-auth` service from an app, the way a TLS client uses it.
//! It fetches the device certificate and checks its chain to the device CA (a trust anchor
//! its manifest names) at the time of the PL031 real-time clock; has the monitor sign a
//! TLS 1.3 client CertificateVerify for a transcript hash; tries to make the service sign
//! something else; and re-installs the certificate (`device-cert`) and one for another key.
//! Everything is printed for the integration test, which checks the signature on the host
//! against the device key. Packed without the capabilities (as `noauth`), every step fails
//! with `EACCES`.

#![no_std]
#![no_main]

use core::ptr::read_volatile;
use septa_abi::device_auth::CERTIFICATE_MAX;
use septa_abi::monitor::{Request, Service};
use septa_syscalls::{self as sys, HandleKind, Hex, Syscall, monitor};
use septa_tls::{CertificateDer, TrustAnchors, Usage};
use sha2::{Digest, Sha256};

septa_runtime::entry!(main);

static ANCHORS: &[CertificateDer<'static>] = &septa_tls::trust_anchors!();

const LINE_BYTES: usize = 96;

/// Seconds since 1970 from the PL031 (its data register), if the app may map it.
fn rtc_seconds() -> Option<u64> {
    let rtc = sys::lookup(HandleKind::Device, "rtc").ok()?;
    let base = sys::map_device(rtc).ok()?;
    // SAFETY: `base` is the PL031 the kernel just mapped into this app as device memory;
    // offset 0 is its read-only data register.
    Some(unsafe { read_volatile(base as *const u32) } as u64)
}

fn main() {
    let mut certificate = [0u8; CERTIFICATE_MAX];
    let len = match monitor::device_certificate(&mut certificate) {
        Ok(len) => len,
        Err(error) => {
            sys::log!("certificate -> Err({error:?})");
            0
        }
    };
    let certificate = &certificate[..len];
    let lines = len.div_ceil(LINE_BYTES);
    for (i, chunk) in certificate.chunks(LINE_BYTES).enumerate() {
        sys::log!("certificate {}/{lines} {}", i + 1, Hex(chunk));
    }

    if let (Some(now), false) = (rtc_seconds(), certificate.is_empty()) {
        let result = TrustAnchors::new(ANCHORS).map_err(|_| septa_tls::CertificateError::Malformed).and_then(
            |anchors| {
                septa_tls::verify_chain(&anchors, &[certificate], septa_tls::unix_time(now), Usage::Client)
            },
        );
        sys::log!("chain to the device CA at rtc time {now}: {result:?}");
        let result = TrustAnchors::new(ANCHORS).map_err(|_| septa_tls::CertificateError::Malformed).and_then(
            |anchors| {
                septa_tls::verify_chain(&anchors, &[certificate], septa_tls::unix_time(0), Usage::Client)
            },
        );
        sys::log!("chain to the device CA in 1970: {result:?}");
    }

    let hash: [u8; 32] = Sha256::digest(b"septa device-auth test transcript").into();
    sys::log!("transcript hash {}", Hex(&hash));
    match monitor::device_auth_sign(&hash) {
        Ok(signature) => sys::log!("certificate verify signature {}", Hex(&signature)),
        Err(error) => sys::log!("sign -> Err({error:?})"),
    }

    // Arbitrary data — here the certificate body — in a request of the general signing
    // service, sent under device-auth's service number: the monitor must refuse it.
    if let Ok(handle) = sys::lookup(HandleKind::Monitor, "monitor") {
        let mut encoded = [0u8; 1024];
        let body = certificate.get(..certificate.len().min(400)).unwrap_or(&[]);
        if let Ok(encoded) = postcard::to_slice(&Request::Sign { message: body }, &mut encoded) {
            let mut response = [0u8; 64];
            let args = [
                handle.0,
                Service::DeviceAuthSign as u32,
                encoded.as_ptr() as u32,
                encoded.len() as u32,
                response.as_mut_ptr() as u32,
                64,
            ];
            let result = sys::raw_syscall6(Syscall::MonitorCall as u32, args);
            sys::log!("certificate body under device-auth -> {result:?}");
        }
    }

    if !certificate.is_empty() {
        // A certificate for another key: the device key's point altered in one byte.
        let mut foreign = [0u8; CERTIFICATE_MAX];
        foreign[..len].copy_from_slice(certificate);
        if let Some(at) = foreign[..len].windows(3).rposition(|w| w == [0x03, 0x42, 0x00]) {
            foreign[at + 10] ^= 1;
        }
        sys::log!(
            "install foreign certificate -> {:?}",
            monitor::device_certificate_install(&foreign[..len])
        );
        sys::log!("install certificate -> {:?}", monitor::device_certificate_install(certificate));
    }
    sys::log!("done");
}
