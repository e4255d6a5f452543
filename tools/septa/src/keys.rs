//! Key and secret files on the host: OEM signing keys (PKCS#8 PEM) and device secrets.

use anyhow::{Context, Result, bail};
use p256::SecretKey;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use std::path::Path;

/// Creates a new random P-256 key pair: `<stem>.pem` (private, PKCS#8) and `<stem>.pub.pem`.
pub fn generate(private: &Path, public: &Path) -> Result<SigningKey> {
    let secret = SecretKey::random(&mut rand_core::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).context("encoding the private key")?;
    let public_pem =
        secret.public_key().to_public_key_pem(LineEnding::LF).context("encoding the public key")?;
    crate::image::write_atomically(private, pem.as_bytes())?;
    crate::image::write_atomically(public, public_pem.as_bytes())?;
    Ok(SigningKey::from(secret))
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 PEM P-256 private key ({e})", path.display()))
}

/// A public key from a PEM file, or the public half of a private-key PEM file.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(&text) {
        return Ok(key);
    }
    if let Ok(key) = SigningKey::from_pkcs8_pem(&text) {
        return Ok(*key.verifying_key());
    }
    bail!("{}: not a PEM P-256 public or private key", path.display())
}

/// A 32-byte device secret: a file of exactly 32 bytes.
pub fn load_secret(path: &Path) -> Result<[u8; 32]> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!("{}: a device secret is 32 bytes, this file has {}", path.display(), b.len())
    })
}

/// Creates a random 32-byte device secret.
pub fn generate_secret(path: &Path) -> Result<[u8; 32]> {
    use rand_core::RngCore;
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    crate::image::write_atomically(path, &secret)?;
    Ok(secret)
}

/// The public device identity key of a device secret, as the monitor derives it.
pub fn device_public_key(device_secret: &[u8; 32]) -> VerifyingKey {
    let seed = septa_abi::keys::identity_seed(device_secret);
    *septa_abi::keys::device_identity_key(&seed).verifying_key()
}

pub fn write_public_key(path: &Path, key: &VerifyingKey) -> Result<()> {
    let pem = key.to_public_key_pem(LineEnding::LF).context("encoding the public key")?;
    crate::image::write_atomically(path, pem.as_bytes())
}
