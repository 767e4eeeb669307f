//! `sessiongate loadtest`: a load generator users can point at their own
//! deployment. Closed loop (each connection sends its next request when the
//! previous one is answered: maximum throughput) or open loop at a constant
//! rate, where latency is measured from the time a request was *due*, so a
//! stalled server is not hidden by the generator slowing down with it
//! (coordinated omission). Latencies go into an HDR histogram.
//!
//! HTTP/1.1 goes through [`h1`], a connection the sending task drives itself
//! with prebuilt request bytes, so the generator is not slower than what it
//! measures; HTTP/2 goes through hyper's client.

pub mod h1;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{COOKIE, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Streams one HTTP/2 connection carries in `--http2` mode.
pub const STREAMS_PER_H2_CONNECTION: usize = 100;
/// Bound on one request; a server that hangs longer counts an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What to send and how hard.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target URL (`http://host:port/path?query`).
    pub url: Uri,
    /// Cookie pairs sent on every request (`NAME=VALUE`).
    pub cookies: Vec<String>,
    /// Per-request Cookie values, used in turn (one per session).
    pub sessions: Vec<String>,
    /// Use each session at most once, then stop (the IdP-bound "cold" case).
    pub once: bool,
    /// Concurrent connections (HTTP/1.1) or streams (HTTP/2).
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// Print a progress line every second to stderr.
    pub progress: bool,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Target URL.
    pub url: String,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// `http/1.1` or `h2c`.
    pub protocol: &'static str,
    /// Connections or streams.
    pub connections: usize,
    /// Wall time from the first request to the last answer, seconds.
    pub duration_s: f64,
    /// Completed requests (any status).
    pub requests: u64,
    /// Transport errors and timeouts.
    pub errors: u64,
    /// Completed requests per second.
    pub rps: f64,
    /// Latency percentiles, microseconds.
    pub latency_us: Latency,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, u64>,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The URL has no host or is not http.
    #[error("--url: {0}")]
    Url(String),
    /// First connection failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// HTTP handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
    /// Nothing to do.
    #[error("{0}")]
    Spec(&'static str),
}

/// One way to send a request: a connection of its own (HTTP/1.1) or a
/// stream on a shared HTTP/2 connection.
enum Sender {
    H1(h1::Connection),
    H2(http2::SendRequest<Empty<Bytes>>),
}

struct Worker {
    histogram: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs the load described by `spec` and reports.
pub async fn run(spec: LoadSpec) -> Result<Report, LoadError> {
    let authority = spec
        .url
        .authority()
        .ok_or_else(|| LoadError::Url("no host".into()))?
        .clone();
    if spec.url.scheme_str() != Some("http") {
        return Err(LoadError::Url(
            "only http:// is supported (the gateway's cleartext listener)".into(),
        ));
    }
    if spec.connections == 0 {
        return Err(LoadError::Spec("--connections must be at least 1"));
    }
    if spec.once && spec.sessions.is_empty() {
        return Err(LoadError::Spec("--once needs --sessions"));
    }
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let host =
        HeaderValue::from_str(authority.as_str()).map_err(|e| LoadError::Url(e.to_string()))?;
    let path = spec
        .url
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let path: Uri = path
        .parse()
        .map_err(|e: http::uri::InvalidUri| LoadError::Url(e.to_string()))?;
    let static_cookie = spec.cookies.join("; ");
    let sessions: Arc<[HeaderValue]> = spec
        .sessions
        .iter()
        .map(|s| {
            let v = if static_cookie.is_empty() {
                s.clone()
            } else {
                format!("{static_cookie}; {s}")
            };
            HeaderValue::from_str(&v)
        })
        .collect::<Result<_, _>>()
        .map_err(|_| LoadError::Spec("a session line is not a valid Cookie value"))?;
    let fixed_cookie = (!static_cookie.is_empty())
        .then(|| HeaderValue::from_str(&static_cookie))
        .transpose()
        .map_err(|_| LoadError::Spec("--cookie is not a valid Cookie value"))?;

    // HTTP/1.1 requests, serialised once: one per session, or the one request.
    let requests: Arc<[Bytes]> = {
        let cookies: Vec<&str> = if sessions.is_empty() {
            vec![fixed_cookie
                .as_ref()
                .map_or("", |c| c.to_str().unwrap_or(""))]
        } else {
            sessions.iter().map(|c| c.to_str().unwrap_or("")).collect()
        };
        cookies
            .into_iter()
            .map(|cookie| {
                let cookie = if cookie.is_empty() {
                    String::new()
                } else {
                    format!("cookie: {cookie}\r\n")
                };
                Bytes::from(format!(
                    "GET {path} HTTP/1.1\r\nhost: {}\r\n{cookie}\r\n",
                    authority.as_str()
                ))
            })
            .collect()
    };
    let senders = connect_all(&addr, spec.connections, spec.http2).await?;
    let barrier = Arc::new(Barrier::new(spec.connections + 1));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());

    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        let (barrier, next, done, failed, start) = (
            Arc::clone(&barrier),
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&start),
        );
        let (sessions, requests, fixed_cookie, host, path, spec) = (
            Arc::clone(&sessions),
            Arc::clone(&requests),
            fixed_cookie.clone(),
            host.clone(),
            path.clone(),
            spec.clone(),
        );
        let mut sender = sender;
        tasks.spawn(async move {
            let mut w = Worker {
                histogram: new_histogram(),
                status: BTreeMap::new(),
                errors: BTreeMap::new(),
            };
            barrier.wait().await;
            let Some(&t0) = start.get() else { return w };
            let deadline = t0 + spec.duration;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if spec.requests.is_some_and(|n| i >= n)
                    || (spec.once && i >= sessions.len() as u64)
                {
                    break;
                }
                let due = match spec.rate {
                    Some(rate) => t0 + Duration::from_secs_f64(i as f64 / rate),
                    None => Instant::now(),
                };
                if due >= deadline {
                    break;
                }
                if spec.rate.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = match &mut sender {
                    Sender::H1(conn) => {
                        let req = &requests[(i % requests.len() as u64) as usize];
                        tokio::time::timeout(REQUEST_TIMEOUT, conn.round_trip(req))
                            .await
                            .map(|r| r.map_err(|f| f.as_str().to_string()))
                    }
                    Sender::H2(s) => {
                        let mut req = Request::get(path.clone());
                        if let Some(h) = req.headers_mut() {
                            h.insert(HOST, host.clone());
                            if !sessions.is_empty() {
                                h.insert(
                                    COOKIE,
                                    sessions[(i % sessions.len() as u64) as usize].clone(),
                                );
                            } else if let Some(c) = &fixed_cookie {
                                h.insert(COOKIE, c.clone());
                            }
                        }
                        let Ok(req) = req.body(Empty::new()) else {
                            break;
                        };
                        tokio::time::timeout(REQUEST_TIMEOUT, send_h2(s, req)).await
                    }
                };
                match sent {
                    Ok(Ok(status)) => {
                        let us = due.elapsed().as_micros().max(1) as u64;
                        let _ = w.histogram.record(us.min(w.histogram.high()));
                        *w.status.entry(status).or_default() += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(kind)) => {
                        *w.errors.entry(kind).or_default() += 1;
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        *w.errors.entry("timeout".into()).or_default() += 1;
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            w
        });
    }

    let t0 = Instant::now();
    let _ = start.set(t0);
    barrier.wait().await;
    let progress = spec.progress.then(|| {
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval_at(
                (t0 + Duration::from_secs(1)).into(),
                Duration::from_secs(1),
            );
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>5.1}s  {:>9} requests  {:>8} req/s  {} errors",
                    t0.elapsed().as_secs_f64(),
                    now,
                    now - last,
                    failed.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    });

    let mut histogram = new_histogram();
    let mut status = BTreeMap::new();
    let mut error_kinds = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok(w) = joined else { continue };
        let _ = histogram.add(&w.histogram);
        for (k, v) in w.status {
            *status.entry(k).or_default() += v;
        }
        for (k, v) in w.errors {
            *error_kinds.entry(k).or_default() += v;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
    }
    let requests = histogram.len();
    Ok(Report {
        url: spec.url.to_string(),
        mode: if spec.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        protocol: if spec.http2 { "h2c" } else { "http/1.1" },
        connections: spec.connections,
        duration_s: elapsed,
        requests,
        errors: error_kinds.values().sum(),
        rps: requests as f64 / elapsed.max(1e-9),
        latency_us: Latency {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        },
        status,
        error_kinds,
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 us .. 60 s with 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

async fn connect_all(addr: &str, connections: usize, h2: bool) -> Result<Vec<Sender>, LoadError> {
    let mut out = Vec::with_capacity(connections);
    if h2 {
        let conns = connections.div_ceil(STREAMS_PER_H2_CONNECTION);
        let mut shared = Vec::with_capacity(conns);
        for _ in 0..conns {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| LoadError::Connect(addr.into(), e))?;
            let _ = stream.set_nodelay(true);
            let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            shared.push(send);
        }
        for i in 0..connections {
            out.push(Sender::H2(shared[i % shared.len()].clone()));
        }
    } else {
        for _ in 0..connections {
            out.push(Sender::H1(
                h1::Connection::open(addr)
                    .await
                    .map_err(|e| LoadError::Connect(addr.into(), e))?,
            ));
        }
    }
    Ok(out)
}

/// Sends one request on an HTTP/2 connection and drains the body; returns
/// the status or an error kind.
async fn send_h2(
    sender: &http2::SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> Result<u16, String> {
    let mut s = sender.clone();
    s.ready().await.map_err(|_| "h2 connection".to_string())?;
    let resp = s.send_request(req).await.map_err(|e| kind(&e))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|_| "body".to_string())?;
    Ok(status)
}

fn kind(e: &hyper::Error) -> String {
    if e.is_closed() || e.is_incomplete_message() {
        "connection closed".into()
    } else if e.is_timeout() {
        "timeout".into()
    } else {
        "request".into()
    }
}

/// Human-readable summary.
pub fn render_table(r: &Report) -> String {
    let ms = |us: u64| format!("{:.2}ms", us as f64 / 1000.0);
    let status = r
        .status
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let errors = if r.error_kinds.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            r.error_kinds
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    format!(
        "{url}  {mode}-loop  {proto}  {conns} connections  {dur:.1}s\n  requests  {req}  ({rps:.0} req/s)  errors {err}{errors}\n  latency   p50 {p50}  p90 {p90}  p99 {p99}  p99.9 {p999}  max {max}\n  status    {status}\n",
        url = r.url,
        mode = r.mode,
        proto = r.protocol,
        conns = r.connections,
        dur = r.duration_s,
        req = r.requests,
        rps = r.rps,
        err = r.errors,
        p50 = ms(r.latency_us.p50),
        p90 = ms(r.latency_us.p90),
        p99 = ms(r.latency_us.p99),
        p999 = ms(r.latency_us.p999),
        max = ms(r.latency_us.max),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn echo() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(crate::dev::echo::run(l, std::future::pending()));
        a
    }

    fn spec(url: String) -> LoadSpec {
        LoadSpec {
            url: url.parse().unwrap(),
            cookies: vec![],
            sessions: vec![],
            once: false,
            connections: 4,
            duration: Duration::from_secs(30),
            rate: None,
            requests: Some(200),
            http2: false,
            progress: false,
        }
    }

    #[tokio::test]
    async fn closed_loop_counts_every_request() {
        let a = echo().await;
        let r = run(spec(format!("http://{a}/__echo/plain"))).await.unwrap();
        assert_eq!(r.requests, 200);
        assert_eq!(r.status.get(&200), Some(&200));
        assert_eq!(r.errors, 0);
        assert!(r.latency_us.p50 > 0 && r.latency_us.max >= r.latency_us.p99);
    }

    #[tokio::test]
    async fn once_mode_uses_each_session_once_then_stops() {
        let a = echo().await;
        let mut s = spec(format!("http://{a}/__echo/plain"));
        s.requests = None;
        s.once = true;
        s.sessions = (0..37).map(|i| format!("sid={i}")).collect();
        let r = run(s).await.unwrap();
        assert_eq!(r.requests, 37);
    }

    #[tokio::test]
    async fn open_loop_reports_status_codes() {
        let a = echo().await;
        let mut s = spec(format!("http://{a}/__echo/status?code=418"));
        s.rate = Some(2000.0);
        s.requests = Some(50);
        let r = run(s).await.unwrap();
        assert_eq!(r.mode, "open");
        assert_eq!(r.status.get(&418), Some(&50));
        assert!(render_table(&r).contains("418=50"));
    }

    #[tokio::test]
    async fn refused_connection_is_an_error_not_a_hang() {
        // Bound but not listening: refuses, and no parallel test can take it.
        let dead = tokio::net::TcpSocket::new_v4().unwrap();
        dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a = dead.local_addr().unwrap();
        assert!(matches!(
            run(spec(format!("http://{a}/"))).await,
            Err(LoadError::Connect(..))
        ));
    }
}
