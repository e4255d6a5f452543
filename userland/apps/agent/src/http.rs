//! A minimal HTTP/1.1 client over a mutually authenticated TLS 1.3 session with the
//! service's device port: requests one after another on the session (keep-alive), bodies
//! sized by `Content-Length`, which is all the device protocol uses (docs/protocol.md).
//!
//! [`connect`] opens the session: the service's certificate must chain to the `dev-service`
//! CA the image embeds (`[tls] trust-anchors` in the manifest) and carry the name
//! [`HOST`], valid at the monitor's wall-clock time; the agent authenticates with the
//! device certificate the monitor holds, and the monitor signs the handshake with the device
//! key (`device-auth`). No session, no request: there is no plain-text path.
//!
//! Everything in an answer is untrusted: the head must fit [`HEAD_MAX`] bytes, the status
//! line must be `HTTP/1.x NNN`, and a body is read only up to its declared length and only
//! into the caller's bounded buffer.

use crate::Failure;
use core::fmt::Write;
use septa_abi::device_auth::CERTIFICATE_MAX;
use septa_syscalls::monitor;
use septa_syscalls::net::TcpStream;
use septa_tls::{Buffers, CertificateDer, ClientIdentity, ServerCheck, TrustAnchors};
use septa_tls_device::{DeviceKey, Rng, Socket};

/// The service, as the agent's manifest names it, and the name its certificate carries.
pub const HOST: &str = "devhost";
pub const PORT: u16 = 443;

/// The CAs the service's certificate may chain to (from the signed image).
static ANCHORS: &[CertificateDer<'static>] = &septa_tls::trust_anchors!();
/// The device certificate, read from the monitor for each session (kept off the stack).
static CERTIFICATE: spin::Mutex<[u8; CERTIFICATE_MAX]> = spin::Mutex::new([0; CERTIFICATE_MAX]);

/// A session with the service.
pub type Session<'b> = septa_tls::Session<'b, Socket>;

/// Connects the socket (in a frame of its own: the handshake that follows needs the stack).
#[inline(never)]
fn open_socket() -> Result<TcpStream, Failure> {
    TcpStream::connect(HOST, PORT).map_err(Failure::Network)
}

/// Opens a mutually authenticated session with the service.
#[inline(never)]
pub fn connect(buffers: &mut Buffers) -> Result<Session<'_>, Failure> {
    let now_unix = monitor::wall_clock().map_err(|e| Failure::Monitor("clock", e))?;
    let mut certificate = CERTIFICATE.lock();
    let len = monitor::device_certificate(&mut certificate[..])
        .map_err(|e| Failure::Monitor("device certificate", e))?;
    let stream = open_socket()?;
    let anchors = TrustAnchors::new(ANCHORS).map_err(Failure::Tls)?;
    let server = ServerCheck { anchors: &anchors, name: HOST, now_unix };
    let mut identity = ClientIdentity { certificate: &certificate[..len], signer: DeviceKey };
    let mut rng = Rng::from_monitor().map_err(|e| Failure::Monitor("random", e))?;
    septa_tls::connect(Socket(stream), buffers, &server, &mut identity, &mut rng).map_err(Failure::Tls)
}
/// The longest response head the agent accepts.
const HEAD_MAX: usize = 1024;

/// The head buffer (one request at a time; kept off the 16 KiB stack).
static HEAD: spin::Mutex<[u8; HEAD_MAX]> = spin::Mutex::new([0; HEAD_MAX]);

/// An answer whose head has been read; its body follows on the session, and must be read
/// to its end before the next request.
pub struct Response<'s, 'b> {
    session: &'s mut Session<'b>,
    pub status: u16,
    /// `Content-Length`, which every answer of the protocol has.
    pub length: usize,
    /// The head as read, and the body bytes that came with it (`early_at..early_end`).
    early: spin::MutexGuard<'static, [u8; HEAD_MAX]>,
    early_at: usize,
    early_end: usize,
    /// Body bytes handed out so far.
    taken: usize,
}

/// Sends one request on `session` and reads the answer's head.
// Its own frame: inlined, the large locals of every step would share the stack at once.
#[inline(never)]
pub fn request<'s, 'b>(
    session: &'s mut Session<'b>,
    method: &str,
    path: &str,
    range_from: Option<usize>,
    body: &[u8],
) -> Result<Response<'s, 'b>, Failure> {
    let mut head = heapless::String::<256>::new();
    let _ = write!(head, "{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n");
    if let Some(from) = range_from {
        let _ = write!(head, "Range: bytes={from}-\r\n");
    }
    if !body.is_empty() || method == "POST" {
        let _ = write!(head, "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n", body.len());
    }
    if head.push_str("\r\n").is_err() {
        return Err(Failure::Protocol("request head too long"));
    }
    session.write_all(head.as_bytes()).map_err(Failure::Tls)?;
    if !body.is_empty() {
        session.write_all(body).map_err(Failure::Tls)?;
    }

    let mut response = Response {
        session,
        status: 0,
        length: 0,
        early: HEAD.try_lock().ok_or(Failure::Protocol("two requests at once"))?,
        early_at: 0,
        early_end: 0,
        taken: 0,
    };
    let mut filled = 0;
    let head_end = loop {
        if let Some(at) = response.early[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if filled == HEAD_MAX {
            return Err(Failure::Protocol("response head too long"));
        }
        match response.session.read(&mut response.early[filled..]).map_err(Failure::Tls)? {
            0 => return Err(Failure::Protocol("connection closed before the response head")),
            n => filled += n,
        }
    };
    (response.status, response.length) = parse_head(&response.early[..head_end])?;
    // The body's first bytes may have come with the head.
    response.early_at = head_end;
    response.early_end = filled.min(head_end + response.length);
    Ok(response)
}

/// The status code and `Content-Length` of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, usize), Failure> {
    let text = core::str::from_utf8(head).map_err(|_| Failure::Protocol("response head is not text"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok()).filter(|c| (100..600).contains(c));
    let (true, Some(status)) = (version.starts_with("HTTP/1."), code) else {
        return Err(Failure::Protocol("malformed status line"));
    };
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length =
                Some(value.trim().parse::<usize>().map_err(|_| Failure::Protocol("bad Content-Length"))?);
        }
    }
    Ok((status, length.ok_or(Failure::Protocol("response without Content-Length"))?))
}

impl Response<'_, '_> {
    /// Reads the next body bytes into `out`; 0 at the end of the body.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, Failure> {
        let left = self.length - self.taken;
        let want = out.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = if self.early_at < self.early_end {
            let n = want.min(self.early_end - self.early_at);
            out[..n].copy_from_slice(&self.early[self.early_at..self.early_at + n]);
            self.early_at += n;
            n
        } else {
            match self.session.read(&mut out[..want]).map_err(Failure::Tls)? {
                0 => return Err(Failure::Protocol("connection closed inside the body")),
                n => n,
            }
        };
        self.taken += n;
        Ok(n)
    }

    /// The whole body into `out`, which must hold it; returns its length.
    pub fn body<'a>(&mut self, out: &'a mut [u8]) -> Result<&'a [u8], Failure> {
        if self.length > out.len() {
            return Err(Failure::Protocol("response body too large"));
        }
        let mut at = 0;
        while at < self.length {
            at += self.read(&mut out[at..self.length])?;
        }
        Ok(&out[..at])
    }

    /// The body of a 200 answer into `buffer`; any other status is the service's refusal.
    pub fn ok_body(mut self, buffer: &mut [u8]) -> Result<&[u8], Failure> {
        let status = self.status;
        let body = self.body(buffer)?;
        if status != 200 {
            let text = crate::truncated(core::str::from_utf8(body).unwrap_or("(not text)"), 100);
            return Err(Failure::Refused(status, heapless::String::try_from(text).unwrap_or_default()));
        }
        Ok(body)
    }

    /// The body of a 200 answer as a (small) message of the protocol.
    pub fn message<T: serde::de::DeserializeOwned>(self, buffer: &mut [u8]) -> Result<T, Failure> {
        decode(self.ok_body(buffer)?)
    }
}

pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    postcard::from_bytes(body).map_err(|_| Failure::Protocol("the answer does not decode"))
}
