//! Networking: apps reach TCP servers on the host's loopback through the network service
//! and the virtio-net driver, only where their manifests say, and failures (a refused
//! destination, a server that goes away, a driver that dies) are errors, never hangs.
//!
//! The servers are real TCP servers on `127.0.0.1`, on ports the system picks; QEMU's user
//! network (`restrict=on`) forwards `devhost:7/8/9` to them through `septa relay`. The other
//! way, a client on `127.0.0.1` reaches the `server` app's listening port through a host
//! forward (`hostfwd`, loopback only).

use septa_qemu::Network;
use septa_tests::{Boot, septa_path, variant_images};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;

/// What a test server saw: connections, and per connection the bytes and their SHA-256.
#[derive(Default)]
struct Seen {
    connections: usize,
    streams: Vec<(usize, [u8; 32])>,
}

/// An echo server on loopback; with `cut_after`, it closes each connection once it has
/// echoed that many bytes.
fn server(cut_after: Option<usize>) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            shared.lock().unwrap().connections += 1;
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (mut total, mut hash, mut buffer) = (0, Sha256::new(), vec![0u8; 64 * 1024]);
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    hash.update(&buffer[..n]);
                    total += n;
                    if cut_after.is_some_and(|cut| total >= cut) {
                        break;
                    }
                }
                shared.lock().unwrap().streams.push((total, hash.finalize().into()));
            });
        }
    });
    (address, seen)
}

/// The bytes `netclient` sends: xorshift32 seeded by the FNV-1a hash of the case name.
fn pattern_hash(name: &str, len: usize) -> String {
    let mut state = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    hex(&Sha256::digest(&bytes).into())
}

/// Waits (at most 10 s) until `done` holds.
fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn apps_reach_exactly_their_destinations_and_failures_are_errors() {
    let (echo, echoed) = server(None);
    let (forbidden, forbidden_seen) = server(None);
    let (cutoff, cut) = server(Some(64 * 1024));
    let host_port = free_port();
    let network = Network::default()
        .relay(7, &septa_path(), echo)
        .relay(8, &septa_path(), forbidden)
        .relay(9, &septa_path(), cutoff)
        .host_forward(host_port, 8080);
    let mut qemu = Boot::new(variant_images("net")).network(network).spawn();

    // 1 MiB and 256 KiB each way, at the same time, intact.
    let big = pattern_hash("echo-big", 1 << 20);
    let small = pattern_hash("echo-small", 256 << 10);
    qemu.wait_for(&format!("[echo-big] echoed 1048576 bytes, sha256 {big}"));
    qemu.wait_for(&format!("[echo-small] echoed 262144 bytes, sha256 {small}"));
    // A destination the manifest does not name: refused, and nothing reached the server.
    qemu.wait_for("[denied] connect devhost:8: EACCES");
    // No network capability: the service cannot even be looked up.
    qemu.wait_for("[nocap] lookup net: EACCES, connect devhost:7: EACCES");
    // The server goes away mid-transfer: an error, not a hang.
    qemu.wait_for("[cutoff] cutoff: the server went away after");
    let console = qemu.console();
    let line = console.lines().find(|l| l.starts_with("[cutoff] cutoff:")).unwrap();
    assert!(line.ends_with("ECONNRESET"), "{line}");

    // The host side ends each connection a moment after the app closed it.
    until("the echo server saw both connections end", || echoed.lock().unwrap().streams.len() == 2);
    let mut streams = echoed.lock().unwrap().streams.clone();
    streams.sort();
    assert_eq!(
        streams.iter().map(|s| s.0).collect::<Vec<_>>(),
        [256 << 10, 1 << 20],
        "the server got every byte"
    );
    assert_eq!(hex(&streams[1].1), big, "and exactly the bytes the app sent");
    assert_eq!(hex(&streams[0].1), small);
    assert_eq!(forbidden_seen.lock().unwrap().connections, 0, "the refused connect left the device");
    assert_eq!(cut.lock().unwrap().connections, 1);
    check_listening(&mut qemu, host_port);
}

/// A port on the host's loopback that nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `server` app listens on the port its manifest names and echoes a connection from a
/// client on the host's loopback (QEMU's host forward to it, `restrict=on`); listening on
/// any other port, or without the capability, is refused.
fn check_listening(qemu: &mut septa_tests::Running, host_port: u16) {
    qemu.wait_for("[server] listen 8081: EACCES");
    qemu.wait_for("[denied] connect devhost:8: EACCES, listen 8080: EACCES");
    qemu.wait_for("[server] listening on 8080");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    client.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    // The app sleeps in accept, then in read until the data comes: woken, not polling.
    qemu.wait_for("[server] accept waited ");
    thread::sleep(std::time::Duration::from_millis(500));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let send = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    send.join().unwrap();
    assert_eq!(back.len(), data.len(), "the whole echo came back");
    assert!(back == data, "and exactly the bytes sent");
    qemu.wait_for("[server] served 100000 bytes");
    for what in ["accept", "first read"] {
        let (ms, syscalls) = waited(&qemu.console(), what);
        eprintln!("{what}: waited {ms} ms with {syscalls} syscalls");
        assert!(ms >= 200, "{what} waited {ms} ms");
        assert!(syscalls <= 20, "{what}: {syscalls} syscalls in {ms} ms: the waiting app was scheduled");
    }
}

/// `[server] WHAT waited MS ms with N syscalls`.
fn waited(console: &str, what: &str) -> (u64, u64) {
    let prefix = format!("[server] {what} waited ");
    let line = console.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    (words[0].parse().unwrap(), words[3].parse().unwrap())
}

#[test]
fn a_killed_driver_is_restarted_and_only_its_sockets_fail() {
    let (echo, echoed) = server(None);
    let network = Network::default().relay(7, &septa_path(), echo);
    let mut qemu = Boot::new(variant_images("net-crash")).network(network).spawn();
    qemu.wait_for("[netdev-crash] injected fault");
    qemu.wait_for("septa: supervisor: restarting netdev-crash in");
    qemu.wait_for("[survivor] survivor: new connection echoed 4096 bytes, sha256 ");
    let console = qemu.console();
    let failed = console.lines().find(|l| l.starts_with("[survivor] survivor: transfer failed")).unwrap();
    assert!(failed.ends_with("ECONNRESET"), "the open socket failed cleanly: {failed}");
    assert_eq!(console.matches("[netdev-crash] virtio-net up").count(), 2, "the driver came back");
    // The app without network kept counting across the driver's death.
    let fault = console.find("[netdev-crash] injected fault").unwrap();
    let counts_before = console[..fault].matches("[counter] count").count();
    qemu.wait_for_nth("[counter] count", counts_before + 3);
    assert!(echoed.lock().unwrap().connections >= 2);
    // An app that crashed holding its whole share of sockets gets it again when restarted
    // (its client tells the service it starts afresh), twice over. (A connection may fail
    // while the driver is down; it must never be for want of sockets.)
    qemu.wait_for_nth("[leaker] leaker: 4 connections open; faulting", 3);
    let console = qemu.console();
    let starved =
        console.lines().find(|l| l.starts_with("[leaker] leaker: connection ") && l.ends_with("ENOMEM"));
    assert_eq!(starved, None, "a restarted app found its sockets still taken");
}
