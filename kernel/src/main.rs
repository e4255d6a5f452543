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
mod frames;
mod monitor;
#[cfg(feature = "probe")]
mod probe;
mod process;
#[cfg(feature = "smcfuzz")]
mod smcfuzz;
mod syscall;
mod system;
mod trap;

use crate::arch::InterruptController;
use crate::console::console;
use septa_abi::package::Kind;
use septa_abi::{exit, smc};
use septa_armv7::crash::{self, TrapFrame};
use septa_armv7::{mode, regs};
use septa_kernel::cap::{Cap, CapTable};
use septa_targets::board;
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
    let secure = world != smc::WORLD_NON_SECURE;
    let _ = mode::write_stage_line(&mut console(), STAGE, secure, regs::read_cpsr());
    kprintln!("septa: kernel: monitor {}.{}", version >> 16, version & 0xffff);
    #[cfg(feature = "probe")]
    probe::run();
    #[cfg(feature = "smcfuzz")]
    smcfuzz::run();

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
    let [slot, on_trial, boots, _] = monitor::call(smc::BOOT_INFO, [0; 3]);
    system::BOOTED_SLOT.store(slot as usize % board::SLOTS.len(), core::sync::atomic::Ordering::Relaxed);
    kernel.on_trial = on_trial == 1;
    kprintln!(
        "septa: kernel: boot {boots}, slot {}{}",
        septa_abi::boot_state::name(slot as u8),
        if kernel.on_trial { " on trial: the supervisor confirms it once it is healthy" } else { "" }
    );
    let started = start_apps(&mut kernel);
    kprintln!("septa: kernel: {started} apps started");
    kernel.start_clock();
    let next = kernel.schedule(false);
    drop(kernel);
    trap::run(next)
}

/// Starts every app package in the booted slot; a refused app is reported and skipped. First every
/// app is loaded, then endpoints are registered, then each app's capability table is built
/// from its manifest — a capability naming something missing or already owned refuses that
/// app alone.
fn start_apps(kernel: &mut system::Kernel) -> usize {
    let slot = match system::slot() {
        Ok(slot) => slot,
        Err(error) => {
            kprintln!("septa: kernel: slot: {error}; no apps started");
            return 0;
        }
    };
    for (index, entry) in slot.packages().enumerate() {
        let (offset, package) = match entry {
            Ok(found) => found,
            Err(error) => {
                kprintln!("septa: kernel: slot: {error}; no further apps started");
                break;
            }
        };
        if package.header.kind != Kind::App {
            continue;
        }
        let Some(pid) = kernel.processes.iter().position(|p| p.state == process::State::Free) else {
            kprintln!("septa: kernel: app package {index} refused: {}", process::SpawnError::NoFreeSlot);
            continue;
        };
        let process = &mut kernel.processes[pid];
        match process::spawn(process, &package) {
            Ok(()) => process.package_offset = offset,
            Err(error) => {
                kprintln!("septa: kernel: app package {index} refused: {error}");
                *process = process::Process::EMPTY;
            }
        }
    }
    let loaded =
        || (0..process::MAX_PROCESSES).filter(|&p| kernel.processes[p].state == process::State::Ready);
    let loaded: heapless::Vec<usize, { process::MAX_PROCESSES }> = loaded().collect();
    for &pid in &loaded {
        if let Err(reason) = register_endpoint(kernel, pid) {
            refuse(kernel, pid, reason);
        }
    }
    let mut started = 0;
    for &pid in &loaded {
        if kernel.processes[pid].state != process::State::Ready {
            continue;
        }
        match grant_capabilities(kernel, pid) {
            Ok(()) => {
                kernel.make_ready(pid);
                started += 1;
            }
            Err(reason) => refuse(kernel, pid, reason),
        }
    }
    started
}

fn register_endpoint(kernel: &mut system::Kernel, pid: usize) -> Result<(), &'static str> {
    let Some(name) = kernel.processes[pid].manifest.as_ref().and_then(|m| m.serve) else {
        return Ok(());
    };
    if kernel.endpoints.contains(&Some(name)) {
        return Err("its endpoint is already served by another app");
    }
    let free = kernel.endpoints.iter().position(Option::is_none).ok_or("no endpoint left")?;
    kernel.endpoints[free] = Some(name);
    kernel.ipc.serve(free as u8, pid as u8);
    Ok(())
}

/// Builds `pid`'s capability table from its manifest.
fn grant_capabilities(kernel: &mut system::Kernel, pid: usize) -> Result<(), &'static str> {
    let manifest = kernel.processes[pid].manifest.clone().ok_or("no manifest")?;
    let endpoint = |name: &str| kernel.endpoints.iter().position(|e| *e == Some(name)).map(|e| e as u8);
    let mut caps = CapTable::new();
    let mut grant = |cap| caps.grant(cap).ok_or("too many capabilities");
    if let Some(name) = manifest.serve {
        grant(Cap::Serve { endpoint: endpoint(name).ok_or("its endpoint is not registered")? })?;
    }
    for name in &manifest.call {
        grant(Cap::Call { endpoint: endpoint(name).ok_or("it calls an endpoint nobody serves")? })?;
    }
    for name in &manifest.devices {
        let device =
            board::DEVICES.iter().position(|d| d.name == *name).ok_or("it names a device the board lacks")?;
        if kernel.device_owners[device].is_some() {
            return Err("its device belongs to another app");
        }
        let handle = grant(Cap::Device { device: device as u8 })?;
        kernel.device_owners[device] = Some((pid, handle));
    }
    if !manifest.gpio.is_empty() {
        let mut pins = 0u32;
        for &pin in &manifest.gpio {
            let owner =
                kernel.pin_owners.get_mut(pin as usize).ok_or("it names a GPIO pin the board lacks")?;
            if owner.is_some() {
                return Err("its GPIO pin belongs to another app");
            }
            *owner = Some(pid);
            pins |= 1 << pin;
        }
        grant(Cap::Gpio { pins })?;
    }
    if !manifest.monitor.is_empty() {
        let services = manifest.monitor.iter().fold(0u32, |set, name| {
            set | septa_abi::app::MONITOR_SERVICES.iter().position(|s| s == name).map_or(0, |i| 1 << i)
        });
        grant(Cap::Monitor { services })?;
    }
    kernel.processes[pid].caps = caps;
    Ok(())
}

/// Drops an app that cannot be given its capabilities.
fn refuse(kernel: &mut system::Kernel, pid: usize, reason: &str) {
    let process = &mut kernel.processes[pid];
    kprintln!("septa: kernel: app {} refused: {reason}", process.name());
    process.release();
    process.state = process::State::Ended;
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
