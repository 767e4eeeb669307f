//! Static text for config values that the request path clones into every
//! request: the identity header names and the upstream's authority. Built
//! at run time, their bytes are reference-counted, and each clone and drop
//! writes that one shared count, from every worker thread, on every
//! request. Built from static text, a clone is a plain copy. Interned, so
//! building the config again (a test, a reload) leaks nothing new.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use http::header::InvalidHeaderName;
use http::uri::Authority;
use http::HeaderName;

/// `s` as static text: the same text for equal strings, leaked once.
fn text(s: &str) -> Option<&'static str> {
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut texts = TEXTS.get_or_init(Mutex::default).lock().ok()?;
    Some(match texts.get(s) {
        Some(&text) => text,
        None => {
            let text: &'static str = Box::leak(s.into());
            texts.insert(text);
            text
        }
    })
}

/// `name` as a header name whose clones share static text.
pub fn header_name(name: &str) -> Result<HeaderName, InvalidHeaderName> {
    let parsed = HeaderName::from_bytes(name.as_bytes())?;
    // `parsed.as_str()` is the normalized form, which `from_static` accepts.
    Ok(text(parsed.as_str()).map_or(parsed, HeaderName::from_static))
}

/// `authority` with static text; an authority parsed from a config string
/// shares that string's buffer and its count.
pub fn authority(authority: &Authority) -> Authority {
    text(authority.as_str()).map_or_else(|| authority.clone(), Authority::from_static)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_static_text() {
        // Two texts would mean names built at run time, whose clones count
        // references.
        let (a, b) = (
            header_name("x-t-one").unwrap(),
            header_name("X-T-One").unwrap(),
        );
        assert_eq!(a, "x-t-one");
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
        assert!(header_name("not a name").is_err());
    }

    #[test]
    fn equal_authorities_share_one_static_text() {
        let parsed = |s: &str| s.parse::<http::Uri>().unwrap().authority().unwrap().clone();
        let (a, b) = (
            parsed("http://up.example:8080"),
            parsed("http://up.example:8080"),
        );
        assert_ne!(a.as_str().as_ptr(), b.as_str().as_ptr());
        let (a, b) = (authority(&a), authority(&b));
        assert_eq!(a, "up.example:8080");
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
    }
}
