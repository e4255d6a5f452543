//! `attacker` (test only): tries what an app must not be able to do.
//!
//! The integration tests pack this app several times; each instance's name (`a-<attack>`)
//! chooses its attack. `a-syscalls` hands the kernel bad pointers and numbers and checks
//! each is refused with the right error, then tries to leave user mode; the others each
//! make one access that must end the app with a fault. `a-residue` looks for an earlier
//! owner's bytes in its fresh memory (and leaves its own there for the next one), `a-tls-set`
//! and `a-tls-get` try to pass a value through the user thread-ID register, and `a-flood`
//! floods the console. A line containing `NOT BLOCKED` or `WRONG` means the kernel let an
//! attack through.

#![no_std]
#![no_main]

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use septa_syscalls::{self as sys, Error, Syscall};

septa_runtime::entry!(main);

/// An address in the kernel's image, mapped for the kernel only.
const KERNEL_TEXT: u32 = 0x4010_0000;
/// An address in RAM the kernel hands out as frames to other apps.
const OTHER_APPS_RAM: u32 = 0x4400_0000;
const SECURE_RAM: u32 = 0x0e00_0000;
const BOOT_ROM: u32 = 0x0000_0000;

/// Read-only data: a kernel write into it must be refused.
static READ_ONLY: [u8; 64] = [0; 64];
/// Writable data holding an instruction (`bx lr`): executing it must fault.
static mut DATA_CODE: [u32; 2] = [0xe12f_ff1e, 0];
/// Zero-initialised data (`.bss`): fresh pages the kernel must hand over zeroed.
static mut FRESH: [u32; 2048] = [0; 2048];
/// The bottom of every app's 16 KiB stack (see `docs/writing-an-app.md`).
const STACK_BOTTOM: u32 = 0x1fff_b000;
/// What `a-residue` leaves in its memory for whoever gets the frames next.
const RESIDUE: u32 = 0x5ec2_e7a5;

fn main() {
    let info = sys::info();
    let attack = info.name().strip_prefix("a-").unwrap_or("");
    match attack {
        "syscalls" => syscall_attacks(),
        "kread" => read(KERNEL_TEXT, "kernel memory"),
        "otherapp" => read(OTHER_APPS_RAM, "RAM holding other apps' frames"),
        "secureram" => read(SECURE_RAM, "secure RAM"),
        "bootrom" => read(BOOT_ROM, "the boot ROM"),
        "textwrite" => {
            let text = main as *const () as *mut u32;
            sys::log!("attempt: write own text at {:#x}", text as u32);
            // SAFETY: deliberately unsound: the attack under test.
            unsafe { write_volatile(text, 0) };
            sys::log!("NOT BLOCKED: wrote own text");
        }
        "stackexec" => {
            let code = [0xe12f_ff1eu32, 0];
            sys::log!("attempt: execute from the stack at {:#x}", code.as_ptr() as u32);
            jump(code.as_ptr() as u32);
            sys::log!("NOT BLOCKED: executed from the stack");
        }
        "dataexec" => {
            let code = (&raw const DATA_CODE) as u32;
            sys::log!("attempt: execute from data at {code:#x}");
            jump(code);
            sys::log!("NOT BLOCKED: executed from data");
        }
        "kexec" => {
            sys::log!("attempt: execute kernel text at {KERNEL_TEXT:#x}");
            jump(KERNEL_TEXT);
            sys::log!("NOT BLOCKED: executed kernel text");
        }
        "undef" => {
            sys::log!("attempt: undefined instruction");
            // SAFETY: deliberately faults: the attack under test.
            unsafe { asm!("udf #0") };
            sys::log!("NOT BLOCKED: undefined instruction returned");
        }
        "align" => {
            let word = [0u32; 2];
            let unaligned = (word.as_ptr() as u32) + 1;
            sys::log!("attempt: unaligned load at {unaligned:#x}");
            let value: u32;
            // SAFETY: deliberately unaligned: the attack under test.
            unsafe { asm!("ldr {}, [{}]", out(reg) value, in(reg) unaligned) };
            sys::log!("NOT BLOCKED: unaligned load returned {value:#x}");
        }
        "residue" => residue(),
        "tls-set" => thread_register(true),
        "tls-get" => thread_register(false),
        "flood" => {
            let refused = (0..1000).filter(|line| {
                let mut text = sys::LineBuffer::new();
                let _ = core::fmt::Write::write_fmt(&mut text, format_args!("flood line {line}"));
                sys::log_bytes(text.as_bytes()) == Err(Error::Busy)
            });
            let refused = refused.count();
            // Quiet for a while: the next line gets through, after the kernel's count.
            sys::sleep(300);
            sys::log!("flood over: {refused} of 1000 lines refused with EBUSY");
        }
        other => sys::log!("WRONG: no attack named {other:?}"),
    }
}

fn read(address: u32, what: &str) {
    sys::log!("attempt: read {what} at {address:#010x}");
    // SAFETY: deliberately unsound: the attack under test.
    let value = unsafe { read_volatile(address as *const u32) };
    sys::log!("NOT BLOCKED: read {what}: {value:#x}");
}

fn jump(address: u32) {
    // SAFETY: deliberately unsound: the attack under test. If the jump somehow worked the
    // code at `address` is `bx lr`, which returns here.
    unsafe {
        asm!("blx {}", in(reg) address, out("r0") _, out("r1") _, out("r2") _, out("r3") _, out("r12") _, out("lr") _)
    };
}

/// Calls the kernel with arguments that must be refused and checks each answer.
fn syscall_attacks() {
    let log = Syscall::Log as u32;
    let info = Syscall::Info as u32;
    let text = main as *const () as u32 & !0xfff;
    let cases: [(&str, u32, [u32; 2], Error); 8] = [
        ("log(kernel address)", log, [KERNEL_TEXT, 16], Error::Fault),
        ("log(unmapped address)", log, [0x2000_0000, 16], Error::Fault),
        ("log(wrapping range)", log, [0xffff_ffc0, 0x80], Error::Fault),
        ("log(range straddling into an unmapped page)", log, [text - 8, 16], Error::Fault),
        ("log(oversized length)", log, [text, 100_000], Error::Invalid),
        ("info(read-only buffer)", info, [READ_ONLY.as_ptr() as u32, 0], Error::Fault),
        ("info(kernel address)", info, [KERNEL_TEXT, 0], Error::Fault),
        ("syscall 999", 999, [0, 0], Error::NoSys),
    ];
    let mut refused = 0;
    for (what, number, [a0, a1], expected) in cases {
        let got = sys::raw_syscall(number, a0, a1, 0);
        if got == Err(expected) {
            sys::log!("refused: {what} -> {expected}");
            refused += 1;
        } else {
            sys::log!("WRONG: {what} -> {got:?}, expected {expected}");
        }
    }
    if READ_ONLY.iter().any(|&b| b != 0) {
        sys::log!("WRONG: the read-only buffer changed");
    }
    // Privileged mode switches are ignored in user mode (ARM ARM B9.3.3, B9.3.12).
    let mode: u32;
    // SAFETY: `cps` and `msr` to a privileged mode have no effect in user mode; reading the
    // CPSR then shows the mode the app really runs in.
    unsafe { asm!("cps #0x13", "msr cpsr_c, #0xd3", "mrs {}, cpsr", out(reg) mode) };
    if mode & 0x1f == 0x10 {
        sys::log!("refused: cps/msr to svc -> still in user mode");
        refused += 1;
    } else {
        sys::log!("WRONG: now in mode {:#x}", mode & 0x1f);
    }
    sys::log!("{refused} of {} syscall and mode attacks refused", cases.len() + 1);
}

/// Checks that the `.bss` array and the unused part of the stack hold only zeros, then
/// fills both with [`RESIDUE`] and exits, to be restarted on frames that may be the same.
fn residue() {
    let sp: u32;
    // SAFETY: reads the stack pointer only.
    unsafe { asm!("mov {}, sp", out(reg) sp) };
    // Leave the kilobyte below SP to this function's own calls.
    let stack_end = (sp - 1024) & !3;
    let fresh = (&raw mut FRESH) as *mut u32;
    let mut left = 0;
    let words = (0..2048)
        .map(|i| fresh.wrapping_add(i))
        .chain((STACK_BOTTOM..stack_end).step_by(4).map(|a| a as *mut u32));
    for word in words.clone() {
        // SAFETY: `FRESH` and the stack below `stack_end` are this app's own writable
        // memory, which nothing else refers to while this runs.
        if unsafe { read_volatile(word) } != 0 {
            left += 1;
        }
    }
    let checked = (2048 + (stack_end - STACK_BOTTOM) / 4) * 4;
    if left == 0 {
        sys::log!("fresh memory: {checked} bytes of .bss and stack checked, all zero");
    } else {
        sys::log!("WRONG: fresh memory holds {left} non-zero words left by an earlier owner");
    }
    for word in words {
        // SAFETY: as above.
        unsafe { write_volatile(word, RESIDUE) };
    }
    sys::log!("left {RESIDUE:#x} in every word of .bss and stack; exiting");
}

/// Rounds of [`thread_register`].
const TLS_ROUNDS: u32 = 100;

/// `set` writes its own value into TPIDRURW before each yield and checks that it is still
/// there afterwards; the other instance writes nothing and must read zero every time. Both
/// also check that an exclusive load before a yield does not let a store-exclusive after it
/// succeed (the kernel clears the exclusive monitor on every switch).
fn thread_register(set: bool) {
    let mut word = 0u32;
    for round in 0..TLS_ROUNDS {
        let mine = 0x7e1d_0000 | round;
        if set {
            // SAFETY: TPIDRURW is the user-writable thread-ID register; writing it has no
            // effect but on what this app reads back.
            unsafe { asm!("mcr p15, 0, {}, c13, c0, 2", in(reg) mine) };
        }
        let value: u32;
        // SAFETY: `word` is this app's own; the exclusive load only arms the monitor.
        unsafe { asm!("ldrex {}, [{}]", out(reg) value, in(reg) &raw mut word) };
        let _ = value;
        sys::yield_now();
        let failed: u32;
        // SAFETY: a store-exclusive to the app's own word; it either stores 1 or does not.
        unsafe { asm!("strex {}, {}, [{}]", out(reg) failed, in(reg) 1u32, in(reg) &raw mut word) };
        if failed == 0 {
            sys::log!("WRONG: a store-exclusive succeeded across a context switch (round {round})");
            return;
        }
        let seen: u32;
        // SAFETY: reads the thread-ID register.
        unsafe { asm!("mrc p15, 0, {}, c13, c0, 2", out(reg) seen) };
        let expected = if set { mine } else { 0 };
        if seen != expected {
            sys::log!(
                "WRONG: TPIDRURW holds {seen:#x} after a switch, expected {expected:#x} (round {round})"
            );
            return;
        }
    }
    let what = if set { "kept its own value" } else { "read only zero" };
    sys::log!("TPIDRURW {what} over {TLS_ROUNDS} switches; no store-exclusive crossed a switch");
}
