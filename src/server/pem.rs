//! PEM certificate, key and CA bundle files, a leaf: the config checks them
//! at load time and the TLS listener, the connectors and the JWT signer load
//! them, through the same functions, so both report a bad file the same way.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ParsedCertificate;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::RootCertStore;

/// Which PEM file a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// `cert_file`: the certificate chain.
    Cert,
    /// `key_file`: the private key.
    Key,
    /// `ca_file`: a bundle of trust anchors.
    Ca,
}

impl PemFile {
    /// The config key naming this file.
    pub fn key(self) -> &'static str {
        match self {
            PemFile::Cert => "cert_file",
            PemFile::Key => "key_file",
            PemFile::Ca => "ca_file",
        }
    }
}

/// A certificate or key file that cannot be used, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", file.key())]
pub struct LoadError {
    /// Which file.
    pub file: PemFile,
    /// What is wrong with it (names the path).
    pub message: String,
}

impl LoadError {
    pub(super) fn new(file: PemFile, path: &Path, why: impl fmt::Display) -> Self {
        Self {
            file,
            message: format!("{}: {why}", path.display()),
        }
    }
}

/// The crypto provider for the listener: ring, explicitly, so the process
/// never depends on which provider happens to be installed as the default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and checks that the leaf parses.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    parse_certs(&read(PemFile::Cert, path)?, path)
}

/// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`)
/// or SEC1 (`EC PRIVATE KEY`).
pub fn read_key(path: &Path) -> Result<Arc<dyn SigningKey>, LoadError> {
    parse_key(&read(PemFile::Key, path)?, path)
}

/// Reads a PEM CA bundle and checks that every certificate in it can be a
/// trust anchor; the message is one line naming the file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let shown = path.display();
    let bad = |message: String| LoadError {
        file: PemFile::Ca,
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read {shown:?}: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{shown:?} is not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(bad(format!("{shown:?} contains no CERTIFICATE block")));
    }
    for (i, cert) in certs.iter().enumerate() {
        RootCertStore::empty().add(cert.clone()).map_err(|e| {
            bad(format!(
                "certificate {} in {shown:?} is unusable: {e}",
                i + 1
            ))
        })?;
    }
    Ok(certs)
}

/// An ES256 (ECDSA P-256) signing key and the PKCS#8 bytes it was read as
/// (the JWT signer derives its session-hash key from them).
pub struct P256Key {
    /// The key pair, signing fixed-size (JOSE) signatures.
    pub pair: EcdsaKeyPair,
    /// PKCS#8 form of the private key.
    pub pkcs8: Vec<u8>,
}

impl fmt::Debug for P256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P256Key(<redacted>)")
    }
}

/// Reads a PEM EC P-256 private key, PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC
/// PRIVATE KEY`, with its public key, as OpenSSL writes it).
pub fn read_p256_key(path: &Path) -> Result<P256Key, LoadError> {
    parse_p256_key(&read(PemFile::Key, path)?, path)
}

/// [`read_p256_key`] on bytes already read.
pub fn parse_p256_key(pem: &[u8], path: &Path) -> Result<P256Key, LoadError> {
    let bad = |why: &dyn fmt::Display| LoadError::new(PemFile::Key, path, why);
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            bad(&"no PRIVATE KEY or EC PRIVATE KEY block found")
        }
        other => bad(&other),
    })?;
    let pkcs8 = match der {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der()),
        _ => return Err(bad(&"an RSA key; want an EC P-256 key")),
    };
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8,
        &SystemRandom::new(),
    )
    .map_err(|e| {
        bad(&format_args!(
            "not an EC P-256 private key with its public key ({e})"
        ))
    })?;
    Ok(P256Key { pair, pkcs8 })
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` for P-256 (RFC
/// 5208 over RFC 5915), the one form ring reads; rustls' ring provider does
/// the same. A key on another curve names it in its own parameters, which
/// ring then finds do not match and refuses.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // INTEGER 0, SEQUENCE { OID id-ecPublicKey, OID prime256v1 }
    const VERSION_AND_ALGORITHM: &[u8] = &[
        0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut octets = vec![0x04];
    octets.extend(der_len(sec1.len()));
    octets.extend_from_slice(sec1);
    let mut out = vec![0x30];
    out.extend(der_len(VERSION_AND_ALGORITHM.len() + octets.len()));
    out.extend_from_slice(VERSION_AND_ALGORITHM);
    out.extend(octets);
    out
}

/// A DER length (keys are far below 64 KiB).
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn read(file: PemFile, path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::new(file, path, e))
}

pub fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bad = |why: &dyn fmt::Display| LoadError::new(PemFile::Cert, path, why);
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let leaf = certs
        .first()
        .ok_or_else(|| bad(&"no CERTIFICATE block found"))?;
    ParsedCertificate::try_from(leaf).map_err(|e| bad(&format_args!("leaf certificate: {e}")))?;
    Ok(certs)
}

pub fn parse_key(pem: &[u8], path: &Path) -> Result<Arc<dyn SigningKey>, LoadError> {
    let bad = |why: &dyn fmt::Display| LoadError::new(PemFile::Key, path, why);
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            bad(&"no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found")
        }
        other => bad(&other),
    })?;
    provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| bad(&format_args!("unusable key: {e}")))
}

/// Pairs a chain with its key; a key that is not the leaf's is the key file's fault.
pub fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, LoadError> {
    let pair = CertifiedKey::new(certs, key);
    match pair.keys_match() {
        // ring keys always expose their public half; Unknown is rustls' "cannot tell".
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(LoadError::new(
            PemFile::Key,
            key_file,
            format_args!(
                "does not belong to the certificate in {}",
                cert_file.display()
            ),
        )),
        Err(e) => Err(LoadError::new(PemFile::Cert, cert_file, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_keys_load_from_pkcs8_and_sec1_and_other_keys_are_refused() {
        use ring::signature::KeyPair;
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
        let pkcs8 = read_p256_key(&data.join("ec-p256.pkcs8.key")).unwrap();
        let sec1 = read_p256_key(&data.join("ec-p256.sec1.key")).unwrap();
        // The two files hold one key (see tests/data/tls/README.md).
        assert_eq!(
            pkcs8.pair.public_key().as_ref(),
            sec1.pair.public_key().as_ref()
        );
        for rsa in ["rsa2048.pkcs8.key", "rsa2048.pkcs1.key"] {
            let e = read_p256_key(&data.join(rsa)).unwrap_err();
            assert_eq!(e.file, PemFile::Key);
            assert!(e.message.contains(rsa), "{e}");
        }
        assert!(read_p256_key(&data.join("missing.key")).is_err());
        assert!(parse_p256_key(b"garbage", Path::new("k.pem")).is_err());
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sessiongate-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(read_ca_file(&missing)
            .unwrap_err()
            .message
            .contains("missing.pem"));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        assert!(read_ca_file(&empty)
            .unwrap_err()
            .message
            .contains("no CERTIFICATE block"));
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_ca_file(&junk)
            .unwrap_err()
            .message
            .contains("junk.pem"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
