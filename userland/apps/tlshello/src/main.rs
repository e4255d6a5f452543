//! `tlshello`: a mutually authenticated TLS 1.3 session with a service on the development
//! host. It connects to `devhost:8443` (and, in the test image, to the other ports its
//! manifest grants), checks the server against the `dev-service` CA its manifest names at the
//! monitor's wall-clock time, authenticates with the device certificate — the monitor signs
//! the CertificateVerify with the device key — and trades one line. `cargo xtask run`
//! starts such a service on the host's loopback. Every refusal is logged with its reason.

#![no_std]
#![no_main]

use rand_core::{CryptoRng, RngCore, SeedableRng};
use septa_abi::device_auth::CERTIFICATE_MAX;
use septa_syscalls::net::TcpStream;
use septa_syscalls::{self as sys, Error, monitor};
use septa_tls::{
    Buffers, CertificateDer, ClientIdentity, ServerCheck, SignError, StaticBuffers, TrustAnchors,
};

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

/// The signer: the monitor's `device-auth` service. The app never sees the key.
struct DeviceKey;

impl septa_tls::CertificateVerifySigner for DeviceKey {
    fn sign_certificate_verify(&mut self, transcript_hash: &[u8; 32]) -> Result<[u8; 64], SignError> {
        monitor::device_auth_sign(transcript_hash).map_err(|error| match error {
            Error::Access => SignError::Denied,
            _ => SignError::Failed,
        })
    }
}

/// The handshake's randomness: ChaCha20 seeded from the monitor's DRBG for each connection.
struct Rng(rand_chacha::ChaCha20Rng);

impl Rng {
    fn new() -> Result<Rng, Error> {
        let mut seed = [0u8; 32];
        monitor::random(&mut seed)?;
        Ok(Rng(rand_chacha::ChaCha20Rng::from_seed(seed)))
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for Rng {}

/// The socket as the byte stream `septa-tls` reads and writes.
struct Socket(TcpStream);

impl embedded_io::ErrorType for Socket {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf).map_err(|_| embedded_io::ErrorKind::ConnectionReset)
    }
}

impl embedded_io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write_all(buf).map(|()| buf.len()).map_err(|_| embedded_io::ErrorKind::ConnectionReset)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

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
    let mut rng = Rng::new().map_err(|e| Failure::Setup("random", e))?;
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
