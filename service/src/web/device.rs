//! The device protocol, version 1 (docs/protocol.md): nonce, attest, bundle download with
//! ranges, report upload. Bodies are postcard; each is size-checked before it is decoded.
//! Every request comes over the mutual-TLS device port and is held to the device whose key
//! the client certificate carries ([`Peer`]): a device cannot ask for another's nonce,
//! ticket or reports. A device proves its identity key by the token's certificate chain and a fresh nonce,
//! consumed only after the signature checks out (so a forged token cannot burn nonces,
//! and a replayed one finds its nonce gone).

use super::{AppState, Error, Peer, Result, now};
use crate::policy;
use crate::storage::{Checkin, DeviceKey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use p256::ecdsa::VerifyingKey;
use septa_abi::service::{
    ATTEST_REQUEST_MAX, AttestRequest, AttestResponse, NONCE_LEN, NONCE_REQUEST_MAX, NonceRequest,
    NonceResponse, Offer, REPORT_UPLOAD_MAX, ReportResponse, ReportUpload, TICKET_LEN, Verdict,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const OCTETS: &str = "application/octet-stream";
/// How long a download ticket stays valid.
const TICKET_TTL_S: i64 = 7 * 86_400;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/device/v1/nonce", post(nonce).layer(DefaultBodyLimit::max(NONCE_REQUEST_MAX)))
        .route("/device/v1/attest", post(attest).layer(DefaultBodyLimit::max(ATTEST_REQUEST_MAX)))
        .route("/device/v1/reports", post(reports).layer(DefaultBodyLimit::max(REPORT_UPLOAD_MAX)))
        .route("/device/v1/bundle/{ticket}", get(bundle))
}

fn decode<'a, T: serde::Deserialize<'a>>(body: &'a [u8], max: usize) -> Result<T> {
    if body.len() > max {
        return Err(Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max} bytes"),
        ));
    }
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(Error::bad_request("trailing bytes after the message")),
        Err(_) => Err(Error::bad_request("the body is not a valid message of this request (postcard)")),
    }
}

fn encode(value: &impl serde::Serialize) -> Response {
    match postcard::to_allocvec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, OCTETS)], bytes).into_response(),
        Err(_) => Error::new(StatusCode::INTERNAL_SERVER_ERROR, "response encoding failed").into_response(),
    }
}

/// The claimed device `id`, if the client's certificate is for its key.
async fn claimed(state: &AppState, peer: &Peer, id: &[u8; 8]) -> Result<Arc<DeviceKey>> {
    let key = state
        .device_key(&hex::encode(id))
        .await?
        .ok_or_else(|| Error::new(StatusCode::NOT_FOUND, "this device is not claimed"))?;
    if key.public_key != peer.public_key {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            "the client certificate is not this device's: a device speaks only for itself",
        ));
    }
    Ok(key)
}

fn verifying_key(key: &DeviceKey) -> Result<VerifyingKey> {
    VerifyingKey::from_sec1_bytes(&key.public_key)
        .map_err(|_| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "stored device key is invalid"))
}

fn random<const N: usize>() -> [u8; N] {
    use rand_core::RngCore;
    let mut bytes = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

async fn nonce(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response> {
    let request: NonceRequest = decode(&body, NONCE_REQUEST_MAX)?;
    claimed(&state, &peer, &request.device_id).await?;
    let nonce: [u8; NONCE_LEN] =
        policy::make_nonce(&state.nonce_key, &request.device_id, random(), now() + state.nonce_ttl_s);
    Ok(encode(&NonceResponse { nonce, valid_for_s: state.nonce_ttl_s as u32 }))
}

pub fn ticket_hash(ticket: &[u8]) -> String {
    hex::encode(Sha256::new_with_prefix(b"septa ticket").chain_update(ticket).finalize())
}

async fn attest(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response> {
    let request: AttestRequest = decode(&body, ATTEST_REQUEST_MAX)?;
    let device_id = hex::encode(request.device_id);
    let key = claimed(&state, &peer, &request.device_id).await?;
    let claims = policy::verify_token(&request.token, &key.public_key).map_err(|e| match e {
        septa_abi::attest::Error::Undecodable => Error::bad_request("the attestation token does not decode"),
        e => Error::new(StatusCode::UNAUTHORIZED, format!("attestation refused: {e}")),
    })?;
    let now = now();
    let nonce_expires = policy::check_nonce(&state.nonce_key, &request.device_id, &claims.nonce, now)
        .ok_or_else(|| {
            Error::new(
                StatusCode::UNAUTHORIZED,
                "attestation refused: the nonce is not one this service gave this device, or it expired",
            )
        })?;
    let public = verifying_key(&key)?;
    let fingerprint = policy::token_fingerprint(&claims.measurements);
    let ticket = random::<TICKET_LEN>();
    // The certificate is issued only if the storage finds the measurements trusted; the
    // signature is cheap next to the two verifications above, so sign first, keep it if used.
    let (certificate, not_after) = state
        .ca
        .issue_device(&device_id, &public, now)
        .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let result = state
        .storage
        .checkin(&Checkin {
            device_id: &device_id,
            nonce: &hex::encode(&claims.nonce),
            nonce_expires,
            key: &key,
            fingerprint: &fingerprint,
            attestation_key: &claims.attestation_key,
            cert_not_after: Some(not_after),
            now,
            ticket_hash: &ticket_hash(&ticket),
            ticket_expires: now + TICKET_TTL_S,
        })
        .await?;
    let offer = result.offer.map(|o| {
        let mut sha = [0u8; 32];
        let _ = hex::decode_to_slice(&o.bundle_sha256, &mut sha);
        Offer { ticket, bundle_len: o.bundle_len as u32, bundle_sha256: sha }
    });
    let response = if result.trusted {
        AttestResponse {
            verdict: Verdict::Trusted,
            certificate: heapless::Vec::from_slice(&certificate)
                .map_err(|_| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "certificate too large"))?,
            not_after: not_after as u64,
            offer,
            check_in_interval_s: state.check_in_interval_s,
        }
    } else {
        AttestResponse {
            verdict: Verdict::Untrusted,
            certificate: heapless::Vec::new(),
            not_after: 0,
            offer,
            check_in_interval_s: state.check_in_interval_s,
        }
    };
    Ok(encode(&response))
}

/// `bytes=START-` or `bytes=START-END` (one range; END inclusive), checked against `len`.
fn parse_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.trim().parse().ok()?;
    let end: usize = match end.trim() {
        "" => len.checked_sub(1)?,
        e => e.parse::<usize>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end && end < len).then_some((start, end))
}

async fn bundle(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let mut raw = [0u8; TICKET_LEN];
    hex::decode_to_slice(&ticket, &mut raw).map_err(|_| Error::bad_request("a ticket is 32 hex digits"))?;
    let now = now();
    let (bundle, deployment, device) = state
        .storage
        .ticket_bundle(&ticket_hash(&raw), now)
        .await?
        .ok_or_else(|| Error::new(StatusCode::NOT_FOUND, "unknown or expired ticket"))?;
    let mut device_id = [0u8; 8];
    hex::decode_to_slice(&device, &mut device_id)
        .map_err(|_| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "stored device id is invalid"))?;
    // Another device's ticket is as good as no ticket.
    claimed(&state, &peer, &device_id)
        .await
        .map_err(|_| Error::new(StatusCode::NOT_FOUND, "unknown or expired ticket"))?;
    let (start, end, status) = match headers.get(header::RANGE) {
        Some(value) => {
            let value = value.to_str().unwrap_or_default();
            match parse_range(value, bundle.len()) {
                Some((s, e)) => (s, e, StatusCode::PARTIAL_CONTENT),
                None => {
                    return Ok((
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{}", bundle.len()))],
                        "the range is not satisfiable\n",
                    )
                        .into_response());
                }
            }
        }
        None => (0, bundle.len().saturating_sub(1), StatusCode::OK),
    };
    if end + 1 == bundle.len()
        && let Some(deployment) = deployment
    {
        state.storage.mark_downloaded(&deployment, &device, now).await?;
    }
    let body = bundle[start..=end].to_vec();
    let mut response =
        (status, [(header::CONTENT_TYPE, OCTETS), (header::ACCEPT_RANGES, "bytes")], body).into_response();
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = format!("bytes {start}-{end}/{}", bundle.len()).parse()
    {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

async fn reports(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response> {
    let upload: ReportUpload = decode(&body, REPORT_UPLOAD_MAX)?;
    let device_id = hex::encode(upload.device_id);
    let key = claimed(&state, &peer, &upload.device_id).await?;
    let public = verifying_key(&key)?;
    // Every report must verify before any is stored.
    let mut batches = Vec::new();
    for (index, raw) in upload.reports.iter().enumerate() {
        let batch = septa_abi::report::verify(raw, &public)
            .map_err(|e| Error::new(StatusCode::UNAUTHORIZED, format!("report {index} refused: {e}")))?;
        batches.push(batch);
    }
    let (mut stored, mut duplicates) = (0, 0);
    let now = now();
    for (raw, batch) in upload.reports.iter().zip(&batches) {
        if state.storage.store_report(&key, &device_id, raw, &batch.events, now).await? {
            stored += 1;
        } else {
            duplicates += 1;
        }
    }
    Ok(encode(&ReportResponse { stored, duplicates }))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_resume_and_refuse_what_is_outside() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=4-", 10), Some((4, 9)));
        assert_eq!(parse_range("bytes=2-5", 10), Some((2, 5)));
        assert_eq!(parse_range("bytes=2-50", 10), Some((2, 9)));
        for bad in ["bytes=10-", "bytes=5-2", "bytes=-5", "items=0-", "bytes=a-", "bytes=0-1,3-4"] {
            assert_eq!(parse_range(bad, 10), None, "{bad}");
        }
        assert_eq!(parse_range("bytes=0-", 0), None);
    }
}
