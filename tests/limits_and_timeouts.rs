//! Limits and timeouts at the edge: at `max_connections` new connections
//! wait; idle keep-alive connections close after `idle_timeout` while busy
//! ones stay; request bodies above a route's `max_body_bytes` get 413; a
//! client that leaves cancels its upstream call; and open WebSocket tunnels
//! are part of the shutdown drain.
//!
//! Every wait has a generous deadline; the only fixed windows are negative
//! checks ("not answered yet"), each followed by the positive one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sessiongate::server::{self, ServeOptions};
use support::{eventually, users, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(10);

/// A response read off a raw connection.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response (head, then a `content-length` or chunked body) from
/// a raw connection, leaving the connection usable for the next one.
async fn read_reply(s: &mut TcpStream) -> Option<RawReply> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing past this response is consumed.
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = Vec::new();
    if let Some(n) = length {
        body.resize(n, 0);
        s.read_exact(&mut body).await.ok()?;
    } else if head.contains("transfer-encoding: chunked") {
        while !body.ends_with(b"0\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(1) => body.push(byte[0]),
                _ => return None,
            }
        }
    }
    Some(RawReply { status, head, body })
}

/// One keep-alive request on `s`; `None` if the connection was closed.
async fn get_on(s: &mut TcpStream, path: &str) -> Option<RawReply> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    tokio::time::timeout(DEADLINE, read_reply(s))
        .await
        .expect("no answer within the deadline")
}

/// A fresh connection that has had one answered request and stays open.
async fn keep_alive_connection(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let r = get_on(&mut s, "/public/hello").await.expect("answered");
    assert_eq!(r.status, 200, "{}", r.head);
    s
}

/// Waits until the server closes `s` (EOF or reset); returns when it did.
async fn closed_by_server(s: &mut TcpStream) -> Instant {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn at_max_connections_a_new_connection_waits_until_one_closes() {
    let h = Harness::builder()
        .set("server", "max_connections = 2")
        .start()
        .await;
    let first = keep_alive_connection(h.addr).await;
    let _second = keep_alive_connection(h.addr).await;

    // The kernel completes the handshake (backlog), but the gateway does
    // not accept, so nothing answers.
    let mut third = TcpStream::connect(h.addr).await.unwrap();
    third
        .write_all(b"GET /public/third HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.peek(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third connection was served at max_connections = 2"
    );

    // One closes; its slot goes to the waiting connection.
    drop(first);
    let r = tokio::time::timeout(DEADLINE, read_reply(&mut third))
        .await
        .expect("the waiting connection was never served")
        .expect("closed instead of answered");
    assert_eq!(r.status, 200, "{}", r.head);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout_a_busy_one_is_not() {
    let h = Harness::builder()
        .set("server", "idle_timeout = \"500ms\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let before_idle_request = Instant::now();
    let mut idle = keep_alive_connection(h.addr).await;
    let idle_closed = tokio::spawn(async move { closed_by_server(&mut idle).await });

    // One request every 100 ms keeps a connection open well past the timeout.
    let mut busy = keep_alive_connection(h.addr).await;
    let started = Instant::now();
    while !idle_closed.is_finished() || started.elapsed() < Duration::from_millis(1500) {
        assert!(
            started.elapsed() < DEADLINE,
            "the idle connection stayed open"
        );
        let r = get_on(&mut busy, "/public/busy").await;
        assert_eq!(
            r.map(|r| r.status),
            Some(200),
            "the busy connection was closed after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_at = idle_closed.await.unwrap();
    assert!(
        closed_at - before_idle_request >= Duration::from_millis(450),
        "closed after {:?}, before idle_timeout",
        closed_at - before_idle_request
    );

    // A single request that takes longer than idle_timeout is not idleness.
    let mut slow = keep_alive_connection(h.addr).await;
    let req = format!("GET /__echo/slow?ms=1500 HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\n\r\n");
    slow.write_all(req.as_bytes()).await.unwrap();
    let r = tokio::time::timeout(DEADLINE, read_reply(&mut slow))
        .await
        .unwrap()
        .expect("a request in flight was cut by the idle timer");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"slow");
}

#[tokio::test]
async fn a_keep_alive_connection_may_idle_longer_than_header_read_timeout() {
    // hyper's own header_read_timeout would close this connection after
    // 300 ms of waiting for the next request.
    let h = Harness::builder()
        .set("server", "header_read_timeout = \"300ms\"")
        .start()
        .await;
    let mut s = keep_alive_connection(h.addr).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = get_on(&mut s, "/public/again").await;
    assert_eq!(r.map(|r| r.status), Some(200), "closed while idle");
}

#[tokio::test]
async fn a_slow_request_head_on_a_kept_alive_connection_is_cut_at_header_read_timeout() {
    let h = Harness::builder()
        .set("server", "header_read_timeout = \"300ms\"")
        .start()
        .await;
    let mut s = keep_alive_connection(h.addr).await;
    // The next head starts but never ends (slowloris): idle_timeout (60 s)
    // no longer applies, header_read_timeout does.
    s.write_all(b"GET /public/next HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, closed_by_server(&mut s))
        .await
        .expect("a half-sent head kept the connection open");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_but_not_while_a_stream_is_open() {
    let h = Harness::builder()
        .set("server", "idle_timeout = \"500ms\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let io = TcpStream::connect(h.addr).await.unwrap();
    let (mut tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    // A stream open three times longer than idle_timeout completes.
    let req = Request::get(h.url("/__echo/slow?ms=1500"))
        .header("cookie", &cookie)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, tx.send_request(req))
        .await
        .unwrap()
        .expect("the stream was cut by the idle timer");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow");
    // Then, with no stream open, the gateway closes the connection.
    tokio::time::timeout(DEADLINE, conn)
        .await
        .expect("the idle HTTP/2 connection stayed open")
        .unwrap()
        .ok();
}

/// An upstream that counts requests and answers with the body length it
/// read, or 400 `aborted` when the body broke off.
struct CountingUpstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    aborted: Arc<AtomicUsize>,
}

async fn counting_upstream() -> CountingUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let aborted = Arc::new(AtomicUsize::new(0));
    let (r, a) = (Arc::clone(&requests), Arc::clone(&aborted));
    tokio::spawn(server::serve(
        listener,
        ServeOptions::default(),
        move |req: Request<Incoming>, _| {
            r.fetch_add(1, Ordering::SeqCst);
            let a = Arc::clone(&a);
            async move {
                match req.into_body().collect().await {
                    Ok(body) => {
                        Response::new(Full::new(Bytes::from(body.to_bytes().len().to_string())))
                    }
                    Err(_) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"aborted")));
                        *resp.status_mut() = StatusCode::BAD_REQUEST;
                        resp
                    }
                }
            }
        },
        std::future::pending(),
    ));
    CountingUpstream {
        addr,
        requests,
        aborted,
    }
}

const LIMIT: usize = 1024;

async fn body_limit_harness(up: &CountingUpstream) -> Harness {
    Harness::builder()
        .upstream(up.addr)
        .routes(&format!(
            r#"
[[routes]]
prefix = "/upload/"
upstream = "http://{{up}}"
auth = "public"
max_body_bytes = {LIMIT}

[[routes]]
prefix = "/private/upload/"
upstream = "http://{{up}}"
max_body_bytes = {LIMIT}

[[routes]]
prefix = "/"
upstream = "http://{{up}}"
auth = "public"
"#
        ))
        .start()
        .await
}

/// Sends `request` whole on a fresh connection and reads the answer.
async fn raw_reply(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    tokio::time::timeout(DEADLINE, read_reply(&mut s))
        .await
        .expect("no answer")
        .expect("closed without an answer")
}

fn chunked(path: &str, chunks: &[usize]) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    for &n in chunks {
        req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b'x', n));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

fn assert_413(r: &RawReply) {
    assert_eq!(r.status, 413, "{}", r.head);
    assert!(r.head.contains("application/json"), "{}", r.head);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["code"], 41300);
    assert_eq!(v["errors"][0]["reason"], "body_too_large");
}

#[tokio::test]
async fn a_content_length_above_max_body_bytes_is_413_before_the_upstream_or_idp() {
    let up = counting_upstream().await;
    let h = body_limit_harness(&up).await;
    // Only the head is sent: the answer must not wait for a body.
    let r = raw_reply(
        h.addr,
        b"POST /upload/big HTTP/1.1\r\nHost: gw\r\nContent-Length: 5000000\r\n\r\n",
    )
    .await;
    assert_413(&r);
    // One byte over, on a route that needs a session: refused before the IdP is asked.
    let mut over = format!(
        "POST /private/upload/x HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n",
        LIMIT + 1
    )
    .into_bytes();
    over.extend(std::iter::repeat_n(b'x', LIMIT + 1));
    assert_413(&raw_reply(h.addr, &over).await);
    assert_eq!(h.idp_fetches(), 0);
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        0,
        "the upstream was reached"
    );
}

#[tokio::test]
async fn a_body_exactly_at_max_body_bytes_passes_and_other_routes_are_unaffected() {
    let up = counting_upstream().await;
    let h = body_limit_harness(&up).await;
    let mut exact =
        format!("POST /upload/x HTTP/1.1\r\nHost: gw\r\nContent-Length: {LIMIT}\r\n\r\n")
            .into_bytes();
    exact.extend(std::iter::repeat_n(b'x', LIMIT));
    let r = raw_reply(h.addr, &exact).await;
    assert_eq!((r.status, r.body), (200, LIMIT.to_string().into_bytes()));

    // Chunked, exactly at the limit.
    let r = raw_reply(h.addr, &chunked("/upload/x", &[LIMIT / 2, LIMIT / 2])).await;
    assert_eq!((r.status, r.body), (200, LIMIT.to_string().into_bytes()));

    // A route without max_body_bytes takes far more.
    let big = 256 * LIMIT;
    let r = raw_reply(h.addr, &chunked("/other", &[big / 2, big / 2])).await;
    assert_eq!((r.status, r.body), (200, big.to_string().into_bytes()));
    assert_eq!(up.requests.load(Ordering::SeqCst), 3);
    assert_eq!(up.aborted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_chunked_body_growing_past_max_body_bytes_is_413_and_aborts_the_upstream_request() {
    let up = counting_upstream().await;
    let h = body_limit_harness(&up).await;
    let r = raw_reply(
        h.addr,
        &chunked("/upload/x", &[LIMIT / 2, LIMIT / 2, 1, 100]),
    )
    .await;
    assert_413(&r);
    // The request had started upstream; its body broke off there.
    let aborted = Arc::clone(&up.aborted);
    assert!(
        eventually(DEADLINE, || {
            let aborted = Arc::clone(&aborted);
            async move { aborted.load(Ordering::SeqCst) == 1 }
        })
        .await,
        "the upstream request was not aborted"
    );

    // A client library streaming 4 MiB of unknown length gets the 413 too,
    // though the gateway stopped reading long before the end.
    let client = Client::builder(TokioExecutor::new()).build_http::<Chunks>();
    let body = Chunks(vec![Bytes::from(vec![b'x'; 64 * 1024]); 64].into_iter());
    let resp = client
        .request(Request::post(h.url("/upload/big")).body(body).unwrap())
        .await
        .expect("the client saw an error instead of the 413");
    assert_eq!(resp.status(), 413);

    // Over HTTP/2 a body has no length at all; the same limit applies.
    let io = TcpStream::connect(h.addr).await.unwrap();
    let (mut tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = Chunks(vec![Bytes::from(vec![b'x'; 400]); 4].into_iter());
    let req = Request::post(h.url("/upload/h2")).body(body).unwrap();
    let resp = tokio::time::timeout(DEADLINE, tx.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"][0]["reason"], "body_too_large");
}

/// A request body of fixed chunks whose length is not announced.
struct Chunks(std::vec::IntoIter<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.get_mut().0.next().map(|b| Ok(Frame::data(b))))
    }
}

/// An upstream that never answers: it reports each request's arrival, then
/// when the gateway closes that connection.
async fn silent_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send("arrived");
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = tx.send("closed");
            });
        }
    });
    (addr, rx)
}

/// Waits for the upstream to see the request, lets the client go with
/// `leave`, then expects the gateway to close the upstream connection long
/// before the upstream timeout (60 s).
async fn assert_leaving_cancels(
    events: &mut mpsc::UnboundedReceiver<&'static str>,
    leave: impl FnOnce(),
) {
    let arrived = tokio::time::timeout(DEADLINE, events.recv()).await;
    assert_eq!(
        arrived.expect("the request never reached the upstream"),
        Some("arrived")
    );
    leave();
    let next = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("the gateway kept the upstream call open after the client left");
    assert_eq!(next, Some("closed"));
}

#[tokio::test]
async fn a_client_that_disconnects_mid_request_cancels_the_upstream_call() {
    let (up, mut events) = silent_upstream().await;
    let h = Harness::builder().upstream(up).start().await;

    // HTTP/1.1, waiting for the response.
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client
        .write_all(b"GET /public/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    assert_leaving_cancels(&mut events, || drop(client)).await;

    // HTTP/1.1, halfway through the request body.
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client
        .write_all(
            b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    assert_leaving_cancels(&mut events, || drop(client)).await;

    // HTTP/2: the client's connection goes away with the stream open.
    let io = TcpStream::connect(h.addr).await.unwrap();
    let (mut tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(h.url("/public/slow"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let pending = tokio::spawn(async move { tx.send_request(req).await });
    assert_leaving_cancels(&mut events, || {
        pending.abort();
        conn.abort();
    })
    .await;
}

/// An HTTP/1.1 upstream that accepts every upgrade and echoes the tunnel's bytes.
async fn websocket_echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|mut req: Request<Incoming>| async move {
                    let upgraded = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let Ok(upgraded) = upgraded.await else { return };
                        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
                        let _ = tokio::io::copy(&mut rd, &mut wr).await;
                    });
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", "websocket")
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn echoes(s: &mut TcpStream, msg: &[u8]) -> bool {
    if s.write_all(msg).await.is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    matches!(
        tokio::time::timeout(DEADLINE, s.read_exact(&mut back)).await,
        Ok(Ok(_)) if back == msg
    )
}

#[tokio::test]
async fn an_open_websocket_is_drained_for_shutdown_grace_then_closed() {
    let up = websocket_echo_upstream().await;
    let mut h = Harness::builder()
        .upstream(up)
        .set("server", "shutdown_grace = \"1s\"")
        .start()
        .await;
    let mut ws = TcpStream::connect(h.addr).await.unwrap();
    ws.write_all(
        b"GET /public/ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let r = tokio::time::timeout(DEADLINE, read_reply(&mut ws))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 101, "{}", r.head);
    assert!(echoes(&mut ws, b"before").await);

    h.shutdown();
    let started = Instant::now();
    let addr = h.addr;
    assert!(
        eventually(DEADLINE, || async move {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "the listener still accepts"
    );
    // Shutdown has begun; the tunnel still carries bytes.
    assert!(echoes(&mut ws, b"during the drain").await);

    // Then the gateway closes it: grace (1 s) plus a margin.
    tokio::time::timeout(DEADLINE, closed_by_server(&mut ws))
        .await
        .expect("the tunnel outlived the shutdown grace");
    // The drain waited for the tunnel: serve returns only now.
    tokio::time::timeout(DEADLINE, &mut h.serving)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < DEADLINE);
}
