//! Signed failure reports: the supervisor's records of app exits and faults, and the
//! outcomes of updates, signed in the secure world with the device identity key so the
//! maker can trust them off the device.
//!
//! The kernel hands a batch of records to the monitor (`smc::STORE_REPORT`, through the
//! shared page); the monitor stamps it with the boot count, signs SHA-256 of the batch's
//! postcard encoding, appends the [`Report`] to the report ring in flash and returns it.
//! The monitor adds update outcomes itself. `septa report verify` checks reports — from the
//! console or from a flash image — with the device's public identity key.

use core::fmt;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::boot_state::UpdateEvent;

/// Records per batch.
pub const MAX_RECORDS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndKind {
    Exit,
    UndefinedInstruction,
    PrefetchAbort,
    DataAbort,
    /// The app used more CPU than its manifest's budget in one period and was throttled
    /// (not an ending: the app goes on in its next period).
    CpuBudget,
}

impl EndKind {
    pub fn name(self) -> &'static str {
        match self {
            EndKind::Exit => "exit",
            EndKind::UndefinedInstruction => "undefined instruction",
            EndKind::PrefetchAbort => "prefetch abort",
            EndKind::DataAbort => "data abort",
            EndKind::CpuBudget => "cpu budget overrun",
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

/// One event in a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// An app ended (exit or fault).
    App(Record),
    /// An update was applied or rolled back, `time_ms` after boot.
    Update { event: UpdateEvent, time_ms: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Sequence number of the first event since boot.
    pub first: u64,
    /// The boot the events happened in (set by the monitor, not the kernel).
    pub boot_count: u32,
    pub events: heapless::Vec<Event, MAX_RECORDS>,
}

/// One line per event: time since boot, boot count, component id, app name, kind,
/// pc/address, exit code, restart count (update events: what happened).
pub fn describe(batch: &Batch, mut line: impl FnMut(fmt::Arguments<'_>)) {
    for event in &batch.events {
        match event {
            Event::App(r) => {
                let name = Name(&r.name);
                line(format_args!(
                    "{:>8} ms  boot {}  {}  {name:<16} {:<21} pc {:#010x} address {:#010x} exit {} restarts {}",
                    r.time_ms,
                    batch.boot_count,
                    Uuid(&r.component_id),
                    r.kind.name(),
                    r.pc,
                    r.address,
                    r.exit_code,
                    r.restart_count
                ))
            }
            Event::Update { event, time_ms } => {
                line(format_args!("{time_ms:>8} ms  boot {}  {event}", batch.boot_count))
            }
        }
    }
}

/// An app name from a record, as text safe for any terminal: up to the first NUL, with
/// anything but printable ASCII shown as `?` (names come from the normal world).
pub struct Name<'a>(pub &'a [u8; 16]);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        let mut text = [b'?'; 16];
        for (shown, &byte) in text.iter_mut().zip(&self.0[..len]) {
            if byte.is_ascii_graphic() {
                *shown = byte;
            }
        }
        f.pad(core::str::from_utf8(&text[..len]).unwrap_or("?"))
    }
}

/// A component id in the 8-4-4-4-12 form of manifests.
struct Uuid<'a>(&'a [u8; 16]);

impl fmt::Display for Uuid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub batch: Batch,
    pub signature: heapless::Vec<u8, 64>,
}

/// The journal tag of a report in the report ring.
pub const RING_TAG: u16 = 1;

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
