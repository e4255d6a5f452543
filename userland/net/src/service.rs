//! The network service's state: one smoltcp interface, the TCP sockets of every app, and
//! the policy that says who may open which.
//!
//! [`Service::handle`] takes one IPC request with the caller's badge (its component id,
//! attached by the kernel) and writes the reply. Apps open, use and close sockets; the
//! driver hands in received frames and takes frames to send. Who is who comes only from the
//! badge and the policy the build wrote into this service's signed package:
//!
//! - an app with no grant in the policy is refused everything (`EACCES`) — it also holds no
//!   capability to call the service, so this is a second line;
//! - `connect` to a destination the app's manifest does not name is `EACCES`, and nothing is
//!   sent; `listen` on a port it does not name is `EACCES`;
//! - a listening socket holds one smoltcp socket in `Listen`; once a connection on it is
//!   established, `accept` moves that socket into a new slot of the same app and the listener
//!   listens again with a fresh one (a backlog of one);
//! - a socket number belongs to the app that opened it: another app's number is `EINVAL`;
//! - each app has at most [`SOCKETS_PER_APP`] sockets with fixed buffers, and the service at
//!   most [`MAX_SOCKETS`]: a full buffer is back-pressure (`write` takes 0 bytes, `read`
//!   waits), never a loss;
//! - `wait` answers at once with the readiness that holds, or records the interest; once it
//!   holds (or the socket failed), [`Service::take_wakeups`] names the app to notify — the
//!   service never holds a reply, and a waiting app is not scheduled until then;
//! - an app that starts afresh (`RESET`, which the client sends before a process's first
//!   socket) loses every socket an earlier run of it left open: a crash frees its share;
//! - when the driver (re)attaches, every open connection fails with `ECONNRESET`; listening
//!   sockets listen on.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use septa_abi::net::{Policy, resolve};
use septa_syscalls::Error;
pub use septa_syscalls::net::SOCKETS_PER_APP;
use septa_syscalls::net::{CONNECTED, READABLE, REQUEST_HEADER, STATUS_LEN, WRITABLE, op, put_status};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// The device's address on QEMU's user network, and its gateway.
pub const ADDRESS: [u8; 4] = [10, 0, 2, 15];
pub const PREFIX: u8 = 24;
pub const GATEWAY: [u8; 4] = [10, 0, 2, 2];
pub const MAX_SOCKETS: usize = 8;
/// Each socket's receive and send buffer.
pub const BUFFER: usize = 16 * 1024;
/// Frames waiting for the driver, and received frames waiting for the stack (more are
/// dropped, as a full card would: TCP sends them again).
pub const TX_QUEUE: usize = 16;
pub const RX_QUEUE: usize = 8;
/// Ethernet frame without the FCS.
pub const MTU: usize = 1514;
/// How long a connection may take to establish.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How long a closed socket may take to say goodbye before it is dropped.
pub const CLOSE_TIMEOUT_MS: u64 = 5_000;
/// The MAC used until the driver tells the real one.
const PLACEHOLDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// The frames between the stack and the driver.
#[derive(Default)]
pub struct Frames {
    received: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        self.0.push_back(frame);
        result
    }
}

impl Device for Frames {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        if self.outgoing.len() >= TX_QUEUE {
            return None; // the answer would have nowhere to go; the frame waits
        }
        let frame = self.received.pop_front()?;
        Some((Rx(frame), Tx(&mut self.outgoing)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        (self.outgoing.len() < TX_QUEUE).then_some(Tx(&mut self.outgoing))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(TX_QUEUE);
        caps
    }
}

/// One app's socket.
struct Slot {
    owner: [u8; 16],
    handle: Option<SocketHandle>,
    /// The connection was established once.
    established: bool,
    /// The peer's FIN was seen (so a later `Closed` is an orderly end, not a reset).
    peer_closed: bool,
    /// The app closed it: it only waits to finish the goodbye.
    closing: bool,
    /// When connecting or closing gives up (ms).
    deadline: u64,
    error: Option<Error>,
    /// A listening socket's port: its smoltcp socket waits in `Listen` for a connection.
    listen_port: Option<u16>,
    /// Readiness bits the app waits for (`WAIT`); 0 when it does not wait.
    waiting: u32,
}

/// A TCP socket with the service's buffers and settings.
fn new_socket() -> tcp::Socket<'static> {
    let mut socket =
        tcp::Socket::new(tcp::SocketBuffer::new(vec![0; BUFFER]), tcp::SocketBuffer::new(vec![0; BUFFER]));
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(None);
    socket
}

/// Whether a listening socket's connection is established and may be accepted.
fn acceptable(state: State) -> bool {
    !matches!(state, State::Listen | State::SynReceived | State::Closed)
}

pub struct Service {
    iface: Interface,
    sockets: SocketSet<'static>,
    frames: Frames,
    policy: Policy,
    slots: [Option<Slot>; MAX_SOCKETS],
    attached: bool,
    next_port: u16,
    now: u64,
}

fn mac(bytes: [u8; 6]) -> HardwareAddress {
    HardwareAddress::Ethernet(EthernetAddress(bytes))
}

impl Service {
    /// A service enforcing `policy`, its TCP sequence numbers and ports drawn from `seed`.
    pub fn new(policy: Policy, seed: u64, now_ms: u64) -> Service {
        let mut frames = Frames::default();
        let mut config = Config::new(mac(PLACEHOLDER_MAC));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut frames, Instant::from_millis(now_ms as i64));
        let [a, b, c, d] = ADDRESS;
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::v4(a, b, c, d), PREFIX));
        });
        let [a, b, c, d] = GATEWAY;
        let _ = iface.routes_mut().add_default_ipv4_route(Ipv4Address::new(a, b, c, d));
        Service {
            iface,
            sockets: SocketSet::new(Vec::new()),
            frames,
            policy,
            slots: Default::default(),
            attached: false,
            next_port: 49152 + (seed % 16384) as u16,
            now: now_ms,
        }
    }

    /// Whether frames wait for the driver.
    pub fn has_frames(&self) -> bool {
        !self.frames.outgoing.is_empty()
    }

    /// Carries out one request from the caller with `badge`; writes the reply into `reply`
    /// (at least [`septa_syscalls::MESSAGE_MAX`] bytes) and returns its length.
    pub fn handle(&mut self, badge: &[u8; 16], request: &[u8], reply: &mut [u8], now_ms: u64) -> usize {
        self.now = self.now.max(now_ms);
        let (op, socket, payload) = match request {
            [op, socket, payload @ ..] => (*op, *socket, payload),
            _ => return put_status(reply, Err(Error::Invalid)),
        };
        let driver_op = matches!(op, op::ATTACH | op::FRAME | op::TAKE);
        let allowed = if driver_op { self.policy.is_driver(badge) } else { self.policy.knows(badge) };
        if !allowed {
            return put_status(reply, Err(Error::Access));
        }
        if op == op::FRAME {
            // The frame enters the stack before it runs; anything it answers goes out below.
            if payload.len() <= MTU && self.frames.received.len() < RX_QUEUE {
                self.frames.received.push_back(payload.to_vec());
            }
        }
        self.poll();
        let (status, extra) = match op {
            op::CONNECT => (self.connect(badge, payload), 0),
            op::SEND => (self.send(badge, socket, payload), 0),
            op::RECV => match self.recv(badge, socket, payload, &mut reply[STATUS_LEN..]) {
                Ok(n) => (Ok(n as u32), n),
                Err(e) => (Err(e), 0),
            },
            op::CLOSE => (self.close(badge, socket), 0),
            op::POLL => (self.readiness(badge, socket), 0),
            op::LISTEN => (self.listen(badge, payload), 0),
            op::ACCEPT => (self.accept(badge, socket), 0),
            op::WAIT => (self.wait(badge, socket, payload), 0),
            op::RESET => (self.reset(badge), 0),
            op::ATTACH => (self.attach(payload), 0),
            // A driver with no free transmit buffer says so (socket byte 0) on `FRAME`.
            op::FRAME | op::TAKE if op == op::TAKE || socket != 0 => {
                let n = self.take_frame(&mut reply[STATUS_LEN..]);
                (Ok(n as u32), n)
            }
            op::FRAME => (Ok(0), 0),
            _ => (Err(Error::Invalid), 0),
        };
        if matches!(op, op::SEND | op::RECV | op::CLOSE | op::CONNECT | op::LISTEN | op::ACCEPT) {
            self.poll(); // what the request queued goes out (or the window update)
        }
        put_status(reply, status) + extra
    }

    fn instant(&self) -> Instant {
        Instant::from_millis(self.now as i64)
    }

    /// Runs the stack, then settles every socket: notes state changes, fails connects past
    /// their deadline, drops closed sockets whose app let go of them.
    fn poll(&mut self) {
        let now = self.instant();
        self.iface.poll(now, &mut self.frames, &mut self.sockets);
        for entry in self.slots.iter_mut() {
            let Some(slot) = entry else { continue };
            let Some(handle) = slot.handle else {
                if slot.closing {
                    *entry = None;
                }
                continue;
            };
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            let state = socket.state();
            if let Some(port) = slot.listen_port {
                if slot.closing {
                    self.sockets.remove(handle);
                    *entry = None;
                } else if state == State::Closed {
                    // A connection attempt that failed before it was accepted: listen again.
                    let _ = socket.listen(port);
                }
                continue;
            }
            match state {
                State::Established | State::FinWait1 | State::FinWait2 => slot.established = true,
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait => {
                    slot.established = true;
                    slot.peer_closed = true;
                }
                State::SynSent if self.now >= slot.deadline => {
                    socket.abort();
                    slot.error = Some(Error::TimedOut);
                }
                State::Closed if slot.error.is_none() && !slot.closing => {
                    slot.error = Some(if !slot.established {
                        Error::ConnectionRefused
                    } else if !slot.peer_closed {
                        Error::ConnectionReset
                    } else {
                        // An orderly end: reads return the rest, then 0.
                        continue;
                    });
                }
                _ => {}
            }
            let done = matches!(socket.state(), State::Closed | State::TimeWait) || self.now >= slot.deadline;
            if slot.closing && done {
                self.sockets.remove(handle);
                *entry = None;
            }
        }
    }

    /// The caller's open (not closing) slot `socket`, a connection or a listener.
    fn any_slot(&mut self, badge: &[u8; 16], socket: u8) -> Result<&mut Slot, Error> {
        match self.slots.get_mut(socket as usize) {
            Some(Some(slot)) if slot.owner == *badge && !slot.closing => Ok(slot),
            _ => Err(Error::Invalid),
        }
    }

    /// The caller's open connection `socket` (a listener is `EINVAL` here).
    fn slot(&mut self, badge: &[u8; 16], socket: u8) -> Result<&mut Slot, Error> {
        self.any_slot(badge, socket)
            .and_then(|s| if s.listen_port.is_some() { Err(Error::Invalid) } else { Ok(s) })
    }

    /// A free slot for the caller, within its share.
    fn free_slot(&self, badge: &[u8; 16]) -> Result<usize, Error> {
        let owned = self.slots.iter().flatten().filter(|s| s.owner == *badge).count();
        if owned >= SOCKETS_PER_APP {
            return Err(Error::NoMemory);
        }
        self.slots.iter().position(Option::is_none).ok_or(Error::NoMemory)
    }

    fn connect(&mut self, badge: &[u8; 16], payload: &[u8]) -> Result<u32, Error> {
        let (port, host) = match payload {
            [lo, hi, host @ ..] => (u16::from_le_bytes([*lo, *hi]), host),
            _ => return Err(Error::Invalid),
        };
        let host = core::str::from_utf8(host).map_err(|_| Error::Invalid)?;
        let address = resolve(host).ok_or(Error::NotFound)?;
        if !self.policy.allows(badge, address, port) {
            return Err(Error::Access);
        }
        let index = self.free_slot(badge)?;
        let mut socket = new_socket();
        let [a, b, c, d] = address;
        let local = self.next_port;
        self.next_port = if local == u16::MAX { 49152 } else { local + 1 };
        socket
            .connect(self.iface.context(), (IpAddress::v4(a, b, c, d), port), local)
            .map_err(|_| Error::Invalid)?;
        let handle = self.sockets.add(socket);
        self.slots[index] = Some(Slot {
            owner: *badge,
            handle: Some(handle),
            established: false,
            peer_closed: false,
            closing: false,
            deadline: self.now + CONNECT_TIMEOUT_MS,
            error: None,
            listen_port: None,
            waiting: 0,
        });
        Ok(index as u32)
    }

    fn listen(&mut self, badge: &[u8; 16], payload: &[u8]) -> Result<u32, Error> {
        let port = match payload {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            _ => return Err(Error::Invalid),
        };
        if !self.policy.allows_listen(badge, port) {
            return Err(Error::Access);
        }
        // The port is this app's alone (the build checked); it may listen on it once.
        if self.slots.iter().flatten().any(|s| s.listen_port == Some(port)) {
            return Err(Error::Busy);
        }
        let index = self.free_slot(badge)?;
        let mut socket = new_socket();
        socket.listen(port).map_err(|_| Error::Invalid)?;
        self.slots[index] = Some(Slot {
            owner: *badge,
            handle: Some(self.sockets.add(socket)),
            established: false,
            peer_closed: false,
            closing: false,
            deadline: 0,
            error: None,
            listen_port: Some(port),
            waiting: 0,
        });
        Ok(index as u32)
    }

    /// Hands the listener's established connection to a new slot of the caller; the
    /// listener listens again with a fresh socket.
    fn accept(&mut self, badge: &[u8; 16], socket: u8) -> Result<u32, Error> {
        let slot = self.any_slot(badge, socket)?;
        let (Some(port), Some(handle)) = (slot.listen_port, slot.handle) else {
            return Err(Error::Invalid);
        };
        if !acceptable(self.sockets.get::<tcp::Socket>(handle).state()) {
            return Err(Error::WouldBlock);
        }
        let index = self.free_slot(badge)?;
        let mut fresh = new_socket();
        fresh.listen(port).map_err(|_| Error::Invalid)?;
        let fresh = self.sockets.add(fresh);
        if let Some(listener) = self.slots[socket as usize].as_mut() {
            listener.handle = Some(fresh);
        }
        self.slots[index] = Some(Slot {
            owner: *badge,
            handle: Some(handle),
            established: true,
            peer_closed: false,
            closing: false,
            deadline: 0,
            error: None,
            listen_port: None,
            waiting: 0,
        });
        Ok(index as u32)
    }

    fn send(&mut self, badge: &[u8; 16], socket: u8, data: &[u8]) -> Result<u32, Error> {
        let slot = self.slot(badge, socket)?;
        if let Some(error) = slot.error {
            return Err(error);
        }
        let handle = slot.handle.ok_or(Error::ConnectionReset)?;
        let established = slot.established;
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if !established {
            return Err(Error::WouldBlock);
        }
        if !socket.may_send() {
            // Reset by the peer before the next poll recorded it on the slot.
            return Err(if socket.state() == State::Closed {
                Error::ConnectionReset
            } else {
                Error::NotConnected
            });
        }
        socket.send_slice(data).map(|n| n as u32).map_err(|_| Error::NotConnected)
    }

    fn recv(&mut self, badge: &[u8; 16], socket: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let max = match payload {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]) as usize,
            _ => return Err(Error::Invalid),
        };
        let out_len = out.len();
        let out = &mut out[..max.min(out_len)];
        let slot = self.slot(badge, socket)?;
        let handle = slot.handle.ok_or(Error::ConnectionReset)?;
        let (established, error) = (slot.established, slot.error);
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if socket.can_recv() {
            return socket.recv_slice(out).map_err(|_| Error::NotConnected);
        }
        if let Some(error) = error {
            return Err(error);
        }
        if established && !socket.may_recv() {
            return Ok(0); // the peer finished: end of stream
        }
        Err(Error::WouldBlock)
    }

    /// Records that the caller waits for `interest` on `socket` unless some of it holds
    /// now; returns what holds (0: the caller will be notified).
    fn wait(&mut self, badge: &[u8; 16], socket: u8, payload: &[u8]) -> Result<u32, Error> {
        let interest: [u8; 4] = payload.try_into().map_err(|_| Error::Invalid)?;
        let interest = u32::from_le_bytes(interest);
        let ready = self.readiness(badge, socket)? & interest;
        if let Some(Some(slot)) = self.slots.get_mut(socket as usize) {
            slot.waiting = if ready == 0 { interest } else { 0 };
        }
        Ok(ready)
    }

    /// The apps whose awaited readiness now holds (or whose socket failed), each once; their
    /// waits are cleared. The caller notifies them.
    pub fn take_wakeups(&mut self) -> Vec<[u8; 16]> {
        let mut wake = Vec::new();
        for index in 0..MAX_SOCKETS {
            let Some(slot) = &self.slots[index] else { continue };
            if slot.waiting == 0 {
                continue;
            }
            let (owner, interest) = (slot.owner, slot.waiting);
            let due = self.readiness(&owner, index as u8).map_or(true, |bits| bits & interest != 0);
            if due {
                if let Some(slot) = self.slots[index].as_mut() {
                    slot.waiting = 0;
                }
                if !wake.contains(&owner) {
                    wake.push(owner);
                }
            }
        }
        wake
    }

    fn readiness(&mut self, badge: &[u8; 16], socket: u8) -> Result<u32, Error> {
        let slot = self.any_slot(badge, socket)?;
        if slot.listen_port.is_some() {
            let handle = slot.handle.ok_or(Error::ConnectionReset)?;
            let ready = acceptable(self.sockets.get::<tcp::Socket>(handle).state());
            return Ok(if ready { READABLE } else { 0 });
        }
        let handle = slot.handle.ok_or(Error::ConnectionReset)?;
        let (established, error) = (slot.established, slot.error);
        let socket = self.sockets.get::<tcp::Socket>(handle);
        let mut bits = 0;
        if socket.can_recv() || (established && !socket.may_recv()) {
            bits |= READABLE;
        }
        if let Some(error) = error {
            return if bits != 0 { Ok(bits) } else { Err(error) };
        }
        if established {
            bits |= CONNECTED;
            if socket.can_send() {
                bits |= WRITABLE;
            }
        }
        Ok(bits)
    }

    fn close(&mut self, badge: &[u8; 16], socket: u8) -> Result<u32, Error> {
        let now = self.now;
        let slot = self.any_slot(badge, socket)?;
        slot.closing = true;
        slot.deadline = now + CLOSE_TIMEOUT_MS;
        if let Some(handle) = slot.handle {
            self.sockets.get_mut::<tcp::Socket>(handle).close();
        }
        Ok(0)
    }

    /// The caller starts afresh: the sockets it holds were left by an earlier run of the same
    /// app (a badge names the component, the same after a restart). Each is aborted — the
    /// peer gets a reset, sent before the socket goes — and its slot freed at once, so the
    /// new run has its whole share.
    fn reset(&mut self, badge: &[u8; 16]) -> Result<u32, Error> {
        let left = |slot: &Slot| slot.owner == *badge;
        for slot in self.slots.iter().flatten().filter(|s| left(s)) {
            if let Some(handle) = slot.handle {
                self.sockets.get_mut::<tcp::Socket>(handle).abort();
            }
        }
        self.iface.poll(self.instant(), &mut self.frames, &mut self.sockets);
        for entry in self.slots.iter_mut() {
            if let Some(Slot { handle: Some(handle), .. }) = entry.take_if(|s| left(s)) {
                self.sockets.remove(handle);
            }
        }
        Ok(0)
    }

    /// The driver (re)started with MAC `payload`: on a restart every socket fails with
    /// `ECONNRESET` (its frames in flight are lost) and the queue of frames is dropped.
    fn attach(&mut self, payload: &[u8]) -> Result<u32, Error> {
        let mac_bytes: [u8; 6] = payload.try_into().map_err(|_| Error::Invalid)?;
        if !EthernetAddress(mac_bytes).is_unicast() {
            return Err(Error::Invalid);
        }
        self.iface.set_hardware_addr(mac(mac_bytes));
        self.frames = Frames::default();
        if self.attached {
            for slot in self.slots.iter_mut().flatten() {
                if let Some(handle) = slot.handle.take() {
                    self.sockets.remove(handle);
                }
                match slot.listen_port {
                    Some(port) => {
                        let mut socket = new_socket();
                        let _ = socket.listen(port);
                        slot.handle = Some(self.sockets.add(socket));
                    }
                    None => slot.error = Some(Error::ConnectionReset),
                }
            }
        }
        self.attached = true;
        Ok(0)
    }

    fn take_frame(&mut self, out: &mut [u8]) -> usize {
        match self.frames.outgoing.pop_front() {
            Some(frame) if frame.len() <= out.len() => {
                out[..frame.len()].copy_from_slice(&frame);
                frame.len()
            }
            _ => 0,
        }
    }

    /// Sockets in use (open or closing), for tests.
    pub fn sockets_in_use(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

/// A request as the client library sends it.
pub fn request(op: u8, socket: u8, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![op, socket];
    message.extend_from_slice(payload);
    debug_assert!(message.len() >= REQUEST_HEADER);
    message
}

#[cfg(test)]
mod tests;
