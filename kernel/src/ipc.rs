//! The IPC state machine: who waits for whom on which endpoint.
//!
//! Synchronous endpoints, one server each. A call either meets a server already waiting in
//! `recv` (the message is handed over at once) or queues on the endpoint; the server's
//! `recv` takes the most urgent queued caller. The caller then waits for the server's
//! `reply`. Notifications are bit sets a process waits on with a mask. When a process dies,
//! [`Ipc::process_died`] says whom to wake with `EPIPE`: its queued callers and anyone
//! waiting for its reply — nobody stays blocked on a dead process.
//!
//! This module only decides; the kernel copies messages and moves processes between the
//! run queue and blocked. Everything is fixed-size: no allocation on any IPC path.

use septa_syscalls::Error;

/// Processes and endpoints are numbered below these.
pub use septa_abi::app::MAX_PROCESSES;
pub const MAX_ENDPOINTS: usize = 16;

/// What a process is doing, as far as IPC goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpcState {
    Idle,
    /// Queued on an endpoint, message not yet received.
    Calling {
        endpoint: u8,
    },
    /// Message received by `server`; waiting for its reply.
    AwaitingReply {
        server: u8,
    },
    /// A server waiting in `recv`.
    Receiving {
        endpoint: u8,
    },
    /// Waiting for notification bits in `mask`.
    Waiting {
        mask: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Endpoint {
    server: Option<u8>,
    /// Whether the server is alive (it may be waiting for a restart).
    open: bool,
    /// Queued callers, by process number.
    queue: u32,
}

/// What happened to a `call`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The server was waiting: the message goes to it now, and it runs.
    Delivered { server: u8 },
    /// The caller waits in the endpoint's queue.
    Queued,
}

/// What happened to a `recv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvOutcome {
    /// A queued caller's message is taken now.
    Received { caller: u8 },
    /// The server waits for a caller.
    Blocked,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipc {
    endpoints: [Endpoint; MAX_ENDPOINTS],
    state: [IpcState; MAX_PROCESSES],
    /// The caller each server owes a reply.
    serving: [Option<u8>; MAX_PROCESSES],
    pending: [u32; MAX_PROCESSES],
}

impl Default for Ipc {
    fn default() -> Self {
        Self::new()
    }
}

impl Ipc {
    pub const fn new() -> Ipc {
        Ipc {
            endpoints: [Endpoint { server: None, open: false, queue: 0 }; MAX_ENDPOINTS],
            state: [IpcState::Idle; MAX_PROCESSES],
            serving: [None; MAX_PROCESSES],
            pending: [0; MAX_PROCESSES],
        }
    }

    pub fn state(&self, pid: u8) -> IpcState {
        self.state[pid as usize]
    }

    /// Makes `server` the server of `endpoint` (at boot) and opens it.
    pub fn serve(&mut self, endpoint: u8, server: u8) {
        self.endpoints[endpoint as usize] = Endpoint { server: Some(server), open: true, queue: 0 };
    }

    /// Reopens the endpoints of a restarted server.
    pub fn server_restarted(&mut self, server: u8) {
        for endpoint in self.endpoints.iter_mut().filter(|e| e.server == Some(server)) {
            endpoint.open = true;
        }
    }

    /// The server of `endpoint`, if it is alive.
    #[inline]
    pub fn server_of(&self, endpoint: u8) -> Option<u8> {
        let e = &self.endpoints[endpoint as usize];
        e.server.filter(|_| e.open)
    }

    /// The server of `endpoint` if it is waiting in `recv` on it.
    #[inline]
    pub fn receiving(&self, endpoint: u8) -> Option<u8> {
        let server = self.server_of(endpoint)?;
        (self.state[server as usize] == IpcState::Receiving { endpoint }).then_some(server)
    }

    /// The caller `server` owes a reply, if that caller is still waiting for it.
    #[inline]
    pub fn awaiting_reply_from(&self, server: u8) -> Option<u8> {
        let caller = self.serving[server as usize]?;
        (self.state[caller as usize] == IpcState::AwaitingReply { server }).then_some(caller)
    }

    /// Whether calls are queued on `endpoint`.
    #[inline]
    pub fn has_callers(&self, endpoint: u8) -> bool {
        self.endpoints[endpoint as usize].queue != 0
    }

    pub fn call(&mut self, caller: u8, endpoint: u8) -> Result<CallOutcome, Error> {
        let server = self.server_of(endpoint).ok_or(Error::Pipe)?;
        if server == caller {
            return Err(Error::Invalid);
        }
        if self.state[server as usize] == (IpcState::Receiving { endpoint }) {
            self.hand_over(caller, server);
            return Ok(CallOutcome::Delivered { server });
        }
        self.state[caller as usize] = IpcState::Calling { endpoint };
        self.endpoints[endpoint as usize].queue |= 1 << caller;
        Ok(CallOutcome::Queued)
    }

    /// `urgency(pid)` orders queued callers: the lowest value is received first, ties by
    /// process number.
    pub fn recv(
        &mut self,
        server: u8,
        endpoint: u8,
        urgency: impl Fn(u8) -> u8,
    ) -> Result<RecvOutcome, Error> {
        if self.serving[server as usize].is_some() {
            return Err(Error::Busy);
        }
        let queue = self.endpoints[endpoint as usize].queue;
        let next = members(queue).min_by_key(|&p| urgency(p));
        match next {
            Some(caller) => {
                self.endpoints[endpoint as usize].queue &= !(1 << caller);
                self.pair(server, caller);
                Ok(RecvOutcome::Received { caller })
            }
            None => {
                self.wait_for_call(server, endpoint);
                Ok(RecvOutcome::Blocked)
            }
        }
    }

    /// A call meets its server waiting in `recv` ([`Ipc::receiving`]): the server has the
    /// message, the caller waits for the reply.
    #[inline]
    pub fn hand_over(&mut self, caller: u8, server: u8) {
        self.state[server as usize] = IpcState::Idle;
        self.pair(server, caller);
    }

    #[inline]
    fn pair(&mut self, server: u8, caller: u8) {
        self.state[caller as usize] = IpcState::AwaitingReply { server };
        self.serving[server as usize] = Some(caller);
    }

    /// `server`, owing no reply, waits in `recv` on `endpoint`, where nobody is queued.
    #[inline]
    pub fn wait_for_call(&mut self, server: u8, endpoint: u8) {
        self.state[server as usize] = IpcState::Receiving { endpoint };
    }

    /// The caller a reply from `server` goes to. `EINVAL` if the server owes no reply,
    /// `EPIPE` if its caller died meanwhile.
    pub fn reply(&mut self, server: u8) -> Result<u8, Error> {
        let caller = self.serving[server as usize].take().ok_or(Error::Invalid)?;
        if self.state[caller as usize] != (IpcState::AwaitingReply { server }) {
            return Err(Error::Pipe);
        }
        self.answered(caller, server);
        Ok(caller)
    }

    /// `server` answers `caller`, which waits for it ([`Ipc::awaiting_reply_from`]).
    #[inline]
    pub fn answered(&mut self, caller: u8, server: u8) {
        self.serving[server as usize] = None;
        self.state[caller as usize] = IpcState::Idle;
    }

    /// Adds `bits` to `target`'s notifications. If it was waiting for any of them, returns
    /// the bits it wakes with (and clears them).
    pub fn notify(&mut self, target: u8, bits: u32) -> Option<u32> {
        self.pending[target as usize] |= bits;
        match self.state[target as usize] {
            IpcState::Waiting { mask } => {
                let woken = self.take(target, mask)?;
                self.state[target as usize] = IpcState::Idle;
                Some(woken)
            }
            _ => None,
        }
    }

    /// Takes pending bits in `mask` now, or starts waiting for them (`None`).
    pub fn wait(&mut self, pid: u8, mask: u32) -> Option<u32> {
        let taken = self.take(pid, mask);
        if taken.is_none() {
            self.state[pid as usize] = IpcState::Waiting { mask };
        }
        taken
    }

    /// Ends `pid`'s wait for notifications (its timeout passed); whether it was waiting.
    pub fn cancel_wait(&mut self, pid: u8) -> bool {
        let waiting = matches!(self.state[pid as usize], IpcState::Waiting { .. });
        if waiting {
            self.state[pid as usize] = IpcState::Idle;
        }
        waiting
    }

    fn take(&mut self, pid: u8, mask: u32) -> Option<u32> {
        let bits = self.pending[pid as usize] & mask;
        self.pending[pid as usize] &= !bits;
        (bits != 0).then_some(bits)
    }

    /// Forgets everything about `pid` and returns the processes that were blocked on it,
    /// as a bit set, to be woken with `EPIPE`.
    pub fn process_died(&mut self, pid: u8) -> u32 {
        let mut wake = 0;
        for endpoint in self.endpoints.iter_mut() {
            endpoint.queue &= !(1 << pid);
            if endpoint.server == Some(pid) {
                wake |= endpoint.queue;
                endpoint.queue = 0;
                endpoint.open = false;
            }
        }
        for (other, state) in self.state.iter_mut().enumerate() {
            if *state == (IpcState::AwaitingReply { server: pid }) {
                wake |= 1 << other;
            }
        }
        for other in members(wake) {
            self.state[other as usize] = IpcState::Idle;
        }
        self.state[pid as usize] = IpcState::Idle;
        self.serving[pid as usize] = None;
        self.pending[pid as usize] = 0;
        wake
    }
}

/// The process numbers in the bit set `set`, lowest first; only the set bits are visited.
pub fn members(mut set: u32) -> impl Iterator<Item = u8> {
    core::iter::from_fn(move || {
        let member = (set != 0).then(|| set.trailing_zeros() as u8)?;
        set &= set - 1;
        Some(member)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: u8 = 3;
    const SERVER: u8 = 1;

    fn ipc() -> Ipc {
        let mut ipc = Ipc::new();
        ipc.serve(EP, SERVER);
        ipc
    }

    fn equal(_: u8) -> u8 {
        0
    }

    #[test]
    fn members_lists_the_set_bits_in_order() {
        assert_eq!(members(0).count(), 0);
        let mut all = members(0x8000_0025);
        assert_eq!(
            [all.next(), all.next(), all.next(), all.next(), all.next()],
            [Some(0), Some(2), Some(5), Some(31), None]
        );
    }

    #[test]
    fn call_to_a_waiting_server_is_delivered_at_once() {
        let mut ipc = ipc();
        assert_eq!(ipc.recv(SERVER, EP, equal), Ok(RecvOutcome::Blocked));
        assert_eq!(ipc.call(5, EP), Ok(CallOutcome::Delivered { server: SERVER }));
        assert_eq!(ipc.state(5), IpcState::AwaitingReply { server: SERVER });
        assert_eq!(ipc.state(SERVER), IpcState::Idle);
        assert_eq!(ipc.reply(SERVER), Ok(5));
        assert_eq!(ipc.state(5), IpcState::Idle);
    }

    #[test]
    fn queued_callers_are_received_most_urgent_first() {
        let mut ipc = ipc();
        assert_eq!(ipc.call(4, EP), Ok(CallOutcome::Queued));
        assert_eq!(ipc.call(6, EP), Ok(CallOutcome::Queued));
        let urgency = |p: u8| if p == 6 { 1 } else { 5 };
        assert_eq!(ipc.recv(SERVER, EP, urgency), Ok(RecvOutcome::Received { caller: 6 }));
        assert_eq!(ipc.recv(SERVER, EP, urgency), Err(Error::Busy), "must reply first");
        assert_eq!(ipc.reply(SERVER), Ok(6));
        assert_eq!(ipc.recv(SERVER, EP, urgency), Ok(RecvOutcome::Received { caller: 4 }));
    }

    #[test]
    fn reply_without_a_call_is_invalid() {
        let mut ipc = ipc();
        assert_eq!(ipc.reply(SERVER), Err(Error::Invalid));
    }

    #[test]
    fn calling_a_dead_or_unserved_endpoint_is_a_broken_pipe() {
        let mut ipc = ipc();
        assert_eq!(ipc.call(5, 9), Err(Error::Pipe));
        ipc.process_died(SERVER);
        assert_eq!(ipc.call(5, EP), Err(Error::Pipe));
        ipc.server_restarted(SERVER);
        assert_eq!(ipc.call(5, EP), Ok(CallOutcome::Queued));
    }

    #[test]
    fn a_dying_server_wakes_its_queued_and_served_callers() {
        let mut ipc = ipc();
        ipc.call(4, EP).unwrap();
        ipc.call(6, EP).unwrap();
        ipc.recv(SERVER, EP, equal).unwrap(); // takes 4
        assert_eq!(ipc.process_died(SERVER), (1 << 4) | (1 << 6));
        assert_eq!(ipc.state(4), IpcState::Idle);
        assert_eq!(ipc.state(6), IpcState::Idle);
    }

    #[test]
    fn a_dying_caller_leaves_the_queue_and_its_reply_fails() {
        let mut ipc = ipc();
        ipc.call(4, EP).unwrap();
        ipc.call(6, EP).unwrap();
        assert_eq!(ipc.process_died(6), 0);
        assert_eq!(ipc.recv(SERVER, EP, equal), Ok(RecvOutcome::Received { caller: 4 }));
        ipc.process_died(4);
        assert_eq!(ipc.reply(SERVER), Err(Error::Pipe));
        assert_eq!(ipc.recv(SERVER, EP, equal), Ok(RecvOutcome::Blocked));
    }

    #[test]
    fn calling_yourself_is_invalid() {
        let mut ipc = ipc();
        assert_eq!(ipc.call(SERVER, EP), Err(Error::Invalid));
    }

    #[test]
    fn notifications_wake_only_on_their_mask() {
        let mut ipc = ipc();
        assert_eq!(ipc.wait(2, 0b0110), None);
        assert_eq!(ipc.notify(2, 0b1000), None, "bit outside the mask stays pending");
        assert_eq!(ipc.notify(2, 0b0010), Some(0b0010));
        assert_eq!(ipc.wait(2, 0b1000), Some(0b1000), "pending bit taken at once");
        assert_eq!(ipc.wait(2, 0b1000), None);
    }

    #[test]
    fn a_wait_that_timed_out_is_no_longer_woken() {
        let mut ipc = ipc();
        assert_eq!(ipc.wait(2, 0b0010), None);
        assert!(ipc.cancel_wait(2));
        assert_eq!(ipc.notify(2, 0b0010), None, "kept pending for the next wait");
        assert!(!ipc.cancel_wait(2), "not waiting any more");
        assert_eq!(ipc.wait(2, 0b0010), Some(0b0010));
        ipc.call(4, EP).unwrap();
        assert!(!ipc.cancel_wait(4), "a caller is not a waiter");
    }
}
