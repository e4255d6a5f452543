//! The boot ROM: the first code that runs, in Secure SVC, from secure flash 0.
//!
//! It trusts only itself and the board's memory map. It reads the image slot from flash 1,
//! checks every header and length against the regions the board defines for each stage,
//! copies the monitor into secure RAM and the kernel into non-secure RAM, checks each copy
//! against the SHA-256 in its package header, and enters the monitor. Anything wrong with
//! the slot is reported on the console, naming the package and the check that failed, and
//! the loader powers off with [`exit::BOOT_REFUSED`] — it never copies to an address the
//! board map does not allow and never jumps into an image it did not check.

#![no_std]
#![no_main]

use core::fmt::Write;
use septa_abi::exit;
use septa_abi::package::{Kind, Package};
use septa_abi::slot::Slot;
use septa_armv7::crash::{self, ExceptionKind, FaultRegisters, TrapFrame};
use septa_armv7::{mode, pl011::Pl011, regs, semihosting};
use septa_targets::{Region, qemu_virt as board};

const STAGE: &str = "loader";

fn console() -> Pl011 {
    // SAFETY: UART0 is the board's PL011; the MMU is off, so its physical address is used.
    unsafe { Pl011::new(board::UART0) }
}

// Reset entry: Secure SVC, MMU and caches off. Set the stack, copy .data from ROM, zero
// .bss, and call `loader_main`.
core::arch::global_asm!(
    r#"
    .section .text.start, "ax"
    .arm
    .global _start
_start:
    ldr sp, =__stack_top
    ldr r0, =__data_start
    ldr r1, =__data_end
    ldr r2, =__data_load
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
    bl loader_main
    b .
    .ltorg
"#
);

#[unsafe(no_mangle)]
extern "C" fn loader_main() -> ! {
    // SAFETY: the crash vectors are a valid, 32-byte aligned vector table in ROM; from here
    // on any exception produces a crash report instead of a silent hang.
    unsafe { regs::write_vbar(crash::crash_vectors()) };
    regs::isb();
    let mut out = console();
    out.enable();
    // Reading SCR succeeds only in the secure world; NS = 0 confirms it.
    let world = if regs::read_scr() & 1 == 0 { "secure" } else { "non-secure" };
    let _ = writeln!(
        out,
        "septa: {STAGE} {} {world} {}",
        env!("CARGO_PKG_VERSION"),
        mode::mode_name(regs::read_cpsr())
    );

    match load_slot(board::SLOT_A) {
        Ok(monitor_entry) => {
            let _ = writeln!(out, "septa: loader: images checked, entering the monitor");
            enter(monitor_entry)
        }
        Err(reason) => {
            let _ = writeln!(out, "septa: loader: refusing to boot slot A: {reason}");
            semihosting::exit(exit::BOOT_REFUSED)
        }
    }
}

/// Why the loader refused the slot.
enum Refusal {
    Slot(septa_abi::slot::Error),
    /// A package is too large for the region its kind is loaded into.
    TooLarge {
        index: usize,
        kind: Kind,
        len: usize,
        region: Region,
    },
    /// The copy in RAM does not hash to the value in the header.
    Hash {
        index: usize,
        kind: Kind,
    },
    Duplicate {
        index: usize,
        kind: Kind,
    },
    Missing(Kind),
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Slot(e) => write!(f, "{e}"),
            Refusal::TooLarge { index, kind, len, region } => write!(
                f,
                "package {index} ({}): payload of {len} bytes does not fit the {:#x}-byte region at {:#010x}",
                kind.name(),
                region.size,
                region.base
            ),
            Refusal::Hash { index, kind } => write!(
                f,
                "package {index} ({}): payload SHA-256 does not match the header (corrupt image)",
                kind.name()
            ),
            Refusal::Duplicate { index, kind } => {
                write!(f, "package {index}: a second {} package", kind.name())
            }
            Refusal::Missing(kind) => write!(f, "no {} package in the slot", kind.name()),
        }
    }
}

/// Checks the slot in `region` and loads its monitor and kernel. Returns the monitor's entry.
fn load_slot(region: Region) -> Result<usize, Refusal> {
    // SAFETY: `region` is a slot region of flash 1 from the board map: mapped, readable from
    // the secure world, and never written while the loader runs.
    let flash = unsafe { core::slice::from_raw_parts(region.base as *const u8, region.size) };
    let slot = Slot::parse(flash).map_err(Refusal::Slot)?;
    let (mut monitor, mut kernel) = (false, false);
    for (index, entry) in slot.packages().enumerate() {
        let (_, package) = entry.map_err(Refusal::Slot)?;
        let kind = package.header.kind;
        let (seen, destination) = match kind {
            Kind::Monitor => (&mut monitor, board::MONITOR_RAM),
            Kind::Kernel => (&mut kernel, board::KERNEL_RAM),
            // Apps are loaded by the kernel, into address spaces of their own.
            Kind::App => continue,
        };
        if core::mem::replace(seen, true) {
            return Err(Refusal::Duplicate { index, kind });
        }
        place(index, &package, destination)?;
    }
    if !monitor {
        return Err(Refusal::Missing(Kind::Monitor));
    }
    if !kernel {
        return Err(Refusal::Missing(Kind::Kernel));
    }
    Ok(board::MONITOR_RAM.base)
}

/// Copies a package's payload to the start of `destination` and checks the copy's hash, so
/// what is checked is exactly what will run.
fn place(index: usize, package: &Package<'_>, destination: Region) -> Result<(), Refusal> {
    let kind = package.header.kind;
    let len = package.payload.len();
    if !destination.contains_range(destination.base, len) {
        return Err(Refusal::TooLarge { index, kind, len, region: destination });
    }
    // SAFETY: `destination` is a RAM region from the board map reserved for this stage's
    // image, `len` bytes fit in it (checked above), and it does not overlap flash or the
    // loader's own RAM (asserted by the board's unit tests).
    let copy = unsafe {
        let ram = core::slice::from_raw_parts_mut(destination.base as *mut u8, len);
        ram.copy_from_slice(package.payload);
        &*ram
    };
    let copied = Package { header: package.header.clone(), payload: copy };
    copied.verify_payload().map_err(|_| Refusal::Hash { index, kind })
}

/// Enters the monitor in Secure SVC with interrupts masked.
fn enter(entry: usize) -> ! {
    // SAFETY: `entry` is the start of the monitor image, which was copied and hash-checked
    // by `load_slot`; the monitor's entry contract is "Secure SVC, any stack".
    unsafe {
        core::arch::asm!("dsb", "isb", "bx {}", in(reg) entry, options(noreturn));
    }
}

#[unsafe(no_mangle)]
extern "C" fn septa_crash(kind: u32, frame: &TrapFrame) -> ! {
    let kind = ExceptionKind::from_u32(kind);
    let at = frame.interrupted(kind);
    let _ = crash::write_exception_report(&mut console(), STAGE, kind, &at, &FaultRegisters::read());
    semihosting::exit(exit::CRASH)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = crash::write_panic_report(&mut console(), STAGE, info);
    semihosting::exit(exit::CRASH)
}
