//! The console's rate limit: how many lines each app may `log`.
//!
//! A real UART at 115200 baud prints about 11 KiB a second, so one app printing in a loop
//! would hide every other app's lines and the kernel's own. Each app has a bucket of
//! [`BURST`] lines that refills by one line every [`REFILL_MS`]; a line with the bucket empty
//! is dropped and counted, and the count is printed before the app's next line that gets
//! through.

/// Lines an app may print at once, after being quiet.
pub const BURST: u32 = 40;
/// One more line every this many milliseconds (10 lines a second).
pub const REFILL_MS: u64 = 100;

/// One app's bucket. Times are counter ticks; `refill` is [`REFILL_MS`] in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimit {
    /// Lines taken out of the bucket (it is empty at [`BURST`]).
    spent: u32,
    /// When the bucket last gained a line.
    refilled: u64,
    /// Lines dropped since the last one printed.
    dropped: u32,
}

impl LogLimit {
    /// A full bucket.
    pub const FULL: LogLimit = LogLimit { spent: 0, refilled: 0, dropped: 0 };

    /// Whether a line at `now` may be printed: `Some(lines dropped before it)`, or `None`
    /// when it is dropped (and counted).
    pub fn admit(&mut self, now: u64, refill: u64) -> Option<u32> {
        let refill = refill.max(1);
        let gained = now.saturating_sub(self.refilled) / refill;
        if gained > 0 {
            self.spent = self.spent.saturating_sub(gained.min(BURST as u64) as u32);
            self.refilled += gained * refill;
        }
        if self.spent >= BURST {
            self.dropped = self.dropped.saturating_add(1);
            return None;
        }
        self.spent += 1;
        Some(core::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_its_burst_then_one_line_per_refill() {
        let mut limit = LogLimit::FULL;
        let printed = (0..1000).filter(|_| limit.admit(5, 100).is_some()).count();
        assert_eq!(printed, BURST as usize);
        // 250 ticks later: two lines earned; the first reports the 960 dropped.
        assert_eq!(limit.admit(255, 100), Some(960));
        assert_eq!(limit.admit(255, 100), Some(0));
        assert_eq!(limit.admit(255, 100), None);
        // Quiet for long: the bucket is full again, not more.
        let printed = (0..100).filter(|_| limit.admit(1_000_000, 100).is_some()).count();
        assert_eq!(printed, BURST as usize);
    }
}
