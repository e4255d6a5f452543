//! `tlshello`: a mutually authenticated TLS 1.3 session with a service on the development
//! host. It connects to `devhost:8443` (and, in the test image, to the other ports its
//! manifest grants), checks the server against the `dev-service` CA its manifest names at the
//! monitor's wall-clock time, authenticates with the device certificate — the monitor signs
//! the CertificateVerify with the device key — and trades one line. `cargo xtask run`
//! starts such a service on the host's loopback. Every refusal is logged with its reason.

#![no_std]
#![no_main]

use septa_abi::device_auth::CERTIFICATE_MAX;
use septa_syscalls::net::TcpStream;
use septa_syscalls::{self as sys, Error, monitor};
use septa_tls::{Buffers, CertificateDer, ClientIdentity, ServerCheck, StaticBuffers, TrustAnchors};
use septa_tls_device::{DeviceKey, Rng, Socket};

septa_runtime::entry!(main);
septa_runtime::heap!(4 * 1024);

extern crate alloc;

static ANCHORS: &[CertificateDer<'static>] = &septa_tls::trust_anchors!();
static BUFFERS: StaticBuffers = StaticBuffers::new();

/// The name the service's certificate must carry.
const SERVER_NAME: &str = "devhost";
/// The ports tried in order: 8443 is the demo service; the test image grants the others,
/// where the integration test puts servers that must be refused.
const PORTS: [u16; 6] = [8443, 8444, 8445, 8446, 8447, 8448];

/// Why a session did not happen.
enum Failure {
    Setup(&'static str, Error),
    Tls(septa_tls::Error),
}

/// Connects the socket (in a frame of its own: the handshake that follows needs the stack).
#[inline(never)]
fn open(port: u16) -> Result<TcpStream, Error> {
    TcpStream::connect("devhost", port)
}

fn session(port: u16, buffers: &mut Buffers, certificate: &[u8]) -> Result<(), Failure> {
    let now_unix = monitor::wall_clock().map_err(|e| Failure::Setup("clock", e))?;
    let stream = open(port).map_err(|e| Failure::Setup("connect", e))?;
    let anchors = TrustAnchors::new(ANCHORS).map_err(Failure::Tls)?;
    let server = ServerCheck { anchors: &anchors, name: SERVER_NAME, now_unix };
    let mut identity = ClientIdentity { certificate, signer: DeviceKey };
    let mut rng = Rng::from_monitor().map_err(|e| Failure::Setup("random", e))?;
    let mut tls = septa_tls::connect(Socket(stream), buffers, &server, &mut identity, &mut rng)
        .map_err(Failure::Tls)?;
    tls.write_all(b"hello from tlshello\n").map_err(Failure::Tls)?;
    let mut answer = [0u8; 160];
    let mut len = 0;
    while len < answer.len() && !answer[..len].contains(&b'\n') {
        match tls.read(&mut answer[len..]).map_err(Failure::Tls)? {
            0 => break,
            n => len += n,
        }
    }
    let line = core::str::from_utf8(&answer[..len]).unwrap_or("<not UTF-8>").trim_end();
    sys::log!("devhost:{port}: mutual TLS 1.3 session; the service says: {line}");
    // close_notify; the socket closes when it is dropped.
    let _ = tls.close();
    Ok(())
}

fn main() {
    let Some(buffers) = BUFFERS.take() else { return };
    let mut certificate = alloc::vec![0u8; CERTIFICATE_MAX];
    let len = match monitor::device_certificate(&mut certificate) {
        Ok(len) => len,
        Err(error) => {
            sys::log!("no device certificate: {error}");
            return;
        }
    };
    for port in PORTS {
        match session(port, buffers, &certificate[..len]) {
            Ok(()) => {}
            // Ports the manifest does not grant are not tried.
            Err(Failure::Setup("connect", Error::Access)) if port != PORTS[0] => {}
            Err(Failure::Setup(what, error)) => sys::log!("devhost:{port}: {what}: {error}"),
            Err(Failure::Tls(error)) => sys::log!("devhost:{port}: refused: {error}"),
        }
    }
    sys::log!("done");
}
