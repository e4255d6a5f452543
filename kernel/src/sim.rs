//! A simulated machine for the host tests: RAM as a byte vector, frames from the same buddy
//! allocator the device uses, translation tables kept beside RAM, a counter the test moves,
//! and a console and monitor that record what they were given. The kernel's real logic runs
//! on it unchanged.

extern crate std;

use crate::machine::{Machine, PAGE, SharedPage};
use crate::mm::pagetable::UserTables;
use crate::process::TABLE_PAGES;
use crate::system::Kernel;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use buddy_system_allocator::FrameAllocator;
use core::cell::RefCell;
use septa_abi::app::{self, Manifest, Restart};
use septa_abi::package::{Header, Kind};
use septa_abi::slot::{self, Slot};

/// Where the simulated frames start, and how many there are.
pub const FRAMES_BASE: u32 = 0x4100_0000;
pub const FRAME_COUNT: usize = 1024;
/// Ticks per second of the simulated counter.
pub const FREQUENCY: u64 = 1_000_000;

pub struct SimMachine {
    pub now: u64,
    ram: Vec<u8>,
    frames: FrameAllocator<16>,
    /// Frames handed out and not yet freed.
    pub frames_in_use: usize,
    /// Blocks of [`TABLE_PAGES`] frames may hold translation tables: kept here, by address.
    tables: BTreeMap<u32, Box<UserTables>>,
    pub irqs_enabled: BTreeMap<u32, bool>,
    pub pending_irqs: Vec<u32>,
    pub gpio: u32,
    /// What TTBR0 holds: a process's tables, or none.
    pub installed: Option<u32>,
    pub flushed_asids: Vec<u8>,
    slot: &'static [u8],
    pub console: RefCell<String>,
    /// The SMCs issued, and what the monitor answers (status, value).
    pub smcs: Vec<(u32, [u32; 3])>,
    pub smc_answer: [u32; 4],
}

impl SimMachine {
    pub fn new(slot: &'static [u8]) -> SimMachine {
        let mut frames = FrameAllocator::new();
        let first = FRAMES_BASE as usize / PAGE;
        frames.add_frame(first, first + FRAME_COUNT);
        SimMachine {
            now: 0,
            ram: alloc::vec![0; FRAME_COUNT * PAGE],
            frames,
            frames_in_use: 0,
            tables: BTreeMap::new(),
            irqs_enabled: BTreeMap::new(),
            pending_irqs: Vec::new(),
            gpio: 0,
            installed: None,
            flushed_asids: Vec::new(),
            slot,
            console: RefCell::new(String::new()),
            smcs: Vec::new(),
            smc_answer: [0; 4],
        }
    }

    fn offset(&self, phys: u32, len: usize) -> usize {
        let at = phys.wrapping_sub(FRAMES_BASE) as usize;
        assert!(
            len == 0 || (phys >= FRAMES_BASE && at + len <= self.ram.len()),
            "physical access outside the frames"
        );
        if len == 0 { 0 } else { at }
    }

    /// RAM bytes, for tests that look at what a process sees.
    pub fn ram(&self, phys: u32, len: usize) -> &[u8] {
        let at = self.offset(phys, len);
        &self.ram[at..at + len]
    }
}

impl Machine for SimMachine {
    fn now(&self) -> u64 {
        self.now
    }

    fn frequency(&self) -> u64 {
        FREQUENCY
    }

    fn arm_timer(&mut self) {}

    fn enable_irq(&mut self, irq: u32) {
        self.irqs_enabled.insert(irq, true);
    }

    fn disable_irq(&mut self, irq: u32) {
        self.irqs_enabled.insert(irq, false);
    }

    fn acknowledge_irq(&mut self) -> Option<(u32, u32)> {
        self.pending_irqs.pop().map(|irq| (irq, irq))
    }

    fn end_irq(&mut self, _token: u32) {}

    fn gpio_set(&mut self, pins: u32, values: u32) {
        self.gpio = (self.gpio & !pins) | (values & pins);
    }

    fn switch_address_space(&mut self, tables: Option<u32>, _asid: u8) {
        self.installed = tables;
    }

    fn flush_asid(&mut self, asid: u8) {
        self.flushed_asids.push(asid);
    }

    fn sync_instructions(&mut self, phys: u32, len: u32) {
        self.offset(phys, len as usize);
    }

    fn alloc_frames(&mut self, count: usize) -> Option<u32> {
        let phys = (self.frames.alloc(count)? * PAGE) as u32;
        let at = self.offset(phys, count * PAGE);
        self.ram[at..at + count * PAGE].fill(0);
        self.frames_in_use += count;
        if count == TABLE_PAGES as usize {
            self.tables.insert(phys, Box::new(UserTables::new()));
        }
        Some(phys)
    }

    fn free_frames(&mut self, phys: u32, count: usize) {
        let at = self.offset(phys, count * PAGE);
        self.ram[at..at + count * PAGE].fill(0);
        self.tables.remove(&phys);
        self.frames.dealloc(phys as usize / PAGE, count);
        self.frames_in_use -= count;
    }

    fn tables(&self, phys: u32) -> &UserTables {
        self.tables.get(&phys).expect("tables the kernel allocated")
    }

    fn tables_mut(&mut self, phys: u32) -> &mut UserTables {
        self.tables.get_mut(&phys).expect("tables the kernel allocated")
    }

    fn read_phys(&self, phys: u32, out: &mut [u8]) {
        let at = self.offset(phys, out.len());
        out.copy_from_slice(&self.ram[at..at + out.len()]);
    }

    fn write_phys(&mut self, phys: u32, bytes: &[u8]) {
        let at = self.offset(phys, bytes.len());
        self.ram[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn copy_phys(&mut self, from: u32, to: u32, len: u32) {
        let (from, to) = (self.offset(from, len as usize), self.offset(to, len as usize));
        self.ram.copy_within(from..from + len as usize, to);
    }

    fn smc(&mut self, function: u32, args: [u32; 3], _page: &mut SharedPage) -> [u32; 4] {
        self.smcs.push((function, args));
        self.smc_answer
    }

    fn slot(&self) -> Result<Slot<'static>, slot::Error> {
        Slot::parse(self.slot)
    }

    fn print(&self, args: core::fmt::Arguments<'_>) {
        use core::fmt::Write;
        let _ = self.console.borrow_mut().write_fmt(args);
    }
}

/// A manifest for a test app named `name` (component id from its first bytes).
pub fn manifest(name: &'static str) -> Manifest<'static> {
    let mut component_id = [0u8; 16];
    component_id[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
    Manifest {
        name,
        component_id,
        version: 1,
        priority: 4,
        memory_kib: 64,
        restart: Restart::Never,
        serve: None,
        call: heapless::Vec::new(),
        devices: heapless::Vec::new(),
        gpio: heapless::Vec::new(),
        monitor: heapless::Vec::new(),
        storage_kib: 0,
        connect: heapless::Vec::new(),
        dma_kib: 0,
        stack_kib: 16,
        cpu_budget_ms: 100,
        cpu_period_ms: 100,
    }
}

/// Where the test apps' text, data and stack are.
pub const TEXT: u32 = 0x10000;
pub const DATA: u32 = 0x11000;
pub const STACK: u32 = crate::process::STACK_TOP - 0x4000;

/// A slot holding one app package per manifest, each with a small valid ELF (text at
/// [`TEXT`], 2 KiB of data at [`DATA`]).
pub fn slot_of(apps: &[Manifest<'static>]) -> &'static [u8] {
    let elf = crate::elf::tests::build(&[crate::elf::tests::TEXT, crate::elf::tests::DATA], TEXT, 0x320);
    let packages: Vec<Vec<u8>> = apps
        .iter()
        .map(|manifest| {
            let payload = app::encode_payload(manifest, &elf);
            let header = Header::for_payload(Kind::App, manifest.component_id, 1, &payload, [0; 8]);
            let mut package = header.encode(&[0; 64]).to_vec();
            package.extend_from_slice(&payload);
            package
        })
        .collect();
    // The loader checks the slot manifest's signature before the kernel runs; any key will do.
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("a valid scalar");
    Box::leak(slot::compose(&packages, &key).into_boxed_slice())
}

/// A kernel over a simulated machine, its apps started from `apps` and its clock running.
pub fn booted(apps: &[Manifest<'static>]) -> Kernel<SimMachine> {
    let mut kernel = Kernel::new(SimMachine::new(slot_of(apps)));
    kernel.give_shared_page(SharedPage::new(Box::leak(alloc::vec![0u8; PAGE].into_boxed_slice())));
    kernel.start_apps();
    kernel.start_clock();
    kernel
}
