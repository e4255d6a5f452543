//! Device certificates: the OEM's device CA, the X.509 certificates it issues for device
//! identity keys, and their place in the flash image.
//!
//! The CA signs a certificate for a device's *public* key: the issuing code is given a
//! SEC1 point and nothing else, so the host never needs, or holds, the device's private
//! key (which exists only in the device's monitor). Certificates are for TLS client
//! authentication (extended key usage `clientAuth`, not a CA) and name the device by its
//! key id. The factory certificate goes into the device-certificate journal of flash 1,
//! where the monitor hands it to apps holding `device-auth`; a newer one installed at run
//! time supersedes it.

use anyhow::{Context, Result, bail};
use p256::ecdsa::VerifyingKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm,
};
use septa_abi::device_auth::{self, CERTIFICATE_MAX};
use septa_abi::flash::MemFlash;
use septa_targets::qemu_virt as board;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// The OEM's device CA: its key and (re-built) certificate, to issue with.
pub struct DeviceCa {
    key: KeyPair,
    certificate: rcgen::Certificate,
}

/// The CA's certificate files (PEM and DER; what servers trust) and key file (PKCS#8 PEM)
/// in a folder.
pub const CA_CERT_FILE: &str = "device-ca.pem";
pub const CA_CERT_DER_FILE: &str = "device-ca.der";
pub const CA_KEY_FILE: &str = "device-ca.key.pem";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Septa OEM");
    name.push(DnType::CommonName, "Septa device CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(30 * 365);
    params
}

impl DeviceCa {
    /// Creates a new device CA and writes its certificate and key into `dir`.
    pub fn create(dir: &Path) -> Result<DeviceCa> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
        let certificate = ca_params().self_signed(&key).context("signing the CA certificate")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::image::write_atomically(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes())?;
        crate::image::write_atomically(&dir.join(CA_CERT_FILE), certificate.pem().as_bytes())?;
        crate::image::write_atomically(&dir.join(CA_CERT_DER_FILE), certificate.der())?;
        Ok(DeviceCa { key, certificate })
    }

    /// Loads the CA of `dir`. Its certificate is rebuilt from the key and the fixed name,
    /// which is all that issuing needs: the issued certificates chain to the file's.
    pub fn load(dir: &Path) -> Result<DeviceCa> {
        let path = dir.join(CA_KEY_FILE);
        let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = KeyPair::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 PEM key ({e})", path.display()))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            bail!("{}: the device CA key must be a P-256 key", path.display());
        }
        let certificate = ca_params().self_signed(&key).context("rebuilding the CA certificate")?;
        Ok(DeviceCa { key, certificate })
    }

    /// Loads the CA of `dir`, creating it first if the folder has none.
    pub fn load_or_create(dir: &Path) -> Result<DeviceCa> {
        if dir.join(CA_KEY_FILE).exists() { DeviceCa::load(dir) } else { DeviceCa::create(dir) }
    }

    /// The CA certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        self.certificate.der()
    }

    /// Issues a TLS client certificate (DER) for `device_key`, valid from `not_before` for
    /// `days` days.
    pub fn issue(&self, device_key: &VerifyingKey, not_before: OffsetDateTime, days: u32) -> Result<Vec<u8>> {
        let public = DevicePublicKey(device_key.to_encoded_point(false).as_bytes().to_vec());
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Septa OEM");
        name.push(
            DnType::CommonName,
            format!("septa device {}", hex::encode(septa_abi::keys::key_id(device_key))),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(days.into());
        let certificate = params
            .signed_by(&public, &self.certificate, &self.key)
            .context("signing the device certificate")?;
        let der = certificate.der().to_vec();
        if der.len() > CERTIFICATE_MAX {
            bail!(
                "the device certificate has {} bytes, more than the device takes ({CERTIFICATE_MAX})",
                der.len()
            );
        }
        Ok(der)
    }
}

/// A development service CA — the CA a host service's TLS certificates come from, which
/// apps name as a trust anchor (`dev-service`) — in a folder: `service-ca.pem`,
/// `service-ca.der`, `service-ca.key.pem`.
pub struct ServiceCa {
    key: KeyPair,
    certificate: rcgen::Certificate,
}

pub const SERVICE_CA_DER_FILE: &str = "service-ca.der";
pub const SERVICE_CA_KEY_FILE: &str = "service-ca.key.pem";

fn service_ca_params() -> CertificateParams {
    let mut params = ca_params();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Septa OEM");
    name.push(DnType::CommonName, "Septa development service CA");
    params.distinguished_name = name;
    params
}

impl ServiceCa {
    /// Loads the service CA of `dir`, creating it first if the folder has none.
    pub fn load_or_create(dir: &Path) -> Result<ServiceCa> {
        let path = dir.join(SERVICE_CA_KEY_FILE);
        if !path.exists() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
            let certificate = service_ca_params().self_signed(&key).context("signing the CA certificate")?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            crate::image::write_atomically(&path, key.serialize_pem().as_bytes())?;
            crate::image::write_atomically(&dir.join("service-ca.pem"), certificate.pem().as_bytes())?;
            crate::image::write_atomically(&dir.join(SERVICE_CA_DER_FILE), certificate.der())?;
            return Ok(ServiceCa { key, certificate });
        }
        let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = KeyPair::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 PEM key ({e})", path.display()))?;
        let certificate = service_ca_params().self_signed(&key).context("rebuilding the CA certificate")?;
        Ok(ServiceCa { key, certificate })
    }

    /// A TLS server certificate (DER) for `names` and its new key (PKCS#8 DER), valid from
    /// `not_before` to `not_after`.
    pub fn issue_server(
        &self,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the server key")?;
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .context("server names")?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let certificate =
            params.signed_by(&key, &self.certificate, &self.key).context("signing the server certificate")?;
        Ok((certificate.der().to_vec(), key.serialize_der()))
    }
}

/// The development service's TLS identity, in the service CA's folder: a certificate for
/// `devhost` (the name devices reach the development service by) with the CA after it, and
/// its key (PKCS#8 PEM).
pub const SERVER_CERT_FILE: &str = "devhost.pem";
pub const SERVER_KEY_FILE: &str = "devhost.key.pem";

/// The development service's certificate chain and key files in `dir` (the service CA's
/// folder), issued on first use — as the CA itself is — so the images, which embed the CA
/// as their trust anchor, and the service, which presents the chain, stay in step from run
/// to run.
pub fn development_server_identity(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert_path, key_path) = (dir.join(SERVER_CERT_FILE), dir.join(SERVER_KEY_FILE));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let ca = ServiceCa::load_or_create(dir)?;
    let now = OffsetDateTime::now_utc();
    let (certificate, key) =
        ca.issue_server(&["devhost"], now - Duration::days(1), now + Duration::days(10 * 365))?;
    let ca_der = std::fs::read(dir.join(SERVICE_CA_DER_FILE))
        .with_context(|| format!("reading {}", dir.join(SERVICE_CA_DER_FILE).display()))?;
    let chain = format!(
        "{}{}",
        pem::encode(&pem::Pem::new("CERTIFICATE", certificate)),
        pem::encode(&pem::Pem::new("CERTIFICATE", ca_der))
    );
    crate::image::write_atomically(&key_path, pem::encode(&pem::Pem::new("PRIVATE KEY", key)).as_bytes())?;
    crate::image::write_atomically(&cert_path, chain.as_bytes())?;
    Ok((cert_path, key_path))
}

/// A device's public key as rcgen takes it: the SEC1 point, no private half.
struct DevicePublicKey(Vec<u8>);

impl PublicKeyData for DevicePublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Offset and sector count of the device-certificate journal in flash 1.
fn journal() -> septa_abi::journal::Journal {
    device_auth::journal(
        board::DEVICE_CERTS.base - board::FLASH1.base,
        board::DEVICE_CERTS.size / board::FLASH_SECTOR,
    )
}

/// Makes `certificate` the device certificate in the flash 1 image `image`.
pub fn store(image: &mut Vec<u8>, certificate: &[u8]) -> Result<()> {
    if image.len() < board::DEVICE_CERTS.end() - board::FLASH1.base {
        bail!("the flash image is too small for the device-certificate area");
    }
    let mut flash = MemFlash::new(std::mem::take(image), board::FLASH_SECTOR);
    let result = device_auth::install(&mut flash, &journal(), certificate);
    *image = flash.bytes;
    result.map_err(|e| anyhow::anyhow!("writing the device certificate: {e}"))
}

/// The device certificate stored in the flash 1 image `image`, if any.
pub fn stored(image: &[u8]) -> Option<Vec<u8>> {
    let flash = MemFlash::new(image.to_vec(), board::FLASH_SECTOR);
    let mut out = vec![0u8; CERTIFICATE_MAX];
    let len = device_auth::current(&flash, &journal(), &mut out)?;
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;

    #[test]
    fn issued_certificates_carry_the_device_key_and_land_in_flash() {
        let dir = std::env::temp_dir().join(format!("septa-device-ca-{}", std::process::id()));
        let ca = DeviceCa::create(&dir).unwrap();
        let device = *SigningKey::from_slice(&[3; 32]).unwrap().verifying_key();
        let der = ca.issue(&device, OffsetDateTime::now_utc(), 1).unwrap();
        let point: [u8; 65] = device.to_encoded_point(false).as_bytes().try_into().unwrap();
        assert!(device_auth::is_certificate_for(&der, &point));
        let other: [u8; 65] = SigningKey::from_slice(&[4; 32])
            .unwrap()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .try_into()
            .unwrap();
        assert!(!device_auth::is_certificate_for(&der, &other));
        // The same CA loaded again issues certificates from the same issuer.
        let again = DeviceCa::load(&dir).unwrap();
        assert_eq!(again.key.public_key_raw(), ca.key.public_key_raw());
        let mut image = vec![0xff; board::DEVICE_CERTS.end() - board::FLASH1.base];
        assert_eq!(stored(&image), None);
        store(&mut image, &der).unwrap();
        assert_eq!(stored(&image), Some(der));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_development_server_identity_is_made_once_and_chains_to_the_service_ca() {
        let dir = std::env::temp_dir().join(format!("septa-service-ca-{}", std::process::id()));
        let (cert, key) = development_server_identity(&dir).unwrap();
        let (chain, private) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
        // Made once: a second call keeps the files (and the CA) as they are.
        let ca = std::fs::read(dir.join(SERVICE_CA_DER_FILE)).unwrap();
        development_server_identity(&dir).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), chain);
        assert_eq!(std::fs::read(&key).unwrap(), private);
        assert_eq!(std::fs::read(dir.join(SERVICE_CA_DER_FILE)).unwrap(), ca);
        // The chain is the server certificate, then the CA itself.
        let blocks = pem::parse_many(&chain).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].contents(), &ca[..]);
        assert_eq!(pem::parse(&private).unwrap().tag(), "PRIVATE KEY");
        // It is for devhost, the name the agent checks.
        assert!(blocks[0].contents().windows(7).any(|w| w == b"devhost"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
