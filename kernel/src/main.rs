//! The Septa kernel: entered by the monitor in Non-secure SVC with the MMU off.
//!
//! This first version proves the boot chain: it installs its vectors, asks the monitor for
//! its version (which also tells which world the kernel runs in — the monitor sees SCR.NS
//! at the time of the call), prints its stage line and idles.

#![no_std]
#![no_main]

mod monitor;
#[cfg(feature = "probe")]
mod probe;

use core::fmt::Write;
use septa_abi::{exit, smc};
use septa_armv7::crash::{self, ExceptionKind, FaultRegisters, TrapFrame};
use septa_armv7::{mode, pl011::Pl011, regs};
use septa_targets::qemu_virt as board;

const STAGE: &str = "kernel";

fn console() -> Pl011 {
    // SAFETY: UART0 is the board's PL011, shared with the secure stages and mapped
    // non-secure; the MMU is off.
    unsafe { Pl011::new(board::UART0) }
}

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
    // SAFETY: the crash vectors are a 32-byte aligned vector table in the kernel image.
    unsafe { regs::write_vbar(crash::crash_vectors()) };
    regs::isb();
    let mut out = console();
    let (version, world) = monitor::version();
    let world = if world == smc::WORLD_NON_SECURE {
        "non-secure"
    } else {
        "secure"
    };
    let _ = writeln!(
        out,
        "septa: {STAGE} {} {world} {}",
        env!("CARGO_PKG_VERSION"),
        mode::mode_name(regs::read_cpsr())
    );
    let _ = writeln!(
        out,
        "septa: kernel: monitor {}.{}",
        version >> 16,
        version & 0xffff
    );
    #[cfg(feature = "probe")]
    probe::run();
    let _ = writeln!(out, "septa: kernel: idle");
    loop {
        regs::wait_for_interrupt();
    }
}

#[unsafe(no_mangle)]
extern "C" fn septa_crash(kind: u32, frame: &TrapFrame) -> ! {
    let _ = crash::write_exception_report(
        &mut console(),
        STAGE,
        ExceptionKind::from_u32(kind),
        frame,
        &FaultRegisters::read(),
    );
    monitor::power_off(exit::CRASH)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = crash::write_panic_report(&mut console(), STAGE, info);
    monitor::power_off(exit::CRASH)
}
