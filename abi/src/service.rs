//! The device protocol of `septa-service`, version 1: the messages a device and the service
//! exchange, defined once for the device agent (`no_std`) and the service.
//!
//! Every body is the postcard encoding of one of these types, sent as
//! `application/octet-stream` over HTTP/1.1 (docs/protocol.md has the requests and the
//! status codes). Sizes are bounded by the types: a body longer than its type's largest
//! encoding is refused before it is decoded.

use serde::{Deserialize, Serialize};

/// The protocol version in every path (`/device/v1/...`).
pub const VERSION: u32 = 1;

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 32;
/// The largest attestation token (40 measurements fit with room to spare).
pub const TOKEN_MAX: usize = 4096;
/// The largest device certificate (DER).
pub const CERTIFICATE_MAX: usize = 1024;
/// The largest signed report (one batch of [`crate::report::MAX_RECORDS`] events).
pub const REPORT_MAX: usize = 1024;
/// Reports per upload.
pub const REPORTS_PER_UPLOAD: usize = 8;
/// Bytes of a download ticket.
pub const TICKET_LEN: usize = 16;

/// A device id: [`crate::keys::key_id`] of the device identity key.
pub type DeviceId = [u8; 8];

/// `POST /device/v1/nonce`: asks for a fresh single-use nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceRequest {
    pub device_id: DeviceId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceResponse {
    pub nonce: [u8; NONCE_LEN],
    /// Seconds the nonce stays valid.
    pub valid_for_s: u32,
}

/// `POST /device/v1/attest`: the device's attestation token (`crate::attest::Token`,
/// postcard-encoded) answering the nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestRequest {
    pub device_id: DeviceId,
    pub token: heapless::Vec<u8, TOKEN_MAX>,
}

/// What the service concluded from a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The measurements are those of a release of the device's product.
    Trusted,
    /// They match no release: no certificate; at most the recovery release is offered.
    Untrusted,
}

/// An update the device should install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Names the download: `GET /device/v1/bundle/<ticket in hex>`.
    pub ticket: [u8; TICKET_LEN],
    /// Length and SHA-256 of the whole bundle (`septa bundle` output).
    pub bundle_len: u32,
    pub bundle_sha256: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestResponse {
    pub verdict: Verdict,
    /// An X.509 certificate (DER) for the device identity key, issued by the service's
    /// device CA; empty when untrusted.
    pub certificate: heapless::Vec<u8, CERTIFICATE_MAX>,
    /// When the certificate expires, in seconds since the Unix epoch (0 when none).
    pub not_after: u64,
    pub offer: Option<Offer>,
    /// Seconds until the device should check in again (the service's setting: seconds in
    /// development, about a day in production). A device bounds it to a range of its own.
    pub check_in_interval_s: u32,
}

/// `POST /device/v1/reports`: signed reports from the device's report ring
/// (`crate::report::Report`, each postcard-encoded as the monitor stored it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportUpload {
    pub device_id: DeviceId,
    pub reports: heapless::Vec<heapless::Vec<u8, REPORT_MAX>, REPORTS_PER_UPLOAD>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResponse {
    /// Reports stored now.
    pub stored: u16,
    /// Reports the service already had (uploading again is harmless).
    pub duplicates: u16,
}

/// The largest body of each request, for the service's size check.
pub const NONCE_REQUEST_MAX: usize = 16;
pub const ATTEST_REQUEST_MAX: usize = 8 + 3 + TOKEN_MAX;
pub const REPORT_UPLOAD_MAX: usize = 8 + 1 + REPORTS_PER_UPLOAD * (2 + REPORT_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    fn len(value: &impl Serialize) -> usize {
        postcard::to_slice(value, &mut [0u8; 16384]).unwrap().len()
    }

    #[test]
    fn largest_bodies_fit_their_bounds() {
        let attest = AttestRequest {
            device_id: [0xff; 8],
            token: heapless::Vec::from_slice(&[0xff; TOKEN_MAX]).unwrap(),
        };
        assert!(len(&attest) <= ATTEST_REQUEST_MAX);
        let mut reports = heapless::Vec::new();
        for _ in 0..REPORTS_PER_UPLOAD {
            reports.push(heapless::Vec::from_slice(&[0xff; REPORT_MAX]).unwrap()).unwrap();
        }
        let upload = ReportUpload { device_id: [0xff; 8], reports };
        assert!(len(&upload) <= REPORT_UPLOAD_MAX);
        let nonce = NonceRequest { device_id: [0xff; 8] };
        assert!(len(&nonce) <= NONCE_REQUEST_MAX);
    }

    #[test]
    fn responses_round_trip() {
        let response = AttestResponse {
            verdict: Verdict::Trusted,
            certificate: heapless::Vec::from_slice(&[1, 2, 3]).unwrap(),
            not_after: 1_800_000_000,
            offer: Some(Offer { ticket: [7; TICKET_LEN], bundle_len: 4096, bundle_sha256: [9; 32] }),
            check_in_interval_s: 72_000,
        };
        let mut buffer = [0u8; 2048];
        let bytes = postcard::to_slice(&response, &mut buffer).unwrap();
        assert_eq!(postcard::from_bytes::<AttestResponse>(bytes).unwrap(), response);
    }
}
