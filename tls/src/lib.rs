//! `septa-tls`: the TLS 1.3 client for Septa apps, with mutual authentication.
//!
//! Built on `embedded-tls` (TLS 1.3 only, no allocator; AES-128-GCM, P-256) over any
//! `embedded-io` byte stream — the device's sockets, or a host TCP stream in tests. This
//! crate closes what that engine leaves open:
//! - **The server is always verified.** [`connect`] takes a [`TrustAnchors`] set (at least
//!   one CA, from the app's signed image), the server's DNS name and the device's time;
//!   there is no way to connect without them. Chains are checked with `rustls-webpki`
//!   (basicConstraints and issuer chaining, server-auth usage, name, validity, P-256
//!   signatures), then the server's CertificateVerify with the leaf's key; a server that
//!   skips either step is refused after the handshake, before a byte of application data.
//! - **The client key stays in the monitor.** The client's CertificateVerify is signed by a
//!   [`CertificateVerifySigner`], which gets only the 32-byte transcript hash (on the device:
//!   the monitor's `device-auth` service, which builds the signed content itself).
//! - **A signer failure is an error, not a panic.** The engine cannot take an error from
//!   a signature; when the signer fails, the transport refuses to send the flight that would
//!   carry the unsigned CertificateVerify and the handshake ends with [`Error::Signer`].

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

mod verify;

pub use pki_types::CertificateDer;
pub use pki_types::ServerName;
pub use verify::{
    CertificateError, EcdsaP256Sha256, Progress, ServerVerifier, TrustAnchors, Usage, unix_time, verify_chain,
};

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, Ordering};
use embedded_tls::blocking::{
    Aes128GcmSha256, Certificate, CryptoProvider, TlsConfig, TlsConnection, TlsContext,
};
use embedded_tls::{SignatureScheme, TlsError};
use rand_core::CryptoRngCore;

/// The trust anchors the app's manifest names (`[tls] trust-anchors`), embedded by the
/// build script `userland/build-tls-app.rs`: an array of [`CertificateDer`].
#[macro_export]
macro_rules! trust_anchors {
    () => {
        include!(concat!(env!("OUT_DIR"), "/trust_anchors.rs"))
    };
}

/// Size of the buffer for received records: a full TLS record (16 KiB) plus its overhead.
pub const READ_BUFFER: usize = 16 * 1024 + 256;
/// Size of the buffer for records being sent (the handshake's largest flight fits).
pub const WRITE_BUFFER: usize = 4096;

/// Why a connection was refused or ended.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    /// The app gave no trust anchor (or too many).
    NoTrustAnchor,
    /// A trust anchor does not parse as a CA certificate.
    BadTrustAnchor,
    /// The server name is not a DNS name.
    BadServerName,
    /// The server's certificate chain was refused.
    ServerCertificate(CertificateError),
    /// The server did not prove it holds its certificate's key (a bad or missing
    /// CertificateVerify, or a signature scheme other than ECDSA P-256).
    ServerNotAuthenticated,
    /// The signer (the monitor) did not sign the client CertificateVerify.
    Signer(SignError),
    /// The client certificate is missing or too large.
    NoClientCertificate,
    /// The server ended the handshake with this alert (e.g. 70: protocol version — a
    /// server without TLS 1.3; 42/48: it refused the client certificate).
    Alert(u8),
    /// The byte stream failed or closed.
    Transport,
    /// The peer broke the protocol (the engine's reason is in the debug text).
    Protocol(TlsError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoTrustAnchor => write!(f, "no trust anchor: refusing to connect"),
            Error::BadTrustAnchor => write!(f, "a trust anchor is not a CA certificate"),
            Error::BadServerName => write!(f, "the server name is not a DNS name"),
            Error::ServerCertificate(e) => write!(f, "server certificate refused: {e}"),
            Error::ServerNotAuthenticated => {
                write!(f, "the server did not prove it holds its certificate's key")
            }
            Error::Signer(e) => write!(f, "the client signature failed: {e}"),
            Error::NoClientCertificate => write!(f, "no usable client certificate"),
            Error::Alert(70) => write!(f, "the server does not speak TLS 1.3 (alert 70, protocol version)"),
            Error::Alert(code) => write!(f, "the server ended the handshake (alert {code})"),
            Error::Transport => write!(f, "the connection failed"),
            Error::Protocol(e) => write!(f, "TLS protocol error ({e:?})"),
        }
    }
}

/// Why a signer did not sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignError {
    /// The app may not use the device key (on the device: no `device-auth` capability).
    Denied,
    /// The signer failed (the monitor answered with an error).
    Failed,
    /// The engine asked to sign something that is not a TLS 1.3 client CertificateVerify.
    NotCertificateVerify,
}

impl core::fmt::Display for SignError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SignError::Denied => "the app may not use the device key (no device-auth capability)",
            SignError::Failed => "the signer failed",
            SignError::NotCertificateVerify => "asked to sign something other than a CertificateVerify",
        })
    }
}

/// Signs TLS 1.3 client CertificateVerify messages with a key the app does not hold.
pub trait CertificateVerifySigner {
    /// ECDSA P-256 / SHA-256 signature (r ‖ s) of the RFC 8446 §4.4.3 client content for
    /// `transcript_hash` (see `septa_abi::device_auth::client_certificate_verify`).
    fn sign_certificate_verify(&mut self, transcript_hash: &[u8; 32]) -> Result<[u8; 64], SignError>;
}

impl<S: CertificateVerifySigner + ?Sized> CertificateVerifySigner for &mut S {
    fn sign_certificate_verify(&mut self, transcript_hash: &[u8; 32]) -> Result<[u8; 64], SignError> {
        (**self).sign_certificate_verify(transcript_hash)
    }
}

/// Who the client is: its certificate (DER) and the signer for its key.
pub struct ClientIdentity<'a, S> {
    pub certificate: &'a [u8],
    pub signer: S,
}

/// The server the app connects to and what it trusts about it.
pub struct ServerCheck<'a> {
    pub anchors: &'a TrustAnchors<'a>,
    /// The server's DNS name, which its certificate must carry.
    pub name: &'a str,
    /// The device's wall-clock time, in seconds since 1970, for certificate validity.
    pub now_unix: u64,
}

/// The memory of one connection, owned by the app (no allocator).
pub struct Buffers {
    read: [u8; READ_BUFFER],
    write: [u8; WRITE_BUFFER],
    /// Set when the signer failed; the transport then sends nothing more.
    sign_failure: Cell<Option<SignError>>,
}

impl Buffers {
    pub const fn new() -> Buffers {
        Buffers { read: [0; READ_BUFFER], write: [0; WRITE_BUFFER], sign_failure: Cell::new(None) }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers::new()
    }
}

/// [`Buffers`] in a `static`, for apps whose stack is smaller than they are:
/// `static BUFFERS: StaticBuffers = StaticBuffers::new();`, then `BUFFERS.take()` once.
pub struct StaticBuffers {
    buffers: UnsafeCell<Buffers>,
    taken: AtomicBool,
}

// SAFETY: the buffers are reached only through `take`, which hands out the one `&mut` at
// most once (the atomic flag), so no two references to them ever exist.
unsafe impl Sync for StaticBuffers {}

impl StaticBuffers {
    pub const fn new() -> StaticBuffers {
        StaticBuffers { buffers: UnsafeCell::new(Buffers::new()), taken: AtomicBool::new(false) }
    }

    /// The buffers, the first time; `None` after that.
    // A `&mut` from `&self` is sound here: the flag hands it out at most once.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut Buffers> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag was clear, so this is the only reference ever made, and the
        // static lives for the whole program.
        Some(unsafe { &mut *self.buffers.get() })
    }
}

impl Default for StaticBuffers {
    fn default() -> Self {
        StaticBuffers::new()
    }
}

/// The byte stream, stopped for good once the signer failed.
struct Guarded<'b, T> {
    inner: T,
    sign_failure: &'b Cell<Option<SignError>>,
}

impl<T: embedded_io::ErrorType> embedded_io::ErrorType for Guarded<'_, T> {
    type Error = embedded_io::ErrorKind;
}

impl<T: embedded_io::Read> embedded_io::Read for Guarded<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.inner.read(buf).map_err(|e| embedded_io::Error::kind(&e))
    }
}

impl<T: embedded_io::Write> embedded_io::Write for Guarded<'_, T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if self.sign_failure.get().is_some() {
            return Err(embedded_io::ErrorKind::PermissionDenied);
        }
        self.inner.write(buf).map_err(|e| embedded_io::Error::kind(&e))
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        if self.sign_failure.get().is_some() {
            return Err(embedded_io::ErrorKind::PermissionDenied);
        }
        self.inner.flush().map_err(|e| embedded_io::Error::kind(&e))
    }
}

/// A DER ECDSA signature, or nothing when the signer failed (never sent: see [`Guarded`]).
struct DerSignature(heapless::Vec<u8, 72>);

impl AsRef<[u8]> for DerSignature {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The engine's view of a [`CertificateVerifySigner`]: it hands over the whole content to
/// sign, from which only the transcript hash goes on.
struct EngineSigner<'s, S> {
    signer: &'s mut S,
    sign_failure: &'s Cell<Option<SignError>>,
}

impl<S: CertificateVerifySigner> EngineSigner<'_, S> {
    fn sign(&mut self, content: &[u8]) -> Result<DerSignature, SignError> {
        let hash =
            septa_abi::device_auth::transcript_hash_of(content).ok_or(SignError::NotCertificateVerify)?;
        let raw = self.signer.sign_certificate_verify(&hash)?;
        let signature = p256::ecdsa::Signature::from_slice(&raw).map_err(|_| SignError::Failed)?;
        let der = signature.to_der();
        Ok(DerSignature(heapless::Vec::from_slice(der.as_bytes()).map_err(|_| SignError::Failed)?))
    }
}

impl<S: CertificateVerifySigner> signature::SignerMut<DerSignature> for EngineSigner<'_, S> {
    fn try_sign(&mut self, content: &[u8]) -> Result<DerSignature, signature::Error> {
        // Never an error here: the engine would panic on it. A failure is recorded instead,
        // the transport then refuses to send, and the handshake ends with that error.
        Ok(self.sign(content).unwrap_or_else(|error| {
            self.sign_failure.set(Some(error));
            DerSignature(heapless::Vec::new())
        }))
    }
}

struct Provider<'p, 'v, 'i, R, S> {
    rng: &'p mut R,
    verifier: &'p mut ServerVerifier<'v>,
    identity: &'p mut ClientIdentity<'i, S>,
    sign_failure: &'p Cell<Option<SignError>>,
}

impl<R: CryptoRngCore, S: CertificateVerifySigner> CryptoProvider for Provider<'_, '_, '_, R, S> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl embedded_tls::TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut *self.verifier)
    }

    fn signer(&mut self) -> Result<(impl signature::SignerMut<Self::Signature>, SignatureScheme), TlsError> {
        let signer = EngineSigner { signer: &mut self.identity.signer, sign_failure: self.sign_failure };
        Ok((signer, SignatureScheme::EcdsaSecp256r1Sha256))
    }

    fn client_cert(&mut self) -> Option<Certificate<impl AsRef<[u8]>>> {
        Some(Certificate::X509(self.identity.certificate))
    }
}

/// An open, mutually authenticated TLS 1.3 session.
pub struct Session<'b, T: embedded_io::Read + embedded_io::Write> {
    connection: TlsConnection<'b, Guarded<'b, T>, Aes128GcmSha256>,
}

/// Opens a TLS 1.3 session over `transport` to the server `server` describes, as the
/// client `identity`; `rng` supplies the handshake's randomness.
pub fn connect<'b, T, R, S>(
    transport: T,
    buffers: &'b mut Buffers,
    server: &ServerCheck<'_>,
    identity: &mut ClientIdentity<'_, S>,
    rng: &mut R,
) -> Result<Session<'b, T>, Error>
where
    T: embedded_io::Read + embedded_io::Write,
    R: CryptoRngCore,
    S: CertificateVerifySigner,
{
    if identity.certificate.is_empty() || identity.certificate.len() > septa_abi::device_auth::CERTIFICATE_MAX
    {
        return Err(Error::NoClientCertificate);
    }
    let mut verifier = ServerVerifier::new(server.anchors, server.name, server.now_unix)?;
    let Buffers { read, write, sign_failure } = buffers;
    sign_failure.set(None);
    let sign_failure: &'b Cell<Option<SignError>> = sign_failure;
    let guarded = Guarded { inner: transport, sign_failure };
    let mut connection = TlsConnection::new(guarded, read, write);
    let config = TlsConfig::new().with_server_name(server.name);
    let provider = Provider { rng, verifier: &mut verifier, identity, sign_failure };
    let opened = connection.open(TlsContext::new(&config, provider));
    if let Some(error) = sign_failure.get() {
        return Err(Error::Signer(error));
    }
    if let Some(error) = verifier.refused {
        return Err(error);
    }
    opened.map_err(from_engine)?;
    // The engine carries on if a server skips its Certificate or CertificateVerify:
    // refuse here, before any application data.
    if verifier.progress() != Progress::SignatureVerified {
        return Err(Error::ServerNotAuthenticated);
    }
    Ok(Session { connection })
}

fn from_engine(error: TlsError) -> Error {
    match error {
        TlsError::HandshakeAborted(_, description) => Error::Alert(description as u8),
        TlsError::Io(_) | TlsError::ConnectionClosed | TlsError::IoError => Error::Transport,
        other => Error::Protocol(other),
    }
}

impl<T: embedded_io::Read + embedded_io::Write> Session<'_, T> {
    /// Sends `data` (encrypted) and flushes it.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let sent = self.connection.write(data).map_err(from_engine)?;
            data = &data[sent..];
        }
        self.connection.flush().map_err(from_engine)
    }

    /// Receives application data into `buf`; 0 once the server closed the session.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match self.connection.read(buf) {
            Ok(n) => Ok(n),
            Err(TlsError::ConnectionClosed) => Ok(0),
            Err(error) => Err(from_engine(error)),
        }
    }

    /// Sends close_notify and gives the byte stream back.
    pub fn close(self) -> Result<T, Error> {
        match self.connection.close() {
            Ok(guarded) => Ok(guarded.inner),
            Err((_, error)) => Err(from_engine(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signature::SignerMut;

    struct Recorder(Option<[u8; 32]>);

    impl CertificateVerifySigner for Recorder {
        fn sign_certificate_verify(&mut self, hash: &[u8; 32]) -> Result<[u8; 64], SignError> {
            self.0 = Some(*hash);
            let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
            let content = septa_abi::device_auth::client_certificate_verify(hash);
            let signature: p256::ecdsa::Signature = signature::Signer::sign(&key, &content);
            Ok(signature.to_bytes().into())
        }
    }

    #[test]
    fn the_signer_gets_only_the_transcript_hash_of_a_client_certificate_verify() {
        let failure = Cell::new(None);
        let mut recorder = Recorder(None);
        let mut engine = EngineSigner { signer: &mut recorder, sign_failure: &failure };
        let content = septa_abi::device_auth::client_certificate_verify(&[9; 32]);
        let signature = engine.try_sign(&content).unwrap();
        assert_eq!(recorder.0, Some([9; 32]));
        assert!(p256::ecdsa::DerSignature::try_from(signature.as_ref()).is_ok(), "DER encoded");
        assert_eq!(failure.get(), None);
    }

    #[test]
    fn content_that_is_not_a_client_certificate_verify_is_not_signed_and_stops_the_transport() {
        let failure = Cell::new(None);
        let mut recorder = Recorder(None);
        let mut engine = EngineSigner { signer: &mut recorder, sign_failure: &failure };
        let signature = engine.try_sign(b"a certificate body to sign").unwrap();
        assert!(signature.as_ref().is_empty());
        assert_eq!(recorder.0, None, "the signer was never asked");
        assert_eq!(failure.get(), Some(SignError::NotCertificateVerify));
        struct Sink;
        impl embedded_io::ErrorType for Sink {
            type Error = embedded_io::ErrorKind;
        }
        impl embedded_io::Write for Sink {
            fn write(&mut self, _: &[u8]) -> Result<usize, Self::Error> {
                panic!("the transport must not be written after a signer failure")
            }
            fn flush(&mut self) -> Result<(), Self::Error> {
                Ok(())
            }
        }
        let mut guarded = Guarded { inner: Sink, sign_failure: &failure };
        assert_eq!(
            embedded_io::Write::write(&mut guarded, b"flight"),
            Err(embedded_io::ErrorKind::PermissionDenied)
        );
    }

    #[test]
    fn a_server_that_skips_its_certificate_is_not_authenticated() {
        extern crate std;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let anchors = [CertificateDer::from(ca.der().as_ref())];
        let anchors = TrustAnchors::new(&anchors).unwrap();
        let mut verifier = ServerVerifier::new(&anchors, "service.septa.test", 1_800_000_000).unwrap();
        // A CertificateVerify with no Certificate before it.
        let verify = embedded_tls::CertificateVerifyRef {
            signature_scheme: SignatureScheme::EcdsaSecp256r1Sha256,
            signature: &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
        };
        let result = embedded_tls::TlsVerifier::<Aes128GcmSha256>::verify_signature(&mut verifier, verify);
        assert!(result.is_err());
        assert!(matches!(verifier.refused, Some(Error::ServerNotAuthenticated)));
        assert_eq!(verifier.progress(), Progress::Nothing, "connect refuses the session at this progress");
        assert!(matches!(
            verifier.check_signature(&[0; 32], SignatureScheme::EcdsaSecp256r1Sha256, &[]),
            Err(Error::ServerNotAuthenticated)
        ));
        assert!(matches!(ServerVerifier::new(&anchors, "127.0.0.1", 0), Err(Error::BadServerName)));
    }
}
