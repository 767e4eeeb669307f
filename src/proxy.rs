//! Forwarding to upstreams: a pooled keep-alive client that streams bodies
//! both ways, hop-by-hop header removal, and X-Forwarded-* handling.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{Upstream, UpstreamConfig};
use crate::connector::{self, Connector};
use crate::error::GatewayError;

/// Body of every response the gateway sends: streamed from upstream, or its own JSON.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sends requests upstream over pooled connections.
pub struct Forwarder {
    client: Client<Connector, Incoming>,
    timeout: Duration,
}

impl Forwarder {
    /// Builds the pooled client.
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, rustls::Error> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector::build(cfg.connect_timeout)?);
        Ok(Self {
            client,
            timeout: cfg.timeout,
        })
    }

    /// Sends `req` and returns the upstream's response with its body still streaming.
    pub async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, GatewayError> {
        let mut resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| GatewayError::UpstreamTimeout)?
            .map_err(|e| {
                use std::error::Error as _;
                let why = e
                    .source()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.to_string());
                GatewayError::UpstreamUnreachable(why)
            })?;
        remove_hop_by_hop(resp.headers_mut());
        Ok(resp)
    }
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
/// Runs before identity headers are added, so a client cannot list one of
/// them in `Connection` to have it dropped after injection.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most requests carry none of these, and a
    // remove() per name would hash every one of them.
    let any = headers
        .keys()
        .any(|n| HOP_BY_HOP.contains(n) || n == header::UPGRADE);
    if !any {
        return;
    }
    if let Some(listed) = connection_listed(headers) {
        for name in listed {
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    // Upgrade is hop-by-hop; WebSocket pass-through is a separate feature.
    headers.remove(header::UPGRADE);
}

fn connection_listed(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut out = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',') {
            let token = token.trim();
            if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                out.push(name);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

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

/// Upstream URI from the route's origin, the request's original path and
/// query, and the normalized path when normalization changed it. An
/// unchanged target is reused as is (shared bytes, no copy).
pub fn upstream_uri(
    upstream: &Upstream,
    original: Option<&PathAndQuery>,
    rewritten_path: Option<&str>,
) -> Result<Uri, GatewayError> {
    let pq = match (rewritten_path, original) {
        (None, Some(pq)) => Ok(pq.clone()),
        (path, _) => {
            let path = path.unwrap_or("/");
            match original.and_then(PathAndQuery::query) {
                Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
                None => PathAndQuery::try_from(path),
            }
        }
    }
    .map_err(|_| GatewayError::BadRequest("request target"))?;
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| GatewayError::BadRequest("request target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret, x-iid-profile-id"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-iid-profile-id", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert("x-forwarded-prefix", HeaderValue::from_static("/evil"));
        h.insert(header::HOST, HeaderValue::from_static("portal.example"));
        set_forwarded(&mut h, "127.0.0.1".parse().unwrap(), false, "http");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "portal.example");
        assert!(!h.contains_key("forwarded") && !h.contains_key("x-forwarded-prefix"));
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        set_forwarded(&mut h, "10.0.0.1".parse().unwrap(), true, "http");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn uri_keeps_the_query_verbatim() {
        let up = Upstream {
            scheme: http::uri::Scheme::HTTP,
            authority: "127.0.0.1:3000".parse().unwrap(),
        };
        let original: PathAndQuery = "/a/./b?x=%2F..&y".parse().unwrap();
        let u = upstream_uri(&up, Some(&original), Some("/a/b")).unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:3000/a/b?x=%2F..&y");
        let original: PathAndQuery = "/a/b?q".parse().unwrap();
        let u = upstream_uri(&up, Some(&original), None).unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:3000/a/b?q");
    }
}
