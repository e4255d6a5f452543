//! The Septa kernel: entered by the monitor in Non-secure SVC with the MMU off.
//!
//! Boot: install the crash vectors, print the stage line (the world comes from the
//! monitor, which sees SCR.NS at the time of the call), build the kernel's translation
//! tables and turn the MMU on, take the exception vectors, set up frames, heap, interrupt
//! controller and tick, then start every app in the image slot — each in its own address
//! space, in user mode — and hand the CPU to the scheduler.

#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod console;
mod frames;
mod monitor;
#[cfg(feature = "probe")]
mod probe;
mod process;
mod syscall;
mod system;
mod trap;

use crate::console::console;
use septa_abi::package::Kind;
use septa_abi::slot::Slot;
use septa_abi::{exit, smc};
use septa_armv7::crash::{self, ExceptionKind, FaultRegisters, TrapFrame};
use septa_armv7::{mode, regs};
use septa_targets::qemu_virt as board;
use system::KERNEL;

const STAGE: &str = "kernel";

core::arch::global_asm!(
    r#"
    .section .text.start, "ax"
    .arm
    .global _start
_start:
    ldr sp, =__stack_top
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    mov r2, #0
1:  cmp r0, r1
    strlo r2, [r0], #4
    blo 1b
    bl kernel_main
    b .
    .ltorg
"#
);

#[unsafe(no_mangle)]
extern "C" fn kernel_main() -> ! {
    // SAFETY: the crash vectors are a 32-byte aligned vector table in the kernel image;
    // they report anything that goes wrong before the kernel's own vectors are in place.
    unsafe { regs::write_vbar(crash::crash_vectors()) };
    regs::isb();
    let (version, world) = monitor::version();
    let world = if world == smc::WORLD_NON_SECURE {
        "non-secure"
    } else {
        "secure"
    };
    kprintln!(
        "septa: {STAGE} {} {world} {}",
        env!("CARGO_PKG_VERSION"),
        mode::mode_name(regs::read_cpsr())
    );
    kprintln!(
        "septa: kernel: monitor {}.{}",
        version >> 16,
        version & 0xffff
    );
    #[cfg(feature = "probe")]
    probe::run();

    arch::mmu::enable();
    console::use_virtual_address();
    // SAFETY: the kernel's vector table is 32-byte aligned in the (now mapped) image.
    unsafe { regs::write_vbar(arch::entry::vectors()) };
    regs::isb();
    frames::init();
    arch::gic::init();
    kprintln!(
        "septa: kernel: MMU on, W^X kernel map, {} MiB of frames",
        (board::RAM.end() - board::KERNEL_RAM.end()) >> 20
    );

    let mut kernel = KERNEL.lock();
    let started = start_apps(&mut kernel);
    kprintln!("septa: kernel: {started} apps started");
    kernel.start_clock();
    let next = kernel.schedule(false);
    drop(kernel);
    trap::run(next)
}

/// Starts every app package in slot A; a refused app is reported and skipped.
fn start_apps(kernel: &mut system::Kernel) -> usize {
    let window = arch::mmu::device_va(board::SLOT_A.base);
    // SAFETY: slot A lies in flash 1, which `mmu::enable` mapped read-only at `window`;
    // nothing writes flash while the kernel runs.
    let flash = unsafe { core::slice::from_raw_parts(window as *const u8, board::SLOT_A.size) };
    let slot = match Slot::parse(flash) {
        Ok(slot) => slot,
        Err(error) => {
            kprintln!("septa: kernel: slot A: {error}; no apps started");
            return 0;
        }
    };
    let mut started = 0;
    for (index, entry) in slot.packages().enumerate() {
        let package = match entry {
            Ok((_, package)) => package,
            Err(error) => {
                kprintln!("septa: kernel: slot A: {error}; no further apps started");
                break;
            }
        };
        if package.header.kind != Kind::App {
            continue;
        }
        let Some(pid) = kernel
            .processes
            .iter()
            .position(|p| p.state == process::State::Free)
        else {
            kprintln!(
                "septa: kernel: app package {index} refused: {}",
                process::SpawnError::NoFreeSlot
            );
            continue;
        };
        match process::spawn(&mut kernel.processes[pid], &package) {
            Ok(()) => {
                kernel.make_ready(pid);
                started += 1;
            }
            Err(error) => kprintln!("septa: kernel: app package {index} refused: {error}"),
        }
    }
    started
}

#[unsafe(no_mangle)]
extern "C" fn septa_crash(kind: u32, frame: &TrapFrame) -> ! {
    let kind = ExceptionKind::from_u32(kind);
    let at = frame.interrupted(kind);
    let _ =
        crash::write_exception_report(&mut console(), STAGE, kind, &at, &FaultRegisters::read());
    monitor::power_off(exit::CRASH)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = crash::write_panic_report(&mut console(), STAGE, info);
    monitor::power_off(exit::CRASH)
}
