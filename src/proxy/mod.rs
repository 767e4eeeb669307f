//! Forwarding to upstreams: over connections an HTTP/1.1 client connection
//! owns and drives itself ([`direct`]), else pooled keep-alive clients (one
//! per distinct route `ca_file`/`http2`); bodies and trailers stream both ways,
//! hop-by-hop header removal with the two exceptions an upstream may need
//! (`Upgrade` for WebSocket, `TE: trailers` for gRPC), and X-Forwarded-*.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{Upstream, UpstreamClientConfig, UpstreamConfig};
use crate::connector::{self, Alpn, Connector};
use crate::error::GatewayError;
mod body;
mod direct;
mod forwarded;
mod hop;
mod spare;
pub mod upgrade;

use body::{BodyFate, Broken};
pub use body::{RequestBody, RequestBodyError};
pub use forwarded::set_forwarded;
pub use hop::{remove_hop_by_hop, remove_request_hop_by_hop, HopByHop};
use spare::Spare;

use crate::server::{ConnectionLease, ConnectionScope};

/// Body of every response the gateway sends: streamed from upstream, or its own JSON.
pub type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Trailer fields a gRPC server sends; declared to HTTP/1.1 clients, whose
/// chunked encoding carries only the trailers a `Trailer` header announced.
const GRPC_TRAILERS: HeaderValue =
    HeaderValue::from_static("grpc-status, grpc-message, grpc-status-details-bin");

/// Sends requests upstream over pooled connections.
pub struct Forwarder {
    /// Indexed by `Route::client`: per request, choosing one is a bounds check.
    clients: Box<[UpstreamClient]>,
    timeout: Duration,
}

/// One pooled client and what it speaks.
struct UpstreamClient {
    client: Client<Connector, RequestBody>,
    /// The same without a pool: the one retry after a keep-alive race must
    /// not land on another stale pooled connection.
    fresh: Client<Connector, RequestBody>,
    /// For connections a client connection owns (see [`direct`]).
    connector: Connector,
    http2: bool,
}

/// How an admitted request goes upstream: which client, which hop-by-hop
/// requests to honour on the way, and how much body to let through.
#[derive(Debug)]
pub struct Onward {
    client: usize,
    hop: HopByHop,
    max_body_bytes: Option<u64>,
}

impl Forwarder {
    /// Builds one pooled client per entry of `cfg.clients` (at least the default one).
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, rustls::Error> {
        let default = [UpstreamClientConfig {
            ca: None,
            http2: false,
        }];
        let specs = if cfg.clients.is_empty() {
            &default[..]
        } else {
            &cfg.clients[..]
        };
        let clients = specs
            .iter()
            .map(|spec| {
                let alpn = if spec.http2 { Alpn::Http2 } else { Alpn::Http1 };
                let ca = spec.ca.as_ref().map(|b| &b.certs[..]);
                let connector = connector::build_with(cfg.connect_timeout, ca, alpn)?;
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .http2_only(spec.http2)
                    .build(connector.clone());
                let fresh = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .http2_only(spec.http2)
                    .build(connector.clone());
                Ok(UpstreamClient {
                    client,
                    fresh,
                    connector,
                    http2: spec.http2,
                })
            })
            .collect::<Result<_, rustls::Error>>()?;
        Ok(Self {
            clients,
            timeout: cfg.timeout,
        })
    }

    /// Sends `req` and returns the upstream's response with its body (and
    /// trailers) still streaming. A `101` to an upgrade request hands both
    /// connections to [`crate::proxy::upgrade::splice`]. A body that goes past the
    /// route's limit before the upstream answers is [`GatewayError::BodyTooLarge`];
    /// one the client breaks off (malformed, or cut short) is [`GatewayError::ClientBody`].
    /// `scope` is the client connection's, when it can own upstream
    /// connections (HTTP/1.1; see [`direct`]).
    pub fn send<'s>(
        &'s self,
        onward: Onward,
        mut req: Request<Incoming>,
        scope: Option<&'s ConnectionScope>,
    ) -> impl Future<Output = Result<Response<Incoming>, GatewayError>> + 's {
        // Everything but the wait happens here, before the future exists,
        // and the future is a struct: an `async fn` would keep its arguments
        // and what they became in its state side by side, and this future
        // is boxed once per request.
        let Onward {
            client,
            hop,
            max_body_bytes,
        } = onward;
        let Some(up) = self.clients.get(client) else {
            return Sending {
                answer: Answering::Failed {
                    why: Some("no client for the route".into()),
                },
                fate: Arc::default(),
                upgrade: None,
                trailers: false,
            };
        };
        if up.http2 && hop.te_trailers {
            req.headers_mut()
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // HTTP/2 has no Upgrade; without hyper's hook the client side could
        // never be taken over after a 101.
        // Only a tunnel may keep the client connection's lease (its
        // max_connections slot); any other request lets go of it here.
        let lease = req.extensions_mut().remove::<ConnectionLease>();
        let upgrade = match hop.upgrade {
            Some(protocols) if !up.http2 && req.extensions().get::<OnUpgrade>().is_some() => {
                let headers = req.headers_mut();
                headers.insert(header::UPGRADE, protocols);
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                Some((hyper::upgrade::on(&mut req), lease))
            }
            _ => None,
        };
        let (parts, body) = req.into_parts();
        // An upstream may close an idle keep-alive connection just as a
        // request goes out on it. A request without a body whose method is
        // idempotent can go again, once, on a new connection; anything with a
        // body (a POST above all) is never sent twice.
        let again = (!up.http2
            && upgrade.is_none()
            && parts.method.is_idempotent()
            && hyper::body::Body::is_end_stream(&body))
        .then(|| {
            // Boxed: a spare inline would be carried, and copied, by every
            // level of the request's future.
            Box::new(Spare::of(
                &parts.method,
                &parts.uri,
                parts.version,
                &parts.headers,
            ))
        });
        let (body, fate) = RequestBody::new(body, max_body_bytes);
        let req = Request::from_parts(parts, body);
        let direct = scope.filter(|_| !up.http2 && upgrade.is_none() && direct::applies(&req));
        let answer = match direct {
            Some(scope) => Answering::Direct {
                fut: direct::within(
                    scope,
                    self.timeout,
                    direct::send(scope, &up.connector, client, req, again),
                ),
            },
            None => Answering::Pooled {
                fut: pooled(up, self.timeout, req, again),
            },
        };
        Sending {
            answer,
            fate,
            upgrade,
            trailers: up.http2 && hop.te_trailers,
        }
    }
}

/// The upstream's answer, or none within the timeout.
type Answer = Option<Result<Response<Incoming>, String>>;

/// An answer over a connection the client connection owns.
type DirectAnswer = Result<Response<Incoming>, direct::DirectError>;

pin_project_lite::pin_project! {
    /// The future of [`Forwarder::send`]: the wait for the upstream's answer,
    /// then what the answer is checked against.
    struct Sending<D, P> {
        #[pin]
        answer: Answering<D, P>,
        // Whether the request body broke off, and why.
        fate: Arc<BodyFate>,
        // The client side of a requested upgrade, with its connection's lease.
        upgrade: Option<(OnUpgrade, Option<ConnectionLease>)>,
        // Declare gRPC trailers to the client (an HTTP/2 upstream asked for them).
        trailers: bool,
    }
}

impl<D, P> Future for Sending<D, P>
where
    D: Future<Output = Option<DirectAnswer>>,
    P: Future<Output = Answer>,
{
    type Output = Result<Response<Incoming>, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.answer.poll(cx));
        Poll::Ready(finish(
            answer,
            this.fate,
            this.upgrade.take(),
            *this.trailers,
        ))
    }
}

pin_project_lite::pin_project! {
    /// The wait for the upstream's answer, over either kind of connection.
    #[project = AnsweringProj]
    enum Answering<D, P> {
        Direct { #[pin] fut: D },
        Pooled { #[pin] fut: P },
        // No request went out.
        Failed { why: Option<String> },
    }
}

impl<D, P> Future for Answering<D, P>
where
    D: Future<Output = Option<DirectAnswer>>,
    P: Future<Output = Answer>,
{
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.project() {
            AnsweringProj::Direct { fut } => fut
                .poll(cx)
                .map(|answer| answer.map(|sent| sent.map_err(|e| e.why()))),
            AnsweringProj::Pooled { fut } => fut.poll(cx),
            AnsweringProj::Failed { why } => Poll::Ready(why.take().map(Err)),
        }
    }
}

/// `req` over the route's pooled client (HTTP/2 and TLS upstreams, or a
/// client connection without a scope) within `timeout`. A GET the upstream
/// dropped under a reused connection goes once more, as `again`, on a new one.
async fn pooled(
    up: &UpstreamClient,
    timeout: Duration,
    req: Request<RequestBody>,
    again: Option<Box<Spare>>,
) -> Answer {
    let sent = async {
        match up.client.request(req).await {
            // The request is rebuilt only now, and handed to the client
            // before the await, so this future never holds one of its own.
            Err(e) if is_keep_alive_race(&e) => match again
                .and_then(|s| s.into_request())
                .map(|req| up.fresh.request(req))
            {
                Some(sent) => {
                    tracing::debug!("upstream closed a keep-alive connection under a request; sending it again on a new one");
                    sent.await
                }
                None => Err(e),
            },
            answer => answer,
        }
        .map_err(|e| {
            use std::error::Error as _;
            e.source()
                .map(ToString::to_string)
                .unwrap_or_else(|| e.to_string())
        })
    };
    tokio::time::timeout(timeout, sent).await.ok()
}

/// The upstream's answer as the client gets it: errors named for whose
/// fault they are, a `101` handed to the splice, hop-by-hop headers gone.
fn finish(
    answer: Answer,
    fate: &BodyFate,
    upgrade: Option<(OnUpgrade, Option<ConnectionLease>)>,
    trailers: bool,
) -> Result<Response<Incoming>, GatewayError> {
    let mut resp = answer
        .ok_or(GatewayError::UpstreamTimeout)?
        .map_err(|why| {
            // The body broke off on the client's side: the upstream
            // request failed because of it, not because of the upstream.
            match fate.broken() {
                Some(Broken::TooLarge) => GatewayError::BodyTooLarge,
                Some(Broken::Client) => {
                    tracing::debug!(error = %why, "request body broke off on the client's side");
                    GatewayError::ClientBody
                }
                None => GatewayError::UpstreamUnreachable(why),
            }
        })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A 101 nobody asked for would leave the client's connection in
        // an unknown protocol; refuse it rather than pass it on.
        let (client_side, lease) = upgrade.ok_or_else(|| {
            GatewayError::UpstreamUnreachable("101 to a request that asked for no upgrade".into())
        })?;
        let protocol = resp.headers().get(header::UPGRADE).cloned();
        remove_hop_by_hop(resp.headers_mut());
        if let Some(p) = protocol {
            resp.headers_mut().insert(header::UPGRADE, p);
        }
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        let upstream_side = hyper::upgrade::on(&mut resp);
        crate::proxy::upgrade::splice(client_side, upstream_side, lease);
        return Ok(resp);
    }
    let trailer = trailers
        .then(|| declared_trailers(resp.headers()))
        .flatten();
    remove_hop_by_hop(resp.headers_mut());
    if let Some(trailer) = trailer {
        resp.headers_mut().insert(header::TRAILER, trailer);
    }
    Ok(resp)
}

/// Whether the upstream ended a reused connection before any byte of an
/// answer: the signature of a keep-alive connection closed under a request.
fn is_keep_alive_race(e: &hyper_util::client::legacy::Error) -> bool {
    use std::error::Error as _;
    if e.is_connect() {
        return false;
    }
    e.source()
        .and_then(|s| s.downcast_ref::<hyper::Error>())
        .is_some_and(is_keep_alive_race_h1)
}

/// [`is_keep_alive_race`] for hyper's own error.
fn is_keep_alive_race_h1(h: &hyper::Error) -> bool {
    use std::error::Error as _;
    if h.is_incomplete_message() || h.is_canceled() {
        return true;
    }
    h.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        })
}

/// The `Trailer` header to send a client that accepts trailers: the
/// upstream's own, else the gRPC ones for a gRPC answer. HTTP/2 upstreams
/// rarely declare trailers, but an HTTP/1.1 client only gets declared ones.
fn declared_trailers(headers: &HeaderMap) -> Option<HeaderValue> {
    let own: Vec<&[u8]> = headers
        .get_all(header::TRAILER)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if !own.is_empty() {
        return HeaderValue::from_bytes(&own.join(&b", "[..])).ok();
    }
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    grpc.then_some(GRPC_TRAILERS)
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
    use super::forwarded::*;
    use super::hop::*;
    use super::*;
    use http::request::Parts;
    use http::{Method, Version};

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
    fn each_hop_by_hop_header_is_removed_alone_and_together() {
        let names = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ];
        for name in names {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h.insert("accept", HeaderValue::from_static("*/*"));
            remove_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}: {h:?}");
        }
        let mut h = HeaderMap::new();
        for name in names {
            h.append(name, HeaderValue::from_static("x"));
            h.append(name, HeaderValue::from_static("y"));
        }
        h.insert("x", HeaderValue::from_static("listed by Connection"));
        h.insert("date", HeaderValue::from_static("kept"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("date"));
    }

    fn request(method: Method, version: Version, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder()
            .method(method)
            .version(version)
            .uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_valid_upgrade_is_remembered_and_everything_hop_by_hop_removed() {
        let mut p = request(
            Method::GET,
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, Upgrade, x-iid-profile-id"),
                ("upgrade", "websocket"),
                ("x-iid-profile-id", "1"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        );
        let hop = remove_request_hop_by_hop(&mut p);
        assert_eq!(hop.upgrade.as_ref().unwrap(), "websocket");
        assert!(!hop.te_trailers);
        assert_eq!(p.headers.len(), 1, "{:?}", p.headers);
        assert!(p.headers.contains_key("sec-websocket-key"));
    }

    #[test]
    fn upgrades_need_get_http11_and_connection_upgrade_and_never_h2c() {
        let ws = [("connection", "upgrade"), ("upgrade", "websocket")];
        for (method, version, headers) in [
            (Method::POST, Version::HTTP_11, &ws[..]),
            (Method::GET, Version::HTTP_10, &ws[..]),
            (
                Method::GET,
                Version::HTTP_11,
                &[("upgrade", "websocket")][..],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", " H2C , ")][..],
            ),
        ] {
            let mut p = request(method.clone(), version, headers);
            let hop = remove_request_hop_by_hop(&mut p);
            assert!(hop.upgrade.is_none(), "{method} {version:?} {headers:?}");
            assert!(p.headers.is_empty(), "{:?}", p.headers);
        }
        let mut p = request(
            Method::GET,
            Version::HTTP_11,
            &[("connection", "Upgrade"), ("upgrade", "h2c, websocket")],
        );
        let hop = remove_request_hop_by_hop(&mut p);
        assert_eq!(hop.upgrade.unwrap(), "websocket");
    }

    #[test]
    fn te_trailers_is_remembered_other_codings_are_not() {
        let te = |v: &str| {
            let mut p = request(Method::POST, Version::HTTP_11, &[("te", v)]);
            let hop = remove_request_hop_by_hop(&mut p);
            assert!(p.headers.is_empty());
            hop.te_trailers
        };
        assert!(te("trailers"));
        assert!(te("gzip;q=0.5, Trailers"));
        assert!(!te("gzip"));
        assert!(!te("x-trailers"));
    }

    #[test]
    fn trailers_are_declared_for_grpc_or_as_the_upstream_did() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_trailers(&h), None);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert_eq!(declared_trailers(&h).unwrap(), GRPC_TRAILERS);
        h.insert(header::TRAILER, HeaderValue::from_static("x-checksum"));
        h.append(header::TRAILER, HeaderValue::from_static("grpc-status"));
        assert_eq!(declared_trailers(&h).unwrap(), "x-checksum, grpc-status");
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
