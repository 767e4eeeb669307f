//! TLS termination for the public listener: rustls with the ring provider,
//! PEM certificate and key files, ALPN (`h2`, `http/1.1`), and certificate
//! rotation without dropping connections. The files are re-read when their
//! contents change (a hash of each, polled every `reload_interval`) and on SIGHUP;
//! new handshakes get the new certificate, connections already up keep the
//! one they started with, and a bad replacement is logged and ignored.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::pem::{certified_key, parse_certs, parse_key, provider, LoadError, PemFile};
pub use super::reload::Reloader;
use super::reload::{self, fingerprint, Reload};

/// Where the listener's certificate comes from; filled by the wiring from
/// `server.tls`, so the server knows nothing of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

/// ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate or key file.
    #[error("server.tls.{0}")]
    Load(#[from] LoadError),
    /// rustls rejected the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn parse_pair(
    cert_pem: std::io::Result<Vec<u8>>,
    key_pem: std::io::Result<Vec<u8>>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, LoadError> {
    let cert_pem = cert_pem.map_err(|e| LoadError::new(PemFile::Cert, cert_file, e))?;
    let key_pem = key_pem.map_err(|e| LoadError::new(PemFile::Key, key_file, e))?;
    certified_key(
        parse_certs(&cert_pem, cert_file)?,
        parse_key(&key_pem, key_file)?,
        cert_file,
        key_file,
    )
}

/// Hands every new handshake the current certificate. Rotation swaps the
/// `Arc`; a handshake in progress or a connection already up keeps the one
/// it got.
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// Starts with `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a whole Arc: the writer only assigns.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What the reloader saw of both files last time (see [`fingerprint`]).
type Stamp = [Option<u64>; 2];

/// The listener's TLS side: the acceptor, the certificate it hands out, and
/// the files that certificate is reloaded from.
pub struct TlsAcceptorHandle {
    acceptor: TlsAcceptor,
    resolver: Arc<CertResolver>,
    cert_file: PathBuf,
    key_file: PathBuf,
    reload_interval: Duration,
    seen: Mutex<Stamp>,
    reloaded: AtomicU64,
    failed: AtomicU64,
}

impl fmt::Debug for TlsAcceptorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptorHandle")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("reload_interval", &self.reload_interval)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptorHandle {
    /// Loads the files and builds the acceptor; ALPN offers `h2` only when `http2` is on.
    pub fn new(cfg: &TlsFiles, http2: bool) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (std::fs::read(&cfg.cert_file), std::fs::read(&cfg.key_file));
        let seen = [fingerprint(&cert_pem), fingerprint(&key_pem)];
        let key = parse_pair(cert_pem, key_pem, &cfg.cert_file, &cfg.key_file)?;
        let resolver = Arc::new(CertResolver::new(key));
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = if http2 {
            vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
        } else {
            vec![ALPN_HTTP11.to_vec()]
        };
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            resolver,
            cert_file: cfg.cert_file.clone(),
            key_file: cfg.key_file.clone(),
            reload_interval: cfg.reload_interval,
            seen: Mutex::new(seen),
            reloaded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Successful and failed reloads so far (tests, and a future metric).
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloaded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Re-reads both files now, changed or not; on failure the current
    /// certificate stays.
    pub fn reload(&self) -> Result<(), LoadError> {
        self.check(true).unwrap_or(Ok(()))
    }

    /// Reloads if either file's contents changed since the last look;
    /// returns whether it tried.
    pub fn reload_if_changed(&self) -> bool {
        match self.check(false) {
            None => false,
            Some(result) => {
                self.log(result, "file_changed");
                true
            }
        }
    }

    /// Reads both files once (what is fingerprinted is what gets parsed) and
    /// swaps in the pair when forced or changed; `None` when nothing changed.
    fn check(&self, force: bool) -> Option<Result<(), LoadError>> {
        let (cert_pem, key_pem) = (
            std::fs::read(&self.cert_file),
            std::fs::read(&self.key_file),
        );
        let now = [fingerprint(&cert_pem), fingerprint(&key_pem)];
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now && !force {
                return None;
            }
            // Recorded even if the pair is bad, so it is reported once per change
            // rather than on every poll; the next write to either file retries.
            *seen = now;
        }
        Some(
            match parse_pair(cert_pem, key_pem, &self.cert_file, &self.key_file) {
                Ok(key) => {
                    self.resolver.set(key);
                    self.reloaded.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
            },
        )
    }

    fn log(&self, result: Result<(), LoadError>, trigger: &'static str) {
        match result {
            Ok(()) => tracing::info!(
                trigger,
                cert_file = %self.cert_file.display(),
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::warn!(
                trigger,
                error = %e,
                "TLS certificate reload failed; still serving the previous certificate"
            ),
        }
    }

    /// Starts polling the files every `reload_interval` and listening for
    /// SIGHUP; both stop when the returned guard is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) -> Reloader {
        reload::spawn(
            Arc::clone(self) as Arc<dyn Reload>,
            self.reload_interval,
            "tls",
        )
    }
}

impl Reload for TlsAcceptorHandle {
    fn reload_if_changed(&self) -> bool {
        TlsAcceptorHandle::reload_if_changed(self)
    }

    fn reload_now(&self) {
        self.log(self.reload(), "sighup");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::server::pem::{read_certs, read_key};

    use rcgen::{CertificateParams, KeyPair};

    /// Both files read and matched, as config validation does.
    fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, LoadError> {
        certified_key(read_certs(cert)?, read_key(key)?, cert, key)
    }

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "sessiongate-tls-unit-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/tls")
                .join(name),
        )
        .unwrap()
    }

    /// A self-signed certificate for the key in `pkcs8_pem`.
    fn self_signed(pkcs8_pem: &str, name: &str) -> String {
        let key = KeyPair::from_pem(pkcs8_pem).unwrap();
        CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    }

    #[test]
    fn accepts_pkcs8_pkcs1_rsa_and_sec1_ec_keys() {
        let dir = Scratch::new("formats");
        let generated = KeyPair::generate().unwrap().serialize_pem();
        let rsa8 = fixture("rsa2048.pkcs8.key");
        let ec8 = fixture("ec-p256.pkcs8.key");
        for (name, cert_key_pkcs8, key_file_text) in [
            (
                "generated-ecdsa-pkcs8",
                generated.clone(),
                generated.clone(),
            ),
            ("rsa-pkcs8", rsa8.clone(), rsa8.clone()),
            ("rsa-pkcs1", rsa8, fixture("rsa2048.pkcs1.key")),
            ("ec-sec1", ec8, fixture("ec-p256.sec1.key")),
        ] {
            let cert = dir.write(
                &format!("{name}.crt"),
                &self_signed(&cert_key_pkcs8, "localhost"),
            );
            let key = dir.write(&format!("{name}.key"), &key_file_text);
            load_certified_key(&cert, &key).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn errors_name_the_file_at_fault() {
        let dir = Scratch::new("errors");
        let key_a = KeyPair::generate().unwrap().serialize_pem();
        let key_b = KeyPair::generate().unwrap().serialize_pem();
        let cert_a = dir.write("a.crt", &self_signed(&key_a, "a.example"));
        let key_a = dir.write("a.key", &key_a);
        let key_b = dir.write("b.key", &key_b);
        let garbage = dir.write("garbage.pem", "not a pem file\n");
        let bad_b64 = dir.write(
            "bad.crt",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let missing = dir.0.join("missing.pem");

        let file_of = |c: &Path, k: &Path| load_certified_key(c, k).unwrap_err().file;
        assert_eq!(file_of(&missing, &key_a), PemFile::Cert);
        assert_eq!(file_of(&garbage, &key_a), PemFile::Cert);
        assert_eq!(file_of(&bad_b64, &key_a), PemFile::Cert);
        assert_eq!(file_of(&cert_a, &missing), PemFile::Key);
        assert_eq!(file_of(&cert_a, &garbage), PemFile::Key);
        // A certificate where the key should be is not a key.
        assert_eq!(file_of(&cert_a, &cert_a), PemFile::Key);
        let mismatch = load_certified_key(&cert_a, &key_b).unwrap_err();
        assert_eq!(mismatch.file, PemFile::Key);
        assert!(mismatch.message.contains("does not belong"), "{mismatch}");
        assert!(mismatch.to_string().starts_with("key_file: "), "{mismatch}");
    }

    #[tokio::test]
    async fn reload_swaps_on_change_and_keeps_the_old_pair_when_the_new_one_is_bad() {
        let dir = Scratch::new("reload");
        let key_a = KeyPair::generate().unwrap().serialize_pem();
        let cert_a_pem = self_signed(&key_a, "a.example");
        let cert = dir.write("tls.crt", &cert_a_pem);
        let key = dir.write("tls.key", &key_a);
        let handle = TlsAcceptorHandle::new(
            &TlsFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
                reload_interval: Duration::from_secs(3600),
            },
            true,
        )
        .unwrap();
        let der_a = handle.resolver.current().cert[0].clone();
        assert!(!handle.reload_if_changed(), "nothing changed yet");

        // A cert whose key is not there yet (written one file at a time): refused, A stays.
        let key_b = KeyPair::generate().unwrap().serialize_pem();
        let cert_b_pem = self_signed(&key_b, "bb.example");
        std::fs::write(&cert, &cert_b_pem).unwrap();
        assert!(handle.reload_if_changed());
        assert_eq!(handle.resolver.current().cert[0], der_a);
        assert_eq!(handle.reload_counts(), (0, 1));
        assert!(
            !handle.reload_if_changed(),
            "a bad pair is reported once per change"
        );

        std::fs::write(&key, &key_b).unwrap();
        assert!(handle.reload_if_changed());
        let der_b = handle.resolver.current().cert[0].clone();
        assert_ne!(der_b, der_a);
        assert_eq!(handle.reload_counts(), (1, 1));

        // Garbage replacement: B stays.
        std::fs::write(&cert, "garbage").unwrap();
        assert!(handle.reload_if_changed());
        assert_eq!(handle.resolver.current().cert[0], der_b);
        assert!(handle.reload().is_err());
    }

    #[test]
    fn alpn_offers_h2_only_when_http2_is_on() {
        let dir = Scratch::new("alpn");
        let key = KeyPair::generate().unwrap().serialize_pem();
        let cfg = TlsFiles {
            cert_file: dir.write("c.crt", &self_signed(&key, "localhost")),
            key_file: dir.write("c.key", &key),
            reload_interval: Duration::from_secs(5),
        };
        let on = TlsAcceptorHandle::new(&cfg, true).unwrap();
        let off = TlsAcceptorHandle::new(&cfg, false).unwrap();
        assert_eq!(
            on.acceptor().config().alpn_protocols,
            vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
        );
        assert_eq!(
            off.acceptor().config().alpn_protocols,
            vec![ALPN_HTTP11.to_vec()]
        );
    }
}
