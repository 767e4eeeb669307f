//! Session cookies: reading the child session id and token from `Cookie`
//! headers into a [`SessionKey`] whose Debug output never shows the secrets.

use std::fmt;
use std::hash::{Hash, Hasher};

use http::header::COOKIE;
use http::HeaderMap;

/// Longest session id accepted; anything longer is garbage, not worth an IdP call.
pub const MAX_SESSION_ID_LEN: usize = 256;
/// Longest session token accepted.
pub const MAX_SESSION_TOKEN_LEN: usize = 4096;

/// Cache and IdP key: the session id together with its token, so a cached
/// answer for one pair never serves a request that carries another token.
/// One allocation holds `id`, a newline (never valid in a cookie value) and `token`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    raw: Box<str>,
    split: usize,
}

impl SessionKey {
    /// Builds a key; `token` is empty when the client sent none.
    pub fn new(id: &str, token: &str) -> Self {
        let mut raw = String::with_capacity(id.len() + 1 + token.len());
        raw.push_str(id);
        raw.push('\n');
        raw.push_str(token);
        Self {
            raw: raw.into_boxed_str(),
            split: id.len(),
        }
    }

    /// The session id, for the IdP request body only.
    pub fn id(&self) -> &str {
        self.raw.get(..self.split).unwrap_or_default()
    }

    /// The session token ("" when absent), for the IdP request body only.
    pub fn token(&self) -> &str {
        self.raw.get(self.split + 1..).unwrap_or_default()
    }

    /// Short stable hash for logs: lets people correlate lines without the secret.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = Fnv64::default();
        self.raw.hash(&mut h);
        Fingerprint((h.finish() >> 32) as u32)
    }
}

/// 32-bit hash of a session key, shown as 8 hex digits; computed without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u32);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.fingerprint())
    }
}

/// What the request's cookies say about the session.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCookie {
    /// No session id cookie at all.
    Absent,
    /// A session id cookie whose value cannot be a session id.
    Malformed,
    /// A well-formed id (and token, possibly empty).
    Present(SessionKey),
}

/// Names of the cookies to read.
#[derive(Debug, Clone)]
pub struct CookieNames {
    /// Cookie holding the session id.
    pub id: String,
    /// Cookie holding the token; empty disables it.
    pub token: String,
}

/// Reads the session cookies. The first occurrence of a name wins, as browsers
/// send the most specific path first (RFC 6265 5.4).
pub fn read(headers: &HeaderMap, names: &CookieNames) -> SessionCookie {
    let mut id: Option<&[u8]> = None;
    let mut token: Option<&[u8]> = None;
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = trim(pair);
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (name, val) = (trim(&pair[..eq]), unquote(trim(&pair[eq + 1..])));
            if id.is_none() && name == names.id.as_bytes() {
                id = Some(val);
            } else if token.is_none() && !names.token.is_empty() && name == names.token.as_bytes() {
                token = Some(val);
            }
        }
    }
    let Some(id) = id else {
        return SessionCookie::Absent;
    };
    let token = token.unwrap_or(b"");
    if id.is_empty() && token.is_empty() {
        // An emptied cookie (as left by a logout) is no session at all.
        return SessionCookie::Absent;
    }
    match (
        valid_value(id, MAX_SESSION_ID_LEN),
        valid_value(token, MAX_SESSION_TOKEN_LEN),
    ) {
        (Some(id), Some(token)) if !id.is_empty() => {
            SessionCookie::Present(SessionKey::new(id, token))
        }
        _ => SessionCookie::Malformed,
    }
}

/// Cookie values are visible ASCII without separators (RFC 6265 cookie-octet).
fn valid_value(v: &[u8], max: usize) -> Option<&str> {
    if v.len() > max
        || !v
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\'))
    {
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

/// FNV-1a: tiny, dependency-free, and stable across processes for log correlation.
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn names() -> CookieNames {
        CookieNames {
            id: "iid_session_id".into(),
            token: "iid_session_token".into(),
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
            read(&h, &names()),
            SessionCookie::Present(SessionKey::new("abc-123", "tok"))
        );
    }

    #[test]
    fn token_is_optional_and_first_occurrence_wins() {
        let h = headers(&["iid_session_id=first; iid_session_id=second"]);
        assert_eq!(
            read(&h, &names()),
            SessionCookie::Present(SessionKey::new("first", ""))
        );
    }

    #[test]
    fn absent_empty_and_malformed() {
        assert_eq!(read(&headers(&[]), &names()), SessionCookie::Absent);
        assert_eq!(
            read(&headers(&["other=1"]), &names()),
            SessionCookie::Absent
        );
        assert_eq!(
            read(&headers(&["iid_session_id="]), &names()),
            SessionCookie::Absent
        );
        assert_eq!(
            read(&headers(&["iid_session_id=a\\b"]), &names()),
            SessionCookie::Malformed
        );
        let long = format!("iid_session_id={}", "a".repeat(MAX_SESSION_ID_LEN + 1));
        assert_eq!(read(&headers(&[&long]), &names()), SessionCookie::Malformed);
    }

    #[test]
    fn prefix_of_a_cookie_name_does_not_match() {
        let h = headers(&["xiid_session_id=abc"]);
        assert_eq!(read(&h, &names()), SessionCookie::Absent);
    }

    #[test]
    fn id_and_token_round_trip() {
        let k = SessionKey::new("abc", "tok");
        assert_eq!((k.id(), k.token()), ("abc", "tok"));
        let k = SessionKey::new("abc", "");
        assert_eq!((k.id(), k.token()), ("abc", ""));
        assert_ne!(SessionKey::new("ab", "c"), SessionKey::new("a", "bc"));
    }

    #[test]
    fn debug_never_shows_the_secrets() {
        let k = SessionKey::new("fa44b0c4-fb2d-43c3", "sekrit-token");
        let d = format!("{k:?}");
        assert!(!d.contains("fa44b0c4") && !d.contains("sekrit"), "{d}");
        assert_eq!(
            k.fingerprint(),
            SessionKey::new("fa44b0c4-fb2d-43c3", "sekrit-token").fingerprint()
        );
        assert_ne!(
            k.fingerprint(),
            SessionKey::new("fa44b0c4-fb2d-43c3", "other").fingerprint()
        );
    }
}
