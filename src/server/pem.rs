//! PEM certificate, key and CA bundle files, a leaf: the config checks them
//! at load time and the TLS listener and connectors load them, through the
//! same functions, so both report a bad file the same way.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

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
