//! Processes: the process table, creating a process from an app package, ending one.
//!
//! A process is one app in its own address space: its manifest's name and priority, its
//! translation tables (one 8 KiB block, see `mm::pagetable`), the frames it owns and its
//! saved registers. Creating one checks the package hash, the manifest and every ELF header
//! before allocating anything, counts every frame against the app's `memory-kib` quota, and
//! undoes everything on failure: a bad or oversized app is refused with a message and the
//! others are unaffected.

use crate::cap::CapTable;
use crate::elf::{self, ElfError};
use crate::machine::{Context, Machine};
use crate::mm::pagetable::{self, MapError, MemoryKind, PagePerms, UserPageTable, UserTables};
use crate::mm::user::{PageAccess, Pieces};
use crate::ratelimit::LogLimit;
use crate::sched::Budget;
use alloc::vec::Vec;
use core::fmt;
use septa_abi::app::{self, Manifest};
use septa_abi::package::{self, Package};
use septa_syscalls::NAME_MAX;
use septa_targets::board;

pub use septa_abi::app::MAX_PROCESSES;
const PAGE: u32 = 4096;
/// The top of every app's stack, one unmapped page below the end of the user range. The
/// stack's size is the manifest's `stack-kib`.
pub const STACK_TOP: u32 = 0x1fff_f000;
/// Where `map_device` places devices: device `n` of the board at
/// `DEVICE_WINDOW + n * DEVICE_SPACING`.
pub const DEVICE_WINDOW: u32 = 0x1000_0000;
/// The most address space one device may take.
pub const DEVICE_SPACING: u32 = 4 << 20;
const _: () = {
    let mut index = 0;
    while index < board::DEVICES.len() {
        assert!(board::DEVICES[index].region.size <= DEVICE_SPACING as usize);
        index += 1;
    }
};
/// Where a driver's DMA pool (`dma-kib`) is mapped.
pub const DMA_WINDOW: u32 = 0x1800_0000;
/// Where an app's ELF may place segments: above the null page, below the device window
/// (and so below the stack and its guard page, which stays unmapped).
const IMAGE_RANGE: core::ops::Range<u32> = 0x1000..DEVICE_WINDOW;
/// Pages of translation tables per process.
pub const TABLE_PAGES: u32 = (core::mem::size_of::<UserTables>() / PAGE as usize) as u32;
// The host tools compute an app's memory need from these (`septa_abi::app`).
const _: () = assert!(TABLE_PAGES * 4 == app::TABLES_KIB);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No app in this slot.
    Free,
    Ready,
    Sleeping {
        until: u64,
    },
    /// Waiting in IPC (call, recv, wait); the IPC state says for what.
    Blocked,
    /// Ended; the supervisor starts it again at `at` (counter ticks).
    Restarting {
        at: u64,
    },
    /// Used up its CPU budget; ready again when its next period starts.
    Throttled,
    /// Ended for good.
    Ended,
}

/// A user buffer a process named: checked when named, and where its bytes lie in physical
/// memory. A process's mappings only grow while it lives, so both still hold whenever the
/// kernel uses the buffer, and naming it again needs neither a check nor a page-table walk;
/// its claims are reset when it ends. A buffer of at most 16 bytes that the kernel never
/// touches in memory (what fits travels in registers) is not located.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    pub address: u32,
    pub len: u32,
    /// The physical address of the first byte and, if the buffer crosses a page, of the
    /// first byte on the next page (0: none).
    phys: [u32; 2],
}

impl Claim {
    /// A buffer the kernel does not touch in memory (at most 16 bytes: registers).
    pub const fn unlocated(address: u32, len: u32) -> Claim {
        Claim { address, len, phys: [0; 2] }
    }

    /// A buffer and its physical pieces, as `mm::user::locate` found them.
    pub fn located(address: u32, len: u32, pieces: Pieces) -> Claim {
        Claim { address, len, phys: [pieces[0].0, pieces[1].0] }
    }

    /// Whether this is the claim for exactly `[address, address + len)`.
    pub fn names(&self, address: u32, len: u32) -> bool {
        (self.address, self.len) == (address, len)
    }

    /// The physical address of a located buffer that lies within one page.
    pub fn in_one_page(&self) -> Option<u32> {
        (self.address % PAGE + self.len <= PAGE).then_some(self.phys[0])
    }

    /// The physical pieces `(address, length)` of a located buffer, as `locate` gave them.
    pub fn pieces(&self) -> Pieces {
        let first = (PAGE - self.address % PAGE).min(self.len);
        [(self.phys[0], first), (self.phys[1], self.len - first)]
    }
}

/// User pages a process maps, for teardown.
#[derive(Clone, Copy, Debug)]
struct MappedRange {
    start: u32,
    pages: u32,
    /// Frames the process owns (freed at the end), or device registers (not).
    owned: bool,
}

pub struct Process {
    pub context: Context,
    pub state: State,
    /// The manifest, from the package in flash (which stays mapped and unchanged).
    pub manifest: Option<Manifest<'static>>,
    /// Where the app's package starts in the slot, for restarts.
    pub package_offset: usize,
    pub caps: CapTable,
    pub restarts: u32,
    name: [u8; NAME_MAX],
    name_len: usize,
    /// The priority the run queue uses: the manifest's, or a caller's while serving it.
    pub priority: u8,
    /// A blocked caller's message, copied when the server receives it (the caller cannot
    /// change its memory while it is blocked).
    pub message: Claim,
    /// Where a caller wants its reply.
    pub reply_buffer: Claim,
    /// Where a server in `recv` wants the next message (the badge comes in registers).
    pub receive_buffer: Claim,
    /// The request (its tail apart: the last with one) and response buffers of the last
    /// `monitor_call`.
    pub monitor_request: Claim,
    pub monitor_tail: Claim,
    pub monitor_response: Claim,
    /// The DMA pool: physical address of its contiguous frames and their number.
    pub dma: Option<(u32, u32)>,
    /// Physical address of the process's `UserTables`.
    tables: u32,
    mapped: Vec<MappedRange>,
    /// Frames in use (tables included) and the quota from the manifest.
    pages_used: u32,
    page_quota: u32,
    /// CPU budget from the manifest, and whether an overrun was reported since the start.
    pub budget: Budget,
    pub overran: bool,
    /// Syscalls made since the start (apps read it in `Info`: a waiting app makes none).
    pub syscalls: u32,
    /// The console rate limit (kept across restarts).
    pub log_limit: LogLimit,
}

impl Process {
    pub const EMPTY: Process = Process {
        context: Context::EMPTY,
        state: State::Free,
        manifest: None,
        package_offset: 0,
        caps: CapTable::new(),
        restarts: 0,
        name: [0; NAME_MAX],
        name_len: 0,
        priority: 0,
        message: Claim::unlocated(0, 0),
        reply_buffer: Claim::unlocated(0, 0),
        receive_buffer: Claim::unlocated(0, 0),
        monitor_request: Claim::unlocated(0, 0),
        monitor_tail: Claim::unlocated(0, 0),
        monitor_response: Claim::unlocated(0, 0),
        dma: None,
        tables: 0,
        mapped: Vec::new(),
        pages_used: 0,
        page_quota: 0,
        budget: Budget::NONE,
        overran: false,
        syscalls: 0,
        log_limit: LogLimit::FULL,
    };

    /// RAM the process holds in frames, its translation tables included, and of that its
    /// tables and its stack (benchmark builds report it).
    #[cfg(feature = "bench")]
    pub fn frames_in_use(&self) -> (u32, u32, u32) {
        let stack = self.manifest.as_ref().map_or(0, |m| m.stack_kib * 1024);
        (self.pages_used * PAGE, TABLE_PAGES * PAGE, stack)
    }

    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    pub fn name_bytes(&self) -> [u8; NAME_MAX] {
        self.name
    }

    /// The manifest's priority.
    pub fn base_priority(&self) -> u8 {
        self.manifest.as_ref().map_or(0, |m| m.priority)
    }

    pub fn component_id(&self) -> [u8; 16] {
        self.manifest.as_ref().map_or([0; 16], |m| m.component_id)
    }

    /// Frames the process holds (tables included).
    pub fn pages_used(&self) -> u32 {
        self.pages_used
    }

    pub fn tables_phys(&self) -> u32 {
        self.tables
    }

    /// The process's own translation tables, in `machine`'s memory.
    fn page_table<'m>(&self, machine: &'m mut impl Machine) -> UserPageTable<'m> {
        UserPageTable::new(machine.tables_mut(self.tables), self.tables)
            .expect("process tables are 8 KiB aligned")
    }

    /// What the process's page table says about the page at `va`, if it is ordinary memory.
    pub fn lookup(&self, machine: &impl Machine, va: u32) -> Option<PageAccess> {
        if self.tables == 0 {
            return None;
        }
        match pagetable::translate(machine.tables(self.tables), self.tables, va)? {
            (pa, perms, MemoryKind::Normal) => {
                Some(PageAccess { phys: pa & !(PAGE - 1), writable: perms.writable })
            }
            _ => None,
        }
    }

    /// Allocates a zeroed frame (see `frames`) against the quota and maps it at `va`.
    fn map_new_page(&mut self, m: &mut impl Machine, va: u32, perms: PagePerms) -> Result<u32, SpawnError> {
        if self.pages_used >= self.page_quota {
            return Err(SpawnError::QuotaExceeded);
        }
        let frame = m.alloc_frames(1).ok_or(SpawnError::OutOfMemory)?;
        self.pages_used += 1;
        if let Err(error) = self.page_table(m).map_page(va, frame, perms, MemoryKind::Normal) {
            m.free_frames(frame, 1);
            self.pages_used -= 1;
            return Err(SpawnError::Map(error));
        }
        Ok(frame)
    }

    /// Maps `pages` new pages from `start`, recording them for teardown.
    fn map_range(
        &mut self,
        m: &mut impl Machine,
        start: u32,
        pages: u32,
        perms: PagePerms,
        fill: impl Fn(u32) -> Option<&'static [u8]>,
    ) -> Result<(), SpawnError> {
        self.mapped.try_reserve(1).map_err(|_| SpawnError::OutOfMemory)?;
        self.mapped.push(MappedRange { start, pages: 0, owned: true });
        for page in 0..pages {
            let va = start + page * PAGE;
            let frame = self.map_new_page(m, va, perms)?;
            self.mapped.last_mut().expect("pushed above").pages += 1;
            // The frame is zeroed: only the file's bytes for this page need writing.
            if let Some(bytes) = fill(va) {
                m.write_phys(frame, &bytes[..bytes.len().min(PAGE as usize)]);
            }
            if perms.executable {
                m.sync_instructions(frame, PAGE);
            }
        }
        Ok(())
    }

    /// Frees every frame of the process and its tables; keeps what identifies the app
    /// (manifest, capabilities, restart count) for a restart. The caller has made sure the
    /// tables are not installed and flushes the ASID.
    pub fn release(&mut self, m: &mut impl Machine) {
        if self.tables != 0 {
            for range in core::mem::take(&mut self.mapped) {
                for page in 0..range.pages {
                    let va = range.start + page * PAGE;
                    if let Ok(frame) = self.page_table(m).unmap_page(va)
                        && range.owned
                    {
                        m.free_frames(frame, 1);
                    }
                }
            }
            m.free_frames(self.tables, TABLE_PAGES as usize);
        }
        if let Some((phys, pages)) = self.dma.take() {
            // The pool's pages left the page table above (not owned there: one block here).
            m.free_frames(phys, pages as usize);
        }
        self.tables = 0;
        self.pages_used = 0;
        // Buffers checked and located in the freed mappings must be checked again.
        (self.message, self.reply_buffer, self.receive_buffer) = Default::default();
        (self.monitor_request, self.monitor_tail, self.monitor_response) = Default::default();
        self.context = Context::default();
        self.priority = self.base_priority();
    }

    /// Maps device `index` of the board (registers at `region`) at its place in the device
    /// window, once; returns the address.
    pub fn map_device(
        &mut self,
        m: &mut impl Machine,
        index: usize,
        region: septa_targets::Region,
    ) -> Result<u32, MapError> {
        let start = DEVICE_WINDOW + index as u32 * DEVICE_SPACING;
        if self.mapped.iter().any(|r| r.start == start) {
            return Ok(start);
        }
        let pages = (region.size as u32).div_ceil(PAGE);
        self.mapped.try_reserve(1).map_err(|_| MapError::NoTableSpace)?;
        self.mapped.push(MappedRange { start, pages: 0, owned: false });
        let perms = PagePerms { writable: true, executable: false };
        for page in 0..pages {
            let pa = (region.base as u32) + page * PAGE;
            self.page_table(m).map_page(start + page * PAGE, pa, perms, MemoryKind::Device)?;
            self.mapped.last_mut().expect("pushed above").pages += 1;
        }
        Ok(start)
    }
}

/// Why an app was not started.
#[derive(Debug)]
pub enum SpawnError {
    Package(package::Error),
    Manifest(app::Error),
    ComponentMismatch,
    Elf(ElfError),
    NoFreeSlot,
    OutOfMemory,
    QuotaExceeded,
    Map(MapError),
    /// The app's package is no longer in the slot (restart).
    PackageMissing,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Package(e) => write!(f, "package: {e}"),
            SpawnError::Manifest(e) => write!(f, "manifest: {e}"),
            SpawnError::ComponentMismatch => {
                write!(f, "manifest component id differs from the package header")
            }
            SpawnError::Elf(e) => write!(f, "ELF: {e}"),
            SpawnError::NoFreeSlot => write!(f, "no free process slot (at most {MAX_PROCESSES})"),
            SpawnError::OutOfMemory => write!(f, "out of memory"),
            SpawnError::QuotaExceeded => write!(f, "the app needs more than its memory-kib quota"),
            SpawnError::Map(e) => write!(f, "mapping: {e}"),
            SpawnError::PackageMissing => write!(f, "its package is no longer in the slot"),
        }
    }
}

/// Checks an app package and builds its process in `process` (a free slot, or the slot of
/// the same app being restarted). On failure everything allocated is freed again.
pub fn spawn(
    m: &mut impl Machine,
    process: &mut Process,
    package: &Package<'static>,
) -> Result<(), SpawnError> {
    package.verify_payload().map_err(SpawnError::Package)?;
    let (manifest, image) = app::parse_payload(package.payload).map_err(SpawnError::Manifest)?;
    if manifest.component_id != package.header.component_id {
        return Err(SpawnError::ComponentMismatch);
    }
    let program = elf::parse(image, IMAGE_RANGE).map_err(SpawnError::Elf)?;
    let result = build(m, process, &manifest, image, &program);
    process.manifest = Some(manifest);
    if result.is_err() {
        process.release(m);
    }
    result
}

fn build(
    m: &mut impl Machine,
    process: &mut Process,
    manifest: &Manifest<'_>,
    image: &'static [u8],
    program: &elf::Program,
) -> Result<(), SpawnError> {
    process.mapped = Vec::new();
    process.page_quota = manifest.memory_kib / (PAGE / 1024);
    if process.page_quota < TABLE_PAGES {
        return Err(SpawnError::QuotaExceeded);
    }
    // Zeroed (no mapping anywhere), 8 KiB aligned to its size by the buddy allocator.
    let tables = m.alloc_frames(TABLE_PAGES as usize).ok_or(SpawnError::OutOfMemory)?;
    process.tables = tables;
    process.pages_used = TABLE_PAGES;
    process.name[..manifest.name.len()].copy_from_slice(manifest.name.as_bytes());
    process.name_len = manifest.name.len();
    process.priority = manifest.priority;
    let ticks = |ms: u32| ms as u64 * m.frequency() / 1000;
    process.budget = Budget::new(ticks(manifest.cpu_budget_ms), ticks(manifest.cpu_period_ms), m.now());
    process.overran = false;
    process.syscalls = 0;

    for segment in program.segments() {
        let pages = segment.mem_size.div_ceil(PAGE);
        let perms = PagePerms { writable: segment.writable, executable: segment.executable };
        // `elf::parse` checked that the file range lies inside `image`.
        let file = &image[segment.file_offset as usize..][..segment.file_size as usize];
        process.map_range(m, segment.vaddr, pages, perms, |va| {
            // The part of the file that lands on this page, if any.
            file.get((va - segment.vaddr) as usize..).filter(|bytes| !bytes.is_empty())
        })?;
    }
    if manifest.dma_kib > 0 {
        map_dma_pool(m, process, manifest.dma_kib / (PAGE / 1024))?;
    }
    let stack_pages = manifest.stack_kib / (PAGE / 1024);
    let stack_bottom = STACK_TOP - stack_pages * PAGE;
    let stack = PagePerms { writable: true, executable: false };
    process.map_range(m, stack_bottom, stack_pages, stack, |_| None)?;
    process.context = Context::new_user(program.entry, STACK_TOP);
    process.state = State::Ready;
    Ok(())
}

/// Gives the process a physically contiguous pool (zeroed by `Machine::alloc_frames`) of `pages` (a power of two, checked
/// by `Manifest::validate`) at [`DMA_WINDOW`], counted against its quota. A device driver
/// learns the pool's physical base with the `dma_pool` syscall and hands the device addresses
/// inside it; the pool is ordinary non-secure RAM, so the device can reach nothing secure.
fn map_dma_pool(m: &mut impl Machine, process: &mut Process, pages: u32) -> Result<(), SpawnError> {
    if process.pages_used + pages > process.page_quota {
        return Err(SpawnError::QuotaExceeded);
    }
    let phys = m.alloc_frames(pages as usize).ok_or(SpawnError::OutOfMemory)?;
    process.dma = Some((phys, pages));
    process.pages_used += pages;
    process.mapped.try_reserve(1).map_err(|_| SpawnError::OutOfMemory)?;
    process.mapped.push(MappedRange { start: DMA_WINDOW, pages: 0, owned: false });
    let perms = PagePerms { writable: true, executable: false };
    for page in 0..pages {
        let (va, pa) = (DMA_WINDOW + page * PAGE, phys + page * PAGE);
        process.page_table(m).map_page(va, pa, perms, MemoryKind::Normal).map_err(SpawnError::Map)?;
        process.mapped.last_mut().expect("pushed above").pages += 1;
    }
    Ok(())
}
