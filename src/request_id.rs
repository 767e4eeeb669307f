//! Request ids: an incoming `x-request-id` is kept (when it is a sane token),
//! else one is generated; it is forwarded upstream, returned to the client and
//! written to the access log, so one id follows a request everywhere.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest incoming id kept; longer ones are replaced, not truncated.
pub const MAX_LEN: usize = 128;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static SEED: OnceLock<u64> = OnceLock::new();

/// Keeps a valid incoming `x-request-id` or sets a fresh one; returns it.
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        if is_valid(v.as_bytes()) && headers.get_all(&X_REQUEST_ID).iter().count() == 1 {
            return v.clone();
        }
    }
    let id = generate();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// 32 hex digits: a per-process random seed and a counter, unique without
/// coordination and cheap (no system randomness per request).
pub fn generate() -> HeaderValue {
    let seed = *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    text[..16].copy_from_slice(&crate::hex::digits::<16>(seed));
    text[16..].copy_from_slice(&crate::hex::digits::<16>(n));
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0"))
}

fn is_valid(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LEN
        && v.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_incoming_id() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ensure(&mut h), "abc-123");
    }

    #[test]
    fn replaces_missing_oversized_odd_or_repeated_ids() {
        for bad in [None, Some("a b"), Some("x\"y")] {
            let mut h = HeaderMap::new();
            if let Some(b) = bad {
                h.insert(X_REQUEST_ID, HeaderValue::from_str(b).unwrap());
            }
            let id = ensure(&mut h);
            assert_eq!(id.len(), 32);
            assert_eq!(h[X_REQUEST_ID], id);
        }
        let mut h = HeaderMap::new();
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(MAX_LEN + 1)).unwrap(),
        );
        assert_eq!(ensure(&mut h).len(), 32);
        let mut h = HeaderMap::new();
        h.append(X_REQUEST_ID, HeaderValue::from_static("one"));
        h.append(X_REQUEST_ID, HeaderValue::from_static("two"));
        let id = ensure(&mut h);
        assert_eq!(h.get_all(X_REQUEST_ID).iter().count(), 1);
        assert_eq!(id.len(), 32);
    }

    #[test]
    fn generated_ids_are_unique() {
        assert_ne!(generate(), generate());
    }
}
