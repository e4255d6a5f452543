//! The boot state: which image slot is active, which one waits to be tried, which one is on
//! trial, how many times the device booted, and the anti-rollback minimums raised by
//! confirmed updates.
//!
//! It lives in a journal in secure flash 0 next to the fuse area (the normal world cannot
//! read or write it); each change appends the whole state as one record, so a power cut
//! leaves either the old or the new state. The rules are plain functions here, run by the
//! loader and the monitor and tested on the host:
//!
//! 1. the monitor stages a verified update: [`BootState::stage`] marks the inactive slot
//!    *pending*;
//! 2. the loader's next boot moves it to *trying* ([`BootState::next_boot`]) before it runs
//!    a single instruction of the new software;
//! 3. the new software confirms itself ([`BootState::confirm`]): it becomes *active* and the
//!    minimums rise to its security versions — only now can the old slot no longer boot;
//! 4. a boot that finds a slot still *trying* (the trial crashed, hung or was reset before
//!    confirming), or a trial the loader refuses or the supervisor fails, falls back to the
//!    active slot and records why ([`UpdateEvent::RolledBack`]).

use crate::flash::Flash;
use crate::journal::{Journal, JournalError, Mode};
use serde::{Deserialize, Serialize};

/// Anti-rollback minimums kept (one per component).
pub const MAX_MINIMUMS: usize = 32;
const TAG: u16 = 1;
/// Slot numbers: 0 is slot A, 1 is slot B.
pub const SLOT_NAMES: [&str; 2] = ["A", "B"];

/// An update outcome, kept until the monitor has put it into the report ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateEvent {
    /// The software in `slot` confirmed itself; its security versions are the new minimums.
    Applied { slot: u8 },
    /// The update in `slot` was abandoned; the previous slot boots.
    RolledBack { slot: u8, reason: RollbackReason },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackReason {
    /// The loader refused the new slot's images.
    Refused,
    /// The device was reset before the new software confirmed itself (crash, hang, power).
    NotConfirmed,
    /// An app that must always run failed during the trial.
    AppFailed { name: [u8; 16] },
    /// The trial did not confirm itself within the watchdog's time.
    Watchdog,
}

impl core::fmt::Display for UpdateEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            UpdateEvent::Applied { slot } => write!(f, "update in slot {} applied and confirmed", name(slot)),
            UpdateEvent::RolledBack { slot, reason } => {
                write!(f, "update in slot {} rolled back: ", name(slot))?;
                match reason {
                    RollbackReason::Refused => write!(f, "the loader refused its images"),
                    RollbackReason::NotConfirmed => write!(f, "reset before it confirmed itself"),
                    RollbackReason::AppFailed { name } => {
                        write!(f, "app {} failed during the trial", crate::report::Name(&name))
                    }
                    RollbackReason::Watchdog => write!(f, "not confirmed before the watchdog fired"),
                }
            }
        }
    }
}

/// A slot's name, `A` or `B` (`?` for anything else).
pub fn name(slot: u8) -> &'static str {
    SLOT_NAMES.get(slot as usize).copied().unwrap_or("?")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    pub boot_count: u32,
    /// The confirmed slot, the fallback of every trial.
    pub active: u8,
    /// A verified update waiting for its first boot.
    pub pending: Option<u8>,
    /// A slot booted once and not yet confirmed.
    pub trying: Option<u8>,
    /// SHA-256 of the slot image each slot got from its update bundle (zero: factory image).
    pub installed: [[u8; 32]; 2],
    /// SHA-256 of the slot image of the last update that was rolled back: offered again,
    /// it is refused rather than tried (and rolled back) forever.
    pub rolled_back: [u8; 32],
    /// Minimum security version per component, raised at each confirmation.
    pub minimums: heapless::Vec<([u8; 16], u32), MAX_MINIMUMS>,
    pub unreported: Option<UpdateEvent>,
    /// The digest of app storage's live records (the monitor's `storage` module) and the one
    /// a write in progress is about to reach: kept here, in secure flash, so that an older
    /// copy of the store in flash 1 is refused.
    pub storage_digest: [u8; 32],
    pub storage_pending: Option<[u8; 32]>,
}

/// Why an update cannot be staged now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageError {
    /// A trial is running: it must confirm (or roll back) first.
    TrialRunning,
    /// The bundle is the one the active slot already holds.
    AlreadyInstalled,
    /// The bundle is the update that was just rolled back.
    RolledBack,
}

impl Default for BootState {
    fn default() -> Self {
        BootState::factory()
    }
}

impl BootState {
    /// A device's state before its first boot: slot A active, nothing pending.
    pub const fn factory() -> BootState {
        BootState {
            boot_count: 0,
            active: 0,
            pending: None,
            trying: None,
            installed: [[0; 32]; 2],
            rolled_back: [0; 32],
            minimums: heapless::Vec::new(),
            unreported: None,
            storage_digest: [0; 32],
            storage_pending: None,
        }
    }

    /// The journal of the boot state in the board's region.
    pub const fn journal(base: usize, sectors: usize) -> Journal {
        Journal::new(base, sectors, Mode::Rewrite)
    }

    /// The newest complete state in `journal`, or the factory state (slot A) if there is none.
    pub fn load(flash: &impl Flash, journal: &Journal) -> BootState {
        let mut state = BootState::default();
        journal.read(flash, |entry| {
            if entry.intact
                && entry.tag == TAG
                && let Ok(found) = postcard::from_bytes::<BootState>(entry.payload)
                && found.active < 2
                && found.pending.is_none_or(|s| s < 2)
                && found.trying.is_none_or(|s| s < 2)
            {
                state = found;
            }
        });
        state
    }

    /// Persists the state as one record.
    pub fn store(&self, flash: &mut impl Flash, journal: &Journal) -> Result<(), JournalError> {
        let mut buffer = [0u8; 1024];
        let encoded = postcard::to_slice(self, &mut buffer).map_err(|_| JournalError::TooLarge)?;
        journal.append_latest(flash, TAG, encoded)
    }

    /// The slot this boot runs.
    pub fn booted(&self) -> u8 {
        self.trying.unwrap_or(self.active)
    }

    /// The slot an update goes into.
    pub fn inactive(&self) -> u8 {
        1 - self.active
    }

    /// The loader's decision at reset: counts the boot, rolls back an unconfirmed trial,
    /// starts the trial of a pending slot. Returns the slot to boot. The loader stores the
    /// state before it runs anything from that slot.
    pub fn next_boot(&mut self) -> u8 {
        self.boot_count = self.boot_count.wrapping_add(1);
        if self.trying.is_some() {
            self.abandon_trial(RollbackReason::NotConfirmed);
        } else if let Some(slot) = self.pending.take() {
            self.trying = Some(slot);
        }
        self.booted()
    }

    /// Ends the trial for `reason`; the active slot boots next.
    pub fn abandon_trial(&mut self, reason: RollbackReason) -> bool {
        match self.trying.take() {
            Some(slot) => {
                self.rolled_back = self.installed[slot as usize];
                self.unreported = Some(UpdateEvent::RolledBack { slot, reason });
                true
            }
            None => false,
        }
    }

    /// Checks that an update with slot image `digest` can go into the inactive slot now and
    /// forgets what that slot held (it is about to be overwritten).
    pub fn prepare_stage(&mut self, digest: &[u8; 32]) -> Result<u8, StageError> {
        if self.trying.is_some() {
            return Err(StageError::TrialRunning);
        }
        if self.installed[self.active as usize] == *digest {
            return Err(StageError::AlreadyInstalled);
        }
        if self.rolled_back == *digest {
            return Err(StageError::RolledBack);
        }
        let slot = self.inactive();
        self.pending = None;
        self.installed[slot as usize] = [0; 32];
        Ok(slot)
    }

    /// Marks the inactive slot, now holding the verified image `digest`, as pending.
    pub fn stage(&mut self, digest: [u8; 32]) {
        let slot = self.inactive();
        self.installed[slot as usize] = digest;
        self.pending = Some(slot);
    }

    /// The running trial confirmed itself: it becomes active and the minimums rise to the
    /// booted `versions`. Returns false when no trial runs.
    pub fn confirm(&mut self, versions: impl IntoIterator<Item = ([u8; 16], u32)>) -> bool {
        let Some(slot) = self.trying.take() else { return false };
        self.active = slot;
        for (component, version) in versions {
            self.raise(component, version);
        }
        self.unreported = Some(UpdateEvent::Applied { slot });
        true
    }

    /// The minimum security version for `component` (0 if none was raised).
    pub fn minimum(&self, component: &[u8; 16]) -> u32 {
        self.minimums.iter().find(|(id, _)| id == component).map_or(0, |(_, v)| *v)
    }

    /// Raises (never lowers) the minimum for `component`.
    pub fn raise(&mut self, component: [u8; 16], version: u32) {
        match self.minimums.iter_mut().find(|(id, _)| *id == component) {
            Some((_, minimum)) => *minimum = (*minimum).max(version),
            // With every slot of the table used the component keeps the fuse minimum only.
            None => {
                let _ = self.minimums.push((component, version));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::MemFlash;

    const SECTOR: usize = 4096;

    #[test]
    fn an_update_is_tried_once_then_confirmed() {
        let mut state = BootState::default();
        assert_eq!(state.next_boot(), 0);
        let slot = state.prepare_stage(&[1; 32]).unwrap();
        assert_eq!(slot, 1);
        state.stage([1; 32]);
        assert_eq!(state.next_boot(), 1);
        assert_eq!(state.prepare_stage(&[2; 32]), Err(StageError::TrialRunning));
        assert!(state.confirm([([7; 16], 3)]));
        assert_eq!((state.active, state.trying, state.minimum(&[7; 16])), (1, None, 3));
        assert_eq!(state.unreported, Some(UpdateEvent::Applied { slot: 1 }));
        assert!(!state.confirm([([7; 16], 9)]), "no trial, nothing to confirm");
        assert_eq!(state.next_boot(), 1);
        assert_eq!(state.boot_count, 3);
        assert_eq!(state.prepare_stage(&[1; 32]), Err(StageError::AlreadyInstalled));
    }

    #[test]
    fn an_unconfirmed_trial_falls_back_on_the_next_boot() {
        let mut state = BootState::default();
        state.stage([1; 32]);
        assert_eq!(state.next_boot(), 1);
        assert_eq!(state.next_boot(), 0);
        assert_eq!(
            state.unreported,
            Some(UpdateEvent::RolledBack { slot: 1, reason: RollbackReason::NotConfirmed })
        );
        state.stage([1; 32]);
        state.next_boot();
        assert!(state.abandon_trial(RollbackReason::Watchdog));
        assert_eq!(state.next_boot(), 0);
        assert_eq!(state.prepare_stage(&[1; 32]), Err(StageError::RolledBack));
        assert_eq!(state.prepare_stage(&[2; 32]), Ok(1));
    }

    #[test]
    fn names_in_events_cannot_carry_control_characters() {
        let mut name = *b"evil\x1b[2J\n\0\0\0\0\0\0\0";
        name[8] = 0xff;
        let event = UpdateEvent::RolledBack { slot: 1, reason: RollbackReason::AppFailed { name } };
        let text = alloc::format!("{event}");
        assert!(
            text.contains("app evil?[2J? failed") && text.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{text}"
        );
    }

    #[test]
    fn minimums_only_rise() {
        let mut state = BootState::default();
        state.raise([1; 16], 5);
        state.raise([1; 16], 2);
        assert_eq!(state.minimum(&[1; 16]), 5);
        assert_eq!(state.minimum(&[2; 16]), 0);
    }

    #[test]
    fn the_state_survives_in_flash_and_a_cut_keeps_the_previous_one() {
        let journal = BootState::journal(0, 2);
        let mut flash = MemFlash::blank(2, SECTOR);
        assert_eq!(BootState::load(&flash, &journal), BootState::default());
        let mut state = BootState::default();
        for boot in 1..=300u32 {
            state.next_boot();
            let before = BootState::load(&flash, &journal);
            flash.budget = Some(boot as usize % 17);
            let stored = state.store(&mut flash, &journal).is_ok();
            flash.budget = None;
            let after = BootState::load(&flash, &journal);
            assert!(after == state || (!stored && after == before), "boot {boot}");
            state.store(&mut flash, &journal).unwrap();
        }
        assert_eq!(BootState::load(&flash, &journal).boot_count, 300);
    }
}
