//! The security monitor's entry points: reset handoff, Monitor-mode vectors, the drop to the
//! non-secure world and the power controls.
//!
//! The loader enters [`_start`] in Secure SVC. The monitor switches to Monitor mode for good,
//! installs its vectors (MVBAR for SMCs, the crash vectors in the secure VBAR for anything
//! unexpected), configures the Secure Configuration Register and drops to the kernel in
//! Non-secure SVC. From then on it runs only when the kernel issues `smc #0`: the SMC entry
//! saves the caller's registers on the monitor stack, [`septa_monitor::smc::dispatch`]
//! decides, and the entry returns r0–r3, or powers the system off or resets it. The monitor
//! owns both flash banks (`septa_monitor::persist`): the boot state, update staging and
//! slots, app storage and the report ring.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt::Write;
use septa_abi::boot_state::RollbackReason;
use septa_abi::handoff::Handoff;
use septa_abi::monitor::{
    CALLER_OFFSET, QUOTA_OFFSET, REQUEST_MAX, REQUEST_OFFSET, RESPONSE_MAX, RESPONSE_OFFSET, Service,
};
use septa_abi::{exit, smc};
use septa_armv7::crash::{self, TrapFrame};
use septa_armv7::{mode, pl011::Pl011, regs, semihosting};
use septa_monitor::persist::Persistent;
use septa_monitor::services::State;
use septa_monitor::smc::{Action, Call, dispatch};
use septa_monitor::storage::Store;
use septa_targets::board;

#[cfg_attr(feature = "raspi2b", path = "entropy_raspi2b.rs")]
mod entropy;
#[cfg_attr(feature = "raspi2b", path = "platform_raspi2b.rs")]
mod platform;
#[cfg(feature = "powercut")]
mod powercut;

const STAGE: &str = "monitor";

// The two statics below start out as all zeros, so they live in `.bss`, not in the image the
// loader copies and hashes at every boot (as initialized data they were 8 KB of it: a
// `Mutex<Option<State>>`'s `None` is one non-zero byte, and `Persistent::new` holds flash
// addresses).
/// What the services need: set once at boot from the loader's handoff. A `Vec` of at most
/// one rather than an `Option`, because an empty one is all zeros (and checking it costs
/// what checking an `Option` does, unlike a `Once`).
static SERVICES: spin::Mutex<heapless::Vec<State, 1>> = spin::Mutex::new(heapless::Vec::new());
/// The flashes and what is kept in them, built on first use ([`persistent`]).
static PERSISTENT: spin::Once<spin::Mutex<Persistent<platform::Flash>>> = spin::Once::new();
/// The index of app storage (large and zeroed: kept apart so it stays out of the image).
static STORE: spin::Mutex<Store> = spin::Mutex::new(Store::new());
/// The entropy read started at boot, until the first request for random bytes collects it.
static ENTROPY: spin::Mutex<Option<entropy::Pending>> = spin::Mutex::new(None);

/// SCR for the normal world: NS, FIQs taken to Monitor mode (FIQ — the secure watchdog is
/// the only FIQ source) and not maskable by the normal world (FW clear), async-abort mask
/// writable by it (AW), secure instruction fetch from non-secure memory forbidden (SIF);
/// SMC enabled, IRQs and external aborts taken in the current world, no Hyp.
const SCR_NORMAL_WORLD: u32 = (1 << 0) | (1 << 2) | (1 << 5) | (1 << 9);
/// How long an update on trial may run without confirming itself before the secure
/// watchdog rolls it back.
const WATCHDOG_MS: u64 = 5000;
/// NSACR: the normal world gets no coprocessor access beyond CP14/CP15 (it has no FPU use).
const NSACR_NORMAL_WORLD: u32 = 0;

fn console() -> Pl011 {
    // SAFETY: UART0 is the board's PL011; the MMU is off in the secure world.
    unsafe { Pl011::new(board::UART0) }
}

/// The registers an SMC entry saves: r0–r12 and the return address.
#[repr(C)]
struct SmcFrame {
    r: [u32; 13],
    lr: u32,
}

core::arch::global_asm!(
    r#"
    .section .text.start, "ax"
    .arm
    .global _start
_start:
    cps #0x16
    ldr sp, =__stack_top
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    mov r2, #0
1:  cmp r0, r1
    strlo r2, [r0], #4
    blo 1b
    bl monitor_main
    b .

    .section .text.monitor_vectors, "ax"
    .balign 32
    .global monitor_vectors
monitor_vectors:
    b septa_crash_vectors + 0
    b septa_crash_vectors + 4
    b monitor_smc_entry
    b septa_crash_vectors + 12
    b septa_crash_vectors + 16
    b septa_crash_vectors + 20
    b septa_crash_vectors + 24
    b monitor_fiq_entry

monitor_smc_entry:
    push {{r0-r12, lr}}
    mov r0, sp
    bl monitor_smc
    pop {{r0-r12, lr}}
    movs pc, lr

monitor_fiq_entry:
    sub lr, lr, #4
    push {{r0-r3, r12, lr}}
    bl monitor_fiq
    pop {{r0-r3, r12, lr}}
    movs pc, lr

    .global monitor_enter_normal_world
monitor_enter_normal_world:
    mov r2, #0x193
    msr spsr_cxsf, r2
    mov lr, r0
    mcr p15, 0, r1, c1, c1, 0
    isb
    mov r0, #0
    mov r1, #0
    mov r2, #0
    mov r3, #0
    mov r4, #0
    mov r5, #0
    mov r6, #0
    mov r7, #0
    mov r8, #0
    mov r9, #0
    mov r10, #0
    mov r11, #0
    mov r12, #0
    movs pc, lr
    .ltorg
"#
);

unsafe extern "C" {
    static monitor_vectors: u8;
    /// Sets SCR to `scr` and returns to `entry` in Non-secure SVC with A and I masked (F stays
    /// clear: the normal world cannot mask the watchdog) and every general-purpose register
    /// cleared, so no secure value leaks to the normal world.
    fn monitor_enter_normal_world(entry: usize, scr: u32) -> !;
}

#[unsafe(no_mangle)]
extern "C" fn monitor_main() -> ! {
    // SAFETY: both tables are 32-byte aligned vector tables in the monitor image. The
    // secure VBAR catches faults in the monitor itself; MVBAR takes the normal world's SMCs.
    unsafe {
        regs::write_vbar(crash::crash_vectors());
        regs::write_mvbar((&raw const monitor_vectors) as u32);
    }
    regs::isb();
    let mut out = console();
    let secure = regs::read_scr() & 1 == 0;
    let _ = mode::write_stage_line(&mut out, STAGE, secure, regs::read_cpsr());
    #[cfg(feature = "powercut")]
    powercut::arm(&mut out);
    take_handoff(&mut out);
    #[cfg(feature = "powercut")]
    powercut::set_trial(persistent().boot.trying.is_some());
    // SAFETY: NSACR only narrows what the normal world may do.
    unsafe { regs::write_nsacr(NSACR_NORMAL_WORLD) };
    platform::give_interrupts_to_normal_world();
    if persistent().boot.trying.is_some() {
        arm_watchdog();
    }
    let entry = board::KERNEL_RAM.base;
    let _ = writeln!(out, "septa: monitor: entering the kernel at {entry:#010x}, non-secure svc");
    // SAFETY: the loader copied and checked the kernel image at `entry`; SCR_NORMAL_WORLD
    // is the documented normal-world configuration.
    unsafe { monitor_enter_normal_world(entry, SCR_NORMAL_WORLD) }
}

/// Takes the loader's handoff into the monitor's own memory, wipes it from the handoff
/// page, and starts the entropy read for the DRBG.
fn take_handoff(out: &mut Pl011) {
    // SAFETY: HANDOFF is the secure-RAM page the loader wrote a `Handoff` into just before
    // entering the monitor; nothing else uses it. The copy is a plain one (a volatile read
    // of the whole block would become one load per byte, tens of KB of code the loader
    // then copies and hashes at every boot); the wipe is word by word and volatile, so it
    // cannot be optimized away.
    let handoff = unsafe {
        let page = board::HANDOFF.base as *mut Handoff;
        let handoff = core::ptr::read(page);
        let words = page as *mut u32;
        for at in 0..core::mem::size_of::<Handoff>() / 4 {
            core::ptr::write_volatile(words.add(at), 0);
        }
        handoff
    };
    if handoff.magic != septa_abi::handoff::MAGIC {
        let _ = writeln!(out, "septa: monitor: no handoff from the loader");
        semihosting::exit(exit::CRASH)
    }
    let pending = entropy::request();
    if pending.is_none() {
        let _ = writeln!(out, "septa: monitor: no virtio entropy device; the random service is unavailable");
    }
    *ENTROPY.lock() = pending;
    let mut state = State::new(&handoff);
    let versions =
        handoff.records().iter().filter(|r| r.kind != 0).map(|r| (r.component_id, r.security_version));
    let mut persistent = persistent();
    persistent.start(versions);
    persistent.report_update_event(&mut state, uptime_ms());
    let _ = writeln!(
        out,
        "septa: monitor: {} measurements, keys derived from the CDI; slot {}{}, boot {}",
        handoff.record_count,
        septa_abi::boot_state::name(persistent.boot.booted()),
        if persistent.boot.trying.is_some() { " on trial" } else { "" },
        persistent.boot.boot_count
    );
    let _ = SERVICES.lock().push(state); // the handoff is taken once: there is room
}

/// Starts the secure watchdog: the secure physical timer fires [`WATCHDOG_MS`] from now,
/// and the board turns its interrupt into an FIQ, which SCR routes to the monitor.
fn arm_watchdog() {
    platform::route_watchdog_to_monitor();
    // SAFETY: in the secure world the physical timer registers are the secure timer's, which
    // only the monitor uses; this only schedules its interrupt.
    unsafe {
        regs::write_cntp_tval((WATCHDOG_MS * regs::read_cntfrq() as u64 / 1000) as u32);
        regs::write_cntp_ctl(1);
    }
    let _ = writeln!(
        console(),
        "septa: monitor: watchdog armed: the update must confirm itself within {WATCHDOG_MS} ms"
    );
}

fn disarm_watchdog() {
    // The CNTP registers are banked by SCR.NS, and an SMC or FIQ from the normal world
    // arrives with NS still set: without clearing it, this write would stop the kernel's
    // timer (the non-secure bank) and leave the watchdog running.
    let scr = regs::read_scr();
    // SAFETY: clears SCR.NS for the one write, so it reaches the secure physical timer (only
    // the monitor uses it), then puts SCR back; Monitor mode is secure whatever NS says.
    unsafe {
        regs::write_scr(scr & !1);
        regs::isb();
        regs::write_cntp_ctl(0);
        regs::write_scr(scr);
        regs::isb();
    }
}

/// An FIQ: only the watchdog raises one. If a trial is still running, it failed: record
/// that and reset into the previous slot.
#[unsafe(no_mangle)]
extern "C" fn monitor_fiq() {
    let fiq = platform::acknowledge_fiq();
    disarm_watchdog();
    if fiq.is_some_and(|fiq| fiq.is_watchdog())
        && with_state(|_, p| p.end_trial(RollbackReason::Watchdog)).unwrap_or(false)
    {
        platform::reset()
    }
    if let Some(fiq) = fiq {
        platform::end_fiq(fiq);
    }
}

/// Milliseconds since reset, from the physical counter.
fn uptime_ms() -> u64 {
    regs::read_cntpct() * 1000 / (regs::read_cntfrq() as u64).max(1)
}

/// Prints what the last flash operation has to say.
fn print_message(persistent: &mut Persistent<platform::Flash>) {
    if let Some(message) = persistent.message.take() {
        let _ = writeln!(console(), "septa: monitor: {message}");
    }
}

/// Seeds the DRBG from the entropy read started at boot, the first time random bytes are
/// needed.
fn seed_once(state: &mut State) {
    if state.seeded() {
        return;
    }
    if let Some(pending) = ENTROPY.lock().take() {
        match entropy::collect(pending) {
            Some(seed) => state.seed(&seed),
            None => {
                let _ =
                    writeln!(console(), "septa: monitor: the entropy device gave nothing; no random service");
            }
        }
    }
}

/// Serves the request of `len` bytes at `start` in the shared page: copies it (and the
/// caller's component id and storage quota) into secure memory, lets `handle` answer it,
/// writes the response back. With `in_place`, `handle` gets the request where it lies in the
/// shared page instead of a copy: only for a request whose content is never checked, only
/// hashed (SHA-256), where the copy would guard nothing. Returns r0 (status) and r1
/// (response length).
fn serve(
    start: u32,
    len: u32,
    in_place: bool,
    handle: impl FnOnce(&mut State, &[u8; 16], usize, &[u8], &mut [u8]) -> Result<usize, u32>,
) -> [u32; 4] {
    let Some(range) = septa_abi::monitor::request_range(start, len) else {
        return [septa_abi::monitor::BAD_REQUEST, 0, 0, 0];
    };
    let page = board::MONITOR_SHARED.base;
    // SAFETY: MONITOR_SHARED is the fixed non-secure page for requests; the monitor reads
    // and writes only inside it (offsets and the request's range are bounded, the range by
    // `request_range`, within the request area) and never follows a
    // pointer from the normal world. The caller's id and quota are read once, as words (the
    // page and both offsets are 4-aligned). Copying the request first (unless `in_place`)
    // means the normal world cannot change it while it is checked. The response area is
    // only written: the response goes there directly. The normal world does not run while
    // the monitor does (one core), so nothing else touches the page meanwhile.
    let (words, quota, shared_request, response) = unsafe {
        (
            core::ptr::read((page + CALLER_OFFSET) as *const [u32; 4]),
            core::ptr::read((page + QUOTA_OFFSET) as *const u32),
            core::slice::from_raw_parts((page + range.start) as *const u8, range.len()),
            core::slice::from_raw_parts_mut((page + RESPONSE_OFFSET) as *mut u8, RESPONSE_MAX),
        )
    };
    let mut caller = [0u8; 16];
    for (bytes, word) in caller.chunks_exact_mut(4).zip(words) {
        bytes.copy_from_slice(&word.to_ne_bytes());
    }
    let mut copy = heapless::Vec::<u8, REQUEST_MAX>::new();
    let request = if in_place {
        shared_request
    } else {
        let _ = copy.extend_from_slice(shared_request); // cannot fail: ≤ REQUEST_MAX bytes
        &copy
    };
    let result = match SERVICES.lock().first_mut() {
        Some(state) => handle(state, &caller, u32::from_le(quota) as usize, request, response),
        None => Err(septa_abi::monitor::FAILED),
    };
    match result {
        Ok(written) => [septa_abi::monitor::OK, written as u32, 0, 0],
        Err(status) => [status, 0, 0, 0],
    }
}

/// The flashes and what is kept in them, locked.
fn persistent() -> spin::MutexGuard<'static, Persistent<platform::Flash>> {
    PERSISTENT.call_once(|| spin::Mutex::new(Persistent::new(platform::flash0(), platform::flash1()))).lock()
}

/// Runs `f` on the monitor's state and flashes (which exist from boot on).
fn with_state<T>(f: impl FnOnce(&mut State, &mut Persistent<platform::Flash>) -> T) -> Option<T> {
    let mut services = SERVICES.lock();
    let mut persistent = persistent();
    let result = f(services.first_mut()?, &mut persistent);
    print_message(&mut persistent);
    Some(result)
}

#[unsafe(no_mangle)]
extern "C" fn monitor_smc(frame: &mut SmcFrame) {
    let caller_world = if regs::read_scr() & 1 != 0 { smc::WORLD_NON_SECURE } else { smc::WORLD_SECURE };
    let call = Call { function: frame.r[0], args: [frame.r[1], frame.r[2], frame.r[3]], caller_world };
    match dispatch(call) {
        Action::Return(values) => frame.r[..4].copy_from_slice(&values),
        Action::Service { service, len, start } => {
            let mut reset_after = false;
            let in_place = service == Service::Sha256 as u32;
            let result = serve(start, len, in_place, |state, caller, quota, request, out| {
                if service == Service::Random as u32 || service == Service::StoragePut as u32 {
                    seed_once(state);
                }
                if service == Service::WallClock as u32 {
                    septa_monitor::services::decode(service, request)?;
                    let now = platform::wall_clock().ok_or(septa_abi::monitor::FAILED)?;
                    let target = out.get_mut(..8).ok_or(septa_abi::monitor::TOO_LARGE)?;
                    target.copy_from_slice(&now.to_le_bytes());
                    return Ok(8);
                }
                if !Service::from_u32(service).is_some_and(Service::uses_flash) {
                    // Keys, hashes, randomness: nothing in flash, no flash lock.
                    return state.handle(service, caller, request, out);
                }
                let mut persistent = persistent();
                let result = persistent.serve(state, &mut STORE.lock(), service, caller, quota, request, out);
                print_message(&mut persistent);
                reset_after = service == Service::UpdateCommit as u32 && result.is_ok();
                result
            });
            if reset_after {
                let _ = writeln!(console(), "septa: monitor: system reset into the update");
                platform::reset()
            }
            frame.r[..4].copy_from_slice(&result)
        }
        Action::StoreReport { len } => {
            let result = serve(REQUEST_OFFSET as u32, len, false, |state, _, _, batch, out| {
                let batch = postcard::from_bytes(batch).map_err(|_| septa_abi::monitor::BAD_REQUEST)?;
                persistent().store_report(state, batch, out)
            });
            frame.r[..4].copy_from_slice(&result)
        }
        Action::BootInfo => {
            let info = with_state(|_, p| {
                [p.boot.booted() as u32, p.boot.trying.is_some() as u32, p.boot.boot_count, 0]
            });
            frame.r[..4].copy_from_slice(&info.unwrap_or([0; 4]))
        }
        Action::ConfirmBoot => {
            let confirmed = with_state(|state, p| p.confirm(state, uptime_ms())).unwrap_or(false);
            if confirmed {
                disarm_watchdog();
            }
            frame.r[..4].copy_from_slice(&[confirmed as u32, 0, 0, 0])
        }
        Action::TrialFailed { len } => {
            let mut name = [0u8; 16];
            // The name is at most 16 bytes of the request area; anything longer is cut.
            serve(REQUEST_OFFSET as u32, len.min(16), false, |_, _, _, request, _| {
                name[..request.len()].copy_from_slice(request);
                Ok(0)
            });
            if with_state(|_, p| p.end_trial(RollbackReason::AppFailed { name })).unwrap_or(false) {
                platform::reset()
            }
            frame.r[..4].copy_from_slice(&[0; 4])
        }
        Action::PowerOff(status) => {
            let _ = writeln!(console(), "septa: monitor: system off (status {status})");
            semihosting::exit(status)
        }
        Action::Reset => {
            let _ = writeln!(console(), "septa: monitor: system reset");
            platform::reset()
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn septa_crash(kind: u32, frame: &TrapFrame) -> ! {
    crash::report_trap(&mut console(), STAGE, kind, frame);
    semihosting::exit(exit::CRASH)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = crash::write_panic_report(&mut console(), STAGE, info);
    semihosting::exit(exit::CRASH)
}
