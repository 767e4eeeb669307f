//! Accept loop shared by the gateway, the emulator and the demo upstream:
//! HTTP/1.1 (keep-alive, upgrades) and, when enabled, HTTP/2 (by ALPN over
//! TLS, by prior knowledge in cleartext), optional TLS, `TCP_NODELAY`, and
//! graceful shutdown.
//!
//! The protocol is settled once per connection, so a known HTTP/1.1
//! connection runs hyper's HTTP/1.1 connection directly, with nothing in
//! between: over TLS the ALPN result decides; in cleartext the first bytes
//! are peeked (not read) for the HTTP/2 preface, which costs one `recv`
//! per connection and nothing per request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{COOKIE, HOST};
use http::{HeaderValue, Request, Response, Version};
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::tls::{TlsAcceptorHandle, ALPN_H2};

/// Told when a connection opens (`+1`) and closes (`-1`), e.g. for a gauge.
pub type ConnectionObserver = std::sync::Arc<dyn Fn(i64) + Send + Sync>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a handler learns about the connection a request came on, as a
/// request extension. Inserted only on TLS connections: absent means
/// cleartext, which keeps the cleartext hot path free of an allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The request arrived over TLS terminated here.
    pub tls: bool,
}

impl ConnectionInfo {
    /// `"https"` for a request that came over TLS, else `"http"` (X-Forwarded-Proto).
    pub fn proto(extensions: &http::Extensions) -> &'static str {
        match extensions.get::<ConnectionInfo>() {
            Some(ConnectionInfo { tls: true }) => "https",
            _ => "http",
        }
    }
}

/// How a listener is served: limits that apply per connection.
#[derive(Clone)]
pub struct ServeOptions {
    /// Largest request head hyper will buffer; beyond it hyper answers 431
    /// itself (HTTP/2: the header list limit).
    pub max_buf_size: usize,
    /// Slow clients that do not finish their request head in time are
    /// dropped; also bounds the TLS handshake and the h2c preface sniff.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown is signalled.
    pub shutdown_grace: Duration,
    /// Connection open/close notifications.
    pub observer: Option<ConnectionObserver>,
    /// Serve HTTP/2 too: `h2` by ALPN over TLS, prior-knowledge h2c in cleartext.
    pub http2: bool,
    /// Terminate TLS with this certificate source; `None` is cleartext.
    pub tls: Option<Arc<TlsAcceptorHandle>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("max_buf_size", &self.max_buf_size)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("observer", &self.observer.is_some())
            .field("http2", &self.http2)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for ServeOptions {
    /// Cleartext HTTP/1.1: what the emulator, echo and admin listeners need.
    fn default() -> Self {
        Self {
            max_buf_size: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            observer: None,
            http2: false,
            tls: None,
        }
    }
}

/// Per-listener connection settings, shared by every connection task.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    serve_http2: bool,
    tls: Option<Arc<TlsAcceptorHandle>>,
    handshake_timeout: Duration,
}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains
/// open connections for at most `opts.shutdown_grace`.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    opts: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_buf_size.max(8192))
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(opts.max_buf_size).unwrap_or(u32::MAX));
    let protocols = Arc::new(Protocols {
        http1: h1,
        http2: h2,
        serve_http2: opts.http2,
        tls: opts.tls.clone(),
        handshake_timeout: opts.header_read_timeout,
    });
    // Our own drain signal rather than hyper-util's GracefulShutdown, whose
    // sealed trait covers neither HTTP/1.1 connections with upgrades nor a
    // TLS handshake still in progress. Every connection task holds a
    // receiver; shutdown sends, then waits until all of them are dropped.
    let (drain_tx, _) = watch::channel(());

    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // EMFILE and friends are transient: back off instead of spinning or exiting.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let stop = drain_tx.subscribe();
        let handler = handler.clone();
        let protocols = Arc::clone(&protocols);
        let observer = opts.observer.clone();
        if let Some(o) = &observer {
            o(1);
        }
        tokio::spawn(async move {
            if let Err(err) = connection(stream, peer, handler, &protocols, stop).await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            if let Some(o) = observer {
                o(-1);
            }
        });
    }
    drop(listener);
    let _ = drain_tx.send(());
    if tokio::time::timeout(opts.shutdown_grace, drain_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with connections still open");
    }
    Ok(())
}

/// One connection: TLS handshake if configured, protocol choice, then hyper.
async fn connection<H, Fut, B>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    protocols: &Protocols,
    mut stop: watch::Receiver<()>,
) -> Result<(), BoxError>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = protocols.tls.is_some();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        if req.version() == Version::HTTP_2 {
            as_http11(&mut req);
        }
        if tls {
            req.extensions_mut().insert(ConnectionInfo { tls: true });
        }
        let fut = handler(req, peer);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let limit = protocols.handshake_timeout;
    match &protocols.tls {
        None => {
            let h2 = protocols.serve_http2
                && {
                    let sniff = tokio::time::timeout(limit, starts_with_h2_preface(&stream));
                    tokio::select! {
                        sniffed = sniff => sniffed.map_err(|_| "no request within header_read_timeout")??,
                        _ = stop.changed() => return Ok(()),
                    }
                };
            serve_io(TokioIo::new(stream), h2, svc, protocols, stop).await?;
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limit, acceptor.acceptor().accept(stream));
            let stream = tokio::select! {
                done = handshake => done.map_err(|_| "TLS handshake timed out")??,
                _ = stop.changed() => return Ok(()),
            };
            // No ALPN (or http/1.1) is HTTP/1.1; h2 is only offered when enabled.
            let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
            serve_io(TokioIo::new(stream), h2, svc, protocols, stop).await?;
        }
    }
    Ok(())
}

/// Runs hyper's connection for the protocol already chosen, draining it
/// gracefully when `stop` fires.
async fn serve_io<I, S, B>(
    io: I,
    h2: bool,
    svc: S,
    protocols: &Protocols,
    stop: watch::Receiver<()>,
) -> Result<(), hyper::Error>
where
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if h2 {
        let conn = protocols.http2.serve_connection(io, svc);
        drive(conn, stop, |c| c.graceful_shutdown()).await
    } else {
        // Upgrades on, so a handler can take the socket over with hyper::upgrade::on.
        let conn = protocols.http1.serve_connection(io, svc).with_upgrades();
        drive(conn, stop, |c| c.graceful_shutdown()).await
    }
}

/// Drives `conn`; once `stop` fires (or its sender is gone), asks it to
/// finish in-flight requests and close, and waits for that. `stop` is held
/// until the end, which is what the listener's drain waits for.
async fn drive<C, E>(
    conn: C,
    mut stop: watch::Receiver<()>,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        // The connection first: it is what wakes this task almost every time.
        biased;
        done = conn.as_mut() => return done,
        _ = stop.changed() => {}
    }
    graceful_shutdown(conn.as_mut());
    let done = conn.await;
    drop(stop);
    done
}

/// The HTTP/2 connection preface (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a cleartext client opens with the HTTP/2 preface (h2c with prior
/// knowledge). Peeks, so the bytes stay for whichever protocol serves the
/// connection; an HTTP/1.1 request differs from the first byte on.
async fn starts_with_h2_preface(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface: peek would return the same bytes at once, so
        // wait for the rest, backing off so a client that stalls here costs a
        // few wakeups, not thousands (the caller bounds the whole sniff).
        // Real clients send the 24 bytes in one segment and never get here.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Gives an HTTP/2 request the shape of an HTTP/1.1 one, which the handlers
/// and the HTTP/1.1 upstream client expect: a `Host` header from
/// `:authority`, one `Cookie` header (RFC 9113 8.2.3 lets clients split it),
/// and version 1.1 (hyper's client refuses to send an HTTP/2-versioned
/// request over an HTTP/1.1 upstream connection).
fn as_http11(req: &mut Request<Incoming>) {
    if !req.headers().contains_key(HOST) {
        if let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(HOST, host);
        }
    }
    if req.headers().get_all(COOKIE).iter().nth(1).is_some() {
        let joined = req
            .headers()
            .get_all(COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            req.headers_mut().insert(COOKIE, value);
        }
    }
    *req.version_mut() = Version::HTTP_11;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_proto_follows_the_connection() {
        let mut ext = http::Extensions::new();
        assert_eq!(ConnectionInfo::proto(&ext), "http");
        ext.insert(ConnectionInfo { tls: false });
        assert_eq!(ConnectionInfo::proto(&ext), "http");
        ext.insert(ConnectionInfo { tls: true });
        assert_eq!(ConnectionInfo::proto(&ext), "https");
    }
}
