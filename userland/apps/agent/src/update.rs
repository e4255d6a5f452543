//! Installing an offered release: the bundle streams from the service straight into the
//! monitor (`update_begin` with its header, `update_write` with the slot image in order,
//! `update_commit`), and its SHA-256 is checked against the offer before the commit. A
//! download cut off resumes, in a new TLS session, with a `Range` request at the byte it
//! reached; the monitor's
//! staging is not committed until every byte is there and matches — and the monitor checks
//! the bundle's signatures and anti-rollback counters itself, whatever the agent says.

use crate::{Failure, http};
use septa_abi::bundle::{HEADER_MAX, Header};
use septa_abi::monitor::UPDATE_CHUNK_MAX;
use septa_abi::service::Offer;
use septa_syscalls::{self as sys, Error, Hex, monitor};
use septa_tls::Buffers;
use sha2::{Digest, Sha256};

/// Attempts of one download (each resuming where the last stopped) before the check-in fails.
const ATTEMPTS: u32 = 5;

/// The bundle's progress through the monitor.
struct Stream {
    /// Bundle bytes received and passed on.
    received: usize,
    hash: Sha256,
    header: heapless::Vec<u8, HEADER_MAX>,
    /// Header length and image length, once the header was accepted.
    begun: Option<(usize, usize)>,
    chunk: heapless::Vec<u8, UPDATE_CHUNK_MAX>,
    /// Image bytes written to the monitor.
    staged: usize,
}

/// What became of an offer the monitor would not take.
pub enum Declined {
    AlreadyInstalled,
}

impl Stream {
    fn feed(&mut self, mut data: &[u8], total: usize) -> Result<Option<Declined>, Failure> {
        self.hash.update(data);
        self.received += data.len();
        if self.begun.is_none() {
            let room = (HEADER_MAX - self.header.len()).min(data.len());
            let _ = self.header.extend_from_slice(&data[..room]); // cannot fail: `room` fits
            data = &data[room..];
            if self.header.len() < HEADER_MAX && self.received < total {
                return Ok(None);
            }
            let header =
                Header::parse(&self.header).map_err(|_| Failure::Protocol("not an update bundle"))?;
            let (header_len, image_len) = (header.len(), header.image_len);
            if header_len + image_len != total {
                return Err(Failure::Protocol("the bundle's length does not match its header"));
            }
            match monitor::update_begin(&self.header[..header_len]) {
                Ok(()) => {}
                Err(Error::Exists) => return Ok(Some(Declined::AlreadyInstalled)),
                Err(e) => return Err(Failure::Monitor("update_begin", e)),
            }
            self.begun = Some((header_len, image_len));
            // The bytes after the header in the buffer are the image's first bytes.
            let rest: heapless::Vec<u8, HEADER_MAX> =
                heapless::Vec::from_slice(&self.header[header_len..]).unwrap_or_default();
            self.push(&rest)?;
        }
        self.push(data)?;
        Ok(None)
    }

    /// Writes image bytes to the monitor in full chunks (the last one may be short).
    fn push(&mut self, mut data: &[u8]) -> Result<(), Failure> {
        let (_, image_len) = self.begun.ok_or(Failure::Protocol("no header yet"))?;
        while !data.is_empty() {
            let room = (UPDATE_CHUNK_MAX - self.chunk.len()).min(data.len());
            let _ = self.chunk.extend_from_slice(&data[..room]);
            data = &data[room..];
            if self.chunk.is_full() || self.staged + self.chunk.len() == image_len {
                monitor::update_write(self.staged as u32, &self.chunk)
                    .map_err(|e| Failure::Monitor("update_write", e))?;
                self.staged += self.chunk.len();
                self.chunk.clear();
            }
        }
        Ok(())
    }
}

/// Downloads and installs `offer`. On success the device resets into the update and this
/// does not return.
// Its own frame: inlined, the large locals of every step would share the stack at once.
#[inline(never)]
pub fn install(buffers: &mut Buffers, offer: &Offer) -> Result<(), Failure> {
    let total = offer.bundle_len as usize;
    sys::log!("agent: offered a {total}-byte bundle, sha256 {}", Hex(&offer.bundle_sha256));
    let mut path = heapless::String::<64>::new();
    let _ = path.push_str("/device/v1/bundle/");
    for byte in offer.ticket {
        let _ = core::fmt::Write::write_fmt(&mut path, format_args!("{byte:02x}"));
    }
    let mut stream = Stream {
        received: 0,
        hash: Sha256::new(),
        header: heapless::Vec::new(),
        begun: None,
        chunk: heapless::Vec::new(),
        staged: 0,
    };
    let mut attempt = 0;
    let mut buffer = [0u8; 1024];
    while stream.received < total {
        attempt += 1;
        let result = (|| -> Result<Option<Declined>, Failure> {
            let mut session = http::connect(buffers)?;
            let mut response = http::request(&mut session, "GET", &path, Some(stream.received), &[])?;
            let expected = if stream.received == 0 { [200, 206] } else { [206, 206] };
            if !expected.contains(&response.status) {
                let body = response.body(&mut buffer).unwrap_or_default();
                let text = crate::truncated(core::str::from_utf8(body).unwrap_or(""), 100);
                return Err(Failure::Refused(
                    response.status,
                    heapless::String::try_from(text).unwrap_or_default(),
                ));
            }
            if stream.received + response.length > total {
                return Err(Failure::Protocol("the service sends more than the offer's length"));
            }
            loop {
                let n = response.read(&mut buffer)?;
                if n == 0 {
                    return Ok(None);
                }
                if let Some(declined) = stream.feed(&buffer[..n], total)? {
                    return Ok(Some(declined));
                }
            }
        })();
        match result {
            Ok(Some(Declined::AlreadyInstalled)) => {
                sys::log!("agent: the device already runs the offered release");
                return Ok(());
            }
            Ok(None) => {}
            Err(failure @ (Failure::Network(_) | Failure::Tls(_) | Failure::Protocol(_)))
                if attempt < ATTEMPTS =>
            {
                sys::log!(
                    "agent: download stopped at {} of {total} bytes ({failure}); resuming",
                    stream.received
                );
            }
            Err(failure) => return Err(failure),
        }
    }
    let digest: [u8; 32] = stream.hash.finalize().into();
    if digest != offer.bundle_sha256 {
        return Err(Failure::Protocol("the bundle does not match the offer's SHA-256; not installed"));
    }
    sys::log!("agent: downloaded {total} bytes, staged {} image bytes; committing", stream.staged);
    monitor::update_commit().map_err(|e| Failure::Monitor("update_commit", e))
}
