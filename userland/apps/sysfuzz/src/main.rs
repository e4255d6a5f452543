//! `sysfuzz` (test only): calls the kernel with random syscall numbers, handles, pointers
//! and lengths, from a fixed seed, and checks each answer.
//!
//! Pointers are drawn from classes: inside its own scratch buffer, its own read-only data,
//! kernel addresses, unmapped and guard pages, ranges that straddle into unmapped memory or
//! wrap around, and raw random words. After every call it checks that the kernel answered
//! (r0 is a result or a known error code), that r2–r5 came back unchanged, and that a
//! canary area it never names to the kernel still holds its pattern. Calls that would end
//! the app or block it for good are left out (`exit`; `wait` with a non-empty mask) and
//! `sleep` is kept short. A line containing `WRONG` is a finding; the last line sums up.

#![no_std]
#![no_main]

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use septa_syscalls::{self as sys, Error, Syscall};

septa_runtime::entry!(main);

/// Where the kernel may write: the scratch buffer (page aligned, two pages).
#[repr(C, align(4096))]
struct Scratch([u8; 8192]);
static mut SCRATCH: Scratch = Scratch([0; 8192]);
/// Never passed to the kernel: it must keep its pattern.
static mut CANARY: [u32; 1024] = [0; 1024];
const PATTERN: u32 = 0xc0ca_c01a;
/// Read-only data to point at.
static READ_ONLY: [u8; 256] = [0x41; 256];

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }
}

fn scratch() -> u32 {
    (&raw const SCRATCH) as u32
}

/// A (pointer, length) pair from one of the classes.
fn buffer(rng: &mut Rng) -> (u32, u32) {
    let len = rng.pick(&[0, 1, 4, 16, 64, 240, 241, 512, 4096, 4097, 0xffff_ffff]);
    match rng.below(9) {
        // Inside the scratch buffer, never past its end.
        0..=2 => {
            let len = len.min(8192);
            (scratch() + rng.below(8192 - len + 1), len)
        }
        3 => ((&raw const READ_ONLY) as u32 + rng.below(256), len),
        4 => (0x4000_0000 + rng.next() % 0xc000_0000, len),
        5 => (rng.pick(&[0, 0xffc, 0x1fff_a000, 0x1fff_f000, 0x2000_0000, 0x1ffe_0000]), len),
        // The last bytes of the stack's top page, running into the unmapped page above
        // it (no call writes 8 bytes or fewer without a capability, so nothing lands).
        6 => (0x1fff_f000 - rng.pick(&[1, 4, 8]), len.max(9)),
        7 => (0xffff_ff00 + rng.below(256), len.max(0x200)),
        _ => (outside_own_memory(rng.next()), rng.next()),
    }
}

/// `address`, unless it lies in this app's own image or stack (where a kernel write would
/// be legitimate and corrupt the fuzzer): then a kernel address instead.
fn outside_own_memory(address: u32) -> u32 {
    let own = (0x1_0000..0x10_0000).contains(&address) || (0x1fff_0000..0x2000_0000).contains(&address);
    if own { 0x4000_0000 | address } else { address }
}

/// One syscall with the given arguments; returns its status (r0) and value (r1), or `None`
/// when r2–r5 changed.
fn call(number: u32, args: [u32; 6]) -> Option<(u32, u32)> {
    let (r0, r1, r2, r3, r4, r5): (u32, u32, u32, u32, u32, u32);
    // SAFETY: `svc #0` enters the kernel, which checks every argument against this app's
    // own mappings; the only memory it may write is what a pointer argument names, and the
    // pointers given are either this app's scratch buffer or memory it must refuse.
    unsafe {
        asm!("svc #0",
            inlateout("r0") args[0] => r0, inlateout("r1") args[1] => r1,
            inlateout("r2") args[2] => r2, inlateout("r3") args[3] => r3,
            inlateout("r4") args[4] => r4, inlateout("r5") args[5] => r5,
            in("r7") number, options(nostack));
    }
    ([r2, r3, r4, r5] == [args[2], args[3], args[4], args[5]]).then_some((r0, r1))
}

fn canary_intact() -> bool {
    let canary = (&raw const CANARY) as *const u32;
    // SAFETY: `CANARY` is this app's own static; nothing else refers to it.
    (0..1024).all(|i| unsafe { read_volatile(canary.add(i)) } == PATTERN)
}

fn main() {
    let long = sys::info().name() == "sysfuzz-long";
    let (iterations, seed) = if long { (500_000, 0x005e_b7a2u64) } else { (20_000, 0x005e_b7a1u64) };
    let canary = (&raw mut CANARY) as *mut u32;
    for i in 0..1024 {
        // SAFETY: as in `canary_intact`.
        unsafe { write_volatile(canary.add(i), PATTERN) };
    }
    let mut rng = Rng(seed);
    let (mut succeeded, mut refused) = (0u32, 0u32);
    for round in 0..iterations {
        let number = match rng.below(8) {
            0 => rng.next(),
            _ => rng.below(20),
        };
        let handle = if rng.below(4) == 0 { rng.next() } else { rng.below(16) };
        let (a, a_len) = buffer(&mut rng);
        let (b, b_len) = buffer(&mut rng);
        let mut args = [handle, a, a_len, b, b_len, rng.next()];
        match Syscall::from_u32(number) {
            Some(Syscall::Exit) => continue,
            Some(Syscall::Sleep) => args[0] %= 3,
            Some(Syscall::Wait) => args[0] = 0,
            // Pointer first for these.
            Some(Syscall::Log | Syscall::Info) => args = [a, a_len, b, b_len, handle, 0],
            _ => {}
        }
        let Some((r0, r1)) = call(number, args) else {
            sys::sleep(300);
            sys::log!("WRONG: syscall {number} changed r2-r5 (round {round})");
            return;
        };
        match r0 {
            0 => succeeded += 1,
            _ => refused += 1,
        }
        // A status that is neither 0 nor an error code, or an error with a value, would be
        // a kernel bug.
        if r0 != 0 && (Error::from_i32(r0 as i32).is_none() || r1 != 0) {
            sys::sleep(300);
            sys::log!("WRONG: syscall {number} returned status {r0:#x}, value {r1:#x} (round {round})");
        }
        if !canary_intact() {
            sys::log!(
                "WRONG: memory never named to the kernel changed after syscall {number} (round {round})"
            );
            return;
        }
    }
    // The random `log` calls used up this app's console budget: let it refill first.
    sys::sleep(300);
    sys::log!(
        "{iterations} random syscalls (seed {seed:#x}): {succeeded} succeeded, {refused} refused; \
         every answer a result, r2-r5 kept, own memory intact"
    );
}
