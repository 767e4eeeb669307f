//! Where a session credential comes from: the session cookies named in
//! `[session]` (an id and an optional token), and, when a provider asks for
//! it, `Authorization: Bearer`. The result is a [`Credential`] that only the
//! provider looks inside; everything else (cache, logs) sees its
//! [`Fingerprint`].

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

/// Longest session id accepted; anything longer is garbage, not worth an IdP call.
pub const MAX_SESSION_ID_LEN: usize = 256;
/// Longest session token (or bearer credential) accepted.
pub const MAX_SESSION_TOKEN_LEN: usize = 4096;

/// A session credential: cache key and IdP input. It holds every part that
/// identifies the session (for IID the session id together with its token),
/// so a cached answer for one never serves a request that carries another.
/// One allocation holds `id`, a newline (never valid in a cookie value) and
/// `token`; Debug shows only the fingerprint.
///
/// Its keyed hash is computed once, when it is read: the session cache
/// ([`PreHashed`]) and the log's [`Fingerprint`] both use it, so a request
/// runs SipHash over the credential once instead of twice.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    raw: Box<str>,
    split: usize,
    hash: u64,
}

impl Hash for Credential {
    /// Writes the precomputed keyed hash: equal credentials have equal `raw`, so equal hashes.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Credential {
    /// Builds a credential from its two parts; `token` is empty when the client sent none.
    pub fn new(id: &str, token: &str) -> Self {
        let mut raw = String::with_capacity(id.len() + 1 + token.len());
        raw.push_str(id);
        raw.push('\n');
        raw.push_str(token);
        let hash = credential_key().hash_one(raw.as_str());
        Self {
            raw: raw.into_boxed_str(),
            split: id.len(),
            hash,
        }
    }

    /// The primary part (IID: the session id; bearer: the whole credential),
    /// for the IdP request only.
    pub fn id(&self) -> &str {
        self.raw.get(..self.split).unwrap_or_default()
    }

    /// The secondary part ("" when absent; IID: the session token), for the IdP request only.
    pub fn token(&self) -> &str {
        self.raw.get(self.split + 1..).unwrap_or_default()
    }

    /// Short keyed hash for logs: lines about one session can be correlated,
    /// but a fingerprint cannot be checked against guessed credentials
    /// without the process's key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint((self.hash >> 32) as u32)
    }
}

/// The per-process key of a credential's hash: std's `RandomState` is a
/// SipHash key drawn from the OS once. Keyed, so neither the cache's
/// buckets nor a fingerprint can be predicted from chosen credentials.
fn credential_key() -> &'static std::hash::RandomState {
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    KEY.get_or_init(std::hash::RandomState::new)
}

/// The session cache's hasher: it passes a [`Credential`]'s precomputed
/// keyed hash through instead of hashing it again.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// [`PreHashed`]'s hasher: keeps the `u64` a [`Credential`] writes.
#[derive(Debug)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    /// Only credentials are hashed here; anything else still gets a
    /// usable (unkeyed FNV-1a) hash rather than none.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// 32-bit keyed hash of a credential, shown as 8 hex digits; computed without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u32);

impl Fingerprint {
    /// The 8 hex digits; [`crate::hex::as_str`] shows them.
    pub fn digits(self) -> [u8; 8] {
        crate::hex::digits(u64::from(self.0))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::hex::as_str(&self.digits()))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({})", self.fingerprint())
    }
}

/// What the request says about the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No credential at all.
    Absent,
    /// Something in the credential's place that cannot be one.
    Malformed,
    /// A well-formed credential.
    Present(Credential),
}

/// Where to look for the credential.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    /// Cookie holding the session id (or the provider's whole credential).
    pub id_cookie: String,
    /// Cookie holding the token; empty disables it.
    pub token_cookie: String,
    /// Also accept `Authorization: Bearer <credential>`; the cookie wins when both are present.
    pub bearer: bool,
}

impl CredentialSource {
    /// Reads the credential: cookies first, then (when enabled) the bearer token.
    pub fn read(&self, headers: &HeaderMap) -> Found {
        match read_cookies(headers, &self.id_cookie, &self.token_cookie) {
            Found::Absent if self.bearer => read_bearer(headers),
            found => found,
        }
    }
}

/// `Authorization: Bearer <token>`: one header, one token of RFC 6750
/// `b64token` characters; anything else in that header is malformed.
fn read_bearer(headers: &HeaderMap) -> Found {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Found::Absent;
    };
    let bytes = value.as_bytes();
    let Some(scheme_end) = bytes.iter().position(|&b| b == b' ') else {
        return Found::Absent;
    };
    if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        // Basic and other schemes are not ours to judge.
        return Found::Absent;
    }
    let token = trim(&bytes[scheme_end + 1..]);
    let b64token = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    if values.next().is_some()
        || token.is_empty()
        || token.len() > MAX_SESSION_TOKEN_LEN
        || !token.iter().all(b64token)
    {
        return Found::Malformed;
    }
    match std::str::from_utf8(token) {
        Ok(t) => Found::Present(Credential::new(t, "")),
        Err(_) => Found::Malformed,
    }
}

/// Reads the session cookies. The first occurrence of a name wins, as browsers
/// send the most specific path first (RFC 6265 5.4). One pass that jumps
/// from separator to separator (`memchr`) and stops once every cookie it
/// wants is found: it runs on every authenticated request.
fn read_cookies(headers: &HeaderMap, id_name: &str, token_name: &str) -> Found {
    let (id_name, token_name) = (id_name.as_bytes(), token_name.as_bytes());
    let mut id: Option<&[u8]> = None;
    // Without a token cookie there is nothing to look for after the id.
    let mut token: Option<&[u8]> = token_name.is_empty().then_some(&b""[..]);
    'headers: for value in headers.get_all(COOKIE) {
        let mut rest = value.as_bytes();
        while !rest.is_empty() {
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            let pair = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            let Some(eq) = memchr::memchr(b'=', pair) else {
                continue;
            };
            let name = trim(&pair[..eq]);
            if id.is_none() && name == id_name {
                id = Some(unquote(trim(&pair[eq + 1..])));
            } else if token.is_none() && name == token_name {
                token = Some(unquote(trim(&pair[eq + 1..])));
            } else {
                continue;
            }
            if id.is_some() && token.is_some() {
                break 'headers;
            }
        }
    }
    let Some(id) = id else {
        return Found::Absent;
    };
    let token = token.unwrap_or_default();
    if id.is_empty() && token.is_empty() {
        // An emptied cookie (as left by a logout) is no session at all.
        return Found::Absent;
    }
    match (
        valid_value(id, MAX_SESSION_ID_LEN),
        valid_value(token, MAX_SESSION_TOKEN_LEN),
    ) {
        (Some(id), Some(token)) if !id.is_empty() => Found::Present(Credential::new(id, token)),
        _ => Found::Malformed,
    }
}

/// Bytes allowed in a cookie value (RFC 6265 cookie-octet): visible ASCII
/// but `"`, `,`, `;` and `\`.
const COOKIE_OCTET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        table[b] = !matches!(b as u8, b'"' | b',' | b';' | b'\\');
        b += 1;
    }
    table
};

/// Cookie values are visible ASCII without separators (RFC 6265 cookie-octet).
fn valid_value(v: &[u8], max: usize) -> Option<&str> {
    if v.len() > max || !v.iter().all(|&b| COOKIE_OCTET[usize::from(b)]) {
        return None;
    }
    std::str::from_utf8(v).ok()
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn unquote(s: &[u8]) -> &[u8] {
    match s {
        [b'"', inner @ .., b'"'] => inner,
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn names() -> CredentialSource {
        CredentialSource {
            id_cookie: "iid_session_id".into(),
            token_cookie: "iid_session_token".into(),
            bearer: false,
        }
    }

    fn with_bearer() -> CredentialSource {
        CredentialSource {
            bearer: true,
            ..names()
        }
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn reads_id_and_token_across_cookie_headers() {
        let h = headers(&["a=1; iid_session_id=abc-123", "iid_session_token=\"tok\""]);
        assert_eq!(
            names().read(&h),
            Found::Present(Credential::new("abc-123", "tok"))
        );
    }

    #[test]
    fn cookies_are_found_in_any_order_and_spacing() {
        let read = |cookies: &[&str]| names().read(&headers(cookies));
        let both = Found::Present(Credential::new("abc", "tok"));
        assert_eq!(read(&["iid_session_token=tok; iid_session_id=abc"]), both);
        assert_eq!(
            read(&["a; \tiid_session_id = \"abc\" ;iid_session_token=tok"]),
            both
        );
        assert_eq!(
            read(&[
                "iid_session_token=tok",
                "x=1; iid_session_id=abc; iid_session_id=late"
            ]),
            both
        );
        // Once both are found, a later copy of either changes nothing.
        assert_eq!(
            read(&["iid_session_id=abc;iid_session_token=tok;iid_session_token=x\\y"]),
            both
        );
        assert_eq!(read(&["iid_session_token=tok"]), Found::Absent);
        assert_eq!(
            read(&["iid_session_id=abc; iid_session_token=t,k"]),
            Found::Malformed
        );
        // Without a token cookie configured, a cookie of that name is just another cookie.
        let no_token = CredentialSource {
            token_cookie: String::new(),
            ..names()
        };
        assert_eq!(
            no_token.read(&headers(&["iid_session_token=tok; iid_session_id=abc"])),
            Found::Present(Credential::new("abc", ""))
        );
    }

    #[test]
    fn token_is_optional_and_first_occurrence_wins() {
        let h = headers(&["iid_session_id=first; iid_session_id=second"]);
        assert_eq!(
            names().read(&h),
            Found::Present(Credential::new("first", ""))
        );
    }

    #[test]
    fn absent_empty_and_malformed() {
        assert_eq!(names().read(&headers(&[])), Found::Absent);
        assert_eq!(names().read(&headers(&["other=1"])), Found::Absent);
        assert_eq!(names().read(&headers(&["iid_session_id="])), Found::Absent);
        assert_eq!(
            names().read(&headers(&["iid_session_id=a\\b"])),
            Found::Malformed
        );
        let long = format!("iid_session_id={}", "a".repeat(MAX_SESSION_ID_LEN + 1));
        assert_eq!(names().read(&headers(&[&long])), Found::Malformed);
    }

    #[test]
    fn prefix_of_a_cookie_name_does_not_match() {
        let h = headers(&["xiid_session_id=abc"]);
        assert_eq!(names().read(&h), Found::Absent);
    }

    #[test]
    fn id_and_token_round_trip() {
        let k = Credential::new("abc", "tok");
        assert_eq!((k.id(), k.token()), ("abc", "tok"));
        let k = Credential::new("abc", "");
        assert_eq!((k.id(), k.token()), ("abc", ""));
        assert_ne!(Credential::new("ab", "c"), Credential::new("a", "bc"));
    }

    #[test]
    fn debug_never_shows_the_secrets() {
        let k = Credential::new("fa44b0c4-fb2d-43c3", "sekrit-token");
        let d = format!("{k:?}");
        assert!(!d.contains("fa44b0c4") && !d.contains("sekrit"), "{d}");
        assert_eq!(
            k.fingerprint(),
            Credential::new("fa44b0c4-fb2d-43c3", "sekrit-token").fingerprint()
        );
        assert_ne!(
            k.fingerprint(),
            Credential::new("fa44b0c4-fb2d-43c3", "other").fingerprint()
        );
    }

    #[test]
    fn the_cache_hashes_a_credential_by_its_keyed_hash() {
        let k = Credential::new("abc", "tok");
        assert_eq!(PreHashed.hash_one(&k), k.hash);
        assert_eq!(PreHashed.hash_one(&k), PreHashed.hash_one(k.clone()));
        assert_eq!(k.fingerprint(), Fingerprint((k.hash >> 32) as u32));
        // Keyed: not a plain hash of the bytes, and parts that join to the
        // same text still differ.
        let unkeyed = {
            let mut h = PassThrough(0);
            h.write(b"abc\ntok");
            h.finish()
        };
        assert_ne!(k.hash, unkeyed);
        assert_ne!(
            PreHashed.hash_one(Credential::new("ab", "c")),
            PreHashed.hash_one(Credential::new("a", "bc"))
        );
    }

    #[test]
    fn bearer_only_when_enabled_and_the_cookie_wins() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.DEF-1_~+/="),
        );
        assert_eq!(names().read(&h), Found::Absent);
        assert_eq!(
            with_bearer().read(&h),
            Found::Present(Credential::new("abc.DEF-1_~+/=", ""))
        );
        h.insert(COOKIE, HeaderValue::from_static("iid_session_id=cookie"));
        assert_eq!(
            with_bearer().read(&h),
            Found::Present(Credential::new("cookie", ""))
        );
    }

    #[test]
    fn bearer_garbage_is_malformed_and_other_schemes_absent() {
        let read = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_static(v));
            with_bearer().read(&h)
        };
        assert_eq!(read("Basic dXNlcjpwYXNz"), Found::Absent);
        assert_eq!(
            read("bearer lower-case-scheme"),
            Found::Present(Credential::new("lower-case-scheme", ""))
        );
        assert_eq!(read("Bearer "), Found::Malformed);
        assert_eq!(read("Bearer a b"), Found::Malformed);
        assert_eq!(read("Bearer a;b"), Found::Malformed);
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer one"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer two"));
        assert_eq!(
            with_bearer().read(&h),
            Found::Malformed,
            "two credentials: which one?"
        );
    }
}
