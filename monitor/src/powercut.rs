//! Test builds only (feature `powercut`, `qemu-virt`): the power cut at a point of the
//! device's own progress, so an integration test interrupts an update exactly where it means
//! to — deterministically, where a cut after a wall-clock delay hits whatever the host's
//! speed decides.
//!
//! The test puts a word at [`board::TEST_POWER_CUT`] (QEMU's `-device loader`, written again
//! at every reset): the [`Target`] in the top byte, `k` in the low 24 bits. The monitor then
//! counts its flash operations (each erase, each program call) that hit the target, from its
//! start, and just before the `k`-th it prints what that operation was and stops the machine
//! with [`exit::POWER_CUT`] — nothing more reaches the flash, as in a power cut. A zero word
//! (no test) cuts nothing.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use septa_abi::exit;
use septa_abi::flash::{Error, Flash};
use septa_armv7::semihosting;
use septa_targets::{Region, board};

/// Which flash operations a cut counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The update staging area (`UpdateBegin` erases it, `UpdateWrite` programs it).
    Staging = 1,
    /// Slot B, which an update from slot A installs into (`UpdateCommit`).
    SlotB = 2,
    /// The boot state, once slot B has been written this boot: the record that marks the
    /// installed slot pending.
    Marking = 3,
    /// The boot state during a trial boot: the anchors of app storage and the confirmation.
    Trial = 4,
}

static TARGET: AtomicU32 = AtomicU32::new(0);
static WANTED: AtomicU32 = AtomicU32::new(0);
static COUNTED: AtomicU32 = AtomicU32::new(0);
static SLOT_B_WRITTEN: AtomicBool = AtomicBool::new(false);
static TRIAL: AtomicBool = AtomicBool::new(false);

/// Reads the test's word and says what it armed.
pub fn arm(out: &mut impl Write) {
    // SAFETY: TEST_POWER_CUT is a word in the last page of non-secure RAM, which only test
    // setups write before the kernel runs; the secure world may read non-secure memory.
    let word = unsafe { core::ptr::read_volatile(board::TEST_POWER_CUT as *const u32) };
    let target = word >> 24;
    if (Target::Staging as u32..=Target::Trial as u32).contains(&target) && word & 0xff_ffff != 0 {
        TARGET.store(target, Ordering::Relaxed);
        WANTED.store(word & 0xff_ffff, Ordering::Relaxed);
        let _ = writeln!(
            out,
            "septa: monitor: test power cut armed: target {target}, operation {}",
            word & 0xff_ffff
        );
    }
}

/// Records whether this boot is a trial (for [`Target::Trial`]).
pub fn set_trial(trial: bool) {
    TRIAL.store(trial, Ordering::Relaxed);
}

/// A flash whose operations are counted for the cut.
pub struct CutFlash<F> {
    bank: u8,
    inner: F,
}

impl<F> CutFlash<F> {
    pub const fn new(bank: u8, inner: F) -> Self {
        CutFlash { bank, inner }
    }
}

/// The board region holding `offset` of flash `bank`.
fn region(bank: u8, offset: usize) -> (&'static str, Option<Region>) {
    let address = if bank == 0 { board::FLASH0.base } else { board::FLASH1.base } + offset;
    let regions = [
        ("boot state", board::BOOT_STATE),
        ("slot A", board::SLOT_A),
        ("slot B", board::SLOT_B),
        ("staging", board::STAGING),
        ("storage", board::STORAGE),
        ("reports", board::REPORTS),
        ("device certificates", board::DEVICE_CERTS),
    ];
    regions
        .into_iter()
        .find(|(_, r)| r.contains_range(address, 1))
        .map_or(("other", None), |(name, r)| (name, Some(r)))
}

impl<F: Flash> CutFlash<F> {
    fn before(&self, operation: &str, offset: usize) {
        let (name, found) = region(self.bank, offset);
        let target = match TARGET.load(Ordering::Relaxed) {
            1 => Target::Staging,
            2 => Target::SlotB,
            3 => Target::Marking,
            4 => Target::Trial,
            _ => return,
        };
        let is = |r: Region| found == Some(r);
        if is(board::SLOT_B) {
            SLOT_B_WRITTEN.store(true, Ordering::Relaxed);
        }
        let hit = match target {
            Target::Staging => is(board::STAGING),
            Target::SlotB => is(board::SLOT_B),
            Target::Marking => is(board::BOOT_STATE) && SLOT_B_WRITTEN.load(Ordering::Relaxed),
            Target::Trial => is(board::BOOT_STATE) && TRIAL.load(Ordering::Relaxed),
        };
        if !hit {
            return;
        }
        let count = COUNTED.fetch_add(1, Ordering::Relaxed) + 1;
        if count == WANTED.load(Ordering::Relaxed) {
            // SAFETY: UART0 is the board's PL011; the MMU is off in the secure world.
            let mut out = unsafe { septa_armv7::pl011::Pl011::new(board::UART0) };
            let _ = writeln!(
                out,
                "septa: monitor: test power cut before {operation} of {name} (flash {} at {offset:#x}), operation {count} of target {}",
                self.bank, target as u32
            );
            semihosting::exit(exit::POWER_CUT)
        }
    }
}

impl<F: Flash> Flash for CutFlash<F> {
    fn sector_size(&self) -> usize {
        self.inner.sector_size()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        self.inner.read(offset, out)
    }

    fn slice(&self, offset: usize, len: usize) -> Result<&[u8], Error> {
        self.inner.slice(offset, len)
    }

    fn erase(&mut self, offset: usize) -> Result<(), Error> {
        self.before("erase", offset);
        self.inner.erase(offset)
    }

    fn program(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.before("program", offset);
        self.inner.program(offset, data)
    }
}
