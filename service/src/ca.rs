//! The service's certificate authority: it issues the short-lived (24 h) X.509 device
//! certificates — for the device's own P-256 identity key, which the service knows only as a
//! public key — and the server certificate of the device port.
//!
//! The CA key lives in the database (setting `ca`), created at the first start, so every
//! replica on one PostgreSQL issues under the same CA. Devices trust its certificate as the
//! anchor for the service, and the maker's own services trust it to accept device
//! certificates.

use p256::ecdsa::VerifyingKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use thiserror::Error;
use time::OffsetDateTime;

/// How long a device certificate is valid.
pub const DEVICE_CERT_LIFETIME_S: i64 = 24 * 3600;

#[derive(Debug, Error)]
pub enum CaError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the stored CA key is unusable: {0}")]
    Stored(String),
}

/// A device's P-256 public key (SEC1 uncompressed), as the certificate's subject key.
struct DevicePublicKey(Vec<u8>);

impl PublicKeyData for DevicePublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

pub struct Ca {
    key: KeyPair,
    /// The CA as rcgen's issuer (its subject and key are those of the stored certificate).
    issuer: rcgen::Certificate,
    /// The stored CA certificate, the same for every replica.
    cert_pem: String,
    cert_der: Vec<u8>,
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Septa");
    dn.push(DnType::CommonName, common);
    dn
}

fn serial() -> SerialNumber {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name = name("Septa service CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at(1_700_000_000);
    params.not_after = at(4_102_444_800); // 2100-01-01
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    Ok(params)
}

impl Ca {
    /// A new CA, as the text the database keeps (JSON: key, certificate PEM and DER).
    pub fn new_stored() -> String {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key generation");
        let cert = ca_params().and_then(|p| Ok(p.self_signed(&key)?)).expect("a self-signed CA certificate");
        serde_json::json!({
            "key": key.serialize_pem(),
            "cert_pem": cert.pem(),
            "cert_der": hex::encode(cert.der()),
        })
        .to_string()
    }

    /// The CA from what [`Ca::new_stored`] made.
    pub fn from_stored(text: &str) -> Result<Ca, CaError> {
        let stored: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CaError::Stored(e.to_string()))?;
        let field = |name: &str| {
            stored[name].as_str().map(str::to_string).ok_or_else(|| CaError::Stored(format!("no {name}")))
        };
        let key = KeyPair::from_pem(&field("key")?).map_err(|e| CaError::Stored(e.to_string()))?;
        let cert_der = hex::decode(field("cert_der")?).map_err(|e| CaError::Stored(e.to_string()))?;
        let issuer = ca_params()?.self_signed(&key)?;
        Ok(Ca { key, issuer, cert_pem: field("cert_pem")?, cert_der })
    }

    pub fn certificate_pem(&self) -> String {
        self.cert_pem.clone()
    }

    pub fn certificate_der(&self) -> Vec<u8> {
        self.cert_der.clone()
    }

    /// A device certificate for `device_key`, valid from `now` for 24 hours: DER and
    /// expiry.
    pub fn issue_device(
        &self,
        device_id: &str,
        device_key: &VerifyingKey,
        now: i64,
    ) -> Result<(Vec<u8>, i64), CaError> {
        let public = DevicePublicKey(device_key.to_encoded_point(false).as_bytes().to_vec());
        let mut params = CertificateParams::new(Vec::new())?;
        params.distinguished_name = name(device_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial());
        let not_after = now + DEVICE_CERT_LIFETIME_S;
        params.not_before = at(now - 300);
        params.not_after = at(not_after);
        let cert = params.signed_by(&public, &self.issuer, &self.key)?;
        Ok((cert.der().to_vec(), not_after))
    }

    /// A server certificate for the device port, for `names` (DNS names or IP addresses):
    /// (certificate DER, private key DER).
    pub fn issue_server(&self, names: Vec<String>, now: i64) -> Result<(Vec<u8>, Vec<u8>), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = name("septa-service device port");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial());
        params.not_before = at(now - 300);
        params.not_after = at(now + 365 * 86_400);
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok((cert.der().to_vec(), key.serialize_der()))
    }
}
