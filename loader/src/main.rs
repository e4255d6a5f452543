//! The boot ROM: the first code that runs, in Secure SVC, from secure flash 0 — the root of
//! trust.
//!
//! It trusts only itself, the board's memory map and the fuse area (device secret, OEM
//! keys, revoked keys, minimum security versions). It copies itself into secure RAM (so it
//! can program flash 0), reads the boot state (`septa_abi::boot_state`) and decides which
//! image slot boots: the active one, or a pending update on its one trial — recording the
//! trial in flash *before* running any of the new software, so a trial that never confirms
//! itself falls back on the next reset. It checks the slot with [`septa_abi::verify`], the
//! check the monitor applies to an update: one ECDSA P-256 signature over the slot manifest,
//! every package header against the manifest, signing keys provisioned and not revoked,
//! security versions at least the anti-rollback minimum (the fuses' or the raised one in the
//! boot state, whichever is higher), one monitor and one kernel. It copies the monitor into
//! secure RAM and the kernel into non-secure RAM and hashes the copies (apps are hashed by
//! the kernel when it starts them, against the same manifest-covered headers), measures
//! everything (itself included) into a boot log, derives the CDI
//! and the sealing CDI from the device secret, hands the monitor those, the identity-key
//! seed, the boot log and the OEM keys — never the device secret — and enters it. A refused
//! trial slot falls back to the active slot; a refused active slot is reported on the
//! console, naming the package and the check that failed, and the loader powers off with
//! [`exit::BOOT_REFUSED`].

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt::Write;
use septa_abi::boot_state::{self, BootState, RollbackReason};
use septa_abi::exit;
use septa_abi::fuses::Fuses;
use septa_abi::handoff::{BootRecord, Handoff, MAX_RECORDS};
use septa_abi::keys;
use septa_abi::verify::{self, VerifiedPackage};
use septa_armv7::crash::{self, TrapFrame};
use septa_armv7::{mode, pl011::Pl011, regs, semihosting};
use septa_targets::{Region, board};

const STAGE: &str = "loader";

fn console() -> Pl011 {
    // SAFETY: UART0 is the board's PL011; the MMU is off, so its physical address is used.
    unsafe { Pl011::new(board::UART0) }
}

// Reset entry: Secure SVC, MMU and caches off, running from the boot ROM. Cores other than
// core 0 park in a WFI loop until SMP support exists (WFI rather than WFE: QEMU runs a WFE
// loop as a busy loop, which would eat the emulated time of core 0). Core 0 copies the image (code,
// constants, data) into secure RAM, sets the stack, zeroes .bss and jumps to `loader_main`
// in RAM by its absolute address.
core::arch::global_asm!(
    r#"
    .section .text.start, "ax"
    .arm
    .global _start
_start:
    mrc p15, 0, r0, c0, c0, 5
    ands r0, r0, #3
    beq 3f
0:  wfi
    b 0b
3:  ldr r0, =__image_start
    ldr r1, =__image_end
    ldr r2, =__image_load
1:  cmp r0, r1
    ldrlo r3, [r2], #4
    strlo r3, [r0], #4
    blo 1b
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    mov r2, #0
2:  cmp r0, r1
    strlo r2, [r0], #4
    blo 2b
    mcr p15, 0, r2, c7, c5, 0
    dsb
    isb
    ldr sp, =__stack_top
    ldr r0, =loader_main
    bx r0
    .ltorg
"#
);

#[unsafe(no_mangle)]
extern "C" fn loader_main() -> ! {
    // SAFETY: the crash vectors are a valid, 32-byte aligned vector table in the loader's
    // image; from here on any exception produces a crash report instead of a silent hang.
    unsafe { regs::write_vbar(crash::crash_vectors()) };
    regs::isb();
    #[cfg(feature = "raspi2b")]
    start_core();
    let mut out = console();
    out.enable();
    // Reading SCR succeeds only in the secure world; NS = 0 confirms it.
    let secure = regs::read_scr() & 1 == 0;
    let _ = mode::write_stage_line(&mut out, STAGE, secure, regs::read_cpsr());

    // SAFETY: the fuse area is part of secure flash 0, mapped and read-only while it is
    // borrowed (the loader programs only the boot-state sectors, after decoding it).
    let area = unsafe { core::slice::from_raw_parts(board::FUSES.base as *const u8, board::FUSES.size) };
    let mut fuses = match Fuses::decode(area) {
        Ok(fuses) => fuses,
        Err(error) => refuse(&mut out, 0, &Refusal::Fuses(error)),
    };
    let result = choose_and_boot(&mut out, &fuses);
    // The device secret goes no further than the loader.
    fuses.device_secret.fill(0);
    core::hint::black_box(&fuses);
    let (monitor_entry, handoff) = result;
    let _ = writeln!(
        out,
        "septa: loader: slot {}: {} packages verified and measured, entering the monitor",
        boot_state::name(handoff.slot as u8),
        handoff.record_count - 1
    );
    // SAFETY: HANDOFF is a secure-RAM area reserved for this block by the board map,
    // outside the monitor's image and the loader's own RAM.
    unsafe { core::ptr::write_volatile(board::HANDOFF.base as *mut Handoff, handoff) };
    enter(monitor_entry)
}

/// Decides the slot from the boot state, records the decision, and verifies and loads the
/// slot; falls back to the active slot if a trial slot is refused. Powers off if the slot
/// to boot is refused.
fn choose_and_boot(out: &mut Pl011, fuses: &Fuses) -> (usize, Handoff) {
    let mut flash = boot_flash();
    let journal = BootState::journal(board::BOOT_STATE.base - board::FLASH0.base, 2);
    let mut state = BootState::load(&flash, &journal);
    let mut slot = state.next_boot();
    if let Err(error) = state.store(&mut flash, &journal) {
        // Without a record of the trial a failing update could never fall back: no trial.
        let _ =
            writeln!(out, "septa: loader: cannot write the boot state ({error}); booting the active slot");
        state.abandon_trial(RollbackReason::Refused);
        slot = state.booted();
    }
    if let Some(event) = state.unreported {
        let _ = writeln!(out, "septa: loader: {event}");
    }
    loop {
        let mut handoff = Handoff::empty();
        match secure_boot(fuses, &state, slot, &mut handoff) {
            Ok(entry) => return (entry, handoff),
            Err(reason) if state.trying == Some(slot) => {
                let _ = writeln!(
                    out,
                    "septa: loader: refusing to boot slot {}: {reason}",
                    boot_state::name(slot)
                );
                state.abandon_trial(RollbackReason::Refused);
                let _ = state.store(&mut flash, &journal);
                slot = state.booted();
                let _ = writeln!(out, "septa: loader: falling back to slot {}", boot_state::name(slot));
            }
            Err(reason) => refuse(out, slot, &reason),
        }
    }
}

/// What the Pi's own firmware stub does before the kernel, since ours replaces it: join the
/// cores' coherency domain (ACTLR.SMP, required before caches and MMU on the Cortex-A7), and
/// start the generic timer from the 19.2 MHz crystal and tell software its frequency — only
/// the secure world can write CNTFRQ. Under QEMU, which presets CNTFRQ, nothing changes.
#[cfg(feature = "raspi2b")]
fn start_core() {
    const LOCAL_CONTROL: usize = 0x0;
    const LOCAL_PRESCALER: usize = 0x8;
    // SAFETY: ACTLR.SMP only enables coherency; LOCAL_INTC is the board's local peripheral
    // block, whose control and prescaler registers set the generic timer's clock (crystal,
    // ratio 1:1); CNTFRQ only records that frequency.
    unsafe {
        regs::write_actlr(regs::read_actlr() | (1 << 6));
        if regs::read_cntfrq() == 0 {
            core::ptr::write_volatile((board::LOCAL_INTC + LOCAL_CONTROL) as *mut u32, 0);
            core::ptr::write_volatile((board::LOCAL_INTC + LOCAL_PRESCALER) as *mut u32, 0x8000_0000);
            regs::write_cntfrq(board::TIMER_CRYSTAL_HZ);
        }
    }
}

/// Flash 0 (fuses, boot state) as the loader writes it.
#[cfg(not(feature = "raspi2b"))]
fn boot_flash() -> septa_armv7::cfi_flash::CfiFlash {
    // SAFETY: flash 0 is the secure boot ROM bank; the loader runs from RAM and is the only
    // code running, so nothing executes from or drives the bank meanwhile.
    unsafe {
        septa_armv7::cfi_flash::CfiFlash::new(
            board::FLASH0.base,
            board::FLASH0.size,
            board::FLASH_SECTOR,
            board::FLASH_WRITE_BUFFER,
        )
    }
}

/// The boot payload's fuse and boot-state area, in RAM on the dev kit.
#[cfg(feature = "raspi2b")]
fn boot_flash() -> septa_armv7::ram_flash::RamFlash {
    // SAFETY: FLASH0 is the RAM the boot payload put the fuses and boot state into; only the
    // loader uses it while it runs.
    unsafe {
        septa_armv7::ram_flash::RamFlash::new(board::FLASH0.base, board::FLASH0.size, board::FLASH_SECTOR)
    }
}

fn refuse(out: &mut Pl011, slot: u8, reason: &Refusal) -> ! {
    let _ = writeln!(out, "septa: loader: refusing to boot slot {}: {reason}", boot_state::name(slot));
    semihosting::exit(exit::BOOT_REFUSED)
}

/// Why the loader refused the slot.
enum Refusal {
    Fuses(septa_abi::fuses::Error),
    Slot(verify::Error),
    /// A package is too large for the region its kind is loaded into.
    TooLarge {
        index: usize,
        kind: &'static str,
        len: usize,
        region: Region,
    },
    TooManyPackages,
    /// The OEM keys do not fit the handoff.
    Handoff,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Fuses(e) => write!(f, "{e}"),
            Refusal::Slot(e) => write!(f, "{e}"),
            Refusal::TooLarge { index, kind, len, region } => write!(
                f,
                "package {index} ({kind}): payload of {len} bytes does not fit the {:#x}-byte region at {:#010x}",
                region.size, region.base
            ),
            Refusal::TooManyPackages => write!(f, "more packages than the boot log holds"),
            Refusal::Handoff => write!(f, "the fuses' keys do not fit the monitor's handoff"),
        }
    }
}

/// Verifies `slot` against the fuses and the boot state ([`verify::verify`]), loads the
/// monitor and kernel and checks the copies, and measures everything into `handoff`.
/// Returns the monitor's entry.
fn secure_boot(fuses: &Fuses, state: &BootState, slot: u8, handoff: &mut Handoff) -> Result<usize, Refusal> {
    let region = board::SLOTS[slot as usize];
    // SAFETY: `region` is a slot region of flash 1 from the board map: mapped, readable from
    // the secure world, and never written while the loader runs.
    let flash = unsafe { core::slice::from_raw_parts(region.base as *const u8, region.size) };
    let verified = verify::verify(flash, fuses, |id| state.minimum(id)).map_err(Refusal::Slot)?;
    place(verified.monitor(), board::MONITOR_RAM)?;
    place(verified.kernel(), board::KERNEL_RAM)?;
    record(handoff, BootRecord { kind: 0, measurement: measure_loader(), ..Default::default() })?;
    for package in verified.packages() {
        let header = &package.package.header;
        let entry = BootRecord {
            kind: header.kind as u32,
            component_id: header.component_id,
            security_version: header.security_version,
            measurement: package.measurement,
        };
        record(handoff, entry)?;
    }
    let authority = verified.monitor().package.header.key_id;
    let measurements: heapless::Vec<[u8; 32], MAX_RECORDS> =
        handoff.records().iter().map(|r| r.measurement).collect();
    handoff.cdi = keys::compound_device_id(&fuses.device_secret, &measurements);
    handoff.identity_seed = keys::identity_seed(&fuses.device_secret);
    handoff.seal_cdi = keys::sealing_cdi(&fuses.device_secret, &[authority]);
    handoff.slot = slot as u32;
    let trust = Fuses { device_secret: [0; 32], minimum_versions: heapless::Vec::new(), ..fuses.clone() };
    let encoded = postcard::to_slice(&trust, &mut handoff.trust).map_err(|_| Refusal::Handoff)?;
    handoff.trust_len = encoded.len() as u32;
    handoff.magic = septa_abi::handoff::MAGIC;
    Ok(board::MONITOR_RAM.base)
}

fn record(handoff: &mut Handoff, entry: BootRecord) -> Result<(), Refusal> {
    let slot = handoff.records.get_mut(handoff.record_count as usize).ok_or(Refusal::TooManyPackages)?;
    *slot = entry;
    handoff.record_count += 1;
    Ok(())
}

/// The loader measures itself: SHA-256 of its image in the boot ROM (what reset runs and
/// copies into RAM).
fn measure_loader() -> [u8; 32] {
    use sha2::Digest;
    unsafe extern "C" {
        static __loader_end: u8;
    }
    let start = board::LOADER_ROM.base;
    let len = (&raw const __loader_end) as usize - start;
    // The ROM starts at address 0, which Rust references and slices may not point at: its
    // first block is read with plain word loads, the rest is hashed where it lies.
    let mut first = [0u8; 64];
    let head = len.min(first.len());
    for (at, chunk) in first[..head].chunks_mut(4).enumerate() {
        let word: u32;
        // SAFETY: the word at `start + 4·at` (word aligned) is inside the loader's own image
        // in the boot ROM, which is mapped and never written; the last word may reach past
        // the image's end, never past the ROM.
        unsafe {
            core::arch::asm!("ldr {}, [{}]", out(reg) word, in(reg) start + 4 * at, options(readonly, nostack))
        };
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    // SAFETY: `start + head .. start + len` is the rest of the loader's image in the boot
    // ROM: mapped, never written, and (past the first block) not at address 0.
    let rest = unsafe { core::slice::from_raw_parts((start + head) as *const u8, len - head) };
    sha2::Sha256::new().chain_update(&first[..head]).chain_update(rest).finalize().into()
}

/// Copies a verified package's payload to the start of `destination` and checks the copy's
/// hash, so what is checked is exactly what will run.
fn place(verified: &VerifiedPackage<'_>, destination: Region) -> Result<(), Refusal> {
    let payload = verified.package.payload;
    let len = payload.len();
    if !destination.contains_range(destination.base, len) {
        let kind = verified.package.header.kind.name();
        return Err(Refusal::TooLarge { index: verified.index, kind, len, region: destination });
    }
    // SAFETY: `destination` is a RAM region from the board map reserved for this stage's
    // image, `len` bytes fit in it (checked above), and it does not overlap flash or the
    // loader's own RAM (asserted by the board's unit tests).
    let copy = unsafe {
        let ram = core::slice::from_raw_parts_mut(destination.base as *mut u8, len);
        copy_image(ram, payload);
        &*ram
    };
    verified.check_copy(copy).map_err(Refusal::Slot)
}

/// Copies `source` into `ram` (of the same length): sixteen bytes per `ldm`/`stm` pair
/// where both are word aligned (payloads in a slot are), a quarter of the instructions of
/// the library's word-by-word `memcpy` for the monitor and kernel (300 KB and more at
/// every boot); the tail, or a misaligned copy, by `copy_from_slice`.
fn copy_image(ram: &mut [u8], source: &[u8]) {
    let aligned = (ram.as_ptr() as usize | source.as_ptr() as usize).is_multiple_of(4);
    let bulk = if aligned && ram.len() == source.len() { source.len() & !15 } else { 0 };
    if bulk > 0 {
        // SAFETY: both slices are valid for `bulk` bytes (at most their common length),
        // word aligned (checked above) and do not overlap (one is borrowed mutably); the
        // loop moves exactly `bulk` bytes, a positive multiple of 16, from `source` to
        // `ram`, and changes no register but the ones named.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldm {src}!, {{r2, r3, r4, r5}}",
                "stm {dst}!, {{r2, r3, r4, r5}}",
                "subs {n}, {n}, #16",
                "bne 2b",
                src = inout(reg) source.as_ptr() => _,
                dst = inout(reg) ram.as_mut_ptr() => _,
                n = inout(reg) bulk => _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                options(nostack),
            );
        }
    }
    ram[bulk..].copy_from_slice(&source[bulk..]);
}

/// Enters the monitor in Secure SVC with interrupts masked.
fn enter(entry: usize) -> ! {
    // SAFETY: `entry` is the start of the monitor image, which was copied and hash-checked
    // by `place`; the monitor's entry contract is "Secure SVC, any stack".
    unsafe {
        core::arch::asm!("dsb", "isb", "bx {}", in(reg) entry, options(noreturn));
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
