//! What the loader hands the monitor in secure RAM: the CDI, the seed of the device identity
//! key, and the boot log of measurements. The device secret itself is not handed over.

/// The most boot log entries (loader, monitor, kernel and apps).
pub const MAX_RECORDS: usize = 40;
pub const MAGIC: u32 = 0x5345_5054; // "SEPT"

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
    pub record_count: u32,
    pub records: [BootRecord; MAX_RECORDS],
}

impl Handoff {
    pub const fn empty() -> Handoff {
        Handoff {
            magic: 0,
            cdi: [0; 32],
            identity_seed: [0; 32],
            record_count: 0,
            records: [BootRecord {
                kind: 0,
                component_id: [0; 16],
                security_version: 0,
                measurement: [0; 32],
            }; MAX_RECORDS],
        }
    }

    /// The valid records.
    pub fn records(&self) -> &[BootRecord] {
        &self.records[..(self.record_count as usize).min(MAX_RECORDS)]
    }
}
