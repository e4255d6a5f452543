//! The kernel's state — process table, run queue, IPC, time, the supervisor's log — and the
//! decisions on it: which process runs, what a tick does, how a process ends and restarts.
//!
//! One instance lives in [`KERNEL`]. The kernel is single-core and runs with interrupts
//! masked, so each trap takes the lock once, decides, and releases it before resuming a
//! process.

use crate::arch::{Context, IRQS, InterruptController, mmu, timer};
use crate::kprintln;
use crate::process::{self, MAX_PROCESSES, Process, State};
use core::sync::atomic::{AtomicUsize, Ordering};
use septa_abi::package::Package;
use septa_abi::slot::Slot;
use septa_armv7::crash::{ExceptionKind, FaultRegisters};
use septa_armv7::fault;
use septa_kernel::ipc::{self, Ipc};
use septa_kernel::sched::RunQueue;
use septa_kernel::supervisor::{self, EndKind, FaultLog, FaultRecord};
use septa_syscalls::Error;
use septa_targets::board;

pub static KERNEL: spin::Mutex<Kernel> = spin::Mutex::new(Kernel::new());

pub struct Kernel {
    pub processes: [Process; MAX_PROCESSES],
    run_queue: RunQueue,
    pub ipc: Ipc,
    /// Endpoint names by endpoint number (from the servers' manifests).
    pub endpoints: [Option<&'static str>; septa_kernel::ipc::MAX_ENDPOINTS],
    /// The app holding each board device, with its handle for the device.
    pub device_owners: [Option<(usize, u32)>; board::DEVICES.len()],
    /// The app holding each GPIO pin.
    pub pin_owners: [Option<usize>; board::GPIO_PINS as usize],
    pub faults: FaultLog,
    /// The process the CPU returns to (or last returned to).
    pub current: Option<usize>,
    /// Whose tables are in TTBR0.
    installed: Option<usize>,
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

impl Kernel {
    const fn new() -> Kernel {
        Kernel {
            processes: [const { Process::EMPTY }; MAX_PROCESSES],
            run_queue: RunQueue::new(),
            ipc: Ipc::new(),
            endpoints: [None; septa_kernel::ipc::MAX_ENDPOINTS],
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

    pub fn start_clock(&mut self) {
        self.boot_counter = timer::now();
        self.last_tick = self.boot_counter;
        IRQS.enable(board::TIMER_IRQ);
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

    /// Takes process `pid` off the CPU in `state` (sleeping or blocked).
    pub fn block(&mut self, pid: usize, state: State) {
        let process = &mut self.processes[pid];
        process.state = state;
        self.run_queue.remove(pid, process.priority);
    }

    /// Wakes a blocked process with `result` in r0.
    pub fn wake(&mut self, pid: usize, result: Result<u32, Error>) {
        self.set_result(pid, result);
        self.make_ready(pid);
    }

    pub fn set_result(&mut self, pid: usize, result: Result<u32, Error>) {
        self.processes[pid].context.r[0] = match result {
            Ok(value) => value,
            Err(error) => error as i32 as u32,
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
        while let Some((irq, token)) = IRQS.acknowledge() {
            if irq == board::TIMER_IRQ {
                timer::arm();
                self.on_tick(running);
                slice_over = true;
            } else {
                self.deliver_device_interrupt(irq);
            }
            IRQS.end(token);
        }
        slice_over
    }

    /// A device interrupt goes to the app holding the device, as notification bit
    /// `1 << handle`; the line stays masked until the app acknowledges it.
    fn deliver_device_interrupt(&mut self, irq: u32) {
        IRQS.disable(irq);
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
                "septa: supervisor: healthy for {} ms on trial; confirming the update",
                supervisor::HEALTHY_AFTER_MS
            );
            crate::monitor::call(septa_abi::smc::CONFIRM_BOOT, [0; 3]);
        }
        let now = timer::now();
        // In whole ticks: the kernel's own work is not charged (see the end), so the time
        // since the last tick is a little short of a tick when nothing delayed it.
        let tick = timer::ms_to_ticks(timer::TICK_MS);
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
        self.last_tick = timer::now();
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
                kprintln!("septa: kernel: app {} exited with status {code}", process.name());
                (EndKind::Exit, 0, 0, *code)
            }
            Ending::Fault(fault) => {
                kprintln!("septa: kernel: app {} {fault}; app ended", process.name());
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
                IRQS.disable(irq);
            }
        }
        let process = &mut self.processes[pid];
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

        if policy.is_some_and(|policy| supervisor::should_restart(policy, &record)) {
            process.restarts += 1;
            let delay = supervisor::backoff_ms(process.restarts);
            kprintln!(
                "septa: supervisor: restarting {} in {delay} ms (restart {})",
                process.name(),
                process.restarts
            );
            process.state = State::Restarting { at: timer::now() + timer::ms_to_ticks(delay) };
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
        self.last_tick = timer::now();
        if self.on_trial && policy.is_some_and(|policy| supervisor::fails_trial(policy, &record)) {
            kprintln!("septa: supervisor: {} failed during the update's trial; rolling back", process.name());
            self.fail_trial(&record.name);
        }
        record
    }

    /// Tells the monitor the trial failed because of app `name`; the monitor records the
    /// rollback and resets (it returns only if no trial runs).
    fn fail_trial(&mut self, name: &[u8; 16]) {
        use septa_abi::monitor::REQUEST_OFFSET;
        shared_page()[REQUEST_OFFSET..REQUEST_OFFSET + 16].copy_from_slice(name);
        crate::monitor::call(septa_abi::smc::TRIAL_FAILED, [16, 0, 0]);
        self.on_trial = false;
    }

    /// Has the monitor sign the record with the device key and keep it in the report ring,
    /// and prints the signed report, for `septa report verify`.
    fn report(&self, record: FaultRecord) {
        use septa_abi::monitor::{REQUEST_MAX, REQUEST_OFFSET, RESPONSE_OFFSET};
        use septa_abi::report::{Batch, Event};
        // The monitor sets the sequence number and the boot count.
        let batch = Batch {
            first: 0,
            boot_count: 0,
            events: heapless::Vec::from_slice(&[Event::App(record)]).expect("one record fits"),
        };
        let shared = shared_page();
        let Ok(encoded) =
            postcard::to_slice(&batch, &mut shared[REQUEST_OFFSET..REQUEST_OFFSET + REQUEST_MAX])
        else {
            return;
        };
        let len = encoded.len() as u32;
        let [status, written, ..] = crate::monitor::call(septa_abi::smc::STORE_REPORT, [len, 0, 0]);
        if status != septa_abi::monitor::OK {
            kprintln!("septa: supervisor: the monitor did not sign the report (status {status})");
            return;
        }
        let signed = &shared[RESPONSE_OFFSET..RESPONSE_OFFSET + (written as usize).min(2048)];
        kprintln!("septa: supervisor: signed report {}", septa_syscalls::Hex(signed));
    }

    /// Starts an ended app again from its package, with the same capabilities.
    fn restart(&mut self, pid: usize) {
        let process = &mut self.processes[pid];
        let result =
            slot_package(process.package_offset).and_then(|package| process::spawn(process, &package));
        match result {
            Ok(()) => {
                self.ipc.server_restarted(pid as u8);
                self.make_ready(pid);
            }
            Err(error) => {
                kprintln!("septa: supervisor: {} could not be restarted: {error}", process.name());
                process.state = State::Ended;
            }
        }
    }

    /// Chooses the process to run next and installs its address space; `None` means idle.
    /// With `keep_current`, the current process continues unless it blocked or something
    /// more urgent is ready; otherwise its turn is over and an equal-priority process gets
    /// the CPU.
    pub fn schedule(&mut self, keep_current: bool) -> Option<*const Context> {
        if let (true, Some(pid)) = (keep_current, self.current) {
            // The common case after a syscall: the caller goes on, its tables installed.
            let process = &self.processes[pid];
            if matches!(process.state, State::Ready) && self.run_queue.may_continue(process.priority) {
                return Some(&process.context);
            }
        }
        let next = self.run_queue.pick()?;
        if self.installed != Some(next) {
            mmu::switch_address_space(self.processes[next].tables_phys(), asid(next));
            self.installed = Some(next);
        }
        self.current = Some(next);
        Some(&self.processes[next].context)
    }
}

/// Slot A as the kernel sees it, through its read-only flash window.
/// The slot this boot runs, as the monitor reported it at boot (0 = A, 1 = B).
pub static BOOTED_SLOT: AtomicUsize = AtomicUsize::new(0);

/// The image slot this boot runs.
pub fn slot() -> Result<Slot<'static>, septa_abi::slot::Error> {
    let region = board::SLOTS[BOOTED_SLOT.load(Ordering::Relaxed) % board::SLOTS.len()];
    let window = mmu::device_va(region.base);
    // SAFETY: the slot lies in flash 1, which `mmu::enable` mapped read-only at `window` for
    // the kernel's lifetime; the monitor writes only the other slot, staging, storage and
    // reports there, and returns the flash to read mode before the kernel runs again.
    let flash = unsafe { core::slice::from_raw_parts(window as *const u8, region.size) };
    Slot::parse(flash)
}

/// The non-secure page monitor requests travel through.
pub fn shared_page() -> &'static mut [u8] {
    // SAFETY: MONITOR_SHARED is the non-secure page reserved for monitor requests (out of
    // the frame allocator), one-to-one mapped in the kernel and used by one request at a
    // time: the kernel is not reentrant and drops each borrow before the next request.
    unsafe {
        core::slice::from_raw_parts_mut(board::MONITOR_SHARED.base as *mut u8, board::MONITOR_SHARED.size)
    }
}

/// The package at `offset` in the booted slot.
fn slot_package(offset: usize) -> Result<Package<'static>, process::SpawnError> {
    let slot = slot().map_err(|_| process::SpawnError::PackageMissing)?;
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
fn asid(pid: usize) -> u8 {
    pid as u8 + 1
}
