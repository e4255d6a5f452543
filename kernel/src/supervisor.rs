//! The supervisor's policy: whether an ended app is restarted, after how long, and the
//! record kept of every exit and fault.
//!
//! Restarts follow the manifest's `restart` policy with exponential backoff — the first
//! restart after [`BACKOFF_FIRST_MS`], each next one twice as late, capped at
//! [`BACKOFF_MAX_MS`] — so a crash loop costs little CPU and floods nothing. Every ending
//! becomes a [`FaultRecord`] in a fixed ring (the oldest is overwritten); the security
//! monitor signs each one and keeps it in the report ring in flash.
//!
//! When the boot is the trial of an update, the supervisor also judges it: once every
//! `restart = "always"` app has run [`HEALTHY_AFTER_MS`] without failing, it confirms the
//! update to the monitor; if one of them fails first, it tells the monitor, which rolls the
//! update back.

use septa_abi::app::Restart;

pub const BACKOFF_FIRST_MS: u64 = 100;
pub const BACKOFF_MAX_MS: u64 = 10_000;
pub const LOG_CAPACITY: usize = 32;
/// How long a trial boot must run without an always-running app failing.
pub const HEALTHY_AFTER_MS: u64 = 2000;

pub use septa_abi::report::{EndKind, Record as FaultRecord};

/// A clean exit is status 0; anything else is a failure.
pub fn failed(record: &FaultRecord) -> bool {
    record.kind != EndKind::Exit || record.exit_code != 0
}

/// Whether an app that ended as `record` says is started again under `policy`.
pub fn should_restart(policy: Restart, record: &FaultRecord) -> bool {
    match policy {
        Restart::Always => true,
        Restart::Never => false,
        Restart::OnFailure => failed(record),
    }
}

/// Whether an app ending as `record` fails a trial boot: only apps that must always run
/// count.
pub fn fails_trial(policy: Restart, record: &FaultRecord) -> bool {
    policy == Restart::Always && failed(record)
}

/// The delay before restart number `restart` (1 for the first).
pub fn backoff_ms(restart: u32) -> u64 {
    let doublings = restart.saturating_sub(1).min(16);
    (BACKOFF_FIRST_MS << doublings).min(BACKOFF_MAX_MS)
}

/// The ring of the latest records.
pub struct FaultLog {
    records: [Option<FaultRecord>; LOG_CAPACITY],
    next: usize,
    total: u64,
}

impl Default for FaultLog {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultLog {
    pub const fn new() -> FaultLog {
        FaultLog { records: [None; LOG_CAPACITY], next: 0, total: 0 }
    }

    pub fn push(&mut self, record: FaultRecord) {
        self.records[self.next] = Some(record);
        self.next = (self.next + 1) % LOG_CAPACITY;
        self.total += 1;
    }

    /// Records ever pushed (including overwritten ones).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &FaultRecord> {
        let (newer, older) = self.records.split_at(self.next);
        older.iter().chain(newer).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: EndKind, exit_code: i32) -> FaultRecord {
        FaultRecord {
            component_id: [1; 16],
            name: [0; 16],
            kind,
            pc: 0,
            address: 0,
            exit_code,
            time_ms: 0,
            restart_count: 0,
        }
    }

    #[test]
    fn policies() {
        let ok = record(EndKind::Exit, 0);
        let failed = record(EndKind::Exit, 3);
        let fault = record(EndKind::DataAbort, 0);
        assert!(should_restart(Restart::Always, &ok));
        assert!(!should_restart(Restart::Never, &fault));
        assert!(!should_restart(Restart::OnFailure, &ok));
        assert!(should_restart(Restart::OnFailure, &failed));
        assert!(should_restart(Restart::OnFailure, &fault));
    }

    #[test]
    fn only_failing_always_apps_fail_a_trial() {
        assert!(fails_trial(Restart::Always, &record(EndKind::DataAbort, 0)));
        assert!(fails_trial(Restart::Always, &record(EndKind::Exit, 1)));
        assert!(!fails_trial(Restart::Always, &record(EndKind::Exit, 0)));
        assert!(!fails_trial(Restart::OnFailure, &record(EndKind::DataAbort, 0)));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: [u64; 9] = core::array::from_fn(|i| backoff_ms(i as u32 + 1));
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
    }

    #[test]
    fn the_log_keeps_the_latest_records_oldest_first() {
        let mut log = FaultLog::new();
        for code in 0..(LOG_CAPACITY as i32 + 5) {
            log.push(record(EndKind::Exit, code));
        }
        let codes: [i32; 3] = {
            let mut it = log.records().map(|r| r.exit_code);
            [it.next().unwrap(), it.next().unwrap(), it.nth(LOG_CAPACITY - 3).unwrap()]
        };
        assert_eq!(codes, [5, 6, LOG_CAPACITY as i32 + 4]);
        assert_eq!(log.records().count(), LOG_CAPACITY);
        assert_eq!(log.total(), LOG_CAPACITY as u64 + 5);
    }
}
