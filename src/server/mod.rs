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
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{COOKIE, HOST};
use http::{HeaderValue, Request, Response, Version};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

mod idle;
pub mod pem;
pub mod reload;
mod scope;
pub mod tls;
mod wakeups;

use idle::{Activity, Tracked, Watched};
pub use scope::ConnectionScope;
use scope::Side;
use tls::{TlsAcceptorHandle, ALPN_H2};
use wakeups::Wakeups;

/// Default bound on open connections per listener (see [`ServeOptions::max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// First pause after a failed `accept`; doubled per failure up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between `accept` retries while the process is out of descriptors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long connections get to close once the grace is over and they were told to.
const ABORT_WAIT: Duration = Duration::from_secs(1);
/// How long an idle HTTP/2 connection gets to close after its GOAWAY.
const GOAWAY_WAIT: Duration = Duration::from_secs(1);

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
    /// Counted from the head's first byte, or from the connection opening
    /// for its first request.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight (HTTP/2: no open stream) is
    /// closed after this long, so idle clients do not pin descriptors.
    pub idle_timeout: Duration,
    /// At most this many connections are open at once (TLS handshakes and
    /// upgraded tunnels included); beyond it new ones wait in the kernel's
    /// accept backlog, so the process cannot run out of descriptors.
    pub max_connections: usize,
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
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
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
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
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
    idle_timeout: Duration,
}

/// What the listener's drain asks of the connections it still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Serving normally.
    Serving,
    /// Shutdown began: finish in-flight requests, take no new ones.
    Graceful,
    /// The grace is over: close now, upgraded tunnels included.
    Abort,
}

/// A connection's hold on its listener: its `max_connections` slot, its
/// place in the drain and its count in the open-connections gauge. Upgrade
/// requests carry a clone as a request extension, so an upgraded tunnel
/// keeps all three until it closes (see [`crate::proxy::upgrade::splice`]).
#[derive(Clone)]
pub struct ConnectionLease(Arc<Lease>);

struct Lease {
    _slot: OwnedSemaphorePermit,
    drain: watch::Receiver<Drain>,
    observer: Option<ConnectionObserver>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(o) = &self.observer {
            o(-1);
        }
    }
}

impl std::fmt::Debug for ConnectionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLease")
            .field("drain", &*self.0.drain.borrow())
            .finish()
    }
}

impl ConnectionLease {
    /// Resolves once the listener's shutdown grace is over (or the listener
    /// is gone): whatever still holds the connection must close it then.
    pub async fn closing(&self) {
        let mut drain = self.0.drain.clone();
        let _ = drain.wait_for(|d| *d == Drain::Abort).await;
    }
}

/// A request handler that also gets its connection's [`ConnectionScope`]
/// (see [`serve_scoped`]).
pub trait ScopedHandler<Fut>:
    Fn(Request<Incoming>, SocketAddr, Option<&Arc<ConnectionScope>>) -> Fut
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<H, Fut> ScopedHandler<Fut> for H where
    H: Fn(Request<Incoming>, SocketAddr, Option<&Arc<ConnectionScope>>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body hyper can send from any connection's task.
pub trait SendBody: Body<Data: Send, Error: Into<BoxError>> + Unpin + Send + 'static {}

impl<B> SendBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Unpin + Send + 'static {}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains
/// open connections (upgraded ones too) for at most `opts.shutdown_grace`
/// and closes what is left.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    opts: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: SendBody,
{
    serve_scoped(
        listener,
        opts,
        move |req, peer, _: Option<&Arc<ConnectionScope>>| handler(req, peer),
        shutdown,
    )
    .await
}

/// [`serve`] for a handler that also gets the [`ConnectionScope`] of the
/// HTTP/1.1 connection its request came on (`None` over HTTP/2, whose
/// streams run in tasks of their own).
pub async fn serve_scoped<H, Fut, B>(
    listener: TcpListener,
    opts: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: ScopedHandler<Fut>,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: SendBody,
{
    let mut h1 = http1::Builder::new();
    // hyper's header_read_timeout would also cut idle keep-alive connections
    // at the head timeout; `crate::server::idle` enforces both timeouts instead.
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(opts.max_buf_size.max(8192))
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    // Pings find peers that vanished without a FIN while streams are open;
    // an HTTP/2 connection without streams is closed by the idle timer.
    h2.timer(TokioTimer::new())
        .keep_alive_interval(opts.idle_timeout)
        .max_header_list_size(u32::try_from(opts.max_buf_size).unwrap_or(u32::MAX));
    let protocols = Arc::new(Protocols {
        http1: h1,
        http2: h2,
        serve_http2: opts.http2,
        tls: opts.tls.clone(),
        handshake_timeout: opts.header_read_timeout,
        idle_timeout: opts.idle_timeout,
    });
    // Our own drain signal rather than hyper-util's GracefulShutdown, whose
    // sealed trait covers neither HTTP/1.1 connections with upgrades nor a
    // TLS handshake still in progress. Every connection (and upgraded
    // tunnel) holds a receiver; shutdown sends, then waits until all of
    // them are dropped.
    let (drain_tx, _) = watch::channel(Drain::Serving);
    let slots = Arc::new(Semaphore::new(
        opts.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));

    let mut shutdown = pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    'accept: loop {
        // A slot first, then accept: at the limit, new connections wait in
        // the kernel's backlog instead of costing a descriptor here.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break 'accept,
            };
            match accepted {
                Ok(conn) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    break conn;
                }
                // The peer gave up before we accepted: nothing is wrong here.
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // EMFILE, ENFILE, ENOBUFS: other sockets (upstream, IdP)
                    // used the descriptors up. Back off instead of spinning;
                    // closing connections will free some.
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break 'accept,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        };
        let _ = stream.set_nodelay(true);
        if let Some(o) = &opts.observer {
            o(1);
        }
        let lease = ConnectionLease(Arc::new(Lease {
            _slot: slot,
            drain: drain_tx.subscribe(),
            observer: opts.observer.clone(),
        }));
        let handler = handler.clone();
        let protocols = Arc::clone(&protocols);
        tokio::spawn(async move {
            if let Err(err) = connection(stream, peer, handler, &protocols, lease).await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drain_tx.send_replace(Drain::Graceful);
    if tokio::time::timeout(opts.shutdown_grace, drain_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = drain_tx.receiver_count(),
            "shutdown grace elapsed: closing the connections still open"
        );
        drain_tx.send_replace(Drain::Abort);
        let _ = tokio::time::timeout(ABORT_WAIT, drain_tx.closed()).await;
    }
    Ok(())
}

/// Accept errors that concern one connection only, not the listener.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// One connection: TLS handshake if configured, protocol choice, then hyper.
async fn connection<H, Fut, B>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    protocols: &Protocols,
    lease: ConnectionLease,
) -> Result<(), BoxError>
where
    H: ScopedHandler<Fut>,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: SendBody,
{
    let mut stop = lease.0.drain.clone();
    let limit = protocols.handshake_timeout;
    let conn = Conn {
        peer,
        tls: protocols.tls.is_some(),
        lease,
    };
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
            serve_io(stream, h2, handler, protocols, conn).await?;
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limit, acceptor.acceptor().accept(stream));
            let stream = tokio::select! {
                done = handshake => done.map_err(|_| "TLS handshake timed out")??,
                _ = stop.changed() => return Ok(()),
            };
            // No ALPN (or http/1.1) is HTTP/1.1; h2 is only offered when enabled.
            let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
            serve_io(stream, h2, handler, protocols, conn).await?;
        }
    }
    Ok(())
}

/// What a connection's requests need to know about it.
struct Conn {
    peer: SocketAddr,
    tls: bool,
    lease: ConnectionLease,
}

/// Runs hyper's connection for the protocol already chosen, with the idle
/// and request-head timers, draining it gracefully when the listener does.
async fn serve_io<S, H, Fut, B>(
    stream: S,
    h2: bool,
    handler: H,
    protocols: &Protocols,
    conn: Conn,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: ScopedHandler<Fut>,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: SendBody,
{
    let Conn { peer, tls, lease } = conn;
    let stop = lease.0.drain.clone();
    let activity = Arc::new(Activity::new(
        !h2,
        protocols.idle_timeout,
        protocols.handshake_timeout,
    ));
    let requests = Arc::clone(&activity);
    // Streams of an HTTP/2 connection run in tasks of their own: no scope, the proxy pools.
    let scope = (!h2).then(ConnectionScope::new);
    let side = scope.as_ref().map(ConnectionScope::side);
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let guard = requests.request_started();
        if req.version() == Version::HTTP_2 {
            as_http11(&mut req);
        }
        if tls {
            req.extensions_mut().insert(ConnectionInfo { tls: true });
        }
        // Only upgrade requests carry OnUpgrade, so only they pay for the
        // insert: a tunnel outlives this task and must keep the slot.
        if req.extensions().get::<OnUpgrade>().is_some() {
            req.extensions_mut().insert(lease.clone());
        }
        let fut = handler(req, peer, scope.as_ref());
        async move {
            let resp = fut.await;
            Ok::<_, Infallible>(resp.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    if h2 {
        let conn = protocols.http2.serve_connection(TokioIo::new(stream), svc);
        drive(conn, stop, &activity, |c| c.graceful_shutdown(), true, None).await
    } else {
        // Upgrades on, so a handler can take the socket over with hyper::upgrade::on.
        let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
        let conn = protocols.http1.serve_connection(io, svc).with_upgrades();
        drive(
            conn,
            stop,
            &activity,
            |c| c.graceful_shutdown(),
            false,
            side,
        )
        .await
    }
}

/// Drives `conn` until it ends. When the listener drains, asks it to finish
/// its in-flight requests and close; when the grace is over, or the
/// connection is past its idle or request-head deadline, drops it (an idle
/// HTTP/2 connection first gets a GOAWAY). `stop` is held until the end,
/// which is what the listener's drain waits for. `side` holds the futures
/// handlers gave the connection's [`ConnectionScope`]: they are polled right
/// after the connection, in this task, and dropped with it. Each of the two
/// parts is polled only when one of its own wakeups came ([`wakeups`]).
async fn drive<C, E>(
    conn: C,
    mut stop: watch::Receiver<Drain>,
    activity: &Activity,
    graceful_shutdown: fn(Pin<&mut C>),
    goaway_when_idle: bool,
    mut side: Option<Side>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = pin!(conn);
    let first = activity
        .due()
        .unwrap_or_else(|| Instant::now() + activity.recheck());
    let mut timer = pin!(tokio::time::sleep_until(first));
    // Reads the drain signal's version only. Its `changed()` is polled once,
    // which leaves this task's waker with the channel, and then again only
    // when the version moved: a `watch` poll on every wakeup of a busy
    // connection was about 1% of a request's instructions.
    let probe = stop.clone();
    let mut parts: Option<Wakeups> = None;
    let mut watching = true;
    let mut draining = false;
    loop {
        let event = {
            let mut changed = pin!(stop.changed());
            let mut registered = false;
            poll_fn(|cx| {
                let parts = match &mut parts {
                    Some(parts) if parts.wakes(cx.waker()) => parts,
                    slot => slot.insert(Wakeups::new(cx.waker())),
                };
                // The timer (a handler's deadline among others) and the drain
                // signal wake the task itself and concern both parts: so does
                // a poll for which none of the parts was woken.
                let mut all = timer.is_elapsed();
                let mut again = false;
                for round in 0..MAX_ROUNDS {
                    parts.begin();
                    let woken = parts.take(wakeups::CONN | wakeups::SIDE);
                    all |= round == 0 && woken == 0;
                    if all || woken & wakeups::CONN != 0 {
                        let mut conn_cx = Context::from_waker(&parts.conn);
                        if let Poll::Ready(done) = conn.as_mut().poll(&mut conn_cx) {
                            parts.end();
                            return Poll::Ready(Event::Done(done));
                        }
                    }
                    if let Some(side) = side.as_mut() {
                        // The connection's poll may have handed the side a request.
                        let woken = all || (woken | parts.take(wakeups::SIDE)) & wakeups::SIDE != 0;
                        let mut side_cx = Context::from_waker(&parts.side);
                        if let Some(at) = side.poll(&mut side_cx, woken) {
                            // A handler's deadline: only ever moves the timer earlier, and
                            // `expired` re-arms it for the connection's own deadline when it fires.
                            if at < timer.deadline() {
                                timer.as_mut().reset(at);
                            }
                        }
                    }
                    // Out of tokio's budget, a part would only wake itself
                    // again at once: the next poll of the task gets a new one.
                    again = parts.end();
                    if !again || !tokio::task::coop::has_budget_remaining() {
                        break;
                    }
                    all = false;
                }
                if again {
                    // Still woken after the last round: poll again after other tasks.
                    cx.waker().wake_by_ref();
                }
                if expired(activity, timer.as_mut(), cx) {
                    return Poll::Ready(Event::Expired);
                }
                // A closed channel (`Err`) is news too: `changed()` reports it.
                if watching && (!registered || probe.has_changed().unwrap_or(true)) {
                    registered = true;
                    if let Poll::Ready(changed) = changed.as_mut().poll(cx) {
                        return Poll::Ready(Event::Drain(changed.is_ok()));
                    }
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Done(done) => return done,
            Event::Expired => break,
            Event::Drain(open) => {
                // A listener that is gone drains like one that said so.
                let drain = if open {
                    *stop.borrow_and_update()
                } else {
                    watching = false;
                    Drain::Graceful
                };
                match drain {
                    Drain::Abort => return Ok(()),
                    Drain::Graceful if !draining => {
                        draining = true;
                        graceful_shutdown(conn.as_mut());
                        // Polled next even if none of its wakeups came.
                        if let Some(parts) = &parts {
                            parts.conn.wake_by_ref();
                        }
                    }
                    Drain::Graceful | Drain::Serving => {}
                }
            }
        }
    }
    tracing::debug!("closing a connection past its idle or request-head deadline");
    if goaway_when_idle && !draining {
        // No stream is open: a GOAWAY tells the client not to start one here.
        graceful_shutdown(conn.as_mut());
        if let Ok(done) = tokio::time::timeout(GOAWAY_WAIT, conn).await {
            return done;
        }
    }
    Ok(())
}

/// How often one poll of a connection's task goes round its parts while
/// they keep waking each other (a proxied request takes about three).
const MAX_ROUNDS: usize = 8;

/// What ended one wait of [`drive`]'s loop.
enum Event<E> {
    /// The connection finished.
    Done(Result<(), E>),
    /// Past its idle or request-head deadline.
    Expired,
    /// The drain signal changed (`true`), or its sender is gone (`false`).
    Drain(bool),
}

/// Whether the connection is past its deadline. Otherwise leaves `timer`
/// armed (and this task registered) for the earliest moment it could be.
/// The timer is only moved earlier here when a request head starts; later
/// deadlines are picked up when it fires, which keeps timer-wheel updates
/// off the per-request path.
fn expired(activity: &Activity, mut timer: Pin<&mut Sleep>, cx: &mut Context<'_>) -> bool {
    if let Some(due) = activity.due() {
        if due < timer.deadline() {
            timer.as_mut().reset(due);
        }
    }
    while timer.as_mut().poll(cx).is_ready() {
        let now = Instant::now();
        match activity.due() {
            Some(due) if due <= now => return true,
            Some(due) => timer.as_mut().reset(due),
            None => timer.as_mut().reset(now + activity.recheck()),
        }
    }
    false
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A handler's deadline rides on the connection's timer (as the
    /// proxy's upstream timeout does), which wakes the task, not a part. When
    /// a part's wakeup comes in the same turn of the timer wheel, the
    /// connection must still be polled, or the deadline goes unseen.
    #[tokio::test]
    async fn the_connection_sees_its_deadline_when_a_part_wakes_at_the_same_moment() {
        let scope = ConnectionScope::new();
        let side = scope.side();
        let at = Instant::now() + Duration::from_millis(50);
        scope.spawn(tokio::time::sleep_until(at));
        let handler = Arc::clone(&scope);
        let mut armed = false;
        let conn = poll_fn(move |_| {
            if Instant::now() >= at {
                return Poll::Ready(Ok::<(), ()>(()));
            }
            if !armed {
                armed = true;
                handler.wake_at(at);
            }
            Poll::Pending
        });
        let (_drain, stop) = watch::channel(Drain::Serving);
        let activity = Activity::new(false, Duration::from_secs(60), Duration::from_secs(60));
        let driven = drive(conn, stop, &activity, |_| {}, false, Some(side));
        // Not `timeout()`: it polls the future once more when it runs out,
        // which is the very poll this test is about.
        let done = tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_secs(5)) => None,
            done = driven => Some(done),
        };
        assert_eq!(done, Some(Ok(())), "the deadline was not seen");
    }

    /// The proxy's pattern: the connection hands a request to an upstream
    /// connection beside it, which answers through a channel. Each hand-over
    /// wakes the other part while the task is polling; with the task's own
    /// waker, every one of them cost another poll of the whole task.
    #[tokio::test]
    async fn parts_that_wake_each_other_finish_within_one_poll_of_the_task() {
        let scope = ConnectionScope::new();
        let side = scope.side();
        let (to_side, mut requests) =
            tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<u32>>();
        scope.spawn(async move {
            while let Some(answer) = requests.recv().await {
                let _ = answer.send(7);
            }
        });
        let conn = async move {
            for _ in 0..3 {
                let (answer, answered) = tokio::sync::oneshot::channel();
                to_side.send(answer).map_err(|_| ())?;
                assert_eq!(answered.await.map_err(|_| ())?, 7);
            }
            Ok::<(), ()>(())
        };
        let (_drain, stop) = watch::channel(Drain::Serving);
        let activity = Activity::new(false, Duration::from_secs(60), Duration::from_secs(60));
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&task));
        let mut driven = pin!(drive(conn, stop, &activity, |_| {}, false, Some(side)));
        let polled = driven.as_mut().poll(&mut Context::from_waker(&waker));
        assert_eq!(polled, Poll::Ready(Ok(())), "three exchanges in one poll");
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "the task was not woken");
    }

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
