//! X-Forwarded-For/-Proto/-Host: extended for trusted proxies, replaced for
//! everyone else.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets X-Forwarded-For/-Proto/-Host. From an untrusted peer every
/// client-sent forwarding header is replaced (and `Forwarded`, `X-Real-IP`
/// dropped); from a trusted proxy the chain is extended.
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr, trusted: bool, proto: &'static str) {
    let peer_value = peer_header_value(peer);
    if trusted {
        let chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let value = if chain.is_empty() {
            peer_value
        } else {
            HeaderValue::from_str(&format!("{chain}, {peer}")).unwrap_or(peer_value)
        };
        headers.insert(X_FORWARDED_FOR, value);
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if !headers.contains_key(&X_FORWARDED_HOST) {
            if let Some(host) = headers.get(header::HOST).cloned() {
                headers.insert(X_FORWARDED_HOST, host);
            }
        }
        return;
    }
    strip_client_forwarding(headers);
    headers.insert(X_FORWARDED_FOR, peer_value);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

thread_local! {
    /// The last peer address rendered on this thread: a sidecar sees few
    /// distinct peers, so this saves formatting and allocating per request.
    static LAST_PEER: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

fn peer_header_value(peer: IpAddr) -> HeaderValue {
    LAST_PEER.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((ip, v)) = last.as_ref() {
            if *ip == peer {
                return v.clone();
            }
        }
        let v =
            HeaderValue::from_str(&peer.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        *last = Some((peer, v.clone()));
        v
    })
}

fn strip_client_forwarding(headers: &mut HeaderMap) {
    let is_forwarding = |n: &HeaderName| {
        let s = n.as_str();
        s.starts_with("x-forwarded-")
            || s.starts_with("x_forwarded_")
            || s == "forwarded"
            || s == "x-real-ip"
    };
    if !headers.keys().any(is_forwarding) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_forwarding(n))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}
