//! Upstream connections owned by one client connection: an HTTP/1.1 client
//! connection's requests to a cleartext HTTP/1.1 upstream go over upstream
//! connections that its own task drives (see
//! [`crate::server::ConnectionScope`]), kept idle there between its
//! requests. Unlike the shared pool, a request then costs no pool lookup,
//! no channel to a connection task of its own and no wakeup of another
//! task. HTTPS and HTTP/2 upstreams, upgrades and requests that arrive over
//! HTTP/2 keep the shared pool: a TLS handshake per client connection, or a
//! multiplexed upstream, is what a pool is for.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Parts, Scheme};
use http::{header, HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tokio::time::Instant;
use tower::Service;

use super::body::RequestBody;
use super::spare::Spare;
use crate::connector::Connector;
use crate::server::ConnectionScope;

/// Upstream connections kept idle per client connection: one is enough for
/// HTTP/1.1's one request at a time; a few cover routes to other upstreams.
const MAX_IDLE: usize = 4;

/// Why a request did not get an answer over an owned connection.
#[derive(Debug)]
pub(super) enum DirectError {
    /// No connection to the upstream.
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed under the request.
    Http(hyper::Error),
}

impl DirectError {
    /// What went wrong, for the log and the 502's detail.
    pub(super) fn why(&self) -> String {
        use std::error::Error as _;
        match self {
            Self::Connect(e) => e
                .source()
                .map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
            Self::Http(e) => e
                .source()
                .map_or_else(|| e.to_string(), ToString::to_string),
        }
    }
}

/// The idle upstream senders of one client connection, by route client and origin.
#[derive(Default)]
struct Idle(Vec<(usize, Authority, SendRequest<RequestBody>)>);

impl Idle {
    /// An idle sender for `origin` that can take a request now.
    fn take(&mut self, client: usize, origin: &Authority) -> Option<SendRequest<RequestBody>> {
        self.0.retain(|(_, _, s)| !s.is_closed());
        let at = self
            .0
            .iter()
            .position(|(c, a, s)| *c == client && same_origin(a, origin) && s.is_ready())?;
        Some(self.0.swap_remove(at).2)
    }

    fn put(&mut self, client: usize, origin: Authority, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        if self.0.len() >= MAX_IDLE {
            self.0.remove(0);
        }
        self.0.push((client, origin, sender));
    }
}

/// `a == b`, first by address: both are clones of the route's upstream
/// origin nearly always, and `Authority`'s `==` compares ignoring case,
/// byte by byte, on every request.
fn same_origin(a: &Authority, b: &Authority) -> bool {
    std::ptr::eq(a.as_str(), b.as_str()) || a == b
}

/// Whether `req` may go over a connection owned by its client connection:
/// plain `http://` and no CONNECT. Only a client connection with a scope
/// (HTTP/1.1, whose handler runs in its task) owns connections.
pub(super) fn applies(req: &Request<RequestBody>) -> bool {
    req.uri().scheme() == Some(&Scheme::HTTP)
        && req.method() != Method::CONNECT
        && req.uri().authority().is_some()
}

/// Sends `req` (absolute URI, see [`applies`]) over an idle connection of
/// the client connection `scope` belongs to, to the same origin, or a new
/// one. `again` is the same request without a body, given only when it may
/// go twice: after an upstream closed a reused connection under the first,
/// it goes once more on a new connection.
pub(super) async fn send(
    scope: &ConnectionScope,
    connector: &Connector,
    client: usize,
    mut req: Request<RequestBody>,
    again: Option<Box<Spare>>,
) -> Result<Response<Incoming>, DirectError> {
    let Some(origin) = req.uri().authority().cloned() else {
        return Err(DirectError::Connect("request without an origin".into()));
    };
    to_origin(&mut req, &origin);
    let idle = scope.local(|idle: &mut Idle| idle.take(client, &origin));
    let (sender, answer) = match idle {
        Some(mut sender) => {
            let answer = sender.send_request(req).await;
            match answer {
                Err(e) if again.is_some() && super::is_keep_alive_race_h1(&e) => {
                    tracing::debug!("upstream closed a keep-alive connection under a request; sending it again on a new one");
                    let mut sender = Box::pin(connect(scope, connector, &origin)).await?;
                    // Built only now (nearly every spare goes unused), in a
                    // block that ends before the await, so this future never
                    // holds a request of its own.
                    let sent = {
                        let Some(mut req) = again.and_then(|s| s.into_request()) else {
                            return Err(DirectError::Http(e));
                        };
                        to_origin(&mut req, &origin);
                        sender.send_request(req)
                    };
                    let answer = sent.await;
                    (sender, answer)
                }
                answer => (sender, answer),
            }
        }
        None => {
            let mut sender = Box::pin(connect(scope, connector, &origin)).await?;
            let answer = sender.send_request(req).await;
            (sender, answer)
        }
    };
    let resp = answer.map_err(DirectError::Http)?;
    // Back to idle at once: it is ready again when the body has been read,
    // which for HTTP/1.1 is before this client connection's next request.
    scope.local(|idle: &mut Idle| idle.put(client, origin, sender));
    Ok(resp)
}

/// Runs `fut` for at most `timeout`; `None` when it ran out. The deadline
/// rides on the client connection's own timer ([`ConnectionScope::wake_at`]),
/// which polls this task then: a request costs a clock read per poll
/// instead of a timer of its own (a `tokio::time::Timeout` was about 4% of
/// a cache-hit request's instructions).
pub(super) fn within<F: Future>(
    scope: &ConnectionScope,
    timeout: Duration,
    fut: F,
) -> Within<'_, F> {
    Within {
        fut,
        scope,
        at: Instant::now() + timeout,
        armed: false,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`within`]: a struct, not an `async fn`, because an
    /// `async fn` keeps its argument and its pinned copy both in its state,
    /// twice the size of the request it carries.
    pub(super) struct Within<'s, F> {
        #[pin]
        fut: F,
        scope: &'s ConnectionScope,
        at: Instant,
        armed: bool,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if Instant::now() >= *this.at {
            return Poll::Ready(None);
        }
        if !*this.armed {
            *this.armed = true;
            this.scope.wake_at(*this.at);
        }
        Poll::Pending
    }
}

/// A new connection to `origin`, driven by the task of the client
/// connection `scope` belongs to.
async fn connect(
    scope: &ConnectionScope,
    connector: &Connector,
    origin: &Authority,
) -> Result<SendRequest<RequestBody>, DirectError> {
    let mut parts = Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(origin.clone());
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    let uri = Uri::from_parts(parts).map_err(|e| DirectError::Connect(e.into()))?;
    let io = connector
        .clone()
        .call(uri)
        .await
        .map_err(DirectError::Connect)?;
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(DirectError::Http)?;
    let conn = async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    };
    scope.spawn(conn);
    Ok(sender)
}

/// Rewrites `req` as an origin server gets it: the target in origin form,
/// and a `Host` when the client sent none (HTTP/1.0).
fn to_origin(req: &mut Request<RequestBody>, origin: &Authority) {
    let pq = req.uri().path_and_query().cloned();
    *req.uri_mut() = origin_form(pq);
    if !req.headers().contains_key(header::HOST) {
        if let Ok(host) = HeaderValue::from_str(host_header(origin)) {
            req.headers_mut().insert(header::HOST, host);
        }
    }
}

/// The request target as HTTP/1.1 sends it to an origin server (RFC 9112 3.2.1).
fn origin_form(pq: Option<http::uri::PathAndQuery>) -> Uri {
    match pq {
        Some(pq) if pq.as_str() != "/" => {
            let mut parts = Parts::default();
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    }
}

/// `Host` for a request that came without one: the origin, without the default port.
fn host_header(origin: &Authority) -> &str {
    match origin.port_u16() {
        Some(80) => origin.host(),
        _ => origin.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_sent_in_origin_form() {
        let pq = |s: &str| Some(s.parse::<http::uri::PathAndQuery>().unwrap());
        assert_eq!(origin_form(pq("/a/b?x=1")), "/a/b?x=1");
        assert_eq!(origin_form(pq("/")), "/");
        assert_eq!(origin_form(None), "/");
    }

    #[test]
    fn origins_match_by_address_or_by_value() {
        let a = |s: &str| s.parse::<Authority>().unwrap();
        let up = a("app:8080");
        assert!(same_origin(&up, &up.clone()));
        assert!(same_origin(&up, &a("APP:8080")));
        assert!(!same_origin(&up, &a("app:8081")));
    }

    #[test]
    fn host_leaves_out_the_default_port() {
        let a = |s: &str| s.parse::<Authority>().unwrap();
        assert_eq!(host_header(&a("app:80")), "app");
        assert_eq!(host_header(&a("app:8080")), "app:8080");
        assert_eq!(host_header(&a("app")), "app");
    }
}
