//! The kernel's logic run whole on the simulated machine: boot-time granting, syscalls with
//! every kind of bad argument, and random sequences of IPC, exits and faults checked against
//! the kernel's invariants.

extern crate std;

use crate::boot::{Board, Refusal, plan};
use crate::cap::{Cap, Kind};
use crate::ipc::IpcState;
use crate::machine::Machine;
use crate::process::State;
use crate::sim::{self, DATA, STACK, SimMachine, TEXT, manifest};
use crate::system::{Ending, Kernel};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use septa_abi::app::Manifest;
use septa_syscalls::{Error, Syscall, lengths};

pub(crate) fn serving(name: &'static str, endpoint: &'static str) -> Manifest<'static> {
    Manifest { serve: Some(endpoint), ..manifest(name) }
}

pub(crate) fn calling(name: &'static str, endpoint: &'static str) -> Manifest<'static> {
    let mut m = manifest(name);
    m.call.push(endpoint).unwrap();
    m
}

pub(crate) fn pid_of(kernel: &Kernel<SimMachine>, name: &str) -> usize {
    kernel.processes.iter().position(|p| p.name() == name).expect("app loaded")
}

/// The status (r0) and value (r1) a syscall left in `pid`'s registers.
fn result(kernel: &Kernel<SimMachine>, pid: usize) -> (u32, u32) {
    let r = &kernel.processes[pid].context.r;
    (r[0], r[1])
}

/// Puts syscall `number` in `pid`'s registers: r0–r5 and r8 from `args`, r7 the number.
pub(crate) fn load(kernel: &mut Kernel<SimMachine>, pid: usize, number: u32, args: [u32; 7]) {
    kernel.put_on_cpu(pid); // a process traps while it has the CPU
    let r = &mut kernel.processes[pid].context.r;
    r[..6].copy_from_slice(&args[..6]);
    (r[7], r[8]) = (number, args[6]);
}

/// Makes the syscall loaded in `pid`'s registers; returns its status and value.
fn run(kernel: &mut Kernel<SimMachine>, pid: usize) -> (u32, u32) {
    kernel.put_on_cpu(pid);
    kernel.syscall(pid);
    result(kernel, pid)
}

/// A syscall with arguments r0–r5 (r8 left as it is).
fn syscall(kernel: &mut Kernel<SimMachine>, pid: usize, call: Syscall, args: [u32; 6]) -> (u32, u32) {
    let r8 = kernel.processes[pid].context.r[8];
    let [a, b, c, d, e, f] = args;
    load(kernel, pid, call as u32, [a, b, c, d, e, f, r8]);
    run(kernel, pid)
}

/// An IPC syscall: r0 the handle, r1 the lengths, r2–r5 the message (words or an address),
/// r8 the buffer.
fn ipc(kernel: &mut Kernel<SimMachine>, pid: usize, call: Syscall, args: [u32; 7]) -> (u32, u32) {
    load(kernel, pid, call as u32, args);
    run(kernel, pid)
}

pub(crate) fn status(error: Error) -> u32 {
    error as i32 as u32
}

#[test]
fn a_refused_server_keeps_no_endpoint_device_or_pin_and_its_clients_are_refused_too() {
    // `gpio-owner` takes pin 1; `server` serves "svc", is granted the "rtc" device, then
    // fails on pin 1. Before the boot plan, "svc" stayed registered (so `client` queued on it
    // forever) and "rtc" stayed owned by the refused server.
    let mut gpio_owner = manifest("gpio-owner");
    gpio_owner.gpio.push(1).unwrap();
    let mut server = serving("server", "svc");
    server.devices.push("rtc").unwrap();
    server.gpio.push(1).unwrap();
    let client = calling("client", "svc");
    let kernel = sim::booted(&[gpio_owner, server, client]);
    let (server, client) = (pid_of(&kernel, "server"), pid_of(&kernel, "client"));
    assert_eq!(kernel.processes[server].state, State::Ended);
    assert_eq!(kernel.processes[client].state, State::Ended, "nobody may call an endpoint never served");
    assert!(kernel.endpoints.iter().all(Option::is_none), "the refused server's endpoint is gone");
    assert!(kernel.device_owners.iter().all(|owner| owner.is_none_or(|(pid, _)| pid != server)));
    assert!(kernel.pin_owners.iter().all(|owner| owner.is_none_or(|pid| pid != server)));
    let console = kernel.machine.console.borrow();
    assert!(console.contains("app server refused: its GPIO pin 1 belongs to another app"), "{console}");
    assert!(console.contains("app client refused: it calls \"svc\", an endpoint nobody serves"), "{console}");
    // Only the one started app holds frames.
    let gpio_owner = pid_of(&kernel, "gpio-owner");
    assert_eq!(kernel.processes[gpio_owner].state, State::Ready);
    assert_eq!(kernel.machine.frames_in_use, kernel.processes[gpio_owner].pages_used() as usize);
}

#[test]
fn the_plan_is_the_same_for_the_same_image_and_refuses_before_granting() {
    let mut a = serving("a", "svc");
    a.devices.push("rtc").unwrap();
    let mut b = serving("b", "svc");
    b.devices.push("rtc").unwrap();
    let c = calling("c", "svc");
    let apps = [Some(&a), Some(&b), Some(&c)];
    let decided = plan(&apps, &Board::THIS);
    let grant = decided[0].clone().unwrap().unwrap();
    assert_eq!(grant.endpoint, Some(0));
    assert_eq!(grant.devices.len(), 1);
    assert_eq!(decided[1], Some(Err(Refusal::EndpointTaken { endpoint: "svc", by: 0 })));
    assert!(
        matches!(&decided[2], Some(Ok(g)) if g.caps.get(0, crate::cap::Kind::Call) == Ok(Cap::Call { endpoint: 0 }))
    );
    assert!(decided[3..].iter().all(Option::is_none));
    assert_eq!(plan(&apps, &Board::THIS), decided);
}

#[test]
fn wait_reports_its_error_apart_from_its_bits() {
    let mut kernel = sim::booted(&[manifest("waiter"), calling("notifier", "svc"), serving("srv", "svc")]);
    let waiter = pid_of(&kernel, "waiter");
    // Before status + value, EINVAL came back in r0 where the bits go: 0xffff_ffff "bits".
    assert_eq!(syscall(&mut kernel, waiter, Syscall::Wait, [0; 6]), (status(Error::Invalid), 0));
    let (server, notifier) = (pid_of(&kernel, "srv"), pid_of(&kernel, "notifier"));
    assert_eq!(syscall(&mut kernel, notifier, Syscall::Notify, [0, 0xffff_ffff, 0, 0, 0, 0]), (0, 0));
    let woken = syscall(&mut kernel, server, Syscall::Wait, [0xffff_ffff, 0, 0, 0, 0, 0]);
    assert_eq!(woken, (0, 0xffff_ffff), "status 0 in r0, every bit in r1");
}

/// What must not change when a syscall is refused: every process's state, registers (but
/// the result), capabilities, priority and buffers; IPC; the run queue; endpoints and owners;
/// frames and their contents.
fn snapshot(kernel: &Kernel<SimMachine>, caller: usize) -> String {
    let ram = kernel.machine.ram(sim::FRAMES_BASE, sim::FRAME_COUNT * 4096);
    let hash = ram.iter().fold(0u64, |h, &b| h.wrapping_mul(0x100_0000_01b3) ^ b as u64);
    format!("{}{hash:x}", kernel_state(kernel, caller))
}

/// [`snapshot`] but the frames' contents.
pub(crate) fn kernel_state(kernel: &Kernel<SimMachine>, caller: usize) -> String {
    let mut out = String::new();
    for (pid, p) in kernel.processes.iter().enumerate() {
        let mut context = p.context.clone();
        if pid == caller {
            (context.r[0], context.r[1]) = (0, 0);
        }
        out += &format!(
            "{pid}: {:?} {:?} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {}\n",
            p.state,
            context,
            p.caps,
            p.priority,
            p.message,
            p.reply_buffer,
            p.receive_buffer,
            p.monitor_request,
            p.monitor_tail,
            p.monitor_response,
            p.pages_used()
        );
    }
    out += &format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n",
        kernel.ipc,
        kernel.run_queue(),
        kernel.endpoints,
        kernel.device_owners
    );
    out += &format!("{:?} {} {:?}\n", kernel.pin_owners, kernel.machine.frames_in_use, kernel.machine.gpio);
    out
}

#[test]
fn every_syscall_refuses_bad_handles_pointers_kinds_and_lengths_and_changes_nothing() {
    let mut app = calling("app", "svc");
    app.devices.push("rtc").unwrap();
    app.gpio.push(2).unwrap();
    app.monitor.push("random").unwrap();
    let mut kernel = sim::booted(&[app, serving("srv", "svc")]);
    let pid = pid_of(&kernel, "app");
    // The app's handles: 0 call "svc", 1 device "rtc", 2 gpio pin 2, 3 monitor "random".
    const KERNEL_ADDRESS: u32 = 0x4000_0000;
    const UNMAPPED: u32 = 0x0800_0000;
    const WRAPS: u32 = 0xffff_fff0;
    let straddles = STACK - 8; // the guard page below the stack is unmapped
    use Error::*;
    use Syscall::*;
    let cases: Vec<(Syscall, [u32; 7], Error)> = std::vec![
        (Log, [UNMAPPED, 16, 0, 0, 0, 0, 0], Fault),
        (Log, [KERNEL_ADDRESS, 16, 0, 0, 0, 0, 0], Fault),
        (Log, [WRAPS, 0x20, 0, 0, 0, 0, 0], Fault),
        (Log, [straddles, 16, 0, 0, 0, 0, 0], Fault),
        (Log, [DATA, 100_000, 0, 0, 0, 0, 0], Invalid),
        (Info, [TEXT, 0, 0, 0, 0, 0, 0], Fault),
        (Info, [UNMAPPED, 0, 0, 0, 0, 0, 0], Fault),
        (Lookup, [9, DATA, 3, 0, 0, 0, 0], Invalid),
        (Lookup, [0, UNMAPPED, 3, 0, 0, 0, 0], Fault),
        (Lookup, [0, DATA, 17, 0, 0, 0, 0], Invalid),
        (Lookup, [0, DATA, 3, 0, 0, 0, 0], Access), // zeroed data: "\0\0\0" names nothing
        (Call, [16, lengths(4, 4), 0, 0, 0, 0, DATA], Access),
        (Call, [0xffff_ffff, lengths(4, 4), 0, 0, 0, 0, DATA], Access),
        (Call, [1, lengths(4, 4), 0, 0, 0, 0, DATA], Access), // a device handle is the wrong kind
        (Call, [0, lengths(4096, 4), DATA, 0, 0, 0, DATA], Invalid),
        (Call, [0, lengths(17, 4), UNMAPPED, 0, 0, 0, DATA], Fault),
        (Call, [0, lengths(4, 17), 0, 0, 0, 0, TEXT], Fault), // the reply buffer is read-only
        (Call, [0, lengths(0x20, 4), WRAPS, 0, 0, 0, DATA], Fault),
        (Recv, [0, lengths(0, 4), 0, 0, 0, 0, DATA], Access), // a call handle cannot receive
        (Reply, [0, lengths(4, 0), 0, 0, 0, 0, 0], Pipe),     // no call to answer... checked below
        (ReplyRecv, [0, lengths(4, 4), 0, 0, 0, 0, DATA], Access),
        (Notify, [1, 1, 0, 0, 0, 0, 0], Access),
        (Notify, [99, 1, 0, 0, 0, 0, 0], Access),
        (Wait, [0, 0, 0, 0, 0, 0, 0], Invalid),
        (NotifyClient, [0, DATA, 1, 0, 0, 0, 0], Access),
        (MapDevice, [0, 0, 0, 0, 0, 0, 0], Access),
        (MapDevice, [2, 0, 0, 0, 0, 0, 0], Access),
        (IrqAck, [3, 0, 0, 0, 0, 0, 0], Access),
        (GpioSet, [2, 0, 0, 0, 0, 0, 0], Invalid),
        (GpioSet, [2, 1 << 3, 0, 0, 0, 0, 0], Access),
        (GpioSet, [1, 1 << 2, 0, 0, 0, 0, 0], Access),
        (MonitorCall, [0, 0, DATA, 4, DATA, 4, 0], Access),
        (MonitorCall, [3, 999, DATA, 4, DATA, 4, 0], Invalid),
        (MonitorCall, [3, 0, DATA, 4096, DATA, 4, 0], Invalid),
        (MonitorCall, [3, 0, UNMAPPED, 4, DATA, 4, 0], Fault),
        (MonitorCall, [3, 0, DATA, 4, TEXT, 4, 0], Fault),
        (MonitorCall, [3, 0, DATA, lengths(4, 64), DATA, 4, UNMAPPED], Fault), // the tail
        (MonitorCall, [3, 0, DATA, lengths(4, 64), DATA, 4, WRAPS], Fault),
        (MonitorCall, [3, 0, DATA, lengths(4, 957), DATA, 4, DATA], Invalid), // 961 in all
        (DmaPool, [DATA, 0, 0, 0, 0, 0, 0], Access),
    ];
    for (call, args, expected) in cases {
        load(&mut kernel, pid, call as u32, args);
        let before = snapshot(&kernel, pid);
        let got = run(&mut kernel, pid);
        let expected = match (call, expected) {
            // `reply` without a received call: the IPC state machine says so.
            (Reply, _) => got,
            _ => (status(expected), 0),
        };
        assert_eq!(got, expected, "{call:?} {args:x?}");
        assert_ne!(got.0, 0, "{call:?} {args:x?} must fail");
        assert_eq!(snapshot(&kernel, pid), before, "{call:?} {args:x?} changed the kernel's state");
    }
    load(&mut kernel, pid, 999, [0; 7]);
    let before = snapshot(&kernel, pid);
    assert_eq!(run(&mut kernel, pid), (status(NoSys), 0));
    assert_eq!(snapshot(&kernel, pid), before);
}

#[test]
fn messages_go_from_caller_to_waiting_server_and_the_reply_back() {
    use septa_syscalls::{bytes_of, message_words};
    let mut kernel = sim::booted(&[serving("srv", "svc"), calling("cli", "svc")]);
    let (server, client) = (pid_of(&kernel, "srv"), pid_of(&kernel, "cli"));
    let regs = |kernel: &Kernel<SimMachine>, pid: usize| {
        let r = &kernel.processes[pid].context.r;
        ([r[2], r[3], r[4], r[5]], [r[7], r[8], r[9], r[10]])
    };
    let server_buffer = kernel.processes[server].lookup(&kernel.machine, DATA).unwrap().phys;
    let client_stack = kernel.processes[client].lookup(&kernel.machine, STACK).unwrap().phys;

    // At most 16 bytes travel in registers: the server's buffer stays untouched.
    ipc(&mut kernel, server, Syscall::Recv, [0, lengths(0, 64), 0, 0, 0, 0, DATA]);
    assert_eq!(kernel.processes[server].state, State::Blocked);
    let [a, b, c, d] = message_words(b"ping");
    ipc(&mut kernel, client, Syscall::Call, [0, lengths(4, 8), a, b, c, d, STACK + 16]);
    assert_eq!(kernel.processes[client].state, State::Blocked);
    assert_eq!(result(&kernel, server), (0, 4));
    let (words, badge) = regs(&kernel, server);
    assert_eq!(words, message_words(b"ping"));
    assert_eq!(&bytes_of(badge)[..3], b"cli", "the badge is the caller's component id");
    assert_eq!(kernel.machine.ram(server_buffer, 64), [0; 64]);
    let [a, b, c, d] = message_words(b"pong!");
    assert_eq!(ipc(&mut kernel, server, Syscall::Reply, [0, lengths(5, 0), a, b, c, d, 0]), (0, 0));
    assert_eq!(result(&kernel, client), (0, 5));
    assert_eq!(regs(&kernel, client).0, message_words(b"pong!"));
    assert_eq!(kernel.processes[client].state, State::Ready);

    // Longer messages go memory to memory, once; a reply longer than the room is cut.
    let long: Vec<u8> = (0..40).collect();
    kernel.machine.write_phys(client_stack, &long);
    ipc(&mut kernel, server, Syscall::Recv, [0, lengths(0, 64), 0, 0, 0, 0, DATA]);
    ipc(&mut kernel, client, Syscall::Call, [0, lengths(40, 24), STACK, 0, 0, 0, STACK + 64]);
    assert_eq!(result(&kernel, server), (0, 40));
    assert_eq!(kernel.machine.ram(server_buffer, 40), &long[..]);
    kernel.machine.write_phys(server_buffer + 100, &[9; 30]);
    assert_eq!(ipc(&mut kernel, server, Syscall::Reply, [0, lengths(30, 0), DATA + 100, 0, 0, 0, 0]), (0, 0));
    assert_eq!(result(&kernel, client), (0, 30), "the whole length, though 24 fit");
    assert_eq!(kernel.machine.ram(client_stack + 64, 25), [[9; 24].as_slice(), &[0]].concat());

    // A message cut to a room of at most 16 bytes comes in registers, nothing past the room.
    ipc(&mut kernel, server, Syscall::Recv, [0, lengths(0, 5), 0, 0, 0, 0, DATA]);
    ipc(&mut kernel, client, Syscall::Call, [0, lengths(40, 0), STACK, 0, 0, 0, 0]);
    assert_eq!(result(&kernel, server), (0, 40));
    assert_eq!(regs(&kernel, server).0, message_words(&long[..5]));
    let [a, b, c, d] = message_words(b"0123456789abcdef");
    ipc(&mut kernel, server, Syscall::Reply, [0, lengths(12, 0), a, b, c, d, 0]);
    assert_eq!(result(&kernel, client), (0, 12));
    assert_eq!(regs(&kernel, client).0, [0; 4], "a room of 0 takes no byte");
}

#[test]
fn a_restarted_app_has_its_buffers_located_in_its_new_frames() {
    // A claim remembers where a buffer is in physical memory. An app that ends gives its
    // frames back, so its claims must go with them: else a copy to a buffer its new run
    // names again would land in a frame that now belongs to someone else.
    let restarting = Manifest { restart: septa_abi::app::Restart::Always, ..serving("srv", "svc") };
    let mut kernel = sim::booted(&[restarting, calling("cli", "svc")]);
    let (server, client) = (pid_of(&kernel, "srv"), pid_of(&kernel, "cli"));
    let client_stack = kernel.processes[client].lookup(&kernel.machine, STACK).unwrap().phys;
    let call = |kernel: &mut Kernel<SimMachine>, bytes: &[u8]| {
        kernel.machine.write_phys(client_stack, bytes);
        ipc(kernel, server, Syscall::Recv, [0, lengths(0, 64), 0, 0, 0, 0, DATA]);
        ipc(kernel, client, Syscall::Call, [0, lengths(bytes.len(), 0), STACK, 0, 0, 0, 0]);
        assert_eq!(result(kernel, server), (0, bytes.len() as u32));
    };
    call(&mut kernel, &[1; 40]);
    let old = kernel.processes[server].lookup(&kernel.machine, DATA).unwrap().phys;
    assert_eq!(kernel.machine.ram(old, 40), [1; 40]);

    kernel.end(server, Ending::Exit(1));
    // Whatever is free now goes to someone else, so the restart takes other frames.
    let mut taken = Vec::new();
    while kernel.machine.frames_in_use < sim::FRAME_COUNT - 40
        && let Some(frame) = kernel.machine.alloc_frames(1)
    {
        taken.push(frame);
    }
    tick(&mut kernel, 1000, None, false);
    assert_eq!(kernel.processes[server].state, State::Ready, "restarted");
    let new = kernel.processes[server].lookup(&kernel.machine, DATA).unwrap().phys;
    assert_ne!(new, old);
    assert_eq!(result(&kernel, client), (status(Error::Pipe), 0));

    call(&mut kernel, &[2; 40]);
    assert_eq!(kernel.machine.ram(new, 40), [2; 40], "the message is in the new run's buffer");
    assert!(taken.contains(&(old & !0xfff)), "the old buffer's frame went to someone else");
    assert_eq!(kernel.machine.ram(old, 40), [0; 40], "which got it zeroed and nothing since");
}

/// A small deterministic random source for the model test.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as u32
    }
}

/// Whether `pid` is a live process (it may run, or is blocked or asleep).
fn alive(kernel: &Kernel<SimMachine>, pid: u8) -> bool {
    let state = kernel.processes[pid as usize].state;
    matches!(state, State::Ready | State::Blocked | State::Sleeping { .. } | State::Throttled)
}

/// Checks the invariants the kernel promises at every step.
fn check_invariants(kernel: &Kernel<SimMachine>, caps_at_boot: &[crate::cap::CapTable], step: &str) {
    for (pid, p) in kernel.processes.iter().enumerate() {
        let queued = kernel.run_queue().is_ready(pid, p.priority);
        let runnable = p.state == State::Ready && kernel.current != Some(pid);
        assert_eq!(queued, runnable, "{step}: pid {pid} run queue vs state {:?}", p.state);
        assert_eq!(p.caps, caps_at_boot[pid], "{step}: pid {pid}'s capabilities changed");
        match kernel.ipc.state(pid as u8) {
            IpcState::Calling { endpoint } => {
                let server = kernel.ipc.server_of(endpoint);
                assert!(
                    server.is_some_and(|s| alive(kernel, s)),
                    "{step}: pid {pid} queued on a dead endpoint"
                );
                assert_eq!(p.state, State::Blocked);
            }
            IpcState::AwaitingReply { server } => {
                assert!(alive(kernel, server), "{step}: pid {pid} waits for the reply of a dead server");
                let owed = kernel.ipc.awaiting_reply_from(server);
                assert_eq!(
                    owed,
                    Some(pid as u8),
                    "{step}: pid {pid} waits for a reply server {server} does not owe"
                );
                assert_eq!(p.state, State::Blocked);
            }
            IpcState::Receiving { .. } | IpcState::Waiting { .. } => {
                assert!(matches!(p.state, State::Blocked | State::Sleeping { .. }), "{step}: pid {pid}");
            }
            IpcState::Idle => {
                assert_ne!(p.state, State::Blocked, "{step}: pid {pid} blocked on nothing: blocked forever");
            }
        }
        // Priority inheritance: a server owing a reply runs at least as urgently as its
        // caller (exactly the more urgent of the two); owing none, at its manifest's.
        if p.state != State::Free {
            let base = p.base_priority();
            match kernel.ipc.awaiting_reply_from(pid as u8) {
                Some(caller) => {
                    let lent = kernel.processes[caller as usize].priority;
                    assert_eq!(
                        p.priority,
                        base.min(lent),
                        "{step}: pid {pid} (base {base}) serves pid {caller} (priority {lent})"
                    );
                }
                None => {
                    assert_eq!(p.priority, base, "{step}: pid {pid} owes no reply but keeps a lent priority")
                }
            }
        }
        if matches!(p.state, State::Ended | State::Restarting { .. } | State::Free) {
            assert_eq!(p.pages_used(), 0, "{step}: an ended app holds frames");
        }
    }
    for endpoint in 0..crate::ipc::MAX_ENDPOINTS as u8 {
        if let Some(server) = kernel.ipc.server_of(endpoint) {
            assert!(
                alive(kernel, server),
                "{step}: endpoint {endpoint} open with its server pid {server} gone"
            );
        }
    }
    let held: usize = kernel.processes.iter().map(|p| p.pages_used() as usize).sum();
    assert_eq!(kernel.machine.frames_in_use, held, "{step}: frames not conserved");
}

/// The callers queued on `endpoint`.
fn queued_on(kernel: &Kernel<SimMachine>, endpoint: u8) -> Vec<usize> {
    let calling = |pid: &usize| kernel.ipc.state(*pid as u8) == IpcState::Calling { endpoint };
    (0..kernel.processes.len()).filter(calling).collect()
}

/// Lets `ms` pass and takes the timer tick, charged to `running`: sleepers wake, due
/// restarts happen, a process over its CPU budget is throttled. With `starved`, no frame is
/// free during the tick, so every restart due then fails and the app is ended for good.
fn tick(kernel: &mut Kernel<SimMachine>, ms: u64, running: Option<usize>, starved: bool) {
    let mut taken = Vec::new();
    while starved && let Some(frame) = kernel.machine.alloc_frames(1) {
        taken.push(frame);
    }
    kernel.machine.now += ms * sim::FREQUENCY / 1000;
    kernel.machine.pending_irqs.push(septa_targets::board::TIMER_IRQ);
    kernel.handle_interrupts(running);
    for frame in taken {
        kernel.machine.free_frames(frame, 1);
    }
}

/// What the model test saw happen, summed over its sequences: each must happen often for
/// the test to mean anything.
#[derive(Debug, Default)]
struct Seen {
    lent: usize,
    chosen_among_several: usize,
    restarted: usize,
    restart_failed: usize,
    ended_for_good: usize,
    refused_call: usize,
    throttled: usize,
}

#[test]
fn random_ipc_exit_and_fault_sequences_keep_the_kernels_promises() {
    use septa_abi::app::Restart;
    let mut seen = Seen::default();
    for seed in 1..50u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        // Two servers, four clients of both (two of the same priority, two with small CPU
        // budgets), and an app refused at boot (it calls a missing endpoint). The restart policies differ, so apps end
        // for good (`never`, a clean exit under `on-failure`, or a restart that finds no
        // memory) while others run.
        let mut clients =
            [calling("c0", "s0"), calling("c1", "s0"), calling("c2", "s1"), calling("c3", "s1")];
        let policies = [Restart::Always, Restart::Never, Restart::OnFailure, Restart::Never];
        for (i, client) in clients.iter_mut().enumerate() {
            client.call.push(if i >= 2 { "s0" } else { "s1" }).unwrap();
            client.priority = [2, 3, 5, 2][i];
            client.restart = policies[i];
            client.cpu_budget_ms = [100, 10, 100, 20][i];
        }
        let [c0, c1, c2, c3] = clients;
        let s0 = Manifest { restart: Restart::Always, ..serving("s0", "s0") };
        let s1 = Manifest { priority: 3, restart: Restart::OnFailure, ..serving("s1", "s1") };
        let apps = [s0, s1, c0, c1, c2, c3, calling("lost", "nowhere")];
        let count = apps.len();
        let mut kernel = sim::booted(&apps);
        let caps: Vec<_> = kernel.processes.iter().map(|p| p.caps.clone()).collect();
        check_invariants(&kernel, &caps, "boot");
        for step in 0..300 {
            let what = format!("seed {seed} step {step}");
            if rng.below(8) == 0 {
                let states: Vec<State> = kernel.processes.iter().map(|p| p.state).collect();
                let starved = rng.below(3) == 0;
                let running = rng.below(count as u32) as usize;
                let running = (kernel.processes[running].state == State::Ready).then_some(running);
                let ms = [5, 10, 20, 40, 150, 400][rng.below(6) as usize];
                tick(&mut kernel, ms, running, starved);
                for (before, p) in states.iter().zip(&kernel.processes) {
                    match (before, p.state) {
                        (State::Restarting { .. }, State::Ready) => seen.restarted += 1,
                        (State::Restarting { .. }, State::Ended) => seen.restart_failed += 1,
                        (State::Ready, State::Throttled) => seen.throttled += 1,
                        _ => {}
                    }
                }
                check_invariants(&kernel, &caps, &format!("{what}: tick (starved: {starved})"));
                continue;
            }
            let pid = rng.below(count as u32) as usize;
            let p = &kernel.processes[pid];
            if p.state != State::Ready {
                continue;
            }
            // Clients call on a third of the ops and servers take their time (ops 9–11 do
            // nothing for a server), so callers queue up behind one another.
            let op = rng.below(12);
            let len = rng.below(24) as usize;
            let what = format!("{what}: pid {pid} op {op}");
            let serves = p.caps.find(|c| matches!(c, Cap::Serve { .. })).map(|h| p.caps.get(h, Kind::Serve));
            let endpoint = match serves {
                Some(Ok(Cap::Serve { endpoint })) => Some(endpoint),
                _ => None,
            };
            let queued = endpoint.map(|e| queued_on(&kernel, e)).unwrap_or_default();
            match (op, endpoint) {
                (0..=3 | 9..=11, None) => {
                    let handle = rng.below(2);
                    let Ok(Cap::Call { endpoint }) = p.caps.get(handle, Kind::Call) else { unreachable!() };
                    let server = kernel.ipc.server_of(endpoint);
                    ipc(
                        &mut kernel,
                        pid,
                        Syscall::Call,
                        [handle, lengths(len, 32), STACK, 0, 0, 0, STACK + 64],
                    );
                    if server.is_none() {
                        // A dead or ended server: refused at once, nobody waits for it.
                        assert_eq!(kernel.processes[pid].state, State::Ready, "{what}");
                        assert_eq!(result(&kernel, pid), (status(Error::Pipe), 0), "{what}");
                        seen.refused_call += 1;
                    }
                }
                (0, Some(_)) => {
                    ipc(&mut kernel, pid, Syscall::Recv, [0, lengths(0, 32), 0, 0, 0, 0, STACK]);
                }
                (1..=3, Some(_)) => {
                    ipc(&mut kernel, pid, Syscall::Reply, [0, lengths(len, 0), STACK, 0, 0, 0, 0]);
                }
                (4, Some(_)) => {
                    let lengths = lengths(len, 32);
                    ipc(&mut kernel, pid, Syscall::ReplyRecv, [0, lengths, STACK, 0, 0, 0, STACK + 128]);
                }
                (5, _) => {
                    syscall(&mut kernel, pid, Syscall::Notify, [rng.below(3), 1 << rng.below(4), 0, 0, 0, 0]);
                }
                (6, _) => {
                    let timeout = [0, 0, 50, 300][rng.below(4) as usize];
                    syscall(&mut kernel, pid, Syscall::Wait, [rng.below(16), timeout, 0, 0, 0, 0]);
                }
                (7, _) => kernel.end(pid, Ending::Exit(rng.below(3) as i32)),
                (8, _) => {
                    let fault = crate::system::UserFault {
                        kind: septa_armv7::crash::ExceptionKind::DataAbort,
                        pc: TEXT,
                        faults: Default::default(),
                    };
                    kernel.end(pid, Ending::Fault(fault));
                }
                _ => continue,
            }
            if matches!(op, 7 | 8) && kernel.processes[pid].state == State::Ended {
                seen.ended_for_good += 1;
            }
            // A receive that took a queued caller took the most urgent, ties by pid.
            if let Some(caller) = kernel.ipc.awaiting_reply_from(pid as u8).map(usize::from)
                && queued.contains(&caller)
            {
                let urgency = |c: usize| (kernel.processes[c].priority, c);
                let first = queued.iter().copied().min_by_key(|&c| urgency(c));
                assert_eq!(Some(caller), first, "{what}: received {caller} of {queued:?}");
                seen.chosen_among_several += (queued.len() > 1) as usize;
            }
            if kernel.ipc.awaiting_reply_from(pid as u8).is_some()
                && kernel.processes[pid].priority < kernel.processes[pid].base_priority()
            {
                seen.lent += 1;
            }
            check_invariants(&kernel, &caps, &what);
        }
        // Every app ended: every frame is back.
        for pid in 0..count {
            if alive(&kernel, pid as u8) {
                kernel.end(pid, Ending::Exit(0));
            }
        }
        check_invariants(&kernel, &caps, "all ended");
        assert_eq!(kernel.machine.frames_in_use, 0, "seed {seed}: frames leaked");
        let _ = Machine::now(&kernel.machine);
    }
    let Seen {
        lent,
        chosen_among_several,
        restarted,
        restart_failed,
        ended_for_good,
        refused_call,
        throttled,
    } = seen;
    for (what, n) in [
        ("a server ran at a caller's lent priority", lent),
        ("a receive chose among several queued callers", chosen_among_several),
        ("an app was restarted", restarted),
        ("a restart failed", restart_failed),
        ("an app ended for good", ended_for_good),
        ("a call to a dead server was refused", refused_call),
        ("a process was throttled", throttled),
    ] {
        assert!(n >= 10, "{what}: only {n} times ({seen:?})");
    }
}

#[test]
fn a_monitor_call_puts_the_callers_id_and_quota_where_the_monitor_reads_them() {
    use septa_abi::monitor::{CALLER_OFFSET, QUOTA_OFFSET, REQUEST_OFFSET, Service};
    let mut app = manifest("vault");
    app.monitor.push("random").unwrap();
    app.monitor.push("storage").unwrap();
    app.storage_kib = 7;
    let mut kernel = sim::booted(&[app]);
    let pid = pid_of(&kernel, "vault");
    let data = kernel.processes[pid].lookup(&kernel.machine, DATA).unwrap().phys;
    kernel.machine.write_phys(data, b"want");
    let args = [0, Service::Random as u32, DATA, 4, DATA + 64, 16];
    assert_eq!(syscall(&mut kernel, pid, Syscall::MonitorCall, args), (0, 0));
    let request_at = REQUEST_OFFSET as u32;
    assert_eq!(
        kernel.machine.smcs.last(),
        Some(&(septa_abi::smc::SERVICE, [Service::Random as u32, 4, request_at]))
    );
    // The monitor reads the page at these offsets from its start (issue 19: it once indexed
    // the quota from the caller's offset, right only while that was 0).
    let component_id = kernel.processes[pid].component_id();
    let page = kernel.shared_page().unwrap();
    assert_eq!(page[CALLER_OFFSET..CALLER_OFFSET + 16], component_id, "the caller's id");
    assert_eq!(page[QUOTA_OFFSET..QUOTA_OFFSET + 4], (7u32 * 1024).to_le_bytes(), "the storage quota");
    assert_eq!(&page[REQUEST_OFFSET..REQUEST_OFFSET + 4], b"want", "the request");
}

#[test]
fn a_request_with_a_tail_reaches_the_monitor_as_one_encoding_its_tail_placed_as_in_the_app() {
    use septa_abi::monitor::{REQUEST_OFFSET, Service};
    let mut app = manifest("hasher");
    app.monitor.push("sha256").unwrap();
    let mut kernel = sim::booted(&[app]);
    let pid = pid_of(&kernel, "hasher");
    let data = kernel.processes[pid].lookup(&kernel.machine, DATA).unwrap().phys;
    let tail: alloc::vec::Vec<u8> = (0..200u32).map(|i| (i * 7 + 1) as u8).collect();
    kernel.machine.write_phys(data, &[1, 0xc8, 0x01]); // Sha256, 200 bytes (a varint)
    for misaligned in 0..4u32 {
        // The tail at each place within a word.
        let at = DATA + 0x801 + misaligned;
        kernel.machine.write_phys(data + at - DATA, &tail);
        let args = [0, Service::Sha256 as u32, DATA, lengths(3, 200), DATA + 64, 32];
        kernel.processes[pid].context.r[8] = at;
        assert_eq!(syscall(&mut kernel, pid, Syscall::MonitorCall, args), (0, 0));
        let &(_, [service, len, start]) = kernel.machine.smcs.last().unwrap();
        assert_eq!((service, len), (Service::Sha256 as u32, 203));
        let start = start as usize;
        assert!((REQUEST_OFFSET - 3..=REQUEST_OFFSET).contains(&start), "{start}");
        assert_eq!((start + 3) % 4, at as usize % 4, "the tail lies in the page as in the app");
        let page = kernel.shared_page().unwrap();
        assert_eq!(page[start..start + 3], [1, 0xc8, 0x01], "the head");
        assert_eq!(page[start + 3..start + 203], tail[..], "the tail, right after it");
        assert_eq!(kernel.processes[pid].monitor_tail.address, at, "the tail's claim kept");
    }
}
