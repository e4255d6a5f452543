//! SMC function identifiers (SMC Calling Convention, SMC32 fast calls) and return codes.
//!
//! The kernel reaches the security monitor only through these ids. Function ids follow
//! SMCCC: bit 31 = fast call, bit 30 = 0 (SMC32), bits 29..24 = owning entity, bits 15..0 =
//! function number. Septa's own services live in the Trusted-OS range (owner 50).

/// `SMCCC_VERSION`: returns the implemented SMCCC version (major << 16 | minor).
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// `SMCCC_ARCH_FEATURES(fid)`: 0 if `fid` is implemented, [`NOT_SUPPORTED`] otherwise.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// The SMCCC version the monitor implements: 1.1.
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;

/// PSCI `PSCI_VERSION`, `SYSTEM_OFF` and `SYSTEM_RESET` (standard secure service range).
pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
pub const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
/// The PSCI version the monitor implements: 1.0.
pub const PSCI_VERSION_1_0: u32 = 0x0001_0000;

const TRUSTED_OS_BASE: u32 = 0xB200_0000;

/// `MONITOR_VERSION`: r0 = monitor version (major << 16 | minor), r1 = the world the caller
/// runs in as the monitor sees it ([`WORLD_NON_SECURE`] or [`WORLD_SECURE`]).
pub const MONITOR_VERSION: u32 = TRUSTED_OS_BASE;
/// `POWER_OFF(status)`: power off and report `status` to the host (see [`crate::exit`]).
/// The non-secure world uses it to end a test run or to report a kernel crash.
pub const POWER_OFF: u32 = TRUSTED_OS_BASE + 1;

/// `SERVICE(service, request_len)`: a monitor service for an app (see
/// [`crate::monitor`]). r0 = status, r1 = response length.
pub const SERVICE: u32 = TRUSTED_OS_BASE + 2;

/// `STORE_REPORT(len)`: the kernel's batch of failure records (postcard
/// `septa_abi::report::Batch`, in the shared page's request area), stamped with the boot
/// count, signed with the device key and appended to the report ring; the postcard `Report`
/// comes back in the response area. r0 = status, r1 = length.
pub const STORE_REPORT: u32 = TRUSTED_OS_BASE + 3;

/// `BOOT_INFO`: r0 = the booted slot (0 = A, 1 = B), r1 = 1 if it runs on trial (an update
/// that must confirm itself), r2 = the boot count.
pub const BOOT_INFO: u32 = TRUSTED_OS_BASE + 4;

/// `CONFIRM_BOOT`: the supervisor found the system healthy. Ends a trial: the booted slot
/// becomes active and the anti-rollback minimums rise to its versions. r0 = 1 if a trial
/// was confirmed, 0 if there was none.
pub const CONFIRM_BOOT: u32 = TRUSTED_OS_BASE + 5;

/// `TRIAL_FAILED(len)`: an app that must always run failed during a trial (its 16-byte name
/// in the request area). The monitor records the rollback and resets; it returns only when
/// no trial runs (r0 = 0).
pub const TRIAL_FAILED: u32 = TRUSTED_OS_BASE + 6;

pub const WORLD_NON_SECURE: u32 = 1;
pub const WORLD_SECURE: u32 = 0;

/// Returned in r0 for an unknown function id (SMCCC `NOT_SUPPORTED`, -1).
pub const NOT_SUPPORTED: u32 = 0xFFFF_FFFF;
