//! Exit statuses the secure world reports to the QEMU host when it powers off.
//!
//! On hardware these only matter for logging; under QEMU they become the process exit
//! status (ARM semihosting `SYS_EXIT_EXTENDED`), which is how tests tell a clean power-off
//! from a crash or a refused boot.

/// Powered off on request (PSCI `SYSTEM_OFF`).
pub const SUCCESS: u32 = 0;
/// A stage crashed: unexpected exception or panic.
pub const CRASH: u32 = 1;
/// The loader refused to boot the images in flash.
pub const BOOT_REFUSED: u32 = 2;
/// Test builds only: a monitor built with `powercut` cut the power where the test asked.
pub const POWER_CUT: u32 = 3;
