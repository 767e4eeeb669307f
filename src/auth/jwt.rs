//! The signed identity token (`[jwt]`): an ES256 JWT asserting who the user
//! is, for apps that cannot trust a plain header (reachable around the
//! gateway, or behind a chain of proxies). It travels as one more identity
//! header, so everything that injects or strips identity headers handles it.
//!
//! A token is signed when its session enters the cache and again only when
//! the cached token has less than [`REFRESH_BEFORE`] left; a cache hit
//! otherwise compares one timestamp and clones a ready `HeaderValue`.
//! The key is re-read when its file changes or on SIGHUP ([`server::reload`]);
//! the previous public key stays in the JWKS so tokens signed before a
//! rotation keep verifying until they expire.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair};
use ring::{digest, hmac};
use serde::Serialize;
use serde_json::json;

use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::auth::identity::Identity;
use crate::config::JwtConfig;
use crate::server::pem::{self, LoadError, P256Key};
use crate::server::reload::{self, fingerprint, Reload, Reloader};

/// A cached token is re-signed once it has less than this left, so an app
/// never receives one about to expire in flight.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(30);

/// Path of the JSON Web Key Set (RFC 8615 well-known location).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Why a token could not be signed (ring's random source or signer failed).
#[derive(Debug, thiserror::Error)]
#[error("signing the identity token failed")]
pub struct SignError;

/// One signing key and what is derived from it once.
struct Key {
    pair: EcdsaKeyPair,
    /// RFC 7638 thumbprint of the public key.
    kid: Box<str>,
    /// base64url of the JOSE header `{"alg":"ES256","typ":"JWT","kid":...}`.
    header_b64: Box<str>,
    /// The public JWK, as served in the JWKS.
    jwk: serde_json::Value,
    /// Keys the `sid` hash, so it cannot be recomputed from a guessed session id.
    sid_key: hmac::Key,
}

impl Key {
    fn new(key: P256Key) -> Self {
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = key.pair.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .unwrap_or_default()
            .split_at(point.len().saturating_sub(1) / 2);
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638: the required members only, in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "use": "sig", "alg": "ES256",
        });
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"sessiongate jwt sid v1\0");
        ctx.update(&key.pkcs8);
        Self {
            pair: key.pair,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()).into(),
            kid: kid.into(),
            jwk,
            sid_key: hmac::Key::new(hmac::HMAC_SHA256, ctx.finish().as_ref()),
        }
    }
}

/// The signing key, the public key it replaced, and the JWKS serving both.
struct Keys {
    current: Key,
    jwks: Bytes,
}

impl Keys {
    fn new(current: Key, previous: Option<serde_json::Value>) -> Self {
        let keys: Vec<&serde_json::Value> = std::iter::once(&current.jwk)
            .chain(previous.as_ref())
            .collect();
        let jwks = Bytes::from(json!({ "keys": keys }).to_string());
        Self { current, jwks }
    }
}

/// Signs identity tokens for one app (`aud`) and serves the JWKS; built
/// once from `[jwt]`, shared by every cached session's token.
pub struct Signer {
    header: HeaderName,
    issuer: Box<str>,
    audience: Box<str>,
    ttl: Duration,
    key_file: PathBuf,
    reload_interval: Duration,
    keys: RwLock<Arc<Keys>>,
    /// Fingerprint of the key file as last read (see [`reload::fingerprint`]).
    seen: Mutex<Option<u64>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("header", &self.header)
            .field("audience", &self.audience)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads `cfg.key_file` (it may have changed since the config was checked).
    pub fn new(cfg: &JwtConfig) -> Result<Self, LoadError> {
        let bytes = std::fs::read(&cfg.key_file);
        let seen = fingerprint(&bytes);
        let bytes = bytes.map_err(|e| LoadError {
            file: pem::PemFile::Key,
            message: format!("{}: {e}", cfg.key_file.display()),
        })?;
        let key = pem::parse_p256_key(&bytes, &cfg.key_file)?;
        Ok(Self {
            header: cfg.header.clone(),
            issuer: cfg.issuer.as_str().into(),
            audience: cfg.audience.as_str().into(),
            ttl: cfg.ttl,
            key_file: cfg.key_file.clone(),
            reload_interval: cfg.reload_interval,
            keys: RwLock::new(Arc::new(Keys::new(Key::new(key), None))),
            seen: Mutex::new(seen),
            rng: SystemRandom::new(),
        })
    }

    /// The header the token travels in.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// `{"keys":[current, previous]}`, ready to send.
    pub fn jwks(&self) -> Bytes {
        self.keys().jwks.clone()
    }

    /// The `kid` new tokens carry.
    pub fn kid(&self) -> String {
        self.keys().current.kid.to_string()
    }

    fn keys(&self) -> Arc<Keys> {
        // A poisoned lock still holds a whole Arc: the writer only assigns.
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The token of a session entering the cache: signed now, living
    /// min(`ttl`, `expires_in`). `sid` is a keyed hash of `credential`, never
    /// the credential itself. A signing failure is logged and retried on the
    /// next request rather than failing this one: the token is then absent,
    /// which an app verifying it refuses.
    pub fn issue(
        self: &Arc<Self>,
        identity: &Identity,
        carries: Carries,
        credential: &Credential,
        expires_in: Duration,
    ) -> IdentityToken {
        let now = SystemTime::now();
        let keys = self.keys();
        let mut mac = hmac::Context::with_key(&keys.current.sid_key);
        mac.update(credential.id().as_bytes());
        mac.update(b"\n");
        mac.update(credential.token().as_bytes());
        let claims = Claims {
            sub: identity.subject.as_str().into(),
            sid: URL_SAFE_NO_PAD.encode(mac.sign()).into(),
            roles: carries.roles.then(|| identity.roles.clone()),
            permissions: carries.permissions.then(|| identity.permissions.clone()),
        };
        let session_end = unix(now).saturating_add(expires_in.as_secs());
        let token = IdentityToken {
            signer: Arc::clone(self),
            claims,
            session_end,
            current: RwLock::new(None),
            refresh: Mutex::new(()),
        };
        let now = unix(now);
        match self.sign(&token.claims, now, token.exp_at(now)) {
            Ok(signed) => *token.write() = Some(signed),
            Err(e) => {
                tracing::error!(error = %e, "identity token not signed; retrying on the next request")
            }
        }
        token
    }

    fn sign(&self, claims: &Claims, iat: u64, exp: u64) -> Result<Signed, SignError> {
        #[derive(Serialize)]
        struct Payload<'a> {
            iss: &'a str,
            aud: &'a str,
            #[serde(flatten)]
            claims: &'a Claims,
            iat: u64,
            exp: u64,
            jti: String,
        }
        let keys = self.keys();
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| SignError)?;
        let payload = serde_json::to_vec(&Payload {
            iss: &self.issuer,
            aud: &self.audience,
            claims,
            iat,
            exp,
            jti: URL_SAFE_NO_PAD.encode(jti),
        })
        .map_err(|_| SignError)?;
        let mut token = format!(
            "{}.{}",
            keys.current.header_b64,
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = keys
            .current
            .pair
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| SignError)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(Signed {
            value: HeaderValue::from_str(&token).map_err(|_| SignError)?,
            exp,
        })
    }

    /// Starts polling `key_file` every `reload_interval` and reloading on
    /// SIGHUP, as the TLS certificate does; stops when the guard is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) -> Reloader {
        reload::spawn(
            Arc::clone(self) as Arc<dyn Reload>,
            self.reload_interval,
            "jwt",
        )
    }

    /// Reads the key file once; swaps in its key when forced or changed.
    /// `None` when nothing changed.
    fn check(&self, force: bool) -> Option<Result<bool, LoadError>> {
        let bytes = std::fs::read(&self.key_file);
        let now = fingerprint(&bytes);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now && !force {
                return None;
            }
            // Recorded even when bad, so a bad file is reported once per change.
            *seen = now;
        }
        let key = bytes
            .map_err(|e| LoadError {
                file: pem::PemFile::Key,
                message: format!("{}: {e}", self.key_file.display()),
            })
            .and_then(|b| pem::parse_p256_key(&b, &self.key_file));
        Some(key.map(|key| {
            let key = Key::new(key);
            let mut slot = self.keys.write().unwrap_or_else(PoisonError::into_inner);
            if slot.current.kid == key.kid {
                return false; // the same key rewritten: nothing rotates
            }
            let previous = Some(slot.current.jwk.clone());
            *slot = Arc::new(Keys::new(key, previous));
            true
        }))
    }

    fn log(&self, result: Result<bool, LoadError>, trigger: &'static str) {
        match result {
            Ok(true) => tracing::info!(trigger, kid = %self.kid(), "JWT signing key rotated"),
            Ok(false) => tracing::debug!(trigger, "JWT signing key unchanged"),
            Err(e) => tracing::warn!(
                trigger,
                error = %e,
                "JWT signing key reload failed; still signing with the previous key"
            ),
        }
    }

    #[cfg(test)]
    fn previous_kid(&self) -> Option<String> {
        let jwks: serde_json::Value = serde_json::from_slice(&self.jwks()).ok()?;
        jwks["keys"][1]["kid"].as_str().map(str::to_owned)
    }
}

impl Reload for Signer {
    fn reload_if_changed(&self) -> bool {
        match self.check(false) {
            None => false,
            Some(result) => {
                self.log(result, "file_changed");
                true
            }
        }
    }

    fn reload_now(&self) {
        if let Some(result) = self.check(true) {
            self.log(result, "sighup");
        }
    }
}

/// The claims that stay the same for the life of a cached session.
#[derive(Debug, Serialize)]
struct Claims {
    sub: Box<str>,
    sid: Box<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<Vec<String>>,
}

/// A signed token and when it expires (Unix seconds).
#[derive(Clone)]
struct Signed {
    value: HeaderValue,
    exp: u64,
}

/// A cached session's token: the current signed value, re-signed near its
/// expiry by one request while the others keep sending the current one.
pub struct IdentityToken {
    signer: Arc<Signer>,
    claims: Claims,
    /// When the session ends (Unix seconds): no token outlives it.
    session_end: u64,
    current: RwLock<Option<Signed>>,
    /// Held by the one request that re-signs.
    refresh: Mutex<()>,
}

impl std::fmt::Debug for IdentityToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityToken")
            .field("sub", &self.claims.sub)
            .finish_non_exhaustive()
    }
}

impl IdentityToken {
    /// The header it travels in.
    pub fn header(&self) -> &HeaderName {
        &self.signer.header
    }

    /// The value to send now. The common case is one read lock and a
    /// timestamp compare; in the last [`REFRESH_BEFORE`] of the token's life
    /// one request re-signs (if the session outlives the token) while
    /// concurrent ones send the still-valid current token.
    pub fn value(&self, now: SystemTime) -> Option<HeaderValue> {
        let now = unix(now);
        let refresh_at = |s: &Signed| s.exp.saturating_sub(REFRESH_BEFORE.as_secs());
        let current = {
            let guard = self.read();
            match guard.as_ref() {
                Some(s) if now < refresh_at(s) => return Some(s.value.clone()),
                // Cannot be extended: the session ends then; its cache entry does too.
                Some(s) if self.exp_at(now) <= s.exp => return Some(s.value.clone()),
                other => other.cloned(),
            }
        };
        let _guard = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => match &current {
                Some(s) if now < s.exp => return Some(s.value.clone()),
                // Nothing valid to send: wait for the signer rather than send nothing.
                _ => self.refresh.lock().unwrap_or_else(PoisonError::into_inner),
            },
        };
        // Another request may have re-signed while this one waited.
        if let Some(s) = self.read().as_ref() {
            if now < refresh_at(s) || self.exp_at(now) <= s.exp {
                return Some(s.value.clone());
            }
        }
        match self.signer.sign(&self.claims, now, self.exp_at(now)) {
            Ok(signed) => {
                let value = signed.value.clone();
                *self.write() = Some(signed);
                Some(value)
            }
            Err(e) => {
                tracing::error!(error = %e, "identity token not re-signed");
                current.filter(|s| now < s.exp).map(|s| s.value)
            }
        }
    }

    /// `exp` of a token signed at `now`.
    fn exp_at(&self, now: u64) -> u64 {
        now.saturating_add(self.signer.ttl.as_secs())
            .min(self.session_end)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Signed>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Signed>> {
        self.current.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "sessiongate-jwt-unit-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn new_key() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    }

    fn signer(dir: &Scratch, ttl: u64) -> Arc<Signer> {
        let key_file = dir.0.join("jwt.key");
        std::fs::write(&key_file, new_key()).unwrap();
        Arc::new(
            Signer::new(&JwtConfig {
                key_file,
                header: HeaderName::from_static("x-iid-jwt"),
                issuer: "sessiongate".into(),
                audience: "app".into(),
                ttl: Duration::from_secs(ttl),
                public_jwks: false,
                reload_interval: Duration::from_secs(3600),
            })
            .unwrap(),
        )
    }

    fn payload(v: &HeaderValue) -> serde_json::Value {
        let part = v.to_str().unwrap().split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    const BOTH: Carries = Carries {
        roles: true,
        permissions: true,
    };

    fn identity() -> Identity {
        Identity {
            subject: "518".into(),
            roles: vec!["R".into()],
            permissions: vec!["P1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_token_lives_min_ttl_and_session_and_is_resigned_only_near_expiry() {
        let dir = Scratch::new("life");
        let s = signer(&dir, 300);
        let cred = Credential::new("sess-id", "sess-token");
        let t = s.issue(&identity(), BOTH, &cred, Duration::from_secs(3600));
        let now = SystemTime::now();
        let first = t.value(now).unwrap();
        let p = payload(&first);
        assert_eq!(p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(), 300);
        assert_eq!(p["roles"][0], "R");
        assert!(!first.to_str().unwrap().contains("sess-"));
        // Well before the window: the same bytes.
        assert_eq!(t.value(now + Duration::from_secs(200)).unwrap(), first);
        // Inside the last 30 s: a new token with a later exp and a new jti.
        let later = t.value(now + Duration::from_secs(280)).unwrap();
        assert_ne!(later, first);
        assert!(payload(&later)["exp"].as_u64() > p["exp"].as_u64());
        assert_ne!(payload(&later)["jti"], p["jti"]);
        assert_eq!(payload(&later)["sid"], p["sid"]);

        // A session shorter than the ttl bounds exp, and is never re-signed past it.
        let short = s.issue(&identity(), BOTH, &cred, Duration::from_secs(40));
        let v = short.value(now).unwrap();
        let exp = payload(&v)["exp"].as_u64().unwrap();
        assert!(exp <= unix(now) + 40);
        assert_eq!(short.value(now + Duration::from_secs(20)).unwrap(), v);
    }

    #[test]
    fn lists_follow_what_the_provider_carries() {
        let dir = Scratch::new("carries");
        let s = signer(&dir, 300);
        let none = Carries {
            roles: false,
            permissions: false,
        };
        let t = s.issue(
            &identity(),
            none,
            &Credential::new("a", ""),
            Duration::from_secs(60),
        );
        let p = payload(&t.value(SystemTime::now()).unwrap());
        assert!(
            p.get("roles").is_none() && p.get("permissions").is_none(),
            "{p}"
        );
        assert_eq!(p["sub"], "518");
    }

    #[test]
    fn rotation_keeps_the_previous_key_in_the_jwks() {
        let dir = Scratch::new("rotate");
        let s = signer(&dir, 300);
        let old = s.kid();
        assert!(!s.reload_if_changed(), "nothing changed");
        std::fs::write(dir.0.join("jwt.key"), "garbage").unwrap();
        assert!(s.reload_if_changed());
        assert_eq!(s.kid(), old, "a bad file keeps the current key");
        std::fs::write(dir.0.join("jwt.key"), new_key()).unwrap();
        assert!(s.reload_if_changed());
        assert_ne!(s.kid(), old);
        assert_eq!(s.previous_kid().as_deref(), Some(old.as_str()));
        let jwks: serde_json::Value = serde_json::from_slice(&s.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["kid"], s.kid().as_str());
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 section 3.1 works an RSA example; this checks the same
        // construction on the EC members against an independent rendering.
        let dir = Scratch::new("kid");
        let s = signer(&dir, 300);
        let jwks: serde_json::Value = serde_json::from_slice(&s.jwks()).unwrap();
        let k = &jwks["keys"][0];
        let canonical = serde_json::to_string(&serde_json::json!({
            "crv": k["crv"], "kty": k["kty"], "x": k["x"], "y": k["y"],
        }))
        .unwrap();
        let want = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
        assert_eq!(k["kid"], want.as_str());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(k["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }
}
