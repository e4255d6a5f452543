//! Server authentication: the server's certificate chain is checked with `rustls-webpki`
//! against the trust anchors the app was built with, for the host name the app asked for,
//! at the device's time; then the server's CertificateVerify is checked with the leaf's key.
//!
//! The handshake engine asks this verifier at two points, but it would also carry on if a
//! server skipped its Certificate and CertificateVerify. So the verifier records how far
//! the server got ([`Progress`]) and the session refuses the connection unless both checks
//! passed — a missing check fails closed.

use crate::Error;
use embedded_tls::{
    CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme, TlsCipherSuite, TlsVerifier,
};
use p256::ecdsa::signature::Verifier;
use pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, ServerName, SignatureVerificationAlgorithm,
    TrustAnchor, UnixTime,
};
use sha2::Digest;
use webpki::{EndEntityCert, KeyUsage};

/// The most certificates a server may send (leaf and intermediates).
pub const CHAIN_MAX: usize = 4;
/// The most trust anchors one connection takes.
pub const ANCHORS_MAX: usize = 8;

/// ECDSA P-256 with SHA-256, the one signature algorithm Septa accepts in server chains,
/// implemented with the RustCrypto `p256` crate (the device's crypto).
#[derive(Debug)]
pub struct EcdsaP256Sha256;

impl SignatureVerificationAlgorithm for EcdsaP256Sha256 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature = p256::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &signature).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        pki_types::alg_id::ECDSA_P256
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        pki_types::alg_id::ECDSA_SHA256
    }
}

static ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[&EcdsaP256Sha256];

/// The CA certificates (DER) an app trusts for servers. Apps take them from their image:
/// `septa_tls::trust_anchors!()` embeds the ones the manifest names.
pub struct TrustAnchors<'a> {
    anchors: heapless::Vec<TrustAnchor<'a>, ANCHORS_MAX>,
}

impl<'a> TrustAnchors<'a> {
    /// Parses the certificates. At least one is needed: no trust anchor, no connection.
    pub fn new(certificates: &'a [CertificateDer<'a>]) -> Result<TrustAnchors<'a>, Error> {
        if certificates.is_empty() || certificates.len() > ANCHORS_MAX {
            return Err(Error::NoTrustAnchor);
        }
        let mut anchors = heapless::Vec::new();
        for certificate in certificates {
            let anchor = webpki::anchor_from_trusted_cert(certificate).map_err(|_| Error::BadTrustAnchor)?;
            let _ = anchors.push(anchor); // cannot fail: at most ANCHORS_MAX
        }
        Ok(TrustAnchors { anchors })
    }
}

/// How far the server has authenticated itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Nothing,
    ChainVerified,
    SignatureVerified,
}

/// Why a server's certificate was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateError {
    /// No chain to one of the trust anchors.
    UnknownIssuer,
    /// Outside its validity period at the device's time.
    Expired,
    NotYetValid,
    /// Not valid for the host name the app connects to.
    WrongName,
    /// A certificate in the chain is used as a CA but is not one (basicConstraints).
    NotACa,
    /// The leaf is not for server authentication (extended key usage).
    WrongUsage,
    /// A signature in the chain does not verify, or uses an algorithm other than P-256.
    BadSignature,
    /// The server sent no certificate, too many, or one that does not parse.
    Malformed,
}

impl CertificateError {
    fn from_webpki(error: &webpki::Error) -> CertificateError {
        use webpki::Error as E;
        match error {
            E::UnknownIssuer => CertificateError::UnknownIssuer,
            E::CertExpired { .. } => CertificateError::Expired,
            E::CertNotValidYet { .. } => CertificateError::NotYetValid,
            E::CertNotValidForName(_) => CertificateError::WrongName,
            E::CaUsedAsEndEntity | E::EndEntityUsedAsCa | E::PathLenConstraintViolated => {
                CertificateError::NotACa
            }
            E::RequiredEkuNotFoundContext(_) => CertificateError::WrongUsage,
            E::InvalidSignatureForPublicKey
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::BadSignature,
            _ => CertificateError::Malformed,
        }
    }
}

impl core::fmt::Display for CertificateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CertificateError::UnknownIssuer => "not issued by a trusted CA",
            CertificateError::Expired => "expired",
            CertificateError::NotYetValid => "not valid yet",
            CertificateError::WrongName => "not valid for the server's name",
            CertificateError::NotACa => "a certificate in the chain is not a CA",
            CertificateError::WrongUsage => "not a server certificate",
            CertificateError::BadSignature => "a signature in the chain does not verify (or is not P-256)",
            CertificateError::Malformed => "missing or malformed",
        })
    }
}

/// What a chain's leaf must be good for.
#[derive(Clone, Copy, Debug)]
pub enum Usage<'n> {
    /// A TLS server with this name.
    Server(&'n ServerName<'n>),
    /// A TLS client (a device certificate).
    Client,
}

/// Checks a certificate chain (leaf first, then intermediates) against `anchors` at `now`:
/// issuer chaining and basicConstraints up to an anchor, validity, P-256 signatures, the
/// extended key usage and, for a server, its name.
pub fn verify_chain(
    anchors: &TrustAnchors<'_>,
    chain: &[&[u8]],
    now: UnixTime,
    usage: Usage<'_>,
) -> Result<(), CertificateError> {
    let (leaf, intermediates) = chain.split_first().ok_or(CertificateError::Malformed)?;
    if chain.len() > CHAIN_MAX {
        return Err(CertificateError::Malformed);
    }
    let leaf_der = CertificateDer::from(*leaf);
    let mut intermediate_ders: heapless::Vec<CertificateDer<'_>, CHAIN_MAX> = heapless::Vec::new();
    for der in intermediates {
        let _ = intermediate_ders.push(CertificateDer::from(*der)); // fewer than CHAIN_MAX
    }
    let certificate = EndEntityCert::try_from(&leaf_der).map_err(|_| CertificateError::Malformed)?;
    let key_usage = match usage {
        Usage::Server(_) => KeyUsage::server_auth(),
        Usage::Client => KeyUsage::client_auth(),
    };
    certificate
        .verify_for_usage(ALGORITHMS, &anchors.anchors, &intermediate_ders, now, key_usage, None, None)
        .map_err(|e| CertificateError::from_webpki(&e))?;
    if let Usage::Server(name) = usage {
        certificate.verify_is_valid_for_subject_name(name).map_err(|e| CertificateError::from_webpki(&e))?;
    }
    Ok(())
}

/// Seconds since 1970 as webpki's time.
pub fn unix_time(seconds: u64) -> UnixTime {
    UnixTime::since_unix_epoch(core::time::Duration::from_secs(seconds))
}

/// The verifier of one connection.
pub struct ServerVerifier<'a> {
    anchors: &'a TrustAnchors<'a>,
    name: ServerName<'a>,
    now: UnixTime,
    progress: Progress,
    /// Why the last check failed, for the error the app sees.
    pub(crate) refused: Option<Error>,
    /// The verified leaf's P-256 public key (SEC1), for its CertificateVerify.
    leaf_key: Option<p256::ecdsa::VerifyingKey>,
    transcript: Option<[u8; 32]>,
}

impl<'a> ServerVerifier<'a> {
    /// A verifier for a server called `name` (a DNS name), at `now_unix` seconds.
    pub fn new(anchors: &'a TrustAnchors<'a>, name: &'a str, now_unix: u64) -> Result<Self, Error> {
        let name = ServerName::try_from(name).map_err(|_| Error::BadServerName)?;
        if !matches!(name, ServerName::DnsName(_)) {
            return Err(Error::BadServerName);
        }
        Ok(ServerVerifier {
            anchors,
            name,
            now: unix_time(now_unix),
            progress: Progress::Nothing,
            refused: None,
            leaf_key: None,
            transcript: None,
        })
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Checks the chain (leaf first, then intermediates) the server sent.
    pub fn check_chain(&mut self, chain: &[&[u8]]) -> Result<(), CertificateError> {
        verify_chain(self.anchors, chain, self.now, Usage::Server(&self.name))?;
        let key = leaf_public_key(chain[0]).ok_or(CertificateError::BadSignature)?;
        self.leaf_key = Some(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| CertificateError::BadSignature)?,
        );
        self.progress = Progress::ChainVerified;
        Ok(())
    }

    /// Checks the server's CertificateVerify over `transcript_hash` (the handshake through
    /// the server's Certificate) with the verified leaf's key.
    pub fn check_signature(
        &mut self,
        transcript_hash: &[u8; 32],
        scheme: SignatureScheme,
        signature: &[u8],
    ) -> Result<(), Error> {
        if self.progress != Progress::ChainVerified {
            return Err(Error::ServerNotAuthenticated);
        }
        if scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(Error::ServerNotAuthenticated);
        }
        let mut content = [0x20u8; 64 + 33 + 1 + 32];
        content[64..97].copy_from_slice(b"TLS 1.3, server CertificateVerify");
        content[97] = 0;
        content[98..].copy_from_slice(transcript_hash);
        let key = self.leaf_key.as_ref().ok_or(Error::ServerNotAuthenticated)?;
        let signature =
            p256::ecdsa::DerSignature::try_from(signature).map_err(|_| Error::ServerNotAuthenticated)?;
        key.verify(&content, &signature).map_err(|_| Error::ServerNotAuthenticated)?;
        self.progress = Progress::SignatureVerified;
        Ok(())
    }
}

/// One DER element: its tag, its contents and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (first as usize, rest),
        0x81 => (*rest.first()? as usize, &rest[1..]),
        0x82 => (u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize, rest.get(2..)?),
        _ => return None,
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The P-256 public key (SEC1 uncompressed) in a certificate's subject public key info:
/// Certificate → TBSCertificate → (version, serial, signature, issuer, validity, subject)
/// → SubjectPublicKeyInfo { algorithm (id-ecPublicKey, prime256v1), BIT STRING }.
fn leaf_public_key(certificate: &[u8]) -> Option<&[u8]> {
    const EC_P256: &[u8] = &[
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
        0x01, 0x07,
    ];
    let (0x30, certificate, _) = der_element(certificate)? else { return None };
    let (0x30, mut tbs, _) = der_element(certificate)? else { return None };
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs)?.2; // the explicit version
    }
    for _ in 0..5 {
        tbs = der_element(tbs)?.2; // serial, signature, issuer, validity, subject
    }
    let (0x30, spki, _) = der_element(tbs)? else { return None };
    let (0x30, algorithm, rest) = der_element(spki)? else { return None };
    let (0x03, bits, _) = der_element(rest)? else { return None };
    (algorithm == EC_P256 && bits.len() == 66 && bits[0] == 0).then(|| &bits[1..])
}

impl<CipherSuite: TlsCipherSuite> TlsVerifier<CipherSuite> for ServerVerifier<'_> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), embedded_tls::TlsError> {
        // The name was fixed when the verifier was made, from the same string.
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &CipherSuite::Hash,
        certificate: CertificateRef,
    ) -> Result<(), embedded_tls::TlsError> {
        let mut chain: heapless::Vec<&[u8], CHAIN_MAX> = heapless::Vec::new();
        for entry in certificate.entries.iter() {
            let CertificateEntryRef::X509(der) = entry else {
                return self.refuse(Error::ServerCertificate(CertificateError::Malformed));
            };
            if chain.push(der).is_err() {
                return self.refuse(Error::ServerCertificate(CertificateError::Malformed));
            }
        }
        if let Err(error) = self.check_chain(&chain) {
            return self.refuse(Error::ServerCertificate(error));
        }
        let hash = transcript.clone().finalize();
        let Ok(hash) = <[u8; 32]>::try_from(&hash[..]) else {
            return self.refuse(Error::ServerNotAuthenticated);
        };
        self.transcript = Some(hash);
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), embedded_tls::TlsError> {
        let Some(hash) = self.transcript.take() else {
            return self.refuse(Error::ServerNotAuthenticated);
        };
        match self.check_signature(&hash, verify.signature_scheme, verify.signature) {
            Ok(()) => Ok(()),
            Err(error) => self.refuse(error),
        }
    }
}

impl ServerVerifier<'_> {
    fn refuse(&mut self, error: Error) -> Result<(), embedded_tls::TlsError> {
        self.refused = Some(error);
        Err(embedded_tls::TlsError::InvalidCertificate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_key_is_found_only_in_a_p256_subject_public_key_info() {
        extern crate std;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let certificate =
            rcgen::CertificateParams::new(std::vec!["a.test".into()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(leaf_public_key(certificate.der()), Some(key.public_key_raw()));
        let der = certificate.der().to_vec();
        for cut in [0, 1, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(leaf_public_key(&der[..cut]), None, "cut at {cut}");
        }
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let other =
            rcgen::CertificateParams::new(std::vec!["a.test".into()]).unwrap().self_signed(&p384).unwrap();
        assert_eq!(leaf_public_key(other.der()), None, "not P-256");
    }
}
