//! `agent`: the device's side of `septa-service` (docs/protocol.md).
//!
//! On boot and then at the interval the service sets in each answer (bounded to
//! [`INTERVAL_MIN_S`]..=[`INTERVAL_MAX_S`]), it checks in over a mutually authenticated TLS
//! session ([`http::connect`]): a fresh nonce from the service, an attestation token over it
//! from the monitor, the service's verdict. A trusted device gets a short-lived certificate,
//! which the agent hands to the monitor to keep (`device-cert`) and authenticates with from
//! then on; then the agent uploads the signed records of the report ring the service has not
//! acknowledged yet (`reports`), and installs an offered release by streaming its bundle
//! into the monitor's `update_begin/write/commit` — the monitor checks the bundle's
//! signatures and counters, as for any bundle; the agent is plumbing and trusted with
//! nothing. A failed check-in (no network, the service down, a download cut off) is retried
//! with exponential backoff; the device keeps running meanwhile, a half-downloaded bundle is
//! never committed, and a report counts as delivered only once the service has answered
//! that it stored it.

#![no_std]
#![no_main]

mod http;
mod reports;
mod update;

use core::fmt;
use septa_abi::device_auth::CERTIFICATE_MAX;
use septa_abi::service::{
    AttestRequest, AttestResponse, DeviceId, NonceRequest, NonceResponse, Offer, TOKEN_MAX, Verdict,
};
use septa_syscalls::{self as sys, Error, Hex, monitor};
use septa_tls::{Buffers, StaticBuffers};
use sha2::{Digest, Sha256};

septa_runtime::entry!(main);

/// The TLS session's record buffers.
static BUFFERS: StaticBuffers = StaticBuffers::new();
/// The large messages live in statics, not on the app's stack.
static TOKEN: spin::Mutex<[u8; TOKEN_MAX]> = spin::Mutex::new([0; TOKEN_MAX]);
static ATTEST: spin::Mutex<AttestRequest> =
    spin::Mutex::new(AttestRequest { device_id: [0; 8], token: heapless::Vec::new() });
/// Room for the attest request and, after it, the answer.
static BODY: spin::Mutex<[u8; 2 * TOKEN_MAX]> = spin::Mutex::new([0; 2 * TOKEN_MAX]);
static ANSWER: spin::Mutex<AttestResponse> = spin::Mutex::new(AttestResponse {
    verdict: Verdict::Untrusted,
    certificate: heapless::Vec::new(),
    not_after: 0,
    offer: None,
    check_in_interval_s: 0,
});

/// The range the agent keeps the service's check-in interval in: a service asking for
/// less cannot make the device spend its time checking in, and one asking for more (or a
/// wrong setting) cannot leave it unrenewed past the 24-hour certificate for long.
pub const INTERVAL_MIN_S: u32 = 2;
pub const INTERVAL_MAX_S: u32 = 3 * 24 * 3600;
/// Backoff after a failed check-in: doubled each time, up to the maximum.
const BACKOFF_MIN_MS: u32 = 1_000;
const BACKOFF_MAX_MS: u32 = 30_000;

/// Why a check-in did not complete.
pub enum Failure {
    Network(Error),
    Monitor(&'static str, Error),
    /// The TLS session failed or the service's certificate was refused.
    Tls(septa_tls::Error),
    /// The service answered with this status and text.
    Refused(u16, heapless::String<100>),
    Protocol(&'static str),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Network(e) => write!(f, "network: {e}"),
            Failure::Monitor(what, e) => write!(f, "monitor {what}: {e}"),
            Failure::Tls(e) => write!(f, "TLS: {e}"),
            Failure::Refused(status, text) => write!(f, "service answered {status}: {text}"),
            Failure::Protocol(what) => write!(f, "{what}"),
        }
    }
}

/// The first `max` bytes of `text`, cut at a character boundary.
pub fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The service's interval, bounded, in milliseconds.
fn interval_ms(seconds: u32) -> u32 {
    seconds.clamp(INTERVAL_MIN_S, INTERVAL_MAX_S) * 1000
}

fn main() {
    let Some(buffers) = BUFFERS.take() else { return };
    let device_id = loop {
        match device_id() {
            Ok(id) => break id,
            Err(failure) => {
                sys::log!("agent: cannot learn the device id: {failure}");
                sys::sleep(BACKOFF_MAX_MS);
            }
        }
    };
    sys::log!("agent: device {}; the service is {}:{}", Hex(&device_id), http::HOST, http::PORT);
    let mut backoff = BACKOFF_MIN_MS;
    loop {
        match check_in(&device_id, buffers) {
            Ok(interval_s) => {
                backoff = BACKOFF_MIN_MS;
                sys::sleep(interval_ms(interval_s));
            }
            Err(failure) => {
                sys::log!("agent: check-in failed: {failure}; retrying in {backoff} ms");
                sys::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
            }
        }
    }
}

/// The device id ([`septa_abi::keys::key_id`] of the device key): the device key comes in
/// every attestation token, so the agent asks for one over a throwaway nonce.
// Its own frame: inlined, the large locals of every step would share the stack at once.
#[inline(never)]
fn device_id() -> Result<DeviceId, Failure> {
    let mut nonce = [0u8; 32];
    monitor::random(&mut nonce).map_err(|e| Failure::Monitor("random", e))?;
    let mut token = TOKEN.lock();
    let len = monitor::attest(&nonce, &mut token[..]).map_err(|e| Failure::Monitor("attest", e))?;
    // A token starts with its claims, and the claims with the device key: postcard writes
    // fields in order, so the key decodes alone without the whole token on the stack.
    let (device_key, _): (heapless::Vec<u8, { septa_abi::keys::PUBLIC_KEY_LEN }>, _) =
        postcard::take_from_bytes(&token[..len]).map_err(|_| Failure::Protocol("token does not decode"))?;
    let digest = Sha256::digest(&device_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    Ok(id)
}

/// One check-in: attest, keep the certificate, upload reports (one session), then install
/// an offer (sessions of its own, resuming the download as needed). Returns the interval
/// the service asked for, in seconds.
// Its own frame: inlined, the large locals of every step would share the stack at once.
#[inline(never)]
fn check_in(device_id: &DeviceId, buffers: &mut Buffers) -> Result<u32, Failure> {
    let (offer, interval_s) = {
        let mut session = http::connect(buffers)?;
        let answer = attest(&mut session, device_id)?;
        reports::upload(&mut session, device_id)?;
        // close_notify; the socket closes when it is dropped.
        let _ = session.close();
        answer
    };
    if let Some(offer) = offer {
        update::install(buffers, &offer)?;
    }
    Ok(interval_s)
}

/// Nonce, token, verdict; keeps the certificate and returns the offer and the interval.
// Its own frame: inlined, the large locals of every step would share the stack at once.
#[inline(never)]
fn attest(session: &mut http::Session<'_>, device_id: &DeviceId) -> Result<(Option<Offer>, u32), Failure> {
    let mut buffer = BODY.lock();
    let request = postcard::to_slice(&NonceRequest { device_id: *device_id }, &mut buffer[..])
        .map_err(|_| Failure::Protocol("encoding"))?;
    let nonce: NonceResponse =
        http::request(session, "POST", "/device/v1/nonce", None, request)?.message(&mut [0u8; 128])?;
    let mut attest = ATTEST.lock();
    attest.device_id = *device_id;
    attest.token.clear();
    {
        let mut token = TOKEN.lock();
        let len = monitor::attest(&nonce.nonce, &mut token[..]).map_err(|e| Failure::Monitor("attest", e))?;
        attest.token.extend_from_slice(&token[..len]).map_err(|_| Failure::Protocol("token too long"))?;
    }
    let request = postcard::to_slice(&*attest, &mut buffer[..]).map_err(|_| Failure::Protocol("encoding"))?;
    let len = request.len();
    let (head, body) = buffer.split_at_mut(len);
    let body = http::request(session, "POST", "/device/v1/attest", None, head)?.ok_body(body)?;
    let mut answer = ANSWER.lock();
    *answer = http::decode(body)?;
    let next_s = interval_ms(answer.check_in_interval_s) / 1000;
    match answer.verdict {
        Verdict::Trusted => {
            keep_certificate(&answer.certificate)?;
            sys::log!(
                "agent: checked in: trusted; certificate valid until {}; next check-in in {next_s} s",
                answer.not_after
            );
        }
        Verdict::Untrusted => {
            sys::log!("agent: checked in: untrusted (no certificate); next check-in in {next_s} s")
        }
    }
    Ok((answer.offer.take(), answer.check_in_interval_s))
}

/// Hands a new certificate to the monitor, unless it already holds this one (no flash
/// write per check-in for nothing).
// Its own frame: inlined, the large locals of every step would share the stack at once.
#[inline(never)]
fn keep_certificate(certificate: &[u8]) -> Result<(), Failure> {
    let mut current = [0u8; CERTIFICATE_MAX];
    match monitor::device_certificate(&mut current) {
        Ok(len) if &current[..len] == certificate => return Ok(()),
        Ok(_) | Err(Error::NotFound) => {}
        Err(e) => return Err(Failure::Monitor("device certificate", e)),
    }
    monitor::device_certificate_install(certificate)
        .map_err(|e| Failure::Monitor("certificate install", e))?;
    sys::log!("agent: stored the new device certificate ({} bytes)", certificate.len());
    Ok(())
}
