//! The kernel's address space and the MMU switch.
//!
//! TTBCR.N = 3 splits the address space: TTBR0 (per process, 4 KiB level-1 table) covers
//! user addresses below 512 MiB; TTBR1 (this module's 16 KiB table) covers the rest and is
//! the same for every process. Non-secure RAM is mapped one-to-one (virtual = physical),
//! so physical addresses of frames and tables are usable directly. The kernel image is
//! mapped with 4 KiB pages — text read-only and executable, read-only data read-only,
//! everything else read-write and execute-never; the rest of RAM with 1 MiB sections,
//! read-write and execute-never; the board's device and flash windows
//! (`board::KERNEL_WINDOWS`) at [`LOW_WINDOW`] + offset, execute-never. Nothing
//! is both writable and executable, and nothing the kernel maps is reachable from user mode. The tables are built by safe code from the encoders in
//! `septa_kernel::mm::pagetable`; only installing them is `unsafe`.

use septa_armv7::regs;
use septa_kernel::mm::pagetable::{self, MemoryKind, UserTables};
use septa_targets::{WindowKind, board};

/// The board's windows (devices, flash: 256 MiB from `board::KERNEL_WINDOW_BASE`) appear at
/// this base + their offset.
const LOW_WINDOW: usize = 0xf000_0000;
const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
/// Page-table walks are inner and outer write-back write-allocate, shareable.
const WALK_ATTRIBUTES: u32 = (1 << 6) | (1 << 3) | (1 << 1);
/// SCTLR: MMU, alignment checking, data cache, branch prediction, instruction cache.
const SCTLR_ENABLE: u32 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 11) | (1 << 12);

/// The kernel virtual address of a device or flash physical address in the board's windows.
pub const fn device_va(pa: usize) -> usize {
    LOW_WINDOW + (pa - board::KERNEL_WINDOW_BASE)
}

#[repr(C, align(16384))]
struct KernelL1([u32; 4096]);

#[repr(C, align(1024))]
struct KernelL2([[u32; 256]; KERNEL_L2_TABLES]);

const KERNEL_L2_TABLES: usize = board::KERNEL_RAM.size / MIB;

struct KernelTables {
    l1: KernelL1,
    l2: KernelL2,
}

static TABLES: spin::Mutex<KernelTables> =
    spin::Mutex::new(KernelTables { l1: KernelL1([0; 4096]), l2: KernelL2([[0; 256]; KERNEL_L2_TABLES]) });

/// The user tables installed when no process runs: every user access faults.
static NO_PROCESS: UserTables = UserTables::new();

unsafe extern "C" {
    static __text_end: u8;
    static __rodata_end: u8;
}

/// How one kernel page is mapped.
fn kernel_page_permissions(va: usize) -> (bool, bool) {
    let text_end = (&raw const __text_end) as usize;
    let rodata_end = (&raw const __rodata_end) as usize;
    if va < text_end {
        (false, true)
    } else if va < rodata_end {
        (false, false)
    } else {
        (true, false)
    }
}

fn build(tables: &mut KernelTables) {
    let fail = |e: pagetable::MapError| -> ! { panic!("kernel page tables: {e}") };
    let kernel = board::KERNEL_RAM;
    for mib in (board::RAM.base..board::RAM.end()).step_by(MIB) {
        let entry = if kernel.contains_range(mib, MIB) {
            let index = (mib - kernel.base) / MIB;
            let l2 = &mut tables.l2.0[index];
            for (page, slot) in l2.iter_mut().enumerate() {
                let va = mib + page * PAGE;
                let (writable, executable) = kernel_page_permissions(va);
                *slot = pagetable::kernel_page(va as u32, writable, executable, MemoryKind::Normal)
                    .unwrap_or_else(|e| fail(e));
            }
            pagetable::kernel_l2_table(l2.as_ptr() as u32).unwrap_or_else(|e| fail(e))
        } else {
            pagetable::kernel_section(mib as u32, true, false, MemoryKind::Normal).unwrap_or_else(|e| fail(e))
        };
        tables.l1.0[mib / MIB] = entry;
    }
    for window in board::KERNEL_WINDOWS {
        let (writable, kind) = match window.kind {
            WindowKind::Device => (true, MemoryKind::Device),
            WindowKind::ReadOnly => (false, MemoryKind::Normal),
        };
        for pa in (window.region.base..window.region.end()).step_by(MIB) {
            tables.l1.0[device_va(pa) / MIB] =
                pagetable::kernel_section(pa as u32, writable, false, kind).unwrap_or_else(|e| fail(e));
        }
    }
}

/// Builds the kernel's tables and turns the MMU on. The kernel keeps running at the same
/// addresses (RAM is mapped one-to-one); devices move to [`device_va`].
pub fn enable() {
    let mut tables = TABLES.lock();
    build(&mut tables);
    let l1 = tables.l1.0.as_ptr() as u32;
    regs::dsb();
    // SAFETY: the tables map the running kernel image at its own addresses with the
    // permissions it needs (text executable, data writable), so execution continues after
    // SCTLR.M is set; TTBR0 points at an all-fault table until a process runs; domain 0 is
    // in client mode so the table permissions decide every access.
    unsafe {
        regs::tlbiall(0);
        regs::write_ttbcr(3);
        regs::write_ttbr1(l1 | WALK_ATTRIBUTES);
        regs::write_ttbr0(no_process_tables() | WALK_ATTRIBUTES);
        regs::write_contextidr(0);
        regs::write_dacr(1);
        regs::isb();
        regs::write_sctlr(regs::read_sctlr() | SCTLR_ENABLE);
        regs::isb();
    }
}

/// The tables installed when no process runs (every user access faults).
pub fn no_process_tables() -> u32 {
    NO_PROCESS.l1.as_ptr() as u32
}

/// Installs a process's tables (physical address of its [`UserTables`]) and ASID.
pub fn switch_address_space(tables_phys: u32, asid: u8) {
    // SAFETY: ARM ARM B3.10.4: switching through the reserved ASID 0, which no non-global
    // entry uses, keeps the old ASID from being paired with the new tables. The tables
    // belong to a live process and map only its own pages. The new ASID needs no ISB of its
    // own: the kernel reaches no user address itself (it copies through the one-to-one
    // mapped frames, which are global), and the return to user mode that follows is a
    // context synchronization event.
    unsafe {
        regs::write_contextidr(0);
        regs::isb();
        regs::write_ttbr0(tables_phys | WALK_ATTRIBUTES);
        regs::isb();
        regs::write_contextidr(asid as u32);
    }
}

/// Forgets every TLB entry of `asid` (after its process's pages were freed).
pub fn flush_asid(asid: u8) {
    regs::dsb();
    // SAFETY: invalidating TLB entries only forces new table walks.
    unsafe { regs::tlbiasid(asid as u32) };
    regs::dsb();
    regs::isb();
}

/// Makes instructions just written to `[start, start + len)` visible to instruction fetch.
pub fn sync_instructions(start: usize, len: usize) {
    const LINE: usize = 32;
    for line in (start & !(LINE - 1)..start + len).step_by(LINE) {
        // SAFETY: cleaning a data-cache line writes back data and loses nothing.
        unsafe { regs::dccmvau(line as u32) };
    }
    regs::dsb();
    // SAFETY: invalidating the instruction cache and branch predictor only forces refetch.
    unsafe {
        regs::iciallu(0);
        regs::bpiall(0);
    }
    regs::dsb();
    regs::isb();
}
