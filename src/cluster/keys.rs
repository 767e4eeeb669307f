//! What replicas store in Redis, and under which names: every name is an
//! HMAC of the credential (or IID session id) keyed with `cluster.secret`,
//! and every value is sealed with a key derived from the same secret. Reading
//! Redis reveals no credential and no personal data; writing to it without
//! the secret cannot forge a session, nor move one session's answer onto
//! another's name (the name is the cipher's associated data).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};

use crate::auth::credential::Credential;

/// Every name this gateway writes starts with this.
pub const PREFIX: &str = "sessiongate:";
/// The revocation stream.
pub const STREAM: &str = "sessiongate:revocations";
/// A random value set once per Redis data set: when it changes, Redis lost
/// its data and the revocations with it.
pub const EPOCH: &str = "sessiongate:epoch";

/// Version byte of a sealed value; another version is unreadable, not misread.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// The HMAC of a credential or session id: what names it in Redis and in
/// the revocation stream (32 hex digits, 128 bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag(Box<str>);

impl Tag {
    /// The tag as carried in the stream.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A tag read back from the stream; `None` unless it has a tag's shape.
    pub fn parse(text: &str) -> Option<Tag> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Tag(text.into()))
    }

    /// The sealed session answer.
    pub fn entry(&self) -> String {
        format!("{PREFIX}s:{}", self.0)
    }

    /// The revocation record of a credential.
    pub fn revoked(&self) -> String {
        format!("{PREFIX}r:{}", self.0)
    }

    /// The revocation record of an IID session id (every token pair).
    pub fn revoked_session(&self) -> String {
        format!("{PREFIX}rs:{}", self.0)
    }

    /// The short lock one replica takes while it asks the IdP.
    pub fn lock(&self) -> String {
        format!("{PREFIX}l:{}", self.0)
    }
}

/// Keys derived from `cluster.secret`: one names, one seals.
pub struct Keys {
    name: hmac::Key,
    seal: XChaCha20Poly1305,
    rng: SystemRandom,
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl Keys {
    /// Derives both keys from `secret` (HKDF-SHA256, one label each), so
    /// knowing a name key never helps with the sealing key.
    pub fn new(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"sessiongate cluster v1").extract(secret);
        let derive = |label: &[u8]| {
            let mut out = [0u8; 32];
            // Cannot fail: 32 bytes is far below HKDF-SHA256's limit.
            if let Ok(okm) = prk.expand(&[label], Len32) {
                let _ = okm.fill(&mut out);
            }
            out
        };
        let name = hmac::Key::new(hmac::HMAC_SHA256, &derive(b"names"));
        let seal = XChaCha20Poly1305::new((&derive(b"seal")).into());
        Self {
            name,
            seal,
            rng: SystemRandom::new(),
        }
    }

    fn tag_of(&self, domain: &[u8], parts: &[&str]) -> Tag {
        let mut ctx = hmac::Context::with_key(&self.name);
        ctx.update(domain);
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                // Never in a cookie value, so ("a\nb", "") and ("a", "b") differ.
                ctx.update(b"\n");
            }
            ctx.update(part.as_bytes());
        }
        let mac = ctx.sign();
        let mut hex = String::with_capacity(32);
        for b in &mac.as_ref()[..16] {
            hex.push_str(&format!("{b:02x}"));
        }
        Tag(hex.into())
    }

    /// The tag of a whole credential (IID: session id and token).
    pub fn credential(&self, key: &Credential) -> Tag {
        self.tag_of(b"credential\0", &[key.id(), key.token()])
    }

    /// The tag of an IID session id, whatever its token.
    pub fn session_id(&self, id: &str) -> Tag {
        self.tag_of(b"session-id\0", &[id])
    }

    /// `plain`, encrypted and authenticated for the Redis name `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let sealed = self
            .seal
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: name.as_bytes(),
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// What [`Keys::seal`] sealed for `name`; `None` for anything else
    /// (another secret, another name, altered bytes).
    pub fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != SEALED_V1 || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, msg) = rest.split_at(NONCE_LEN);
        self.seal
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg,
                    aad: name.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tags_hide_the_credential_and_depend_on_every_part_and_the_secret() {
        let k = Keys::new(SECRET);
        let cred = Credential::new("fa44b0c4-session", "tok-1");
        let t = k.credential(&cred);
        assert_eq!(t.as_str().len(), 32);
        assert!(!t.entry().contains("fa44b0c4"));
        assert_eq!(
            t,
            k.credential(&Credential::new("fa44b0c4-session", "tok-1"))
        );
        assert_ne!(
            t,
            k.credential(&Credential::new("fa44b0c4-session", "tok-2"))
        );
        assert_ne!(t, k.session_id("fa44b0c4-session"));
        assert_ne!(
            t,
            Keys::new(b"another secret of at least 32 bytes").credential(&cred)
        );
        assert_eq!(Tag::parse(t.as_str()), Some(t));
        assert_eq!(Tag::parse("nothex"), None);
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_name_and_secret_and_unaltered() {
        let k = Keys::new(SECRET);
        let sealed = k.seal("sessiongate:s:aa", b"{\"who\":\"518\"}").unwrap();
        assert!(!sealed.windows(3).any(|w| w == b"518"));
        assert_eq!(
            k.open("sessiongate:s:aa", &sealed).unwrap(),
            b"{\"who\":\"518\"}"
        );
        assert_eq!(
            k.open("sessiongate:s:bb", &sealed),
            None,
            "moved to another name"
        );
        let other = Keys::new(b"another secret of at least 32 bytes");
        assert_eq!(
            other.open("sessiongate:s:aa", &sealed),
            None,
            "wrong secret"
        );
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(k.open("sessiongate:s:aa", &altered), None, "altered");
        assert_eq!(k.open("sessiongate:s:aa", b""), None);
        assert_eq!(k.open("sessiongate:s:aa", b"garbage"), None);
    }
}
