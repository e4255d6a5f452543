//! The kernel's state — process table, run queue, time — and the decisions on it:
//! which process runs, what a tick does, how a process ends.
//!
//! One instance lives in [`KERNEL`]. The kernel is single-core and runs with interrupts
//! masked, so each trap takes the lock once, decides, and releases it before resuming a
//! process.

use crate::arch::{Context, gic, mmu, timer};
use crate::kprintln;
use crate::process::{MAX_PROCESSES, Process, State};
use septa_kernel::sched::RunQueue;
use septa_targets::qemu_virt as board;

pub static KERNEL: spin::Mutex<Kernel> = spin::Mutex::new(Kernel::new());

pub struct Kernel {
    pub processes: [Process; MAX_PROCESSES],
    run_queue: RunQueue,
    /// The process the CPU returns to (or last returned to).
    pub current: Option<usize>,
    /// Whose tables are in TTBR0.
    installed: Option<usize>,
    /// The counter value when scheduling began.
    boot_counter: u64,
}

/// How a process ended.
pub enum Ending<'a> {
    Exit(i32),
    Fault(&'a dyn core::fmt::Display),
}

impl Kernel {
    const fn new() -> Kernel {
        Kernel {
            processes: [const { Process::EMPTY }; MAX_PROCESSES],
            run_queue: RunQueue::new(),
            current: None,
            installed: None,
            boot_counter: 0,
        }
    }

    pub fn start_clock(&mut self) {
        self.boot_counter = timer::now();
        gic::enable(board::TIMER_IRQ);
        timer::arm();
    }

    pub fn uptime_ms(&self) -> u64 {
        (timer::now() - self.boot_counter) * 1000 / timer::frequency()
    }

    pub fn make_ready(&mut self, pid: usize) {
        let process = &mut self.processes[pid];
        process.state = State::Ready;
        self.run_queue.make_ready(pid, process.priority);
    }

    /// Takes the current process off the CPU until `until` (counter ticks).
    pub fn sleep_current(&mut self, until: u64) {
        if let Some(pid) = self.current {
            let process = &mut self.processes[pid];
            process.state = State::Sleeping { until };
            self.run_queue.remove(pid, process.priority);
        }
    }

    /// Handles every pending interrupt. Returns whether the current time slice ended.
    pub fn handle_interrupts(&mut self) -> bool {
        let mut slice_over = false;
        while let Some(iar) = gic::acknowledge() {
            if gic::irq_number(iar) == board::TIMER_IRQ {
                timer::arm();
                self.wake_sleepers();
                slice_over = true;
            }
            gic::end(iar);
        }
        slice_over
    }

    fn wake_sleepers(&mut self) {
        let now = timer::now();
        for pid in 0..MAX_PROCESSES {
            if let State::Sleeping { until } = self.processes[pid].state
                && until <= now
            {
                self.make_ready(pid);
            }
        }
    }

    /// Ends process `pid`, reports how, and frees everything it had.
    pub fn end(&mut self, pid: usize, how: Ending<'_>) {
        let process = &mut self.processes[pid];
        match how {
            Ending::Exit(code) => kprintln!(
                "septa: kernel: app {} exited with status {code}",
                process.name()
            ),
            Ending::Fault(report) => {
                kprintln!("septa: kernel: app {} {report}; app ended", process.name())
            }
        }
        self.run_queue.remove(pid, process.priority);
        if self.installed == Some(pid) {
            mmu::switch_address_space(mmu::no_process_tables(), 0);
            self.installed = None;
        }
        mmu::flush_asid(asid(pid));
        process.release();
        if self.current == Some(pid) {
            self.current = None;
        }
    }

    /// Chooses the process to run next and installs its address space; `None` means idle.
    /// With `keep_current`, the current process continues unless it blocked or something
    /// more urgent is ready; otherwise its turn is over and an equal-priority process gets
    /// the CPU.
    pub fn schedule(&mut self, keep_current: bool) -> Option<*const Context> {
        let next = match self.current {
            Some(pid)
                if keep_current
                    && self.processes[pid].state == State::Ready
                    && self.run_queue.may_continue(self.processes[pid].priority) =>
            {
                pid
            }
            _ => self.run_queue.pick()?,
        };
        if self.installed != Some(next) {
            mmu::switch_address_space(self.processes[next].tables_phys(), asid(next));
            self.installed = Some(next);
        }
        self.current = Some(next);
        Some(&self.processes[next].context)
    }
}

/// A process's ASID: its slot + 1 (ASID 0 is reserved for switching).
fn asid(pid: usize) -> u8 {
    pid as u8 + 1
}
