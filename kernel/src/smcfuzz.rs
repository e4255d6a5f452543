//! Test builds only (`--features smcfuzz`): sends the security monitor random SMC function
//! ids with random shared-page contents before any app starts, and checks that only results
//! and error codes come back. Then the boot goes on, so the tests can check that the monitor
//! still serves apps and that attestation still verifies.
//!
//! The number of calls is the word at [`board::TEST_BOOT_ARG`] (QEMU's `-device loader`;
//! `cargo xtask fuzz` sets a large one), or [`DEFAULT_CALLS`]. Calls that end the boot by
//! design (power off, reset, failing a trial) are left out.

use crate::kprintln;
use crate::monitor;
use septa_abi::monitor::{BUSY, RESPONSE_MAX};
use septa_abi::smc;
use septa_targets::board;

const DEFAULT_CALLS: u32 = 3000;

pub fn run(shared: &mut septa_kernel::machine::SharedPage) {
    // SAFETY: TEST_BOOT_ARG is the last page of non-secure RAM, unused by this kernel.
    let requested = unsafe { core::ptr::read_volatile(board::TEST_BOOT_ARG as *const u32) };
    let calls = if requested == 0 { DEFAULT_CALLS } else { requested };
    let mut state = 0x005e_b7a3u64 ^ calls as u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    };
    let known = [
        smc::SMCCC_VERSION,
        smc::SMCCC_ARCH_FEATURES,
        smc::PSCI_VERSION,
        smc::MONITOR_VERSION,
        smc::SERVICE,
        smc::STORE_REPORT,
        smc::BOOT_INFO,
        smc::CONFIRM_BOOT,
    ];
    let ends_the_boot = [smc::POWER_OFF, smc::PSCI_SYSTEM_OFF, smc::PSCI_SYSTEM_RESET, smc::TRIAL_FAILED];
    let shared = shared.bytes();
    let mut wrong = 0;
    for _ in 0..calls {
        let function = match next() % 3 {
            0 => next(),
            1 => smc::MONITOR_VERSION + next() % 32,
            _ => known[next() as usize % known.len()],
        };
        if ends_the_boot.contains(&function) {
            continue;
        }
        // Random request bytes, caller id and quota; a short request most of the time.
        for byte in shared[..1024].iter_mut().take(64 + next() as usize % 960) {
            *byte = next() as u8;
        }
        // `SERVICE`'s third argument is where the request starts: mostly where the kernel
        // may put one (so the services decode what is there), now and then anything.
        let start = match next() % 4 {
            0 => next(),
            _ => (septa_abi::monitor::REQUEST_OFFSET - next() as usize % 4) as u32,
        };
        let args = [next() % 24, next() % 600, start];
        let [r0, r1, ..] = monitor::call(function, args);
        let fine = match function {
            smc::SERVICE | smc::STORE_REPORT => r0 <= BUSY && (r0 != 0 || r1 as usize <= RESPONSE_MAX),
            f if known.contains(&f) => true,
            _ => r0 == smc::NOT_SUPPORTED,
        };
        if !fine {
            wrong += 1;
            kprintln!("septa: smcfuzz: WRONG: smc {function:#010x} {args:x?} returned {r0:#x}, {r1:#x}");
        }
    }
    let (version, _) = monitor::version();
    kprintln!(
        "septa: smcfuzz: {calls} random monitor calls, {wrong} wrong answers; the monitor still answers (version {}.{})",
        version >> 16,
        version & 0xffff
    );
}
