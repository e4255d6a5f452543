//! How an app lays out a monitor request for `monitor_call`: postcard, as the monitor
//! decodes it, but its last field, if bytes, may be left where the app keeps it (its tail),
//! for the kernel to copy into the shared page right after the rest — so hashing or signing
//! a buffer costs the app no copy of it (`septa_abi::monitor`).

use crate::Error;
use septa_abi::monitor::{REQUEST_MAX, Request};

/// Postcard output into a `heapless::Vec`, which (unlike an array) need not be zeroed first:
/// a call costs the bytes of its request, not the 960 of the largest one. The bytes of
/// `tail` — the request's last field, known by its address — are not written: the kernel
/// takes them from where they lie.
struct Encoder<'a> {
    out: &'a mut heapless::Vec<u8, REQUEST_MAX>,
    tail: &'a [u8],
    /// How much was written when `tail` was left out (`usize::MAX`: not yet).
    head_len: usize,
}

impl postcard::ser_flavors::Flavor for Encoder<'_> {
    type Output = usize;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.out.push(byte).map_err(|_| postcard::Error::SerializeBufferFull)
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        // The length first: no tail (empty) is never matched, and rarely anything else.
        if bytes.len() == self.tail.len() && !bytes.is_empty() && bytes.as_ptr() == self.tail.as_ptr() {
            if self.head_len != usize::MAX {
                // The same bytes twice in the request: the first must stay in the head.
                return Err(postcard::Error::SerializeBufferFull);
            }
            self.head_len = self.out.len();
            return Ok(());
        }
        self.out.extend_from_slice(bytes).map_err(|_| postcard::Error::SerializeBufferFull)
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.head_len)
    }
}

/// Encodes `request` into `out` (empty), but for `tail` (empty: none), which must be its
/// last field; `Invalid` if it is not, or if the whole request is over `REQUEST_MAX` bytes.
pub fn encode(
    request: &Request<'_>,
    tail: &[u8],
    out: &mut heapless::Vec<u8, REQUEST_MAX>,
) -> Result<(), Error> {
    let encoder = Encoder { out: &mut *out, tail, head_len: usize::MAX };
    let head_len = postcard::serialize_with_flavor(request, encoder).map_err(|_| Error::Invalid)?;
    // A tail is left out, with nothing written after it.
    let expected = if tail.is_empty() { usize::MAX } else { out.len() };
    if head_len != expected || out.len() + tail.len() > REQUEST_MAX {
        return Err(Error::Invalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request's last field, where it is bytes.
    fn tail<'a>(request: &Request<'a>) -> &'a [u8] {
        match *request {
            Request::Sha256 { data } | Request::UpdateWrite { data, .. } => data,
            Request::Sign { message } => message,
            Request::Verify { signature, .. } => signature,
            _ => &[],
        }
    }

    #[test]
    fn requests_encode_as_postcard_does_with_or_without_their_tail_apart() {
        let data = [0x5a; 448];
        let requests = [
            Request::Random { len: 16 },
            Request::Sha256 { data: &data },
            Request::Sha256 { data: &data[..1] },
            Request::Sign { message: &data[..300] },
            Request::UpdateWrite { offset: 448, data: &data },
            Request::Verify { public_key: &[4; 65], message: b"m", signature: &[1; 64] },
        ];
        for request in requests {
            let mut expected = [0u8; REQUEST_MAX];
            let expected = postcard::to_slice(&request, &mut expected).unwrap();
            let mut whole = heapless::Vec::new();
            encode(&request, &[], &mut whole).unwrap();
            assert_eq!(&whole[..], &expected[..], "{request:?}");
            // What the kernel puts into the shared page: the encoding, then the tail.
            let mut head = heapless::Vec::new();
            encode(&request, tail(&request), &mut head).unwrap();
            assert_eq!([&head[..], tail(&request)].concat(), expected, "{request:?}");
        }
    }

    #[test]
    fn a_tail_that_is_not_the_last_field_or_too_much_is_invalid() {
        let data = [7u8; REQUEST_MAX];
        let mut out = heapless::Vec::new();
        let verify = Request::Verify { public_key: &data[..65], message: &data[..5], signature: &data[..64] };
        assert_eq!(encode(&verify, &data[..5], &mut out), Err(Error::Invalid), "a field before the last");
        out.clear();
        let copy = [7u8; 64];
        assert_eq!(encode(&verify, &copy, &mut out), Err(Error::Invalid), "equal bytes elsewhere");
        out.clear();
        let twice = Request::Verify { public_key: &data[..64], message: &data[..5], signature: &data[..64] };
        assert_eq!(encode(&twice, &data[..64], &mut out), Err(Error::Invalid), "the tail's bytes twice");
        for whole in [true, false] {
            for (len, fits) in [(REQUEST_MAX, false), (REQUEST_MAX - 2, false), (REQUEST_MAX - 3, true)] {
                let request = Request::Sha256 { data: &data[..len] };
                let apart: &[u8] = if whole { &[] } else { &data[..len] };
                out.clear();
                assert_eq!(encode(&request, apart, &mut out).is_ok(), fits, "{len} bytes, apart: {}", !whole);
            }
        }
    }
}
