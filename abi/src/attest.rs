//! Attestation tokens: what a device says it booted, signed so anyone can check it.
//!
//! The monitor derives two keys: the **device identity key** from the device secret alone
//! (stable across software updates; its public half is recorded when the device is
//! provisioned) and the **attestation key** from the CDI (so it exists only for exactly the
//! software that booted). At the first attestation the device key certifies the
//! attestation key. A token carries both public keys, that certificate, the nonce and the
//! boot log, and is signed by the attestation key. [`verify`] checks the whole chain.

use crate::handoff::BootRecord;
use crate::keys::PUBLIC_KEY_LEN;
use core::fmt;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAX_RECORDS: usize = crate::handoff::MAX_RECORDS;

/// One measured component, as a token carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// 0 loader, 1 monitor, 2 kernel, 3 app.
    pub kind: u8,
    pub component_id: [u8; 16],
    pub security_version: u32,
    pub digest: [u8; 32],
}

impl From<&BootRecord> for Measurement {
    fn from(r: &BootRecord) -> Self {
        Measurement {
            kind: r.kind as u8,
            component_id: r.component_id,
            security_version: r.security_version,
            digest: r.measurement,
        }
    }
}

/// The signed part of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub device_key: heapless::Vec<u8, PUBLIC_KEY_LEN>,
    pub attestation_key: heapless::Vec<u8, PUBLIC_KEY_LEN>,
    /// The device key's signature over [`certificate_message`] of the attestation key.
    pub certificate: heapless::Vec<u8, 64>,
    pub nonce: heapless::Vec<u8, 64>,
    pub measurements: heapless::Vec<Measurement, MAX_RECORDS>,
}

/// A token: the postcard encoding of [`Claims`], then the attestation key's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub claims: Claims,
    pub signature: heapless::Vec<u8, 64>,
}

/// What the device key signs to certify an attestation key.
pub fn certificate_message(attestation_key: &[u8]) -> [u8; 32] {
    Sha256::new_with_prefix(b"septa attestation key").chain_update(attestation_key).finalize().into()
}

/// The bytes the attestation key signs.
pub fn claims_digest(claims: &Claims) -> Option<[u8; 32]> {
    let mut buffer = [0u8; 4096];
    let encoded = postcard::to_slice(claims, &mut buffer).ok()?;
    Some(Sha256::digest(encoded).into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Undecodable,
    WrongDeviceKey,
    BadCertificate,
    BadSignature,
    WrongNonce,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Undecodable => "the token does not decode",
            Error::WrongDeviceKey => "the token is from another device (device key differs)",
            Error::BadCertificate => "the attestation key is not certified by the device key",
            Error::BadSignature => "the token's signature does not verify",
            Error::WrongNonce => "the token answers another nonce",
        })
    }
}

/// Checks a token against the device's identity key and the nonce the verifier chose;
/// returns its claims.
pub fn verify(token: &[u8], device_key: &VerifyingKey, nonce: &[u8]) -> Result<Claims, Error> {
    let token: Token = postcard::from_bytes(token).map_err(|_| Error::Undecodable)?;
    let claims = token.claims;
    if claims.device_key.as_slice() != device_key.to_encoded_point(false).as_bytes() {
        return Err(Error::WrongDeviceKey);
    }
    let certificate = Signature::from_slice(&claims.certificate).map_err(|_| Error::BadCertificate)?;
    device_key
        .verify(&certificate_message(&claims.attestation_key), &certificate)
        .map_err(|_| Error::BadCertificate)?;
    let attestation_key =
        VerifyingKey::from_sec1_bytes(&claims.attestation_key).map_err(|_| Error::BadCertificate)?;
    let signature = Signature::from_slice(&token.signature).map_err(|_| Error::BadSignature)?;
    let digest = claims_digest(&claims).ok_or(Error::Undecodable)?;
    attestation_key.verify(&digest, &signature).map_err(|_| Error::BadSignature)?;
    if claims.nonce.as_slice() != nonce {
        return Err(Error::WrongNonce);
    }
    Ok(claims)
}
