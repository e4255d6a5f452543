//! SMC dispatch: what the monitor does for each function id the non-secure world sends.
//!
//! The caller's registers are untrusted input. [`dispatch`] looks at the function id and
//! arguments and returns an [`Action`]: values to hand back in r0–r3, or a power transition
//! for the entry code to carry out. An id the monitor does not implement returns
//! [`NOT_SUPPORTED`] in r0 and changes nothing, as the SMC Calling Convention requires.

use septa_abi::smc::*;

/// The monitor's version as `MONITOR_VERSION` reports it: major << 16 | minor.
pub const MONITOR_VERSION_VALUE: u32 = 0x0001_0000;

/// What the entry code must do after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return to the caller with these values in r0–r3.
    Return([u32; 4]),
    /// Power off and report this exit status to the host.
    PowerOff(u32),
    /// Reset the system.
    Reset,
    /// Serve an app's request of `len` bytes at `start` in the shared page (see
    /// `septa_abi::monitor`).
    Service { service: u32, len: u32, start: u32 },
    /// Sign and store the kernel's failure-report batch in the shared page.
    StoreReport { len: u32 },
    /// Report the booted slot, whether it is on trial, and the boot count.
    BootInfo,
    /// End a trial: the booted slot is healthy.
    ConfirmBoot,
    /// End a trial: an app failed (its name in the shared page); reset.
    TrialFailed { len: u32 },
}

/// One SMC call: the function id from r0 and the arguments from r1–r3.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub function: u32,
    pub args: [u32; 3],
    /// [`WORLD_NON_SECURE`] or [`WORLD_SECURE`], from SCR.NS at the time of the call.
    pub caller_world: u32,
}

const IMPLEMENTED: [u32; 12] = [
    SERVICE,
    STORE_REPORT,
    BOOT_INFO,
    CONFIRM_BOOT,
    TRIAL_FAILED,
    SMCCC_VERSION,
    SMCCC_ARCH_FEATURES,
    PSCI_VERSION,
    PSCI_SYSTEM_OFF,
    PSCI_SYSTEM_RESET,
    MONITOR_VERSION,
    POWER_OFF,
];

pub fn dispatch(call: Call) -> Action {
    let one = |value: u32| Action::Return([value, 0, 0, 0]);
    match call.function {
        SMCCC_VERSION => one(SMCCC_VERSION_1_1),
        SMCCC_ARCH_FEATURES => one(if IMPLEMENTED.contains(&call.args[0]) { 0 } else { NOT_SUPPORTED }),
        PSCI_VERSION => one(PSCI_VERSION_1_0),
        PSCI_SYSTEM_OFF => Action::PowerOff(septa_abi::exit::SUCCESS),
        PSCI_SYSTEM_RESET => Action::Reset,
        MONITOR_VERSION => Action::Return([MONITOR_VERSION_VALUE, call.caller_world, 0, 0]),
        POWER_OFF => Action::PowerOff(call.args[0]),
        SERVICE => Action::Service { service: call.args[0], len: call.args[1], start: call.args[2] },
        STORE_REPORT => Action::StoreReport { len: call.args[0] },
        BOOT_INFO => Action::BootInfo,
        CONFIRM_BOOT => Action::ConfirmBoot,
        TRIAL_FAILED => Action::TrialFailed { len: call.args[0] },
        _ => one(NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(function: u32, arg: u32) -> Action {
        dispatch(Call { function, args: [arg, 0, 0], caller_world: WORLD_NON_SECURE })
    }

    #[test]
    fn unknown_ids_return_not_supported() {
        for id in [0, 0x1234_5678, 0xB200_00FF, 0x8400_0001, 0xC400_0008, u32::MAX] {
            assert_eq!(call(id, 0), Action::Return([NOT_SUPPORTED, 0, 0, 0]), "{id:#x}");
        }
    }

    #[test]
    fn version_calls() {
        assert_eq!(call(SMCCC_VERSION, 0), Action::Return([0x1_0001, 0, 0, 0]));
        assert_eq!(call(PSCI_VERSION, 0), Action::Return([0x1_0000, 0, 0, 0]));
        assert_eq!(call(MONITOR_VERSION, 0), Action::Return([MONITOR_VERSION_VALUE, WORLD_NON_SECURE, 0, 0]));
    }

    #[test]
    fn arch_features_answers_for_implemented_ids_only() {
        assert_eq!(call(SMCCC_ARCH_FEATURES, PSCI_SYSTEM_OFF), Action::Return([0, 0, 0, 0]));
        assert_eq!(call(SMCCC_ARCH_FEATURES, 0xB200_0042), Action::Return([NOT_SUPPORTED, 0, 0, 0]));
    }

    #[test]
    fn a_service_call_names_the_service_the_length_and_where_the_request_starts() {
        let call = Call { function: SERVICE, args: [1, 203, 61], caller_world: WORLD_NON_SECURE };
        assert_eq!(dispatch(call), Action::Service { service: 1, len: 203, start: 61 });
    }

    #[test]
    fn power_calls() {
        assert_eq!(call(PSCI_SYSTEM_OFF, 99), Action::PowerOff(0));
        assert_eq!(call(POWER_OFF, 1), Action::PowerOff(1));
        assert_eq!(call(PSCI_SYSTEM_RESET, 0), Action::Reset);
    }
}
