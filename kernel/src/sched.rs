//! The run queue: which ready process runs next.
//!
//! Fixed priorities (0 is the most urgent) with round-robin among processes of equal
//! priority. Each priority keeps a bit set of ready process ids and the id it picked last;
//! picking is a find-first-set over a bit set of the non-empty priorities and a rotate
//! within one — no lists, no allocation, constant time.
//!
//! The queue holds the ready processes but the one running: a picked process leaves it,
//! and goes back when it loses the CPU still ready (the kernel's `schedule`). So an IPC
//! hand-over — the caller blocks, the server runs — changes nothing here when the server
//! is the one to run ([`RunQueue::hand_over`]), as in seL4, whose running thread is in no
//! queue either.
//!
//! Each process also has a CPU [`Budget`]: it may run so long in every period of its own.
//! The kernel charges the time between two ticks to the process the tick interrupts (a tick
//! delayed by a monitor call is charged in full to the caller); a process that has used its
//! budget is throttled — off the run queue — until its next period, so an app that never
//! blocks cannot starve less urgent ones.

use septa_abi::app::PRIORITIES;

use septa_abi::app::MAX_PROCESSES;
// Process ids are bit positions in a `u32`.
const _: () = assert!(MAX_PROCESSES <= 32);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQueue {
    ready: [u32; PRIORITIES as usize],
    /// Bit `p` is set when `ready[p]` is not empty.
    occupied: u32,
    /// The id picked last at each priority; the next pick starts after it.
    last: [u8; PRIORITIES as usize],
}

impl RunQueue {
    pub const fn new() -> RunQueue {
        RunQueue { ready: [0; PRIORITIES as usize], occupied: 0, last: [0; PRIORITIES as usize] }
    }

    pub fn make_ready(&mut self, pid: usize, priority: u8) {
        self.ready[priority as usize] |= 1 << pid;
        self.occupied |= 1 << priority;
    }

    pub fn remove(&mut self, pid: usize, priority: u8) {
        self.ready[priority as usize] &= !(1 << pid);
        if self.ready[priority as usize] == 0 {
            self.occupied &= !(1 << priority);
        }
    }

    pub fn is_ready(&self, pid: usize, priority: u8) -> bool {
        self.ready[priority as usize] & (1 << pid) != 0
    }

    /// The most urgent priority with a ready process.
    pub fn top_priority(&self) -> Option<u8> {
        (self.occupied != 0).then(|| self.occupied.trailing_zeros() as u8)
    }

    /// Picks the next process and takes it out of the queue: the most urgent priority, and
    /// within it the first ready id after the one picked last (wrapping), so equal
    /// priorities take turns.
    pub fn pick(&mut self) -> Option<usize> {
        let priority = self.top_priority()?;
        let set = self.ready[priority as usize];
        let after = self.last[priority as usize] as u32 + 1;
        // Ids above the last pick first, then wrap to the lowest.
        let above = if after >= 32 { 0 } else { set & (u32::MAX << after) };
        let candidates = if above != 0 { above } else { set };
        let pid = candidates.trailing_zeros() as usize;
        self.last[priority as usize] = pid as u8;
        let rest = set & !(1 << pid);
        self.ready[priority as usize] = rest;
        if rest == 0 {
            self.occupied &= !(1 << priority);
        }
        Some(pid)
    }

    /// Whether `pid`, ready at `priority` but not queued (a server or caller an IPC
    /// hand-over wakes), is what [`RunQueue::pick`] would choose were it queued: nothing
    /// queued is as urgent. If so its turn is recorded as `pick` records it, and the queue
    /// is otherwise unchanged; if not, nothing changes.
    pub fn hand_over(&mut self, pid: usize, priority: u8) -> bool {
        let first = self.top_priority().is_none_or(|top| top > priority);
        if first {
            self.last[priority as usize] = pid as u8;
        }
        first
    }

    /// Whether `pid` (ready at `priority`) may keep the CPU: nothing more urgent is ready.
    pub fn may_continue(&self, priority: u8) -> bool {
        self.top_priority().is_none_or(|top| top >= priority)
    }
}

/// A CPU budget in counter ticks: at most `budget` in every `period`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    budget: u64,
    period: u64,
    used: u64,
    period_end: u64,
}

impl Budget {
    pub const NONE: Budget = Budget { budget: 0, period: 0, used: 0, period_end: 0 };

    /// A budget whose first period starts at `now`.
    pub fn new(budget: u64, period: u64, now: u64) -> Budget {
        Budget { budget, period, used: 0, period_end: now + period }
    }

    /// Charges `elapsed` ticks of running; returns whether this period's budget is used up.
    pub fn charge(&mut self, elapsed: u64) -> bool {
        self.used += elapsed;
        self.used >= self.budget
    }

    /// Starts the next period once the current one has ended at `now`; returns whether it
    /// did. Periods stay aligned to the first one.
    pub fn renew(&mut self, now: u64) -> bool {
        if self.period == 0 || now < self.period_end {
            return false;
        }
        self.used = 0;
        self.period_end += ((now - self.period_end) / self.period + 1) * self.period;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_used_up_then_renewed_each_period() {
        let mut b = Budget::new(20, 100, 1000);
        assert!(!b.charge(10));
        assert!(b.charge(10), "20 of 20 used");
        assert!(!b.renew(1099));
        assert!(b.renew(1100));
        assert!(!b.charge(19));
        // A late renewal skips whole periods and stays aligned.
        assert!(b.renew(1450));
        assert_eq!(b.period_end, 1500);
        assert!(!b.renew(1499));
    }

    #[test]
    fn most_urgent_priority_wins_and_leaves_the_queue() {
        let mut q = RunQueue::new();
        q.make_ready(5, 3);
        q.make_ready(2, 1);
        assert_eq!(q.pick(), Some(2));
        assert!(!q.is_ready(2, 1), "the picked process runs, out of the queue");
        assert_eq!(q.pick(), Some(5));
        assert_eq!(q.pick(), None);
    }

    #[test]
    fn equal_priorities_take_turns() {
        let mut q = RunQueue::new();
        for pid in [1, 4, 31] {
            q.make_ready(pid, 2);
        }
        // Each runs, then goes back still ready (a yield, a time slice over).
        let order: [_; 6] = core::array::from_fn(|_| {
            let pid = q.pick().unwrap();
            q.make_ready(pid, 2);
            pid
        });
        assert_eq!(order, [1, 4, 31, 1, 4, 31]);
    }

    #[test]
    fn a_hand_over_runs_the_partner_only_where_pick_would() {
        let mut q = RunQueue::new();
        assert!(q.hand_over(3, 4), "nothing queued");
        q.make_ready(7, 5);
        assert!(q.hand_over(3, 4), "only less urgent ones queued");
        let before = q.clone();
        q.make_ready(9, 4);
        let with_equal = q.clone();
        assert!(!q.hand_over(3, 4), "an equal one queued: its turn may come first");
        assert_eq!(q, with_equal, "refused: nothing changed");
        q.remove(9, 4);
        q.make_ready(8, 2);
        assert!(!q.hand_over(3, 4), "a more urgent one queued");
        // Where it runs, it is what pick would have chosen, with the same turn recorded.
        let mut picked = before.clone();
        picked.make_ready(3, 4);
        assert_eq!(picked.pick(), Some(3));
        let mut handed = before;
        assert!(handed.hand_over(3, 4));
        assert_eq!(handed, picked);
    }

    #[test]
    fn empty_queue_picks_nothing() {
        let mut q = RunQueue::new();
        assert_eq!(q.pick(), None);
        q.make_ready(0, 7);
        q.remove(0, 7);
        assert_eq!(q.pick(), None);
        assert!(q.may_continue(7));
    }

    #[test]
    fn a_more_urgent_ready_process_preempts() {
        let mut q = RunQueue::new();
        q.make_ready(3, 4);
        assert!(q.may_continue(4));
        q.make_ready(9, 2);
        assert!(!q.may_continue(4));
        assert!(q.may_continue(2));
    }
}
