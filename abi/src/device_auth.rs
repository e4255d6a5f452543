//! Device authentication: what the monitor's `device-auth` service signs, and the store of
//! device certificates it hands out.
//!
//! The service signs exactly one kind of message with the device identity key: the TLS 1.3
//! client CertificateVerify content of RFC 8446 §4.4.3 — 64 spaces, the context string
//! `TLS 1.3, client CertificateVerify`, a zero byte, then the 32-byte SHA-256 transcript
//! hash. The app sends only the hash; the monitor builds the rest with
//! [`client_certificate_verify`], so no request can make it sign a certificate body, an
//! attestation claim or anything else that starts differently.
//!
//! Device certificates (X.509 DER for the device identity key, issued by the OEM's device
//! CA at provisioning and later, short-lived, by the security service) live in a rewrite
//! journal of their own in flash 1: every record is one whole certificate and the newest
//! intact record is the device's certificate. Installing a newer one appends a record, so a
//! renewed certificate replaces the factory one without a reflash, and a power cut during
//! the write leaves the previous one in force.

use crate::flash::Flash;
use crate::journal::{Journal, JournalError, Mode};

/// The TLS 1.3 context string of a client's CertificateVerify.
pub const CLIENT_CONTEXT: &[u8] = b"TLS 1.3, client CertificateVerify";
/// Length of the signed content: 64 spaces, the context, a zero byte, the hash.
pub const CERTIFICATE_VERIFY_LEN: usize = 64 + CLIENT_CONTEXT.len() + 1 + 32;
/// The longest device certificate (DER) the store and the services take.
pub const CERTIFICATE_MAX: usize = 900;
/// Journal tag of a certificate record.
pub const CERTIFICATE_TAG: u16 = 0x4345; // "CE"

/// The certificate journal over `sectors` erase sectors at `base` (offsets in flash 1).
pub const fn journal(base: usize, sectors: usize) -> Journal {
    Journal::new(base, sectors, Mode::Rewrite)
}

/// Copies the device's current certificate — the newest intact record — into `out` and
/// returns its length; `None` if the journal holds none.
pub fn current(flash: &impl Flash, journal: &Journal, out: &mut [u8]) -> Option<usize> {
    let mut newest = None;
    journal.read(flash, |entry| {
        if entry.intact && entry.tag == CERTIFICATE_TAG && entry.payload.len() <= CERTIFICATE_MAX {
            newest = Some(entry.offset);
        }
    });
    let (_, len) = journal.read_at(flash, newest?, out)?;
    Some(len)
}

/// Makes `certificate` the device's certificate from now on.
pub fn install(flash: &mut impl Flash, journal: &Journal, certificate: &[u8]) -> Result<(), JournalError> {
    if certificate.len() > CERTIFICATE_MAX {
        return Err(JournalError::TooLarge);
    }
    journal.append_latest(flash, CERTIFICATE_TAG, certificate)
}

/// The content a TLS 1.3 client signs in its CertificateVerify for `transcript_hash`.
pub fn client_certificate_verify(transcript_hash: &[u8; 32]) -> [u8; CERTIFICATE_VERIFY_LEN] {
    let mut content = [0x20u8; CERTIFICATE_VERIFY_LEN];
    content[64..64 + CLIENT_CONTEXT.len()].copy_from_slice(CLIENT_CONTEXT);
    content[64 + CLIENT_CONTEXT.len()] = 0;
    content[64 + CLIENT_CONTEXT.len() + 1..].copy_from_slice(transcript_hash);
    content
}

/// The transcript hash of a client CertificateVerify content, if `content` is exactly one.
pub fn transcript_hash_of(content: &[u8]) -> Option<[u8; 32]> {
    if content.len() != CERTIFICATE_VERIFY_LEN {
        return None;
    }
    let hash: [u8; 32] = content[CERTIFICATE_VERIFY_LEN - 32..].try_into().ok()?;
    (client_certificate_verify(&hash)[..] == *content).then_some(hash)
}

/// Whether `certificate` looks like a DER certificate for `device_key` (SEC1 uncompressed):
/// an outer SEQUENCE that fills it exactly, of at most [`CERTIFICATE_MAX`] bytes, whose
/// subject public key info carries the key as its BIT STRING. The monitor stores only such
/// certificates: one for another key could never be used with the device's signatures.
/// (The issuer's signature is checked by whoever relies on the certificate.)
pub fn is_certificate_for(certificate: &[u8], device_key: &[u8; 65]) -> bool {
    if certificate.len() > CERTIFICATE_MAX || !outer_sequence_fills(certificate) {
        return false;
    }
    // The key appears in the SPKI as BIT STRING (0x03), length 66, no unused bits.
    let mut needle = [0u8; 68];
    needle[..3].copy_from_slice(&[0x03, 0x42, 0x00]);
    needle[3..].copy_from_slice(device_key);
    certificate.windows(needle.len()).any(|window| window == needle)
}

fn outer_sequence_fills(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return false;
    };
    let (len, header) = match first {
        0..=0x7f => (first as usize, 2),
        0x81 => (der.get(2).map_or(0, |&b| b as usize), 3),
        0x82 => match der.get(2..4) {
            Some(b) => ((b[0] as usize) << 8 | b[1] as usize, 4),
            None => return false,
        },
        _ => return false,
    };
    header + len == der.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_the_rfc_8446_layout() {
        let content = client_certificate_verify(&[7; 32]);
        assert_eq!(content.len(), 130);
        assert!(content[..64].iter().all(|&b| b == b' '));
        assert_eq!(&content[64..97], b"TLS 1.3, client CertificateVerify");
        assert_eq!(content[97], 0);
        assert_eq!(&content[98..], &[7; 32]);
        assert_eq!(transcript_hash_of(&content), Some([7; 32]));
    }

    #[test]
    fn other_content_has_no_transcript_hash() {
        let mut server = client_certificate_verify(&[1; 32]);
        server[64..97].copy_from_slice(b"TLS 1.3, server CertificateVerify");
        assert_eq!(transcript_hash_of(&server), None);
        assert_eq!(transcript_hash_of(&client_certificate_verify(&[1; 32])[..129]), None);
        assert_eq!(transcript_hash_of(&[0x20; 130]), None);
    }

    #[test]
    fn certificates_must_carry_the_device_key_and_be_whole() {
        let key = [4u8; 65];
        let mut body = std::vec::Vec::from([0x30, 0x81, 0]);
        body.extend_from_slice(&[0x03, 0x42, 0x00]);
        body.extend_from_slice(&key);
        body.extend_from_slice(&[0x05, 0x00]);
        body[2] = (body.len() - 3) as u8;
        assert!(is_certificate_for(&body, &key));
        assert!(!is_certificate_for(&body, &[5; 65]), "another key");
        assert!(!is_certificate_for(&body[..body.len() - 1], &key), "cut short");
        let mut longer = body.clone();
        longer.push(0);
        assert!(!is_certificate_for(&longer, &key), "trailing bytes");
        assert!(!is_certificate_for(&[], &key));
        assert!(!is_certificate_for(&[0x30, 0x82, 0xff, 0xff], &key));
    }

    #[test]
    fn a_newer_certificate_replaces_the_factory_one_and_survives_a_torn_write() {
        use crate::flash::MemFlash;
        let mut flash = MemFlash::blank(2, 4096);
        let journal = journal(0, 2);
        let read = |flash: &MemFlash| {
            let mut out = [0u8; CERTIFICATE_MAX];
            current(flash, &journal, &mut out).map(|len| out[..len].to_vec())
        };
        assert_eq!(read(&flash), None);
        install(&mut flash, &journal, b"factory").unwrap();
        assert_eq!(read(&flash).unwrap(), b"factory");
        // Many renewals: the journal moves to its other sector and keeps only the newest.
        for day in 0..200u32 {
            let cert = std::format!("renewed {day:03} {}", "x".repeat(40));
            install(&mut flash, &journal, cert.as_bytes()).unwrap();
            assert_eq!(read(&flash).unwrap(), cert.as_bytes());
        }
        // A write cut short leaves the one before in force.
        let before = read(&flash).unwrap();
        let at = journal.append(&mut flash, CERTIFICATE_TAG, b"torn certificate").unwrap();
        flash.bytes[at + 12] ^= 0x40;
        assert_eq!(read(&flash).unwrap(), before);
        assert_eq!(install(&mut flash, &journal, &[0; CERTIFICATE_MAX + 1]), Err(JournalError::TooLarge));
    }

    extern crate std;
}
