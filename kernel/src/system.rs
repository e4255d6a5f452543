//! The kernel's state — process table, run queue, IPC, time, the supervisor's log — and the
//! decisions on it: which process runs, what a tick does, how a process ends and restarts.
//!
//! The kernel is generic over its [`Machine`]: the device binary keeps one `Kernel` over the
//! ARMv7 board in a static (single core, interrupts masked: each trap takes it once,
//! decides, and releases it before resuming a process); the host tests run the same code
//! over a simulated machine.

use crate::ipc::{self, Ipc};
use crate::kprintln;
use crate::machine::{Context, Machine, SharedPage, TICK_MS};
use crate::process::{self, MAX_PROCESSES, Process, State};
use crate::sched::RunQueue;
use crate::supervisor::{self, EndKind, FaultLog, FaultRecord};
use septa_abi::package::Package;
use septa_armv7::crash::{ExceptionKind, FaultRegisters};
use septa_armv7::fault;
use septa_syscalls::Error;
use septa_targets::board;

pub struct Kernel<M: Machine> {
    pub machine: M,
    /// The monitor's shared page, given once at boot ([`Kernel::give_shared_page`]).
    pub(crate) shared: Option<SharedPage>,
    pub processes: [Process; MAX_PROCESSES],
    pub(crate) run_queue: RunQueue,
    pub ipc: Ipc,
    /// Endpoint names by endpoint number (from the servers' manifests).
    pub endpoints: [Option<&'static str>; ipc::MAX_ENDPOINTS],
    /// The app holding each board device, with its handle for the device.
    pub device_owners: [Option<(usize, u32)>; board::DEVICES.len()],
    /// The app holding each GPIO pin.
    pub pin_owners: [Option<usize>; board::GPIO_PINS as usize],
    pub faults: FaultLog,
    /// The process the CPU returns to (or last returned to).
    pub current: Option<usize>,
    /// Whose tables are in TTBR0.
    pub(crate) installed: Option<usize>,
    /// The counter value when scheduling began, and at the last tick.
    boot_counter: u64,
    last_tick: u64,
    /// This boot is an update's trial, not yet confirmed.
    pub on_trial: bool,
}

/// How a process ended.
pub enum Ending {
    Exit(i32),
    Fault(UserFault),
}

impl<M: Machine> Kernel<M> {
    pub const fn new(machine: M) -> Kernel<M> {
        Kernel {
            machine,
            shared: None,
            processes: [const { Process::EMPTY }; MAX_PROCESSES],
            run_queue: RunQueue::new(),
            ipc: Ipc::new(),
            endpoints: [None; ipc::MAX_ENDPOINTS],
            device_owners: [None; board::DEVICES.len()],
            pin_owners: [None; board::GPIO_PINS as usize],
            faults: FaultLog::new(),
            current: None,
            installed: None,
            boot_counter: 0,
            last_tick: 0,
            on_trial: false,
        }
    }

    /// Hands the kernel the page monitor requests travel through.
    pub fn give_shared_page(&mut self, page: SharedPage) {
        self.shared = Some(page);
    }

    /// Issues an SMC with the shared page; `fill` writes the request into it first.
    /// `None` if the kernel has no shared page (never after boot).
    pub fn call_monitor(
        &mut self,
        function: u32,
        args: [u32; 3],
        fill: impl FnOnce(&mut [u8]),
    ) -> Option<[u32; 4]> {
        let page = self.shared.as_mut()?;
        fill(page.bytes());
        Some(self.machine.smc(function, args, page))
    }

    /// The shared page as the monitor left it after the last call.
    pub fn shared_page(&mut self) -> Option<&mut [u8]> {
        self.shared.as_mut().map(SharedPage::bytes)
    }

    pub fn run_queue(&self) -> &RunQueue {
        &self.run_queue
    }

    pub fn start_clock(&mut self) {
        self.boot_counter = self.machine.now();
        self.last_tick = self.boot_counter;
        self.machine.enable_irq(board::TIMER_IRQ);
        self.machine.arm_timer();
    }

    pub fn uptime_ms(&self) -> u64 {
        (self.machine.now() - self.boot_counter) * 1000 / self.machine.frequency()
    }

    /// Counter ticks in `ms` milliseconds.
    pub fn ticks(&self, ms: u64) -> u64 {
        ms * self.machine.frequency() / 1000
    }

    /// Makes `pid` ready: queued, unless it is the current process (which is in no queue).
    pub fn make_ready(&mut self, pid: usize) {
        let process = &mut self.processes[pid];
        process.state = State::Ready;
        if self.current != Some(pid) {
            self.run_queue.make_ready(pid, process.priority);
        }
    }

    /// Takes process `pid` off the CPU in `state` (sleeping or blocked); the current
    /// process is in no queue, so only its state changes.
    pub fn block(&mut self, pid: usize, state: State) {
        let process = &mut self.processes[pid];
        process.state = state;
        if self.current != Some(pid) {
            self.run_queue.remove(pid, process.priority);
        }
    }

    /// Wakes a blocked process with `result` (see [`Kernel::set_result`]).
    pub fn wake(&mut self, pid: usize, result: Result<u32, Error>) {
        self.set_result(pid, result);
        self.make_ready(pid);
    }

    /// Wakes `pid` with `result` for an IPC hand-over: ready but not yet queued — the fast
    /// path then runs it at once or queues it (`fastpath.rs`).
    pub(crate) fn wake_for_hand_over(&mut self, pid: usize, result: Result<u32, Error>) {
        self.set_result(pid, result);
        self.processes[pid].state = State::Ready;
    }

    /// A syscall's result in the caller's registers: status in r0 (0, or a negative
    /// [`Error`]), value in r1 (0 after an error), so no value can pass for an error.
    pub fn set_result(&mut self, pid: usize, result: Result<u32, Error>) {
        let r = &mut self.processes[pid].context.r;
        (r[0], r[1]) = match result {
            Ok(value) => (0, value),
            Err(error) => (error as i32 as u32, 0),
        };
    }

    /// Sets the priority the run queue uses for `pid` (priority inheritance during a call).
    pub fn set_priority(&mut self, pid: usize, priority: u8) {
        let process = &mut self.processes[pid];
        if process.priority == priority {
            return;
        }
        let ready = self.run_queue.is_ready(pid, process.priority);
        self.run_queue.remove(pid, process.priority);
        process.priority = priority;
        if ready {
            self.run_queue.make_ready(pid, priority);
        }
    }

    /// Handles every pending interrupt; `running` is the process they interrupted (none
    /// when idle). Returns whether the current time slice ended.
    pub fn handle_interrupts(&mut self, running: Option<usize>) -> bool {
        let mut slice_over = false;
        while let Some((irq, token)) = self.machine.acknowledge_irq() {
            if irq == board::TIMER_IRQ {
                self.machine.arm_timer();
                self.on_tick(running);
                slice_over = true;
            } else {
                self.deliver_device_interrupt(irq);
            }
            self.machine.end_irq(token);
        }
        slice_over
    }

    /// A device interrupt goes to the app holding the device, as notification bit
    /// `1 << handle`; the line stays masked until the app acknowledges it.
    fn deliver_device_interrupt(&mut self, irq: u32) {
        self.machine.disable_irq(irq);
        let owner = board::DEVICES
            .iter()
            .zip(self.device_owners)
            .find(|(device, _)| device.irq == Some(irq))
            .and_then(|(_, owner)| owner);
        if let Some((pid, handle)) = owner
            && self.processes[pid].state != State::Free
            && let Some(bits) = self.ipc.notify(pid as u8, septa_syscalls::irq_bit(handle))
        {
            self.wake(pid, Ok(bits));
        }
    }

    /// Charges the time since the last tick to the process the tick interrupted, throttles
    /// it if that used up its CPU budget, and wakes whatever is due.
    fn on_tick(&mut self, running: Option<usize>) {
        if self.on_trial && self.uptime_ms() >= supervisor::HEALTHY_AFTER_MS {
            self.on_trial = false;
            kprintln!(
                self.machine,
                "septa: supervisor: healthy for {} ms on trial; confirming the update",
                supervisor::HEALTHY_AFTER_MS
            );
            self.call_monitor(septa_abi::smc::CONFIRM_BOOT, [0; 3], |_| {});
        }
        let now = self.machine.now();
        // In whole ticks: the kernel's own work is not charged (see the end), so the time
        // since the last tick is a little short of a tick when nothing delayed it.
        let tick = self.ticks(TICK_MS);
        let elapsed = (now - self.last_tick + tick / 2) / tick * tick;
        if let Some(pid) = running
            && self.processes[pid].state == State::Ready
            && self.processes[pid].budget.charge(elapsed)
        {
            self.throttle(pid);
        }
        for pid in 0..MAX_PROCESSES {
            let renewed = self.processes[pid].budget.renew(now);
            match self.processes[pid].state {
                State::Sleeping { until } if until <= now => {
                    self.ipc.cancel_wait(pid as u8); // a wait with a timeout ends with 0
                    self.make_ready(pid);
                }
                State::Restarting { at } if at <= now => self.restart(pid),
                State::Throttled if renewed => self.make_ready(pid),
                _ => {}
            }
        }
        // Restarts and reports are the kernel's work: the next tick charges none of it.
        self.last_tick = self.machine.now();
    }

    /// Takes `pid` off the CPU until its next period; the first overrun since the app
    /// started is printed and recorded like a fault (the app goes on).
    fn throttle(&mut self, pid: usize) {
        self.block(pid, State::Throttled);
        let process = &mut self.processes[pid];
        if core::mem::replace(&mut process.overran, true) {
            return;
        }
        let (budget, period) =
            process.manifest.as_ref().map_or((0, 0), |m| (m.cpu_budget_ms, m.cpu_period_ms));
        kprintln!(
            self.machine,
            "septa: kernel: app {} overran its CPU budget ({budget} ms per {period} ms); throttled \
             until its next period (reported once per start)",
            process.name()
        );
        let pc = process.context.pc;
        self.record(pid, EndKind::CpuBudget, pc, 0, 0);
    }

    /// Ends process `pid`: records how, wakes whoever waited on it with `EPIPE`, frees its
    /// memory, and lets the supervisor decide about a restart.
    pub fn end(&mut self, pid: usize, ending: Ending) {
        let process = &self.processes[pid];
        let (kind, pc, address, exit_code) = match &ending {
            Ending::Exit(code) => {
                kprintln!(self.machine, "septa: kernel: app {} exited with status {code}", process.name());
                (EndKind::Exit, 0, 0, *code)
            }
            Ending::Fault(fault) => {
                kprintln!(self.machine, "septa: kernel: app {} {fault}; app ended", process.name());
                let kind = match fault.kind {
                    ExceptionKind::Undefined => EndKind::UndefinedInstruction,
                    ExceptionKind::PrefetchAbort => EndKind::PrefetchAbort,
                    _ => EndKind::DataAbort,
                };
                (kind, fault.pc, fault.address(), 0)
            }
        };
        let record = self.record(pid, kind, pc, address, exit_code);
        let policy = self.processes[pid].manifest.as_ref().map(|m| m.restart);

        let woken = self.ipc.process_died(pid as u8);
        for other in ipc::members(woken) {
            self.wake(other as usize, Err(Error::Pipe));
        }
        for (index, owner) in self.device_owners.iter().enumerate() {
            if let (Some((owner, _)), Some(irq)) = (owner, board::DEVICES[index].irq)
                && *owner == pid
            {
                self.machine.disable_irq(irq);
            }
        }
        let process = &mut self.processes[pid];
        self.run_queue.remove(pid, process.priority);
        if self.installed == Some(pid) {
            self.machine.switch_address_space(None, 0);
            self.installed = None;
        }
        self.machine.flush_asid(asid(pid));
        process.release(&mut self.machine);
        if self.current == Some(pid) {
            self.current = None;
        }

        if policy.is_some_and(|policy| supervisor::should_restart(policy, &record)) {
            process.restarts += 1;
            let delay = supervisor::backoff_ms(process.restarts);
            kprintln!(
                self.machine,
                "septa: supervisor: restarting {} in {delay} ms (restart {})",
                process.name(),
                process.restarts
            );
            let at = self.machine.now() + delay * self.machine.frequency() / 1000;
            process.state = State::Restarting { at };
        } else {
            process.state = State::Ended;
        }
    }

    /// Keeps a record of an ending or overrun of `pid` — in the fault log and, signed, in
    /// the report ring — and fails the update's trial if the app must always run.
    fn record(&mut self, pid: usize, kind: EndKind, pc: u32, address: u32, exit_code: i32) -> FaultRecord {
        let process = &self.processes[pid];
        let record = FaultRecord {
            component_id: process.component_id(),
            name: process.name_bytes(),
            kind,
            pc,
            address,
            exit_code,
            time_ms: self.uptime_ms(),
            restart_count: process.restarts,
        };
        let policy = process.manifest.as_ref().map(|m| m.restart);
        self.faults.push(record);
        self.report(record);
        // Signing took the kernel a while; that is no process's CPU time.
        self.last_tick = self.machine.now();
        let process = &self.processes[pid];
        if self.on_trial && policy.is_some_and(|policy| supervisor::fails_trial(policy, &record)) {
            kprintln!(
                self.machine,
                "septa: supervisor: {} failed during the update's trial; rolling back",
                process.name()
            );
            self.fail_trial(&record.name);
        }
        record
    }

    /// Tells the monitor the trial failed because of app `name`; the monitor records the
    /// rollback and resets (it returns only if no trial runs).
    fn fail_trial(&mut self, name: &[u8; 16]) {
        use septa_abi::monitor::REQUEST_OFFSET;
        self.call_monitor(septa_abi::smc::TRIAL_FAILED, [16, 0, 0], |page| {
            page[REQUEST_OFFSET..REQUEST_OFFSET + 16].copy_from_slice(name)
        });
        self.on_trial = false;
    }

    /// Has the monitor sign the record with the device key and keep it in the report ring,
    /// and prints the signed report, for `septa report verify`.
    fn report(&mut self, record: FaultRecord) {
        use septa_abi::monitor::{REQUEST_MAX, REQUEST_OFFSET, RESPONSE_OFFSET};
        use septa_abi::report::{Batch, Event};
        // The monitor sets the sequence number and the boot count.
        let batch = Batch {
            first: 0,
            boot_count: 0,
            events: heapless::Vec::from_slice(&[Event::App(record)]).expect("one record fits"),
        };
        let mut encoded = [0u8; REQUEST_MAX];
        let Ok(encoded) = postcard::to_slice(&batch, &mut encoded) else {
            return;
        };
        let len = encoded.len();
        let request = |page: &mut [u8]| page[REQUEST_OFFSET..REQUEST_OFFSET + len].copy_from_slice(encoded);
        let Some([status, written, ..]) =
            self.call_monitor(septa_abi::smc::STORE_REPORT, [len as u32, 0, 0], request)
        else {
            return;
        };
        if status != septa_abi::monitor::OK {
            kprintln!(
                self.machine,
                "septa: supervisor: the monitor did not sign the report (status {status})"
            );
            return;
        }
        let Some(page) = self.shared.as_mut().map(SharedPage::bytes) else { return };
        let signed = &page[RESPONSE_OFFSET..RESPONSE_OFFSET + (written as usize).min(2048)];
        kprintln!(self.machine, "septa: supervisor: signed report {}", septa_syscalls::Hex(signed));
    }

    /// Starts an ended app again from its package, with the same capabilities.
    fn restart(&mut self, pid: usize) {
        let process = &mut self.processes[pid];
        let result = slot_package(&self.machine, process.package_offset)
            .and_then(|package| process::spawn(&mut self.machine, process, &package));
        match result {
            Ok(()) => {
                self.ipc.server_restarted(pid as u8);
                self.make_ready(pid);
            }
            Err(error) => {
                kprintln!(
                    self.machine,
                    "septa: supervisor: {} could not be restarted: {error}",
                    process.name()
                );
                process.state = State::Ended;
            }
        }
    }

    /// Chooses the process to run next and installs its address space; `None` means idle.
    /// With `keep_current`, the current process continues unless it blocked or something
    /// more urgent is ready; otherwise its turn is over and an equal-priority process gets
    /// the CPU.
    #[inline(always)] // on every trap's way out: no call of its own
    pub fn schedule(&mut self, keep_current: bool) -> Option<*const Context> {
        if let Some(pid) = self.current {
            if keep_current && let Some(context) = self.may_keep(pid) {
                return Some(context);
            }
            self.leave_cpu(pid);
        }
        let next = self.run_queue.pick()?;
        Some(self.install(next))
    }

    /// The current process `pid` loses the CPU: back into the queue if it could still run.
    #[inline(always)]
    fn leave_cpu(&mut self, pid: usize) {
        let process = &self.processes[pid];
        if matches!(process.state, State::Ready) {
            self.run_queue.make_ready(pid, process.priority);
        }
    }

    /// The context of the current process `pid` if it may go on: it is ready and nothing
    /// more urgent is (its tables are installed). The common case after a syscall, which
    /// the trap code asks with the caller it already knows (a syscall after which the caller
    /// may go on leaves it the current process).
    #[inline(always)]
    pub fn may_keep(&self, pid: usize) -> Option<*const Context> {
        let process = &self.processes[pid];
        let ready = matches!(process.state, State::Ready);
        (ready && self.run_queue.may_continue(process.priority)).then_some(&process.context)
    }

    /// Gives the CPU to `pid` as the scheduler would have chosen it (for tests that run any
    /// process they like): the process running before goes back to the queue if it could
    /// still run, `pid` leaves it.
    #[cfg(test)]
    pub(crate) fn put_on_cpu(&mut self, pid: usize) -> *const Context {
        if let Some(previous) = self.current.filter(|&previous| previous != pid) {
            self.leave_cpu(previous);
        }
        self.run_queue.remove(pid, self.processes[pid].priority);
        self.install(pid)
    }

    /// Makes `next` (not queued) the current process, its tables installed; returns its
    /// context.
    pub(crate) fn install(&mut self, next: usize) -> *const Context {
        if self.installed != Some(next) {
            self.machine.switch_address_space(Some(self.processes[next].tables_phys()), asid(next));
            self.installed = Some(next);
        }
        self.current = Some(next);
        &self.processes[next].context
    }
}

/// The package at `offset` in the booted slot.
fn slot_package(machine: &impl Machine, offset: usize) -> Result<Package<'static>, process::SpawnError> {
    let slot = machine.slot().map_err(|_| process::SpawnError::PackageMissing)?;
    slot.packages()
        .filter_map(Result::ok)
        .find(|(at, _)| *at == offset)
        .map(|(_, package)| package)
        .ok_or(process::SpawnError::PackageMissing)
}

/// A fault in user mode, as the kernel reports it.
pub struct UserFault {
    pub kind: ExceptionKind,
    pub pc: u32,
    pub faults: FaultRegisters,
}

impl UserFault {
    /// The fault status and address registers that apply, and the access for a data abort.
    fn details(&self) -> Option<(u32, u32, &'static str)> {
        match self.kind {
            ExceptionKind::DataAbort => {
                let access = if fault::is_write(self.faults.dfsr) { ", write" } else { ", read" };
                Some((self.faults.dfsr, self.faults.dfar, access))
            }
            ExceptionKind::PrefetchAbort => Some((self.faults.ifsr, self.faults.ifar, "")),
            _ => None,
        }
    }

    pub fn address(&self) -> u32 {
        self.details().map_or(0, |(_, address, _)| address)
    }
}

impl core::fmt::Display for UserFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "faulted: {} at pc {:#010x}", self.kind.name(), self.pc)?;
        if let Some((status, address, access)) = self.details() {
            write!(f, ", address {address:#010x} ({}{access}, fsr {status:#x})", fault::describe(status))?;
        }
        Ok(())
    }
}

/// A process's ASID: its slot + 1 (ASID 0 is reserved for switching).
pub fn asid(pid: usize) -> u8 {
    pid as u8 + 1
}
