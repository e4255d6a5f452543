//! What the loader hands the monitor in secure RAM: the CDI, the sealing CDI, the seed of
//! the device identity key, the boot log of measurements and the fuses' OEM keys (to check
//! update bundles). The device secret itself is not handed over.

/// The most boot log entries (loader, monitor, kernel and apps).
pub const MAX_RECORDS: usize = 40;
pub const MAGIC: u32 = 0x5345_5054; // "SEPT"
/// Room for the postcard [`crate::fuses::Fuses`] without secret and minimums.
pub const TRUST_MAX: usize = 512;

/// One measured component.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootRecord {
    /// 0 for the loader, otherwise the package kind.
    pub kind: u32,
    pub component_id: [u8; 16],
    pub security_version: u32,
    pub measurement: [u8; 32],
}

/// The handoff block, at the board's fixed handoff address in secure RAM.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Handoff {
    pub magic: u32,
    /// Compound device identifier: HMAC(device secret, measurements).
    pub cdi: [u8; 32],
    /// HMAC(device secret, "septa device identity"): the device identity key's seed, the
    /// same whatever software boots.
    pub identity_seed: [u8; 32],
    /// The key app storage is sealed with ([`crate::keys::sealing_cdi`]).
    pub seal_cdi: [u8; 32],
    /// The slot the loader booted (0 = A, 1 = B).
    pub slot: u32,
    pub record_count: u32,
    pub records: [BootRecord; MAX_RECORDS],
    /// The fuses with the device secret zeroed and no minimums, postcard-encoded.
    pub trust_len: u32,
    pub trust: [u8; TRUST_MAX],
}

impl Handoff {
    pub const fn empty() -> Handoff {
        Handoff {
            magic: 0,
            cdi: [0; 32],
            identity_seed: [0; 32],
            seal_cdi: [0; 32],
            slot: 0,
            record_count: 0,
            records: [BootRecord {
                kind: 0,
                component_id: [0; 16],
                security_version: 0,
                measurement: [0; 32],
            }; MAX_RECORDS],
            trust_len: 0,
            trust: [0; TRUST_MAX],
        }
    }

    /// The OEM keys and revocations the loader passed on.
    pub fn trust(&self) -> Option<crate::fuses::Fuses> {
        let bytes = self.trust.get(..self.trust_len as usize)?;
        postcard::from_bytes(bytes).ok()
    }

    /// The valid records.
    pub fn records(&self) -> &[BootRecord] {
        &self.records[..(self.record_count as usize).min(MAX_RECORDS)]
    }
}
