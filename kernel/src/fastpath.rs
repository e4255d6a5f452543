//! The IPC fast path: the two syscalls of every client–server exchange, when nothing in
//! them needs a check.
//!
//! A `call` to a server already waiting in `recv`, and a `reply_recv` to a caller waiting
//! for it while no other call is queued, are the round trip of every driver and service.
//! Here they are decided from the saved registers alone when the message needs no check: at
//! most 16 bytes go from one saved context to the other, and a longer one sent again from
//! where the process sent its last goes between the physical pieces its claim and the
//! receiver's buffer located when they were named (`process::Claim`). The partner runs next
//! when it is what [`RunQueue::pick`] would choose — nothing queued is as urgent — and then
//! the run queue is not touched at all (the running process is in no queue); no page
//! table, heap or queue is walked and no generic dispatch runs. Anything else — a
//! buffer not seen before, nobody waiting, any error — leaves every bit of state as it was
//! and the general path (`Kernel::syscall`) takes the call. The result is the same either
//! way: the model test below runs random sequences both ways and compares the whole kernel
//! after every step.
//!
//! [`RunQueue::pick`]: crate::sched::RunQueue::pick

use crate::cap::{Cap, Kind};
use crate::machine::{Context, Machine};
use crate::process::{Claim, State};
use crate::syscall::needs_no_check;
use crate::system::Kernel;
use septa_syscalls::{REGISTER_MESSAGE, Syscall, split_lengths};

impl<M: Machine> Kernel<M> {
    /// Carries out the syscall in `pid`'s saved registers if it is a fast `call` or
    /// `reply_recv`, and returns the context to resume (the partner's, its tables
    /// installed). `None`: nothing changed, the general path handles the call.
    pub fn fast_ipc(&mut self, pid: usize) -> Option<*const Context> {
        let number = self.processes[pid].context.r[7];
        let partner = if number == Syscall::Call as u32 {
            self.fast_call(pid)?
        } else if number == Syscall::ReplyRecv as u32 {
            self.fast_reply_recv(pid)?
        } else {
            return None;
        };
        Some(self.run_partner(partner))
    }

    /// `call` + delivery to the waiting server + its wake-up, as `Kernel::call` does them.
    fn fast_call(&mut self, pid: usize) -> Option<usize> {
        let caller = &self.processes[pid];
        let r = &caller.context.r;
        let (len, room) = split_lengths(r[1]);
        if !needs_no_check(r[8], room, caller.reply_buffer) || !needs_no_check(r[2], len, caller.message) {
            return None;
        }
        let Ok(Cap::Call { endpoint }) = caller.caps.get(r[0], Kind::Call) else {
            return None;
        };
        let server = self.ipc.receiving(endpoint).filter(|&server| server as usize != pid)? as usize;

        // From here on the caller's registers are read where they are used (they do not
        // change during the syscall) rather than carried across its steps.
        self.ipc.hand_over(pid as u8, server as u8);
        let caller = &mut self.processes[pid];
        caller.syscalls = caller.syscalls.wrapping_add(1);
        // What needs no check keeps its claim: the same message or buffer as last time.
        if len as usize <= REGISTER_MESSAGE {
            caller.message = Claim::unlocated(caller.context.r[2], len);
        }
        if room as usize <= REGISTER_MESSAGE {
            caller.reply_buffer = Claim::unlocated(caller.context.r[8], room);
        }
        self.block(pid, State::Blocked);
        if len as usize <= REGISTER_MESSAGE {
            let room_there = self.processes[server].receive_buffer.len;
            self.put_message(server, self.words_sent_by(pid), len.min(room_there));
            self.badge_and_priority(pid, server);
            self.wake_for_hand_over(server, Ok(len));
        } else {
            self.deliver_from_memory(pid, server);
        }
        Some(server)
    }

    /// The rest of a fast `call` whose message is in memory: between the pieces the two
    /// claims located when they were named. Out of line, so that the register case keeps
    /// its registers.
    #[inline(never)]
    fn deliver_from_memory(&mut self, caller: usize, server: usize) {
        let delivered = self.deliver(caller, server);
        self.wake_for_hand_over(server, delivered);
    }

    /// `reply` to the waiting caller + `recv` that finds nothing queued, as
    /// `Kernel::reply_recv` does them.
    fn fast_reply_recv(&mut self, pid: usize) -> Option<usize> {
        let server = &self.processes[pid];
        let r = &server.context.r;
        let (len, room) = split_lengths(r[1]);
        if !needs_no_check(r[8], room, server.receive_buffer) || !needs_no_check(r[2], len, server.message) {
            return None;
        }
        let Ok(Cap::Serve { endpoint }) = server.caps.get(r[0], Kind::Serve) else {
            return None;
        };
        let caller = self.ipc.awaiting_reply_from(pid as u8)? as usize;
        if self.ipc.has_callers(endpoint) {
            return None;
        }
        let base = server.base_priority();

        // Registers read where they are used, as in `fast_call`.
        let server = &mut self.processes[pid];
        server.syscalls = server.syscalls.wrapping_add(1);
        if room as usize <= REGISTER_MESSAGE {
            // Else the same buffer as last time, whose claim stays.
            server.receive_buffer = Claim::unlocated(server.context.r[8], room);
        }
        self.ipc.answered(caller as u8, pid as u8);
        self.set_priority(pid, base);
        if len as usize <= REGISTER_MESSAGE {
            let room_there = self.processes[caller].reply_buffer.len;
            self.put_message(caller, self.words_sent_by(pid), len.min(room_there));
            self.wake_for_hand_over(caller, Ok(len));
        } else {
            self.reply_from_memory(pid, caller);
        }
        self.ipc.wait_for_call(pid as u8, endpoint);
        self.block(pid, State::Blocked);
        Some(caller)
    }

    /// The reply part of a fast `reply_recv` whose message is in memory: the message the
    /// server sent last (its claim), into the caller's reply buffer. Out of line, as above.
    #[inline(never)]
    fn reply_from_memory(&mut self, server: usize, caller: usize) {
        let (message, target) = (self.processes[server].message, self.processes[caller].reply_buffer);
        let result = self.transfer(server, message, caller, target).map(|()| message.len);
        self.wake_for_hand_over(caller, result);
    }

    /// Runs `partner` (woken, not queued) next: straight away when it is what the scheduler
    /// would pick — nothing queued is as urgent — with the run queue untouched, else through
    /// the scheduler (which then decides exactly as after the general path).
    fn run_partner(&mut self, partner: usize) -> *const Context {
        let priority = self.processes[partner].priority;
        if self.run_queue.hand_over(partner, priority) {
            return self.install(partner);
        }
        self.reschedule(partner, priority)
    }

    /// The scheduler's choice after a hand-over the partner does not win at once (rare:
    /// kept out of the fast path's code): the partner queued like any woken process.
    #[cold]
    #[inline(never)]
    fn reschedule(&mut self, partner: usize, priority: u8) -> *const Context {
        self.run_queue.make_ready(partner, priority);
        self.schedule(false).expect("the partner is ready")
    }
}

#[cfg(test)]
mod tests {
    use crate::machine::Context;
    use crate::process::State;
    use crate::sim::{self, DATA, STACK, SimMachine, TEXT};
    use crate::syscall::After;
    use crate::system::{Ending, Kernel};
    use crate::tests::{Rng, calling, kernel_state, load, serving};
    use alloc::format;
    use septa_syscalls::{Syscall, lengths};

    /// One syscall of `pid` as the trap code makes it, with or without the fast path;
    /// returns the process that runs next.
    fn trap(kernel: &mut Kernel<SimMachine>, pid: usize, fast: bool) -> (Option<usize>, bool) {
        kernel.put_on_cpu(pid);
        let taken = if fast { kernel.fast_ipc(pid) } else { None };
        let next = match taken {
            Some(next) => Some(next),
            None if matches!(kernel.syscall(pid), After::Continue) => {
                // The trap code resumes the caller it knows, without asking who is current.
                assert_eq!(kernel.current, Some(pid), "the caller went on but is not current");
                kernel.may_keep(pid).or_else(|| kernel.schedule(false))
            }
            None => kernel.schedule(false),
        };
        let pid_of = |context: *const Context| {
            kernel.processes.iter().position(|p| core::ptr::eq(&p.context, context)).expect("a process's")
        };
        (next.map(pid_of), taken.is_some())
    }

    /// Everything but the frames' contents (compared after every fast step that copied
    /// through memory, and at the end of each sequence).
    fn state(kernel: &Kernel<SimMachine>) -> alloc::string::String {
        let syscalls: alloc::vec::Vec<u32> = kernel.processes.iter().map(|p| p.syscalls).collect();
        let (current, installed) = (kernel.current, kernel.installed);
        format!(
            "{}current {current:?} installed {installed:?} syscalls {syscalls:?}",
            kernel_state(kernel, usize::MAX)
        )
    }

    fn frames(kernel: &Kernel<SimMachine>) -> &[u8] {
        kernel.machine.ram(sim::FRAMES_BASE, sim::FRAME_COUNT * 4096)
    }

    #[test]
    fn the_fast_path_decides_exactly_as_the_general_path_on_random_sequences() {
        let (mut steps, mut fast_steps, mut fast_in_memory) = (0, 0, 0);
        for seed in 1..60u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            // Two servers; clients of both at equal and different priorities (so the
            // partner is sometimes not alone at the top); priorities vary with the seed.
            let mut apps = [
                serving("s0", "s0"),
                serving("s1", "s1"),
                calling("c0", "s0"),
                calling("c1", "s0"),
                calling("c2", "s1"),
            ];
            for (i, app) in apps.iter_mut().enumerate() {
                app.priority = 1 + rng.below(4) as u8;
                if i >= 2 {
                    app.call.push(if i == 4 { "s0" } else { "s1" }).unwrap();
                }
            }
            let mut fast = sim::booted(&apps);
            let mut general = sim::booted(&apps);
            assert_eq!(state(&fast), state(&general));
            for step in 0..400 {
                let pid = rng.below(5) as usize;
                if fast.processes[pid].state != State::Ready {
                    continue;
                }
                let is_server = pid < 2;
                // Mostly each app's own habit (a server loop names the same buffer every
                // time), sometimes anything.
                let mut pick = |choices: &[u32], habit: usize| {
                    let i = if rng.below(4) == 0 { rng.below(choices.len() as u32) as usize } else { habit };
                    choices[i % choices.len()]
                };
                let len = pick(&[0, 3, 16, 17, 40], pid) as usize;
                let room = pick(&[16, 64, 5, 0, 17], pid + seed as usize) as usize;
                let buffer = pick(&[STACK + 64, STACK + 128, TEXT], 0);
                let words =
                    [rng.below(u32::MAX), rng.below(u32::MAX), rng.below(u32::MAX), rng.below(u32::MAX)];
                let message = if len > 16 {
                    [[STACK, DATA, TEXT + 0x10_0000][rng.below(3) as usize], 0, 0, 0]
                } else {
                    words
                };
                let [a, b, c, d] = message;
                let handle = [0, 0, 0, 0, 0, 1, 7][rng.below(7) as usize];
                // A server loop mostly: recv when it owes no reply, else reply_recv.
                let owes = fast.ipc.awaiting_reply_from(pid as u8).is_some();
                let (number, args) = match (rng.below(10), is_server) {
                    (0..=5, false) => (Syscall::Call, [handle, lengths(len, room), a, b, c, d, buffer]),
                    (0..=5, true) if !owes && rng.below(4) != 0 => {
                        (Syscall::Recv, [handle, lengths(0, room), 0, 0, 0, 0, buffer])
                    }
                    (0..=5, true) => (Syscall::ReplyRecv, [handle, lengths(len, room), a, b, c, d, buffer]),
                    (6, true) => (Syscall::Reply, [0, lengths(len, 0), a, b, c, d, 0]),
                    (6 | 7, _) => (Syscall::Yield, [0; 7]),
                    (8, _) => (Syscall::Notify, [handle, 1, 0, 0, 0, 0, 0]),
                    _ => {
                        if rng.below(20) == 0 {
                            fast.end(pid, Ending::Exit(1));
                            general.end(pid, Ending::Exit(1));
                            assert_eq!(state(&fast), state(&general), "seed {seed} step {step}: exit");
                        }
                        continue;
                    }
                };
                load(&mut fast, pid, number as u32, args);
                load(&mut general, pid, number as u32, args);
                let (next_fast, taken) = trap(&mut fast, pid, true);
                let (next_general, _) = trap(&mut general, pid, false);
                let what = format!("seed {seed} step {step}: pid {pid} {number:?} {args:x?}");
                assert_eq!(next_fast, next_general, "{what}: another process runs next");
                assert_eq!(state(&fast), state(&general), "{what}: the kernels differ");
                steps += 1;
                fast_steps += taken as u32;
                if taken && len > 16 && matches!(number, Syscall::Call | Syscall::ReplyRecv) {
                    fast_in_memory += 1;
                    assert!(frames(&fast) == frames(&general), "{what}: the frames' contents differ");
                }
            }
            assert!(frames(&fast) == frames(&general), "seed {seed}: the frames' contents differ");
        }
        // The comparison means something only if both paths were taken often.
        assert!(fast_steps * 10 > steps, "fast path taken {fast_steps} times in {steps} steps");
        assert!(fast_steps * 2 < steps, "general path taken too rarely: {fast_steps} of {steps}");
        assert!(
            fast_in_memory * 20 > fast_steps,
            "messages in memory took the fast path {fast_in_memory} times"
        );
    }
}
