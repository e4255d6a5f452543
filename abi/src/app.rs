//! App packages: the manifest an app ships with, and how it sits in front of the ELF.
//!
//! An app package's payload is `[manifest length: u16 LE][postcard manifest][padding to 4]
//! [ELF]`. The host tools write it from the app's `app.toml` after validating it; the kernel
//! decodes it with the same types and validates it again with [`Manifest::validate`] — it
//! trusts nothing in an image.

use core::fmt;
use serde::{Deserialize, Serialize};

/// The longest app name.
pub const NAME_MAX: usize = 16;
/// Priorities run from 0 (most urgent) to `PRIORITIES - 1`.
pub const PRIORITIES: u8 = 8;
/// The most apps one image holds and the kernel runs: one process slot each. The one
/// definition: the kernel's tables, the IPC state and the build's check all use it.
pub const MAX_PROCESSES: usize = 16;
/// The most endpoints an app may call, devices it may map, monitor services it may use.
pub const MAX_CALLS: usize = 8;
pub const MAX_DEVICES: usize = 4;
pub const MAX_MONITOR_SERVICES: usize = 9;
/// GPIO pins are numbered below this (the board may have fewer).
pub const MAX_GPIO_PINS: u8 = 32;
/// The security-monitor services a manifest may name (`monitor = [...]`).
pub const MONITOR_SERVICES: &[&str] = &[
    "random",
    "sha256",
    "sign",
    "verify",
    "attest",
    "update",
    "storage",
    "device-auth",
    "device-cert",
    "time",
    "reports",
];
/// What the kernel maps for every app besides its segments and its stack (`stack-kib`),
/// counted against `memory-kib`: the translation tables.
pub const TABLES_KIB: u32 = 8;
/// Bounds of an app's memory quota.
pub const MEMORY_KIB_MIN: u32 = 16;
pub const MEMORY_KIB_MAX: u32 = 16 * 1024;
/// CPU budgets: an app may run `cpu-budget-ms` in every `cpu-period-ms`. The kernel counts
/// in 10 ms ticks, so a budget is at least one tick; the defaults let an app that never
/// blocks take half the CPU and leave the other half to less urgent apps.
pub const CPU_BUDGET_MS_MIN: u32 = 10;
pub const CPU_PERIOD_MS_MAX: u32 = 10_000;
pub const DEFAULT_CPU_BUDGET_MS: u32 = 50;
pub const DEFAULT_CPU_PERIOD_MS: u32 = 100;
/// The most persistent storage one app may have, and all apps of an image together (the
/// storage journal keeps every live value in one flash sector).
pub const STORAGE_KIB_MAX: u32 = 64;
pub const STORAGE_KIB_TOTAL: u32 = 96;
/// The largest DMA pool (a power of two of 4 KiB pages, so the kernel finds it contiguous).
pub const DMA_KIB_MAX: u32 = 256;

/// What the supervisor does when the app ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restart {
    Never,
    Always,
    OnFailure,
}

/// An app's manifest, as encoded in its package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest<'a> {
    pub name: &'a str,
    pub component_id: [u8; 16],
    /// Security version: grows with each security fix.
    pub version: u32,
    pub priority: u8,
    /// Quota for all the app's pages (code, data, stack) in KiB.
    pub memory_kib: u32,
    pub restart: Restart,
    /// The endpoint this app serves, if any.
    #[serde(borrow)]
    pub serve: Option<&'a str>,
    /// Endpoints this app may call (and notify).
    #[serde(borrow)]
    pub call: heapless::Vec<&'a str, MAX_CALLS>,
    /// Board devices this app may map (and whose interrupts it receives).
    #[serde(borrow)]
    pub devices: heapless::Vec<&'a str, MAX_DEVICES>,
    /// GPIO pins this app may drive.
    pub gpio: heapless::Vec<u8, 8>,
    /// Security-monitor services this app may use.
    #[serde(borrow)]
    pub monitor: heapless::Vec<&'a str, MAX_MONITOR_SERVICES>,
    /// Persistent storage quota in KiB (with the `storage` monitor service).
    pub storage_kib: u32,
    /// Network destinations (`host:port`) this app may connect to (`crate::net`).
    #[serde(borrow)]
    pub connect: heapless::Vec<&'a str, { crate::net::MAX_CONNECT }>,
    /// A physically contiguous DMA pool for a device driver, in KiB (0: none). It comes
    /// out of `memory-kib`.
    pub dma_kib: u32,
    /// The app's stack in KiB: a multiple of 4 from [`STACK_KIB_MIN`] to [`STACK_KIB_MAX`].
    /// It comes out of `memory-kib` (checked when packing, and by the kernel when it maps).
    pub stack_kib: u32,
    /// CPU time the app may use per period, in milliseconds (see [`CPU_BUDGET_MS_MIN`]).
    pub cpu_budget_ms: u32,
    pub cpu_period_ms: u32,
}

/// Bounds of an app's stack (`stack-kib`; 16 when the manifest does not say).
pub const STACK_KIB_MIN: u32 = 16;
pub const STACK_KIB_MAX: u32 = 128;

/// Why a manifest or an app payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Truncated,
    /// The manifest bytes are not a postcard `Manifest`.
    Undecodable,
    /// The bytes after the manifest are not used by it.
    TrailingBytes,
    BadName,
    BadPriority(u8),
    BadMemory(u32),
    /// An endpoint, device or service name that is not a valid name.
    BadReference,
    /// The same endpoint, device, pin or service listed twice.
    Duplicate,
    BadPin(u8),
    UnknownService,
    /// `storage-kib` out of range, or not matching the `storage` service.
    BadStorage(u32),
    /// A `connect` entry that is not a valid destination.
    BadDestination(crate::net::DestinationError),
    /// `dma-kib` not a power of two of pages up to the maximum, or larger than `memory-kib`.
    BadDma(u32),
    /// `stack-kib` out of range or not a whole number of pages.
    BadStack(u32),
    /// `cpu-budget-ms` / `cpu-period-ms` out of range.
    BadCpuBudget {
        budget_ms: u32,
        period_ms: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "app payload too short for its manifest"),
            Error::Undecodable => write!(f, "manifest is not a valid encoding"),
            Error::TrailingBytes => write!(f, "manifest has trailing bytes"),
            Error::BadName => write!(f, "name must be 1 to {NAME_MAX} characters of a-z, 0-9, '-' and '_'"),
            Error::BadPriority(p) => write!(f, "priority {p} is not below {PRIORITIES}"),
            Error::BadMemory(kib) => {
                write!(f, "memory-kib {kib} is outside {MEMORY_KIB_MIN}..={MEMORY_KIB_MAX}")
            }
            Error::BadReference => write!(
                f,
                "a capability names something that is not 1 to {NAME_MAX} characters of a-z, 0-9, '-' and '_'"
            ),
            Error::Duplicate => write!(f, "a capability is listed twice"),
            Error::BadPin(pin) => write!(f, "gpio pin {pin} is not below {MAX_GPIO_PINS}"),
            Error::UnknownService => {
                write!(f, "unknown monitor service (known: {})", MonitorServices)
            }
            Error::BadStorage(kib) => write!(
                f,
                "storage-kib {kib}: the storage service needs storage-kib from 1 to {STORAGE_KIB_MAX}, \
                 and storage-kib needs the storage service"
            ),
            Error::BadDestination(e) => write!(f, "a destination is not valid: {e}"),
            Error::BadDma(kib) => {
                write!(f, "dma-kib {kib}: must be 4, 8, 16, … up to {DMA_KIB_MAX} KiB and fit in memory-kib")
            }
            Error::BadStack(kib) => {
                write!(f, "stack-kib {kib}: must be a multiple of 4 from {STACK_KIB_MIN} to {STACK_KIB_MAX}")
            }
            Error::BadCpuBudget { budget_ms, period_ms } => write!(
                f,
                "cpu-budget-ms {budget_ms} per cpu-period-ms {period_ms}: the budget must be from \
                 {CPU_BUDGET_MS_MIN} ms up to the period, the period at most {CPU_PERIOD_MS_MAX} ms"
            ),
        }
    }
}

struct MonitorServices;

impl fmt::Display for MonitorServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in MONITOR_SERVICES.iter().enumerate() {
            write!(f, "{}{name}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

/// Whether `name` is a valid app, endpoint, device or service name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn has_duplicates<T: PartialEq>(items: &[T]) -> bool {
    items.iter().enumerate().any(|(i, a)| items[..i].contains(a))
}

impl Manifest<'_> {
    /// Checks every field against the rules the kernel relies on.
    pub fn validate(&self) -> Result<(), Error> {
        if !is_valid_name(self.name) {
            return Err(Error::BadName);
        }
        let names = self.serve.iter().chain(&self.call).chain(&self.devices).chain(&self.monitor);
        if !names.clone().all(|n| is_valid_name(n)) {
            return Err(Error::BadReference);
        }
        if has_duplicates(&self.call)
            || has_duplicates(&self.devices)
            || has_duplicates(&self.gpio)
            || has_duplicates(&self.monitor)
            || has_duplicates(&self.connect)
        {
            return Err(Error::Duplicate);
        }
        if let Some(&pin) = self.gpio.iter().find(|&&p| p >= MAX_GPIO_PINS) {
            return Err(Error::BadPin(pin));
        }
        if !self.monitor.iter().all(|s| MONITOR_SERVICES.contains(s)) {
            return Err(Error::UnknownService);
        }
        if self.priority >= PRIORITIES {
            return Err(Error::BadPriority(self.priority));
        }
        if !(MEMORY_KIB_MIN..=MEMORY_KIB_MAX).contains(&self.memory_kib) {
            return Err(Error::BadMemory(self.memory_kib));
        }
        for destination in &self.connect {
            crate::net::Destination::parse(destination).map_err(Error::BadDestination)?;
        }
        let dma_ok = self.dma_kib == 0
            || (self.dma_kib.is_power_of_two()
                && (4..=DMA_KIB_MAX).contains(&self.dma_kib)
                && self.dma_kib < self.memory_kib);
        if !dma_ok {
            return Err(Error::BadDma(self.dma_kib));
        }
        if !self.stack_kib.is_multiple_of(4) || !(STACK_KIB_MIN..=STACK_KIB_MAX).contains(&self.stack_kib) {
            return Err(Error::BadStack(self.stack_kib));
        }
        let storage = self.monitor.contains(&"storage");
        if storage != (self.storage_kib > 0) || self.storage_kib > STORAGE_KIB_MAX {
            return Err(Error::BadStorage(self.storage_kib));
        }
        let (budget_ms, period_ms) = (self.cpu_budget_ms, self.cpu_period_ms);
        if budget_ms < CPU_BUDGET_MS_MIN || budget_ms > period_ms || period_ms > CPU_PERIOD_MS_MAX {
            return Err(Error::BadCpuBudget { budget_ms, period_ms });
        }
        Ok(())
    }
}

/// Splits an app payload into its validated manifest and its ELF bytes.
pub fn parse_payload(payload: &[u8]) -> Result<(Manifest<'_>, &[u8]), Error> {
    let len_bytes = payload.get(..2).ok_or(Error::Truncated)?;
    let len = u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize;
    let encoded = payload.get(2..2 + len).ok_or(Error::Truncated)?;
    let (manifest, rest) =
        postcard::take_from_bytes::<Manifest<'_>>(encoded).map_err(|_| Error::Undecodable)?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes);
    }
    manifest.validate()?;
    let elf = payload.get(elf_offset(len)..).ok_or(Error::Truncated)?;
    Ok((manifest, elf))
}

/// Where the ELF starts after a manifest of `len` bytes: 4-byte aligned.
const fn elf_offset(manifest_len: usize) -> usize {
    (2 + manifest_len).div_ceil(4) * 4
}

/// Builds an app payload from a manifest and an ELF (host tools).
#[cfg(any(test, feature = "alloc"))]
pub fn encode_payload(manifest: &Manifest<'_>, elf: &[u8]) -> alloc::vec::Vec<u8> {
    let mut buffer = [0u8; 1024];
    let encoded = postcard::to_slice(manifest, &mut buffer).expect("a manifest fits in 1 KiB");
    let len = u16::try_from(encoded.len()).expect("1 KiB fits in u16");
    let mut out = alloc::vec::Vec::from(len.to_le_bytes());
    out.extend_from_slice(encoded);
    out.resize(elf_offset(encoded.len()), 0);
    out.extend_from_slice(elf);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest<'static> {
        Manifest {
            name: "hello",
            component_id: [9; 16],
            version: 2,
            priority: 3,
            memory_kib: 64,
            restart: Restart::Never,
            serve: Some("greeter"),
            call: heapless::Vec::from_slice(&["logger"]).unwrap(),
            devices: heapless::Vec::new(),
            gpio: heapless::Vec::from_slice(&[3]).unwrap(),
            monitor: heapless::Vec::new(),
            storage_kib: 0,
            connect: heapless::Vec::from_slice(&["devhost:7"]).unwrap(),
            dma_kib: 0,
            stack_kib: 16,
            cpu_budget_ms: 20,
            cpu_period_ms: 100,
        }
    }

    #[test]
    fn payload_round_trip() {
        let payload = encode_payload(&manifest(), b"\x7fELF...");
        let (decoded, elf) = parse_payload(&payload).unwrap();
        assert_eq!(decoded, manifest());
        assert_eq!(elf, b"\x7fELF...");
    }

    #[test]
    fn invalid_fields_are_refused_after_decoding() {
        for (bad, error) in [
            (Manifest { name: "", ..manifest() }, Error::BadName),
            (Manifest { name: "Hello", ..manifest() }, Error::BadName),
            (Manifest { name: "a-very-long-app-name", ..manifest() }, Error::BadName),
            (Manifest { priority: 8, ..manifest() }, Error::BadPriority(8)),
            (Manifest { memory_kib: 1, ..manifest() }, Error::BadMemory(1)),
            (Manifest { storage_kib: 4, ..manifest() }, Error::BadStorage(4)),
            (Manifest { dma_kib: 12, ..manifest() }, Error::BadDma(12)),
            (Manifest { stack_kib: 18, ..manifest() }, Error::BadStack(18)),
            (Manifest { stack_kib: 8, ..manifest() }, Error::BadStack(8)),
            (Manifest { stack_kib: 256, ..manifest() }, Error::BadStack(256)),
            (Manifest { dma_kib: 64, ..manifest() }, Error::BadDma(64)),
            (
                Manifest { connect: heapless::Vec::from_slice(&["devhost"]).unwrap(), ..manifest() },
                Error::BadDestination(crate::net::DestinationError::Malformed),
            ),
            (
                Manifest {
                    connect: heapless::Vec::from_slice(&["devhost:7", "devhost:7"]).unwrap(),
                    ..manifest()
                },
                Error::Duplicate,
            ),
            (
                Manifest { cpu_budget_ms: 5, ..manifest() },
                Error::BadCpuBudget { budget_ms: 5, period_ms: 100 },
            ),
            (
                Manifest { cpu_budget_ms: 200, ..manifest() },
                Error::BadCpuBudget { budget_ms: 200, period_ms: 100 },
            ),
        ] {
            assert_eq!(parse_payload(&encode_payload(&bad, b"")).unwrap_err(), error);
        }
    }

    #[test]
    fn truncated_or_garbage_payloads_are_errors() {
        let payload = encode_payload(&manifest(), b"elf");
        for len in 0..8 {
            assert!(parse_payload(&payload[..len]).is_err(), "len {len}");
        }
        let mut garbage = payload.clone();
        garbage[0] = 0xff; // length beyond the payload
        assert_eq!(parse_payload(&garbage).unwrap_err(), Error::Truncated);
    }
}
