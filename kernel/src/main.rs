//! The Septa kernel: entered by the monitor in Non-secure SVC with the MMU off.
//!
//! Boot: install the crash vectors, print the stage line (the world comes from the
//! monitor, which sees SCR.NS at the time of the call), build the kernel's translation
//! tables and turn the MMU on, take the exception vectors, set up frames, heap, interrupt
//! controller and tick, then start every app in the image slot — each in its own address
//! space, in user mode — and hand the CPU to the scheduler.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
mod console;
mod exclusive;
mod frames;
mod monitor;
#[cfg(feature = "probe")]
mod probe;
#[cfg(feature = "smcfuzz")]
mod smcfuzz;
mod trap;

use crate::arch::InterruptController;
use crate::arch::machine::{Armv7, BOOTED_SLOT};
use crate::console::console;
use septa_abi::{exit, smc};
use septa_armv7::crash::{self, TrapFrame};
use septa_armv7::{mode, regs};
use septa_kernel::machine::SharedPage;
use septa_targets::board;

/// The kernel: its logic from the library over this board.
pub type Kernel = septa_kernel::system::Kernel<Armv7>;

pub static KERNEL: exclusive::Exclusive<Kernel> = exclusive::Exclusive::new(Kernel::new(Armv7));

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
    let secure = world != smc::WORLD_NON_SECURE;
    let _ = mode::write_stage_line(&mut console(), STAGE, secure, regs::read_cpsr());
    kprintln!("septa: kernel: monitor {}.{}", version >> 16, version & 0xffff);
    #[cfg(feature = "probe")]
    probe::run();
    // SAFETY: MONITOR_SHARED is the non-secure page reserved for monitor requests (out of
    // the frame allocator), one-to-one mapped in the kernel; this is the only reference to
    // it ever made, and it lives in the kernel from here on.
    #[allow(unused_mut)] // written by the SMC fuzzer only
    let mut shared = SharedPage::new(unsafe {
        core::slice::from_raw_parts_mut(board::MONITOR_SHARED.base as *mut u8, board::MONITOR_SHARED.size)
    });
    #[cfg(feature = "smcfuzz")]
    smcfuzz::run(&mut shared);

    #[cfg(feature = "bench")]
    arch::enable_user_counters();
    arch::mmu::enable();
    console::use_virtual_address();
    // SAFETY: the kernel's vector table is 32-byte aligned in the (now mapped) image.
    unsafe { regs::write_vbar(arch::entry::vectors()) };
    regs::isb();
    frames::init();
    arch::IRQS.init();
    kprintln!("septa: kernel: MMU on, W^X kernel map, {} MiB of frames", board::FRAMES.size >> 20);

    let mut kernel = KERNEL.lock();
    kernel.give_shared_page(shared);
    let [slot, on_trial, boots, _] = monitor::call(smc::BOOT_INFO, [0; 3]);
    BOOTED_SLOT.store(slot as usize % board::SLOTS.len(), core::sync::atomic::Ordering::Relaxed);
    kernel.on_trial = on_trial == 1;
    kprintln!(
        "septa: kernel: boot {boots}, slot {}{}",
        septa_abi::boot_state::name(slot as u8),
        if kernel.on_trial { " on trial: the supervisor confirms it once it is healthy" } else { "" }
    );
    let started = kernel.start_apps();
    kprintln!("septa: kernel: {started} apps started");
    #[cfg(feature = "bench")]
    report_memory(&kernel);
    kernel.start_clock();
    let next = kernel.schedule(false);
    drop(kernel);
    trap::run(next)
}

/// Benchmark builds: the RAM the kernel's heap and each started app use, measured now, as
/// `BENCH` lines for `cargo xtask bench` (the kernel's static RAM it reads from the ELF).
#[cfg(feature = "bench")]
fn report_memory(kernel: &Kernel) {
    kprintln!("septa: kernel: BENCH mem_kernel_heap_used {} bytes", frames::heap_used());
    let entry = core::mem::size_of::<septa_kernel::process::Process>();
    kprintln!("septa: kernel: BENCH mem_process_entry {entry} bytes");
    for process in kernel.processes.iter().filter(|p| p.state == septa_kernel::process::State::Ready) {
        let (total, tables, stack) = process.frames_in_use();
        kprintln!(
            "septa: kernel: BENCH mem_app_{} {total} bytes: tables {tables}, stack {stack}, image and heap {}",
            process.name(),
            total - tables - stack
        );
    }
}

#[unsafe(no_mangle)]
extern "C" fn septa_crash(kind: u32, frame: &TrapFrame) -> ! {
    crash::report_trap(&mut console(), STAGE, kind, frame);
    monitor::power_off(exit::CRASH)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = crash::write_panic_report(&mut console(), STAGE, info);
    monitor::power_off(exit::CRASH)
}
