//! Signed failure reports: the supervisor's records of app exits and faults, signed in the
//! secure world with the device identity key so the maker can trust them off the device.
//!
//! The kernel hands a batch of records to the monitor (`smc::SIGN_REPORT`, through the shared
//! page); the monitor signs SHA-256 of the batch's postcard encoding and returns a
//! [`Report`]. `septa report verify` checks it with the device's public identity key.

use core::fmt;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Records per batch.
pub const MAX_RECORDS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndKind {
    Exit,
    UndefinedInstruction,
    PrefetchAbort,
    DataAbort,
}

impl EndKind {
    pub fn name(self) -> &'static str {
        match self {
            EndKind::Exit => "exit",
            EndKind::UndefinedInstruction => "undefined instruction",
            EndKind::PrefetchAbort => "prefetch abort",
            EndKind::DataAbort => "data abort",
        }
    }
}

/// One exit or fault of an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub component_id: [u8; 16],
    pub name: [u8; 16],
    pub kind: EndKind,
    pub pc: u32,
    pub address: u32,
    pub exit_code: i32,
    pub time_ms: u64,
    pub restart_count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Sequence number of the first record since boot.
    pub first: u64,
    pub records: heapless::Vec<Record, MAX_RECORDS>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub batch: Batch,
    pub signature: heapless::Vec<u8, 64>,
}

/// What the device key signs for a batch.
pub fn digest(batch: &Batch) -> Option<[u8; 32]> {
    let mut buffer = [0u8; 1024];
    let encoded = postcard::to_slice(batch, &mut buffer).ok()?;
    Some(Sha256::digest(encoded).into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Undecodable,
    BadSignature,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Undecodable => "the report does not decode",
            Error::BadSignature => "the report's signature does not verify with this device key",
        })
    }
}

/// Checks a report against the device's identity key; returns its batch.
pub fn verify(report: &[u8], device_key: &VerifyingKey) -> Result<Batch, Error> {
    let report: Report = postcard::from_bytes(report).map_err(|_| Error::Undecodable)?;
    let signature = Signature::from_slice(&report.signature).map_err(|_| Error::BadSignature)?;
    let digest = digest(&report.batch).ok_or(Error::Undecodable)?;
    device_key.verify(&digest, &signature).map_err(|_| Error::BadSignature)?;
    Ok(report.batch)
}
