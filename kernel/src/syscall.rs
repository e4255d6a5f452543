//! The syscalls: decoding the registers of an `svc #0` and carrying the call out.
//!
//! Arguments are untrusted. Every pointer is a claim checked with `mm::user` against the
//! caller's own page table before a byte moves; every handle is looked up in the caller's
//! capability table with the kind the call needs. A refused call returns its error status in
//! r0 and changes nothing else. Unknown numbers return `ENOSYS`. Calls that block (sleep,
//! call, recv, wait) get their result when they are woken. Every result is a status in r0
//! and a value in r1 ([`Kernel::set_result`]).

use crate::cap::{Cap, Kind};
use crate::ipc::{CallOutcome, RecvOutcome};
use crate::kprintln;
use crate::machine::Machine;
use crate::mm::user::{self, Access, Pieces, UserRange};
use crate::process::{Claim, State};
use crate::ratelimit;
use crate::system::{Ending, Kernel};
use septa_syscalls::{
    Error, Info, LOG_MAX, MESSAGE_MAX, NAME_MAX, REGISTER_MESSAGE, Syscall, keep_first, split_lengths,
    words_of,
};
use septa_targets::board;

/// What the trap code does after a syscall.
pub enum After {
    /// Return to the caller (or a more urgent process).
    Continue,
    /// The caller gave up the CPU (yield, sleep, exit, a blocking call): pick the next.
    Reschedule,
}

impl<M: Machine> Kernel<M> {
    /// Carries out the syscall of the current process `pid`: its number and arguments are in
    /// its saved registers (r7; r0–r5, and r8 for IPC).
    pub fn syscall(&mut self, pid: usize) -> After {
        let process = &mut self.processes[pid];
        process.syscalls = process.syscalls.wrapping_add(1);
        let r = &process.context.r;
        let (number, args, buffer) = (r[7], [r[0], r[1], r[2], r[3], r[4], r[5]], r[8]);
        let result = match Syscall::from_u32(number) {
            Some(Syscall::Exit) => {
                self.end(pid, Ending::Exit(args[0] as i32));
                return After::Reschedule;
            }
            Some(Syscall::Yield) => {
                self.set_result(pid, Ok(0));
                return After::Reschedule;
            }
            Some(Syscall::Sleep) => {
                let until = self.machine.now() + self.ticks(args[0] as u64);
                self.set_result(pid, Ok(0));
                self.block(pid, State::Sleeping { until });
                return After::Reschedule;
            }
            Some(Syscall::Log) => self.log(pid, args[0], args[1]),
            Some(Syscall::Info) => self.info(pid, args[0]),
            Some(Syscall::Lookup) => self.lookup(pid, args[0], args[1], args[2]),
            Some(Syscall::Call) => self.call(pid, args, buffer),
            Some(Syscall::Recv) => self.recv(pid, args, buffer),
            Some(Syscall::Reply) => self.reply(pid, args),
            Some(Syscall::Notify) => self.notify(pid, args[0], args[1]),
            Some(Syscall::Wait) => self.wait(pid, args[0], args[1]),
            Some(Syscall::NotifyClient) => self.notify_client(pid, args[0], args[1], args[2]),
            Some(Syscall::MapDevice) => self.map_device(pid, args[0]),
            Some(Syscall::IrqAck) => self.irq_ack(pid, args[0]),
            Some(Syscall::GpioSet) => self.gpio_set(pid, args[0], args[1], args[2]),
            Some(Syscall::MonitorCall) => self.monitor_service(pid, args, buffer),
            Some(Syscall::ReplyRecv) => self.reply_recv(pid, args, buffer),
            Some(Syscall::DmaPool) => self.dma_pool(pid, args[0]),
            None => Err(Error::NoSys),
        };
        match result {
            // The call blocked the caller; its result comes when it is woken.
            Ok(Blocked::Yes) => After::Reschedule,
            Ok(Blocked::No(value)) => {
                self.set_result(pid, Ok(value));
                After::Continue
            }
            Err(error) => {
                self.set_result(pid, Err(error));
                After::Continue
            }
        }
    }

    fn log(&mut self, pid: usize, address: u32, len: u32) -> Outcome {
        if len as usize > LOG_MAX {
            return Err(Error::Invalid);
        }
        let mut line = [0u8; LOG_MAX];
        let line = &mut line[..len as usize];
        self.copy_from_user(pid, address, line)?;
        let refill = self.ticks(ratelimit::REFILL_MS);
        let now = self.machine.now();
        let process = &mut self.processes[pid];
        let dropped = process.log_limit.admit(now, refill).ok_or(Error::Busy)?;
        if dropped > 0 {
            kprintln!(
                self.machine,
                "septa: kernel: app {}: {dropped} log lines dropped (rate limit: {} lines, then one per {} ms)",
                process.name(),
                ratelimit::BURST,
                ratelimit::REFILL_MS
            );
        }
        for byte in line.iter_mut() {
            // One line of plain text: control characters and non-ASCII bytes cannot reach
            // the terminal.
            *byte = match *byte {
                b' '..=b'~' => *byte,
                b'\t' | b'\n' | b'\r' => b' ',
                _ => b'?',
            };
        }
        let text = core::str::from_utf8(line).unwrap_or("?"); // printable ASCII only
        kprintln!(self.machine, "[{}] {text}", process.name());
        done(0)
    }

    fn info(&mut self, pid: usize, address: u32) -> Outcome {
        let info = Info {
            pid: pid as u32,
            uptime_ms: self.uptime_ms() as u32,
            syscalls: self.processes[pid].syscalls,
            name: self.processes[pid].name_bytes(),
        };
        let mut bytes = [0u8; size_of::<Info>()];
        bytes[0..4].copy_from_slice(&info.pid.to_ne_bytes());
        bytes[4..8].copy_from_slice(&info.uptime_ms.to_ne_bytes());
        bytes[8..12].copy_from_slice(&info.syscalls.to_ne_bytes());
        bytes[12..].copy_from_slice(&info.name);
        self.copy_to_user(pid, address, &bytes)?;
        done(0)
    }

    /// Finds the caller's own capability by the name its manifest uses. A name the caller
    /// holds no capability for is `EACCES`, whether or not it exists.
    fn lookup(&mut self, pid: usize, kind: u32, address: u32, len: u32) -> Outcome {
        let kind = Kind::from_u32(kind).ok_or(Error::Invalid)?;
        if len as usize > NAME_MAX {
            return Err(Error::Invalid);
        }
        let mut name = [0u8; NAME_MAX];
        let name = &mut name[..len as usize];
        self.copy_from_user(pid, address, name)?;
        let name = core::str::from_utf8(name).map_err(|_| Error::Invalid)?;
        let wanted: Option<Cap> = match kind {
            Kind::Call | Kind::Serve => self.endpoints.iter().position(|e| *e == Some(name)).map(|e| {
                let endpoint = e as u8;
                if kind == Kind::Call { Cap::Call { endpoint } } else { Cap::Serve { endpoint } }
            }),
            Kind::Device => {
                board::DEVICES.iter().position(|d| d.name == name).map(|d| Cap::Device { device: d as u8 })
            }
            Kind::Gpio | Kind::Monitor => None,
        };
        let caps = &self.processes[pid].caps;
        let handle = match (kind, wanted) {
            (Kind::Gpio, _) if name == "gpio" => caps.find(|c| matches!(c, Cap::Gpio { .. })),
            (Kind::Monitor, _) if name == "monitor" => caps.find(|c| matches!(c, Cap::Monitor { .. })),
            (_, Some(cap)) => caps.find(|c| *c == cap),
            _ => None,
        };
        done(handle.ok_or(Error::Access)?)
    }

    /// `call`: r0 the handle, r1 the lengths, r2–r5 the message (or r2 its address), r8 the
    /// reply buffer (used only for a reply of more than 16 bytes).
    fn call(&mut self, pid: usize, [handle, lengths, address, ..]: [u32; 6], reply: u32) -> Outcome {
        let Cap::Call { endpoint } = self.processes[pid].caps.get(handle, Kind::Call)? else {
            return Err(Error::Access);
        };
        let (len, room) = split_lengths(lengths);
        let message = self.check_message(pid, address, len)?;
        let reply = self.check_buffer(pid, reply, room, self.processes[pid].reply_buffer)?;
        let outcome = self.ipc.call(pid as u8, endpoint)?;
        let caller = &mut self.processes[pid];
        caller.message = message;
        caller.reply_buffer = reply;
        self.block(pid, State::Blocked);
        if let CallOutcome::Delivered { server } = outcome {
            let delivered = self.deliver(pid, server as usize);
            self.wake(server as usize, delivered);
        }
        Ok(Blocked::Yes)
    }

    /// A message to send: at most [`MESSAGE_MAX`] bytes, in the sender's r2–r5 when it fits,
    /// else at `address` in its memory, readable (and located: see [`Claim`]; the message
    /// the process sent last, `message`, needs neither again).
    fn check_message(&self, pid: usize, address: u32, len: u32) -> Result<Claim, Error> {
        if len as usize > MESSAGE_MAX {
            return Err(Error::Invalid);
        }
        if len as usize <= REGISTER_MESSAGE {
            return Ok(Claim::unlocated(address, len));
        }
        self.claim(pid, address, len, Access::Read, self.processes[pid].message)
    }

    /// A buffer for more than 16 bytes to come back in, writable and located; a smaller room
    /// is never touched (what fits comes in registers).
    fn check_buffer(&self, pid: usize, address: u32, room: u32, last: Claim) -> Result<Claim, Error> {
        if room as usize <= REGISTER_MESSAGE {
            return Ok(Claim::unlocated(address, room));
        }
        self.claim(pid, address, room, Access::Write, last)
    }

    /// `[address, address + len)` of process `pid` checked for `access` and located; `last`
    /// itself if it names that range (it was checked and located for `access` then).
    #[inline(always)] // a comparison when it is the same buffer again
    fn claim(&self, pid: usize, address: u32, len: u32, access: Access, last: Claim) -> Result<Claim, Error> {
        if last.names(address, len) {
            return Ok(last);
        }
        self.new_claim(pid, address, len, access)
    }

    /// `[address, address + len)` of process `pid` checked for `access` and located.
    #[inline(never)]
    fn new_claim(&self, pid: usize, address: u32, len: u32, access: Access) -> Result<Claim, Error> {
        Ok(Claim::located(address, len, self.locate(pid, address, len, access)?))
    }

    fn recv(&mut self, pid: usize, [handle, lengths, ..]: [u32; 6], buffer: u32) -> Outcome {
        let endpoint = self.check_recv(pid, handle, lengths, buffer)?;
        self.receive(pid, endpoint)
    }

    /// Checks `recv`'s arguments and records the server's buffer; returns the endpoint.
    fn check_recv(&mut self, pid: usize, handle: u32, lengths: u32, buffer: u32) -> Result<u8, Error> {
        let Cap::Serve { endpoint } = self.processes[pid].caps.get(handle, Kind::Serve)? else {
            return Err(Error::Access);
        };
        let (_, room) = split_lengths(lengths);
        let checked = self.check_buffer(pid, buffer, room, self.processes[pid].receive_buffer)?;
        self.processes[pid].receive_buffer = checked;
        Ok(endpoint)
    }

    /// Takes the most urgent queued call on `endpoint`, or blocks the server until one comes.
    fn receive(&mut self, pid: usize, endpoint: u8) -> Outcome {
        let processes = &self.processes;
        match self.ipc.recv(pid as u8, endpoint, |p| processes[p as usize].priority)? {
            RecvOutcome::Received { caller } => done(self.deliver(caller as usize, pid)?),
            RecvOutcome::Blocked => {
                self.block(pid, State::Blocked);
                Ok(Blocked::Yes)
            }
        }
    }

    /// Gives `server` the message and badge of `caller` (its buffers were checked and
    /// located when they were named) and lends it the caller's priority if that is more
    /// urgent. Returns the message length.
    pub(crate) fn deliver(&mut self, caller: usize, server: usize) -> Result<u32, Error> {
        let message = self.processes[caller].message;
        let target = self.processes[server].receive_buffer;
        self.transfer(caller, message, server, target)?;
        self.badge_and_priority(caller, server);
        Ok(message.len)
    }

    /// `server`, given `caller`'s message, gets its badge in r7–r10 and runs at its priority
    /// if that is more urgent.
    #[inline(always)]
    pub(crate) fn badge_and_priority(&mut self, caller: usize, server: usize) {
        let badge = words_of(self.processes[caller].component_id());
        self.processes[server].context.r[7..11].copy_from_slice(&badge);
        let urgency = self.processes[caller].priority;
        if urgency < self.processes[server].priority {
            self.set_priority(server, urgency);
        }
    }

    /// The message words in `pid`'s r2–r5.
    pub(crate) fn words_sent_by(&self, pid: usize) -> [u32; 4] {
        let r = &self.processes[pid].context.r;
        [r[2], r[3], r[4], r[5]]
    }

    /// The register half of `transfer`: the first `len` (at most 16) bytes of
    /// `words` into `receiver`'s r2–r5, the bytes past them cleared.
    #[inline(always)]
    pub(crate) fn put_message(&mut self, receiver: usize, words: [u32; 4], len: u32) {
        self.processes[receiver].context.r[2..6].copy_from_slice(&keep_first(words, len as usize));
    }

    /// Moves `message` of `sender` to `receiver`, which has room for `target.len` bytes: at
    /// most 16 bytes go from the sender's r2–r5 (or its memory) to the receiver's r2–r5, the
    /// bytes past the message cleared; more go from memory to memory, between the physical
    /// pieces the two claims located.
    pub(crate) fn transfer(
        &mut self,
        sender: usize,
        message: Claim,
        receiver: usize,
        target: Claim,
    ) -> Result<(), Error> {
        let len = message.len.min(target.len);
        if message.len as usize <= REGISTER_MESSAGE {
            self.put_message(receiver, self.words_sent_by(sender), len);
            return Ok(());
        }
        if len as usize <= REGISTER_MESSAGE {
            let mut bytes = [0u8; REGISTER_MESSAGE];
            read_pieces(&self.machine, message.pieces(), &mut bytes[..len as usize]);
            self.put_message(receiver, words_of(bytes), len);
            return Ok(());
        }
        // User to user, no bounce buffer: in one piece when neither side crosses a page (both
        // hold at least `len` bytes), else by a plan; one that does not fit is `EFAULT`.
        if let (Some(from), Some(to)) = (message.in_one_page(), target.in_one_page()) {
            self.machine.copy_phys(from, to, len);
            return Ok(());
        }
        for (from, to, n) in user::copy_plan(message.pieces(), target.pieces(), len).ok_or(Error::Fault)? {
            self.machine.copy_phys(from, to, n);
        }
        Ok(())
    }

    fn reply(&mut self, pid: usize, [_, lengths, address, ..]: [u32; 6]) -> Outcome {
        self.send_reply(pid, lengths, address)?;
        done(0)
    }

    /// Gives the reply to the waiting caller and wakes it; the server drops back to its own
    /// priority. A bad reply changes nothing; with no call to answer it is `EINVAL`.
    fn send_reply(&mut self, pid: usize, lengths: u32, address: u32) -> Result<(), Error> {
        let (len, _) = split_lengths(lengths);
        let message = self.check_message(pid, address, len)?;
        let answered = self.ipc.reply(pid as u8);
        if answered != Err(Error::Invalid) {
            let base = self.processes[pid].base_priority();
            self.set_priority(pid, base);
        }
        let caller = answered? as usize;
        let target = self.processes[caller].reply_buffer;
        if len as usize > REGISTER_MESSAGE {
            self.processes[pid].message = message; // located: a reply from the same buffer needs no walk
        }
        let result = self.transfer(pid, message, caller, target).map(|()| len);
        self.wake(caller, result);
        Ok(())
    }

    /// `reply` then `recv`, checked together first: bad receive arguments change nothing.
    /// A reply whose caller died meanwhile (`EPIPE`) is dropped and the receive goes on.
    fn reply_recv(&mut self, pid: usize, [handle, lengths, address, ..]: [u32; 6], buffer: u32) -> Outcome {
        let endpoint = self.check_recv(pid, handle, lengths, buffer)?;
        match self.send_reply(pid, lengths, address) {
            Ok(()) | Err(Error::Pipe) => self.receive(pid, endpoint),
            Err(error) => Err(error),
        }
    }

    fn notify(&mut self, pid: usize, handle: u32, bits: u32) -> Outcome {
        let Cap::Call { endpoint } = self.processes[pid].caps.get(handle, Kind::Call)? else {
            return Err(Error::Access);
        };
        let server = self.ipc.server_of(endpoint).ok_or(Error::Pipe)?;
        if let Some(woken) = self.ipc.notify(server, bits) {
            self.wake(server as usize, Ok(woken));
        }
        done(0)
    }

    /// A server wakes a client it knows by the badge of its calls (see [`cap::client_of`]).
    fn notify_client(&mut self, pid: usize, handle: u32, badge: u32, bits: u32) -> Outcome {
        let Cap::Serve { endpoint } = self.processes[pid].caps.get(handle, Kind::Serve)? else {
            return Err(Error::Access);
        };
        let mut id = [0u8; 16];
        self.copy_from_user(pid, badge, &mut id)?;
        let live = self
            .processes
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p.state, State::Free | State::Ended | State::Restarting { .. }));
        let client = crate::cap::client_of(endpoint, &id, live.map(|(i, p)| (i, p.component_id(), &p.caps)))
            .ok_or(Error::NotFound)?;
        if let Some(woken) = self.ipc.notify(client as u8, bits) {
            self.wake(client, Ok(woken));
        }
        done(0)
    }

    /// Waits for notification bits; with `timeout_ms` (0: none) it sleeps at most that long
    /// and then returns 0 (the tick ends the wait, see `System::on_tick`).
    fn wait(&mut self, pid: usize, mask: u32, timeout_ms: u32) -> Outcome {
        if mask == 0 {
            return Err(Error::Invalid);
        }
        match self.ipc.wait(pid as u8, mask) {
            Some(bits) => done(bits),
            None if timeout_ms == 0 => {
                self.block(pid, State::Blocked);
                Ok(Blocked::Yes)
            }
            None => {
                let until = self.machine.now() + self.ticks(timeout_ms as u64);
                self.set_result(pid, Ok(0));
                self.block(pid, State::Sleeping { until });
                Ok(Blocked::Yes)
            }
        }
    }

    /// Maps a granted device and enables its interrupt, which from then on arrives as
    /// notification bit `1 << handle` until the app acknowledges it with `irq_ack`.
    fn map_device(&mut self, pid: usize, handle: u32) -> Outcome {
        let Cap::Device { device } = self.processes[pid].caps.get(handle, Kind::Device)? else {
            return Err(Error::Access);
        };
        let index = device as usize;
        let device = &board::DEVICES[index];
        let address = self.processes[pid]
            .map_device(&mut self.machine, index, device.region)
            .map_err(|_| Error::NoMemory)?;
        if let Some(irq) = device.irq {
            self.machine.enable_irq(irq);
        }
        done(address)
    }

    /// Tells a driver where its DMA pool is: virtual and physical base and length.
    fn dma_pool(&mut self, pid: usize, address: u32) -> Outcome {
        let (phys, pages) = self.processes[pid].dma.ok_or(Error::Access)?;
        let pool = [crate::process::DMA_WINDOW, phys, pages * 4096];
        let mut bytes = [0u8; 12];
        for (out, word) in bytes.chunks_exact_mut(4).zip(pool) {
            out.copy_from_slice(&word.to_ne_bytes());
        }
        self.copy_to_user(pid, address, &bytes)?;
        done(0)
    }

    fn irq_ack(&mut self, pid: usize, handle: u32) -> Outcome {
        let Cap::Device { device } = self.processes[pid].caps.get(handle, Kind::Device)? else {
            return Err(Error::Access);
        };
        let irq = board::DEVICES[device as usize].irq.ok_or(Error::Invalid)?;
        self.machine.enable_irq(irq);
        done(0)
    }

    fn gpio_set(&mut self, pid: usize, handle: u32, pins: u32, values: u32) -> Outcome {
        let Cap::Gpio { pins: granted } = self.processes[pid].caps.get(handle, Kind::Gpio)? else {
            return Err(Error::Access);
        };
        if pins == 0 {
            return Err(Error::Invalid);
        }
        if pins & !granted != 0 {
            return Err(Error::Access);
        }
        self.machine.gpio_set(pins, values);
        done(0)
    }

    /// Forwards a request to the security monitor, if the caller's `monitor` capability
    /// includes the service: the request goes through the shared page with the caller's
    /// component id (which the caller cannot choose), the response comes back the same way.
    fn monitor_service(
        &mut self,
        pid: usize,
        [handle, service, request, lengths, response, capacity]: [u32; 6],
        tail_address: u32,
    ) -> Outcome {
        use septa_abi::monitor as m;
        let Cap::Monitor { services } = self.processes[pid].caps.get(handle, Kind::Monitor)? else {
            return Err(Error::Access);
        };
        let service = m::Service::from_u32(service).ok_or(Error::Invalid)?;
        if services & service.capability_bit() == 0 {
            return Err(Error::Access);
        }
        // The request: its first `len` bytes at `request`, the rest (its tail, if any) at
        // `tail_address`.
        let (len, tail_len) = (lengths & 0xffff, lengths >> 16);
        let total = len + tail_len;
        if total as usize > m::REQUEST_MAX {
            return Err(Error::Invalid);
        }
        // Where the response goes, located once: the monitor writes at most RESPONSE_MAX.
        // The buffers of the caller's last call need neither check nor walk again.
        let room = capacity.min(m::RESPONSE_MAX as u32);
        let last = &self.processes[pid];
        let to = self.claim(pid, response, room, Access::Write, last.monitor_response)?;
        let from = self.claim(pid, request, len, Access::Read, last.monitor_request)?;
        let tail = match tail_len {
            0 => None,
            _ => Some(self.claim(pid, tail_address, tail_len, Access::Read, last.monitor_tail)?),
        };
        let process = &mut self.processes[pid];
        (process.monitor_request, process.monitor_response) = (from, to);
        let start = match tail {
            None => m::REQUEST_OFFSET,
            Some(tail) => {
                process.monitor_tail = tail;
                m::request_start(len as usize, tail_address)
            }
        };
        let quota = process.manifest.as_ref().map_or(0, |m| m.storage_kib) * 1024;
        let caller = process.component_id();
        // The request goes straight from the app into the shared page and the response
        // straight back: no staging buffers on the hot path.
        let page = self.shared.as_mut().ok_or(Error::Io)?;
        let bytes = page.bytes();
        let (head, rest) = bytes[start..start + total as usize].split_at_mut(len as usize);
        read_pieces(&self.machine, from.pieces(), head);
        if let Some(tail) = tail {
            read_pieces(&self.machine, tail.pieces(), rest);
        }
        bytes[m::CALLER_OFFSET..m::CALLER_OFFSET + 16].copy_from_slice(&caller);
        bytes[m::QUOTA_OFFSET..m::QUOTA_OFFSET + 4].copy_from_slice(&quota.to_le_bytes());
        let args = [service as u32, total, start as u32];
        let [status, written, ..] = self.machine.smc(septa_abi::smc::SERVICE, args, page);
        match status {
            m::OK if written <= room => {
                let page = self.shared.as_mut().ok_or(Error::Io)?.bytes();
                let response = &page[m::RESPONSE_OFFSET..m::RESPONSE_OFFSET + written as usize];
                write_pieces(&mut self.machine, to.pieces(), response);
                done(written)
            }
            m::OK | m::TOO_LARGE => Err(Error::NoMemory),
            m::BAD_REQUEST => Err(Error::Invalid),
            m::NOT_FOUND => Err(Error::NotFound),
            m::QUOTA_EXCEEDED => Err(Error::NoSpace),
            m::REFUSED => Err(Error::Refused),
            m::ALREADY_INSTALLED => Err(Error::Exists),
            m::BUSY => Err(Error::Busy),
            _ => Err(Error::Io),
        }
    }

    /// Copies `out.len()` bytes (at most a page) from the process's memory at `address`.
    fn copy_from_user(&self, pid: usize, address: u32, out: &mut [u8]) -> Result<(), Error> {
        let pieces = self.locate(pid, address, out.len() as u32, Access::Read)?;
        read_pieces(&self.machine, pieces, out);
        Ok(())
    }

    /// Copies `bytes` (at most a page) into the process's memory at `address`, which must
    /// be writable.
    fn copy_to_user(&mut self, pid: usize, address: u32, bytes: &[u8]) -> Result<(), Error> {
        let pieces = self.locate(pid, address, bytes.len() as u32, Access::Write)?;
        write_pieces(&mut self.machine, pieces, bytes);
        Ok(())
    }

    /// Where `[address, address + len)` of the process is in physical memory, if it may
    /// be accessed as `access`.
    #[inline(always)] // on every IPC path, several times: no call overhead
    fn locate(&self, pid: usize, address: u32, len: u32, access: Access) -> Result<Pieces, Error> {
        let process = &self.processes[pid];
        let range = UserRange::new(address, len).map_err(|_| Error::Fault)?;
        user::locate(range, access, |va| process.lookup(&self.machine, va)).map_err(|_| Error::Fault)
    }
}

/// Whether a message or a buffer for what comes back needs no check: at most 16 bytes (what
/// fits travels in registers; its claim is unlocated), or the same one as `last`, the claim
/// for it the process made last in that role (checked and located then, see [`Claim`]; it
/// stays).
pub(crate) fn needs_no_check(address: u32, len: u32, last: Claim) -> bool {
    len as usize <= REGISTER_MESSAGE || last.names(address, len)
}

/// Fills `out` from the start of the physical `pieces` (holding at least `out.len()` bytes).
fn read_pieces(machine: &impl Machine, pieces: Pieces, out: &mut [u8]) {
    let mut done = 0;
    for (phys, len) in pieces {
        let n = (len as usize).min(out.len() - done);
        if n > 0 {
            machine.read_phys(phys, &mut out[done..done + n]);
        }
        done += n;
    }
}

/// Writes `bytes` to the start of the physical `pieces` (holding at least `bytes.len()`).
fn write_pieces(machine: &mut impl Machine, pieces: Pieces, bytes: &[u8]) {
    let mut done = 0;
    for (phys, len) in pieces {
        let n = (len as usize).min(bytes.len() - done);
        if n > 0 {
            machine.write_phys(phys, &bytes[done..done + n]);
        }
        done += n;
    }
}

/// Whether a syscall left its caller blocked, or its immediate result.
enum Blocked {
    Yes,
    No(u32),
}

type Outcome = Result<Blocked, Error>;

fn done(value: u32) -> Outcome {
    Ok(Blocked::No(value))
}
