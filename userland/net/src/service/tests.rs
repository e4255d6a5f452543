//! The service against a real smoltcp peer on the other end of a simulated wire: every
//! frame the service sends goes through the driver's `TAKE`, every frame back through
//! `FRAME`, exactly as the driver app moves them.

use super::*;
use septa_abi::net::{Grant, ListenGrant};
use septa_syscalls::net::parse_reply;

const APP: [u8; 16] = [1; 16];
const OTHER: [u8; 16] = [2; 16];
const STRANGER: [u8; 16] = [7; 16];
const SERVER: [u8; 16] = [3; 16];
const DRIVER: [u8; 16] = [9; 16];
const PEER: [u8; 4] = [10, 0, 2, 100];

fn policy() -> Policy {
    let mut grants = heapless::Vec::new();
    for (component, port) in [(APP, 7), (APP, 9), (OTHER, 7)] {
        grants.push(Grant { component, address: PEER, port }).unwrap();
    }
    let mut listens = heapless::Vec::new();
    listens.push(ListenGrant { component: SERVER, port: 8080 }).unwrap();
    Policy { driver: Some(DRIVER), grants, listens }
}

/// The host on the other side: a smoltcp interface at 10.0.2.100 with echo listeners on
/// port 7.
struct Peer {
    iface: Interface,
    sockets: SocketSet<'static>,
    frames: Frames,
    listeners: Vec<SocketHandle>,
    /// Connections the peer opened to the device.
    clients: Vec<SocketHandle>,
}

impl Peer {
    fn new() -> Peer {
        let mut frames = Frames::default();
        let mut iface = Interface::new(Config::new(mac([2, 0, 0, 0, 0, 0x64])), &mut frames, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::v4(10, 0, 2, 100), 24));
        });
        let mut peer = Peer {
            iface,
            sockets: SocketSet::new(Vec::new()),
            frames,
            listeners: Vec::new(),
            clients: Vec::new(),
        };
        for _ in 0..3 {
            peer.listen(7);
        }
        peer
    }

    fn listen(&mut self, port: u16) {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        );
        socket.listen(port).unwrap();
        self.listeners.push(self.sockets.add(socket));
    }

    /// Echoes what every connection received.
    fn echo(&mut self) {
        for &handle in &self.listeners {
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            let mut buffer = [0u8; 4096];
            while socket.can_recv() && socket.can_send() {
                let room = socket.send_capacity() - socket.send_queue();
                let n = socket.recv_slice(&mut buffer[..room.min(4096)]).unwrap();
                socket.send_slice(&buffer[..n]).unwrap();
            }
        }
    }

    /// Opens a connection to the device's `port`.
    fn dial(&mut self, port: u16) -> SocketHandle {
        let mut socket =
            tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
        let local = 40000 + self.clients.len() as u16;
        socket.connect(self.iface.context(), (IpAddress::v4(10, 0, 2, 15), port), local).unwrap();
        let handle = self.sockets.add(socket);
        self.clients.push(handle);
        handle
    }

    fn connections(&self) -> usize {
        self.listeners
            .iter()
            .filter(|&&h| !matches!(self.sockets.get::<tcp::Socket>(h).state(), State::Listen))
            .count()
    }

    /// Connections to the peer that are up.
    fn established(&self) -> usize {
        self.listeners
            .iter()
            .filter(|&&h| self.sockets.get::<tcp::Socket>(h).state() == State::Established)
            .count()
    }

    fn poll(&mut self, now: u64) {
        self.iface.poll(Instant::from_millis(now as i64), &mut self.frames, &mut self.sockets);
    }
}

struct Net {
    service: Service,
    peer: Peer,
    now: u64,
    /// Frames that reached the peer.
    delivered: usize,
}

impl Net {
    fn new() -> Net {
        let mut net = Net { service: Service::new(policy(), 42, 0), peer: Peer::new(), now: 0, delivered: 0 };
        net.call(&DRIVER, op::ATTACH, 0, &[2, 0, 0, 0, 0, 0x0f]).unwrap();
        net
    }

    fn call(
        &mut self,
        badge: &[u8; 16],
        op: u8,
        socket: u8,
        payload: &[u8],
    ) -> Result<(u32, Vec<u8>), Error> {
        let mut reply = vec![0u8; septa_syscalls::MESSAGE_MAX];
        let n = self.service.handle(badge, &request(op, socket, payload), &mut reply, self.now);
        parse_reply(&reply[..n]).map(|(status, rest)| (status, rest.to_vec()))
    }

    /// Moves frames both ways until the wire is quiet; the clock advances 1 ms a round.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            self.now += 1;
            let mut moved = false;
            loop {
                let (n, frame) = self.call(&DRIVER, op::TAKE, 0, &[]).unwrap();
                if n == 0 {
                    break;
                }
                self.peer.frames.received.push_back(frame);
                self.delivered += 1;
                moved = true;
                self.peer.poll(self.now);
            }
            self.peer.echo();
            self.peer.poll(self.now);
            while let Some(frame) = self.peer.frames.outgoing.pop_front() {
                let (n, back) = self.call(&DRIVER, op::FRAME, 1, &frame).unwrap();
                if n > 0 {
                    self.peer.frames.received.push_back(back);
                    self.delivered += 1;
                }
                moved = true;
            }
            if !moved && !self.service.has_frames() {
                return;
            }
        }
        panic!("the wire never went quiet");
    }

    fn connect(&mut self, badge: &[u8; 16], port: u16) -> Result<u8, Error> {
        let mut payload = port.to_le_bytes().to_vec();
        payload.extend_from_slice(b"devhost");
        let (socket, _) = self.call(badge, op::CONNECT, 0, &payload)?;
        self.pump();
        Ok(socket as u8)
    }

    fn recv(&mut self, badge: &[u8; 16], socket: u8) -> Result<Vec<u8>, Error> {
        self.call(badge, op::RECV, socket, &2000u16.to_le_bytes()).map(|(_, data)| data)
    }
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}

/// Sends `data` and reads the echo, pumping the wire as the blocking client calls would.
fn echo(net: &mut Net, badge: &[u8; 16], socket: u8, data: &[u8]) -> Vec<u8> {
    let mut sent = 0;
    let mut back = Vec::new();
    while back.len() < data.len() {
        if sent < data.len() {
            let end = (sent + 2000).min(data.len());
            let (taken, _) = net.call(badge, op::SEND, socket, &data[sent..end]).unwrap();
            sent += taken as usize;
        }
        net.pump();
        match net.recv(badge, socket) {
            Ok(chunk) => back.extend_from_slice(&chunk),
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    back
}

#[test]
fn data_larger_than_every_buffer_echoes_intact() {
    let mut net = Net::new();
    let socket = net.connect(&APP, 7).unwrap();
    let bits = net.call(&APP, op::POLL, socket, &[]).unwrap().0;
    assert_eq!(bits & (CONNECTED | WRITABLE), CONNECTED | WRITABLE);
    let data = pattern(200 * 1024, 5);
    assert_eq!(echo(&mut net, &APP, socket, &data), data);
}

#[test]
fn two_apps_share_the_stack_without_mixing_data() {
    let mut net = Net::new();
    let a = net.connect(&APP, 7).unwrap();
    let b = net.connect(&OTHER, 7).unwrap();
    let (da, db) = (pattern(40_000, 1), pattern(40_000, 2));
    for (chunk_a, chunk_b) in da.chunks(10_000).zip(db.chunks(10_000)) {
        assert_eq!(echo(&mut net, &APP, a, chunk_a), chunk_a);
        assert_eq!(echo(&mut net, &OTHER, b, chunk_b), chunk_b);
    }
}

#[test]
fn a_destination_the_manifest_does_not_name_is_refused_and_nothing_is_sent() {
    let mut net = Net::new();
    assert_eq!(net.connect(&OTHER, 9), Err(Error::Access), "port 9 is granted to another app only");
    let mut payload = 7u16.to_le_bytes().to_vec();
    payload.extend_from_slice(b"10.0.2.2");
    assert_eq!(net.call(&APP, op::CONNECT, 0, &payload).map(|r| r.0), Err(Error::Access), "another address");
    net.pump();
    assert_eq!(net.delivered, 0, "no frame left the device");
    assert_eq!(net.peer.connections(), 0);
    assert_eq!(net.service.sockets_in_use(), 0);
}

#[test]
fn unknown_callers_get_nothing_and_only_the_driver_moves_frames() {
    let mut net = Net::new();
    assert_eq!(net.connect(&STRANGER, 7), Err(Error::Access));
    assert_eq!(net.call(&STRANGER, op::POLL, 0, &[]).map(|r| r.0), Err(Error::Access));
    assert_eq!(net.call(&APP, op::TAKE, 0, &[]).map(|r| r.0), Err(Error::Access), "apps cannot take frames");
    assert_eq!(net.call(&APP, op::ATTACH, 0, &[2, 0, 0, 0, 0, 1]).map(|r| r.0), Err(Error::Access));
    assert_eq!(net.call(&DRIVER, op::CONNECT, 0, b"\x07\x00devhost").map(|r| r.0), Err(Error::Access));
    assert_eq!(net.call(&APP, 99, 0, &[]).map(|r| r.0), Err(Error::Invalid), "unknown op");
    let mut reply = vec![0u8; 64];
    let n = net.service.handle(&APP, &[1], &mut reply, 0);
    assert_eq!(parse_reply(&reply[..n]).map(|r| r.0), Err(Error::Invalid), "short request");
}

#[test]
fn a_socket_belongs_to_the_app_that_opened_it() {
    let mut net = Net::new();
    let socket = net.connect(&APP, 7).unwrap();
    assert_eq!(net.call(&OTHER, op::SEND, socket, b"x").map(|r| r.0), Err(Error::Invalid));
    assert_eq!(net.recv(&OTHER, socket), Err(Error::Invalid));
    assert_eq!(net.call(&OTHER, op::CLOSE, socket, &[]).map(|r| r.0), Err(Error::Invalid));
    assert_eq!(net.call(&APP, op::SEND, 200, b"x").map(|r| r.0), Err(Error::Invalid), "out of range");
    assert_eq!(echo(&mut net, &APP, socket, b"still mine"), b"still mine");
}

#[test]
fn each_app_has_a_bounded_number_of_sockets() {
    let mut net = Net::new();
    for _ in 0..SOCKETS_PER_APP {
        net.connect(&APP, 7).unwrap();
    }
    assert_eq!(net.connect(&APP, 7), Err(Error::NoMemory));
    assert!(net.connect(&OTHER, 7).is_ok(), "another app is not starved");
}

#[test]
fn an_app_starting_afresh_frees_what_its_earlier_run_left_and_nothing_else() {
    let mut net = Net::new();
    net.peer.listen(7);
    let other = net.connect(&OTHER, 7).unwrap();
    // An earlier run of APP left its whole share open (a crash closes nothing).
    let left: Vec<u8> = (0..SOCKETS_PER_APP).map(|_| net.connect(&APP, 7).unwrap()).collect();
    assert_eq!(net.connect(&APP, 7), Err(Error::NoMemory));
    assert_eq!(net.peer.established(), 4);

    net.call(&APP, op::RESET, 0, &[]).unwrap();
    net.pump();
    assert_eq!(net.peer.established(), 1, "each connection left was reset at the peer");
    for socket in left {
        let sent = net.call(&APP, op::SEND, socket, b"x").map(|r| r.0);
        assert_eq!(sent, Err(Error::Invalid), "socket {socket} is gone");
    }
    // The new run has its whole share; the other app's connection is untouched.
    for _ in 0..SOCKETS_PER_APP {
        net.peer.listen(7);
    }
    let fresh: Vec<u8> = (0..SOCKETS_PER_APP).map(|_| net.connect(&APP, 7).unwrap()).collect();
    assert_eq!(echo(&mut net, &APP, fresh[3], b"anew"), b"anew");
    assert_eq!(echo(&mut net, &OTHER, other, b"still here"), b"still here");
    // Starting afresh with nothing left changes nothing for anyone else.
    assert_eq!(net.call(&STRANGER, op::RESET, 0, &[]).map(|r| r.0), Err(Error::Access));
    net.call(&OTHER, op::RESET, 0, &[]).unwrap();
    net.call(&OTHER, op::RESET, 0, &[]).unwrap();
    assert_eq!(echo(&mut net, &APP, fresh[0], b"mine"), b"mine");
}

#[test]
fn a_full_send_buffer_is_back_pressure() {
    let mut net = Net::new();
    let socket = net.connect(&APP, 7).unwrap();
    let mut queued = 0;
    loop {
        let (taken, _) = net.call(&APP, op::SEND, socket, &[7u8; 2000]).unwrap();
        if taken == 0 {
            break;
        }
        queued += taken as usize;
        assert!(queued <= BUFFER, "never more than the buffer");
    }
    assert_eq!(queued, BUFFER);
    let bits = net.call(&APP, op::POLL, socket, &[]).unwrap().0;
    assert_eq!(bits & WRITABLE, 0);
}

#[test]
fn a_port_without_listener_is_refused() {
    let mut net = Net::new();
    let socket = net.connect(&APP, 9).unwrap();
    assert_eq!(net.call(&APP, op::POLL, socket, &[]).map(|r| r.0), Err(Error::ConnectionRefused));
    assert_eq!(net.recv(&APP, socket), Err(Error::ConnectionRefused));
    net.call(&APP, op::CLOSE, socket, &[]).unwrap();
    net.pump();
    assert_eq!(net.service.sockets_in_use(), 0, "the closed socket is freed");
}

#[test]
fn a_silent_peer_times_out() {
    let mut net = Net::new();
    let mut payload = 7u16.to_le_bytes().to_vec();
    payload.extend_from_slice(b"devhost");
    let (socket, _) = net.call(&APP, op::CONNECT, 0, &payload).unwrap();
    // Nothing is pumped: the SYN never arrives anywhere.
    net.now += CONNECT_TIMEOUT_MS;
    assert_eq!(net.call(&APP, op::POLL, socket as u8, &[]).map(|r| r.0), Err(Error::TimedOut));
}

#[test]
fn the_peer_closing_ends_the_stream_and_a_reset_is_an_error() {
    let mut net = Net::new();
    let socket = net.connect(&APP, 7).unwrap();
    assert_eq!(echo(&mut net, &APP, socket, b"bye"), b"bye");
    let handle = net.peer.listeners[0];
    net.peer.sockets.get_mut::<tcp::Socket>(handle).close();
    net.pump();
    assert_eq!(net.recv(&APP, socket), Ok(Vec::new()), "end of stream");
    assert_eq!(net.call(&APP, op::POLL, socket, &[]).unwrap().0 & READABLE, READABLE);

    let second = net.connect(&APP, 7).unwrap();
    let handle = net.peer.listeners[1];
    net.peer.sockets.get_mut::<tcp::Socket>(handle).abort();
    net.pump();
    assert_eq!(net.recv(&APP, second), Err(Error::ConnectionReset));
}

#[test]
fn a_driver_restart_resets_open_sockets_and_new_ones_work() {
    let mut net = Net::new();
    let socket = net.connect(&APP, 7).unwrap();
    net.call(&DRIVER, op::ATTACH, 0, &[2, 0, 0, 0, 0, 0x0f]).unwrap();
    assert_eq!(net.call(&APP, op::SEND, socket, b"x").map(|r| r.0), Err(Error::ConnectionReset));
    assert_eq!(net.recv(&APP, socket), Err(Error::ConnectionReset));
    net.call(&APP, op::CLOSE, socket, &[]).unwrap();
    // The peer still has the old connection; a fresh listener takes the new one.
    net.peer.listen(7);
    let fresh = net.connect(&APP, 7).unwrap();
    assert_eq!(echo(&mut net, &APP, fresh, b"again"), b"again");
    let multicast = net.call(&DRIVER, op::ATTACH, 0, &[1, 0, 0, 0, 0, 0]).map(|r| r.0);
    assert_eq!(multicast, Err(Error::Invalid), "multicast MAC");
}

/// Listens on `port` as `badge`.
fn listen(net: &mut Net, badge: &[u8; 16], port: u16) -> Result<u8, Error> {
    net.call(badge, op::LISTEN, 0, &port.to_le_bytes()).map(|r| r.0 as u8)
}

/// The peer dials the device's `port`; the wire runs until quiet.
fn dial(net: &mut Net, port: u16) -> SocketHandle {
    let handle = net.peer.dial(port);
    net.peer.poll(net.now);
    while let Some(frame) = net.peer.frames.outgoing.pop_front() {
        net.call(&DRIVER, op::FRAME, 0, &frame).unwrap();
    }
    net.pump();
    handle
}

#[test]
fn listening_is_refused_on_every_port_the_policy_does_not_give_the_app() {
    let mut net = Net::new();
    assert_eq!(listen(&mut net, &SERVER, 8081), Err(Error::Access), "a port not granted");
    assert_eq!(listen(&mut net, &APP, 8080), Err(Error::Access), "another app's port");
    assert_eq!(listen(&mut net, &APP, 7), Err(Error::Access), "a connect grant is no listen grant");
    assert_eq!(listen(&mut net, &STRANGER, 8080), Err(Error::Access));
    assert_eq!(net.call(&SERVER, op::LISTEN, 0, &[1]).map(|r| r.0), Err(Error::Invalid), "short port");
    assert_eq!(net.service.sockets_in_use(), 0);
    // Nothing listens on a refused port: a connection to it is reset.
    let client = dial(&mut net, 8081);
    assert_eq!(net.peer.sockets.get::<tcp::Socket>(client).state(), State::Closed);
}

#[test]
fn a_listener_accepts_a_connection_and_listens_again() {
    let mut net = Net::new();
    let listener = listen(&mut net, &SERVER, 8080).unwrap();
    assert_eq!(net.call(&SERVER, op::POLL, listener, &[]).unwrap().0, 0);
    assert_eq!(net.call(&SERVER, op::ACCEPT, listener, &[]).map(|r| r.0), Err(Error::WouldBlock));

    let client = dial(&mut net, 8080);
    assert_eq!(net.call(&SERVER, op::POLL, listener, &[]).unwrap().0, READABLE, "a connection waits");
    let stream = net.call(&SERVER, op::ACCEPT, listener, &[]).unwrap().0 as u8;
    assert_ne!(stream, listener);
    let bits = net.call(&SERVER, op::POLL, stream, &[]).unwrap().0;
    assert_eq!(bits & (CONNECTED | WRITABLE), CONNECTED | WRITABLE);

    net.peer.sockets.get_mut::<tcp::Socket>(client).send_slice(b"ping").unwrap();
    net.peer.poll(net.now);
    while let Some(frame) = net.peer.frames.outgoing.pop_front() {
        net.call(&DRIVER, op::FRAME, 0, &frame).unwrap();
    }
    assert_eq!(net.recv(&SERVER, stream), Ok(b"ping".to_vec()));
    assert_eq!(net.call(&SERVER, op::SEND, stream, b"pong").unwrap().0, 4);
    net.pump();
    let mut back = [0u8; 8];
    let n = net.peer.sockets.get_mut::<tcp::Socket>(client).recv_slice(&mut back).unwrap();
    assert_eq!(&back[..n], b"pong");

    // The listener took a fresh socket: a second connection is accepted as well.
    assert_eq!(net.call(&SERVER, op::POLL, listener, &[]).unwrap().0, 0);
    let second = dial(&mut net, 8080);
    let stream2 = net.call(&SERVER, op::ACCEPT, listener, &[]).unwrap().0 as u8;
    assert!(stream2 != stream && stream2 != listener);
    assert_eq!(net.peer.sockets.get::<tcp::Socket>(second).state(), State::Established);
    assert_eq!(net.service.sockets_in_use(), 3);
}

#[test]
fn a_listener_is_its_apps_alone_and_is_no_stream() {
    let mut net = Net::new();
    let listener = listen(&mut net, &SERVER, 8080).unwrap();
    assert_eq!(listen(&mut net, &SERVER, 8080), Err(Error::Busy), "listening twice");
    assert_eq!(net.call(&SERVER, op::SEND, listener, b"x").map(|r| r.0), Err(Error::Invalid));
    assert_eq!(net.recv(&SERVER, listener), Err(Error::Invalid));
    assert_eq!(
        net.call(&APP, op::ACCEPT, listener, &[]).map(|r| r.0),
        Err(Error::Invalid),
        "not its listener"
    );
    assert_eq!(net.call(&APP, op::POLL, listener, &[]).map(|r| r.0), Err(Error::Invalid));
    dial(&mut net, 8080);
    let stream = net.call(&SERVER, op::ACCEPT, listener, &[]).unwrap().0 as u8;
    assert_eq!(
        net.call(&SERVER, op::ACCEPT, stream, &[]).map(|r| r.0),
        Err(Error::Invalid),
        "a stream accepts nothing"
    );
    // Closing the listener frees it; the port may be listened on again.
    net.call(&SERVER, op::CLOSE, listener, &[]).unwrap();
    net.pump();
    assert_eq!(net.service.sockets_in_use(), 1);
    assert!(listen(&mut net, &SERVER, 8080).is_ok());
}

#[test]
fn accepting_counts_against_the_apps_sockets() {
    let mut net = Net::new();
    let listener = listen(&mut net, &SERVER, 8080).unwrap();
    for _ in 1..SOCKETS_PER_APP {
        dial(&mut net, 8080);
        net.call(&SERVER, op::ACCEPT, listener, &[]).unwrap();
    }
    dial(&mut net, 8080);
    assert_eq!(net.call(&SERVER, op::ACCEPT, listener, &[]).map(|r| r.0), Err(Error::NoMemory));
    assert_eq!(net.service.sockets_in_use(), SOCKETS_PER_APP);
}

#[test]
fn a_driver_restart_keeps_listeners_listening() {
    let mut net = Net::new();
    let listener = listen(&mut net, &SERVER, 8080).unwrap();
    dial(&mut net, 8080);
    let stream = net.call(&SERVER, op::ACCEPT, listener, &[]).unwrap().0 as u8;
    net.call(&DRIVER, op::ATTACH, 0, &[2, 0, 0, 0, 0, 0x0f]).unwrap();
    assert_eq!(net.recv(&SERVER, stream), Err(Error::ConnectionReset), "the connection is gone");
    dial(&mut net, 8080);
    assert!(net.call(&SERVER, op::ACCEPT, listener, &[]).is_ok(), "the listener is not");
}

fn wait(net: &mut Net, badge: &[u8; 16], socket: u8, interest: u32) -> Result<u32, Error> {
    net.call(badge, op::WAIT, socket, &interest.to_le_bytes()).map(|r| r.0)
}

#[test]
fn a_waiting_app_is_named_once_when_its_socket_becomes_ready() {
    let mut net = Net::new();
    let listener = listen(&mut net, &SERVER, 8080).unwrap();
    assert_eq!(wait(&mut net, &SERVER, listener, READABLE), Ok(0), "nothing yet: the wait is recorded");
    assert_eq!(net.service.take_wakeups(), Vec::<[u8; 16]>::new());
    let client = dial(&mut net, 8080);
    assert_eq!(net.service.take_wakeups(), vec![SERVER], "the connection wakes the listener's app");
    assert_eq!(net.service.take_wakeups(), Vec::<[u8; 16]>::new(), "once");

    let stream = net.call(&SERVER, op::ACCEPT, listener, &[]).unwrap().0 as u8;
    assert_eq!(wait(&mut net, &SERVER, stream, READABLE), Ok(0));
    assert_eq!(wait(&mut net, &SERVER, stream, WRITABLE), Ok(WRITABLE), "what holds is answered at once");
    assert_eq!(net.service.take_wakeups(), Vec::<[u8; 16]>::new(), "and the answer ended the wait");
    assert_eq!(wait(&mut net, &SERVER, stream, READABLE), Ok(0));
    net.peer.sockets.get_mut::<tcp::Socket>(client).send_slice(b"data").unwrap();
    net.pump();
    assert_eq!(net.service.take_wakeups(), vec![SERVER], "data arriving wakes the reader");
    assert_eq!(net.recv(&SERVER, stream), Ok(b"data".to_vec()));

    // A failure wakes a waiter too, and another app's socket cannot be waited on.
    assert_eq!(wait(&mut net, &SERVER, stream, READABLE), Ok(0));
    net.peer.sockets.get_mut::<tcp::Socket>(client).abort();
    net.pump();
    assert_eq!(net.service.take_wakeups(), vec![SERVER]);
    assert_eq!(wait(&mut net, &SERVER, stream, READABLE), Ok(READABLE), "an error to collect");
    assert_eq!(net.recv(&SERVER, stream), Err(Error::ConnectionReset));
    assert_eq!(wait(&mut net, &APP, listener, READABLE), Err(Error::Invalid));
    assert_eq!(
        net.call(&SERVER, op::WAIT, listener, &[1]).map(|r| r.0),
        Err(Error::Invalid),
        "short interest"
    );
}
