//! What the kernel needs from the hardware, as one trait: the only way the kernel's logic
//! reaches the timer, the interrupt and GPIO controllers, the MMU, physical memory and the
//! security monitor.
//!
//! The device binary implements [`Machine`] in its ARMv7 shell (`arch/machine.rs`); the host
//! tests implement it with RAM as a byte vector (`sim`), so the same kernel code — syscalls,
//! IPC delivery, granting at boot, ending a process — runs in `cargo test`. The kernel runs
//! with interrupts masked throughout (the entry code masks them and `return_to_user`
//! restores the app's), so the trait has no masking of its own.

use crate::mm::pagetable::UserTables;
use core::fmt;
use septa_abi::slot::{self, Slot};

pub const PAGE: usize = 4096;

pub trait Machine {
    /// The counter now, and its ticks per second.
    fn now(&self) -> u64;
    fn frequency(&self) -> u64;
    /// Arms the tick to fire one [`TICK_MS`] from now.
    fn arm_timer(&mut self);

    fn enable_irq(&mut self, irq: u32);
    fn disable_irq(&mut self, irq: u32);
    /// The next pending interrupt, acknowledged: its number and the token [`Machine::end_irq`] takes.
    fn acknowledge_irq(&mut self) -> Option<(u32, u32)>;
    fn end_irq(&mut self, token: u32);
    /// Makes GPIO `pins` outputs driven to the matching bits of `values`.
    fn gpio_set(&mut self, pins: u32, values: u32);

    /// Installs a process's tables (at `tables`, with `asid`), or with `None` the tables in
    /// which every user access faults.
    fn switch_address_space(&mut self, tables: Option<u32>, asid: u8);
    /// Forgets every TLB entry of `asid` (after its process's pages were freed).
    fn flush_asid(&mut self, asid: u8);
    /// Makes instructions just written to the frame at `phys` visible to instruction fetch.
    fn sync_instructions(&mut self, phys: u32, len: u32);

    /// `count` contiguous zeroed frames, aligned to `count` rounded up to a power of two.
    fn alloc_frames(&mut self, count: usize) -> Option<u32>;
    /// Scrubs and returns frames from [`Machine::alloc_frames`] that nothing maps any more.
    fn free_frames(&mut self, phys: u32, count: usize);
    /// The translation tables in the frames at `phys` (a block from `alloc_frames`).
    fn tables(&self, phys: u32) -> &UserTables;
    fn tables_mut(&mut self, phys: u32) -> &mut UserTables;

    /// Copies between physical memory and the kernel. Every address range comes from a
    /// process's own page table (`mm::user::locate`) or from `alloc_frames`.
    fn read_phys(&self, phys: u32, out: &mut [u8]);
    fn write_phys(&mut self, phys: u32, bytes: &[u8]);
    /// Copies `len` bytes between two physical ranges of different processes.
    fn copy_phys(&mut self, from: u32, to: u32, len: u32);

    /// Issues an SMC to the monitor with a function id and three arguments; returns r0–r3.
    /// Requests and responses travel in `page`, which the call borrows for its duration.
    fn smc(&mut self, function: u32, args: [u32; 3], page: &mut SharedPage) -> [u32; 4];

    /// The image slot this boot runs.
    fn slot(&self) -> Result<Slot<'static>, slot::Error>;
    /// Prints on the console.
    fn print(&self, args: fmt::Arguments<'_>);
}

/// Length of a time slice and the granularity of `sleep`.
pub const TICK_MS: u64 = 10;

/// The page requests to the monitor travel through. There is one, made once at boot: holding
/// it (`&mut`) is what lets code put a request in it and issue the SMC, so no two requests
/// can share it.
pub struct SharedPage(&'static mut [u8]);

impl SharedPage {
    pub fn new(page: &'static mut [u8]) -> SharedPage {
        SharedPage(page)
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        self.0
    }
}

/// A process's saved registers, in the order the entry code stores them.
#[repr(C)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub r: [u32; 13],
    pub sp: u32,
    pub lr: u32,
    pub pc: u32,
    pub cpsr: u32,
    /// The user read/write thread-ID register (CP15 c13, c0, 2).
    pub tpidrurw: u32,
}

impl Context {
    pub const EMPTY: Context = Context { r: [0; 13], sp: 0, lr: 0, pc: 0, cpsr: 0, tpidrurw: 0 };

    /// The registers of a new process: user mode, A32, interrupts enabled.
    pub fn new_user(entry: u32, stack_top: u32) -> Context {
        Context { pc: entry, sp: stack_top, cpsr: septa_armv7::mode::MODE_USR, ..Default::default() }
    }
}

/// `println!` through a [`Machine`]'s console.
#[macro_export]
macro_rules! kprintln {
    ($machine:expr, $($arg:tt)*) => {
        $crate::machine::Machine::print(&$machine, format_args!("{}\n", format_args!($($arg)*)))
    };
}
