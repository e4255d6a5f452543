//! The device side of `septa-tls`: what connects the TLS client to Septa's services.
//!
//! - [`DeviceKey`] signs the client CertificateVerify through the monitor's `device-auth`
//!   service (the app never holds the key; `EACCES` becomes [`SignError::Denied`]).
//! - [`Rng`] is ChaCha20 seeded from the monitor's DRBG, for the handshake's randomness.
//! - [`Socket`] makes a `net::TcpStream` the `embedded-io` byte stream the client reads and
//!   writes.

#![no_std]
#![forbid(unsafe_code)]

use rand_core::{CryptoRng, RngCore, SeedableRng};
use septa_syscalls::net::TcpStream;
use septa_syscalls::{Error, monitor};
use septa_tls::SignError;

/// The signer: the monitor's `device-auth` service.
pub struct DeviceKey;

impl septa_tls::CertificateVerifySigner for DeviceKey {
    fn sign_certificate_verify(&mut self, transcript_hash: &[u8; 32]) -> Result<[u8; 64], SignError> {
        monitor::device_auth_sign(transcript_hash).map_err(|error| match error {
            Error::Access => SignError::Denied,
            _ => SignError::Failed,
        })
    }
}

/// ChaCha20 seeded with 32 bytes from the monitor's DRBG (`monitor = ["random"]`).
pub struct Rng(rand_chacha::ChaCha20Rng);

impl Rng {
    pub fn from_monitor() -> Result<Rng, Error> {
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

/// A TCP stream as the byte stream `septa-tls` reads and writes.
pub struct Socket(pub TcpStream);

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
