//! Upstream protocols: an `https://` upstream trusted through the route's
//! own CA (`ca_file`) and refused without it, `http2 = true` routes carrying
//! gRPC (HTTP/2 with `TE: trailers` and a `grpc-status` trailer) end to end,
//! WebSocket upgrades spliced only after authentication, and config errors
//! that name `routes[i].ca_file`. Every server is real, on 127.0.0.1:0;
//! certificates come from a per-test CA made with rcgen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sessiongate::config::Config;
use support::{users, Harness};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// Bound on every wait in this file; nothing here should take more than a
/// fraction of it, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// A CA of this test's own and a server certificate for 127.0.0.1 and
/// localhost signed by it, with the CA written to a file for `ca_file`.
struct Pki {
    ca_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sessiongate upstream test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        let ca_file = scratch_file("ca.pem", &ca_cert.pem());
        Self {
            ca_file,
            chain: vec![leaf.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// A TLS acceptor for the server certificate offering `alpn`.
    fn acceptor(&self, alpn: &[u8]) -> TlsAcceptor {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            self.chain.clone(),
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
        .unwrap();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        TlsAcceptor::from(Arc::new(cfg))
    }

    /// `ca_file = "..."` as a TOML line.
    fn ca_line(&self) -> String {
        format!("ca_file = {:?}", self.ca_file.display().to_string())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// A file with a name no other test (or test process) uses.
fn scratch_file(name: &str, text: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "upstream-protocols-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// What the test upstream saw of one request.
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    version: Version,
    headers: HeaderMap,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A test upstream: counts and reports every request it gets.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Upstream {
    async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(DEADLINE, self.seen.recv())
            .await
            .expect("the upstream saw no request")
            .unwrap()
    }
}

/// How the test upstream serves a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Speaks {
    /// HTTP/1.1 with upgrades.
    Http1,
    /// HTTP/2 only (prior knowledge in cleartext, ALPN h2 over TLS).
    Http2,
}

/// Starts an upstream on 127.0.0.1:0, over TLS when `tls` is given. It
/// answers gRPC-style calls (`/grpc.*`) with the request message and a
/// `grpc-status: 0` trailer, WebSocket upgrades with `101` and an echo of
/// every byte, and anything else with `200 hello from upstream`.
async fn start_upstream(speaks: Speaks, tls: Option<TlsAcceptor>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let (tx, seen) = mpsc::unbounded_channel();
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tx, counter, tls) = (tx.clone(), Arc::clone(&counter), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve_upstream_conn(tcp, speaks, tx, counter).await,
                    Some(acceptor) => {
                        // A handshake the gateway aborts (untrusted certificate) just ends here.
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve_upstream_conn(stream, speaks, tx, counter).await;
                        }
                    }
                }
            });
        }
    });
    Upstream { addr, hits, seen }
}

async fn serve_upstream_conn<IO>(
    io: IO,
    speaks: Speaks,
    tx: mpsc::UnboundedSender<Seen>,
    hits: Arc<AtomicUsize>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        hits.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(Seen {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            version: req.version(),
            headers: req.headers().clone(),
        });
        async move { Ok::<_, Infallible>(upstream_answer(req).await) }
    });
    let io = TokioIo::new(io);
    let _ = match speaks {
        Speaks::Http1 => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await
        }
        Speaks::Http2 => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await
        }
    };
}

async fn upstream_answer(mut req: Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
    if req.uri().path().starts_with("/grpc.") {
        let message = req.into_body().collect().await.unwrap().to_bytes();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        let body = Frames(VecDeque::from([
            Frame::data(message),
            Frame::trailers(trailers),
        ]));
        return Response::builder()
            .header("content-type", "application/grpc")
            .body(body.boxed())
            .unwrap();
    }
    if req.headers().contains_key("upgrade") {
        let upgraded = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgraded.await else { return };
            let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
            let _ = wr.shutdown().await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
    }
    Response::builder()
        .header("x-upstream", "test")
        .body(Full::new(Bytes::from_static(b"hello from upstream")).boxed())
        .unwrap()
}

/// A body of fixed frames whose length is not announced up front, like a
/// streaming gRPC server's (so no `content-length`, and trailers travel).
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// One gRPC message frame: uncompressed flag, big-endian length, payload.
fn grpc_message(payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A gRPC-style unary call through the gateway with `client`.
async fn grpc_call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    h: &Harness,
    cookie: &str,
    message: &Bytes,
) -> (Response<()>, Bytes, Option<HeaderMap>) {
    let req = Request::post(h.url("/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("cookie", cookie)
        .body(Full::new(message.clone()))
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (
        Response::from_parts(parts, ()),
        collected.to_bytes(),
        trailers,
    )
}

fn routes_to(upstream: &str, extra: &[&str]) -> String {
    format!(
        "[[routes]]\nprefix = \"/\"\nupstream = \"{upstream}\"\n{}\n",
        extra.join("\n")
    )
}

#[tokio::test]
async fn https_upstream_signed_by_the_routes_ca_file_gets_the_identity() {
    let pki = Pki::new();
    let mut up = start_upstream(Speaks::Http1, Some(pki.acceptor(b"http/1.1"))).await;
    let h = Harness::builder()
        .upstream(up.addr)
        .routes(&routes_to("https://{up}", &[&pki.ca_line()]))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get(
            "/portal/x?y=1",
            &[("cookie", &cookie), ("x-iid-profile-id", "7001")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-upstream"], "test");
    assert_eq!(&r.body[..], b"hello from upstream");
    let seen = up.next_seen().await;
    assert_eq!(seen.path, "/portal/x");
    assert_eq!(seen.header("x-iid-profile-id"), Some("518"));
    assert_eq!(seen.headers.get_all("x-iid-profile-id").iter().count(), 1);
    assert!(seen.header("x-iid-permissions").is_some());
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn https_upstream_without_the_ca_file_is_502_upstream_unreachable() {
    let pki = Pki::new();
    let up = start_upstream(Speaks::Http1, Some(pki.acceptor(b"http/1.1"))).await;
    let h = Harness::builder()
        .upstream(up.addr)
        .routes(&routes_to("https://{up}", &[]))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/portal/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert_eq!(r.reason(), "upstream_unreachable");
    assert!(!r.headers.contains_key("x-upstream"));
    assert_eq!(up.hits.load(Ordering::SeqCst), 0, "no request got past TLS");
}

#[tokio::test]
async fn grpc_over_h2c_reaches_an_http2_upstream_and_the_trailers_come_back() {
    let mut up = start_upstream(Speaks::Http2, None).await;
    let h = Harness::builder()
        .upstream(up.addr)
        .routes(&routes_to("http://{up}", &["http2 = true"]))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    // The client speaks h2c with prior knowledge to the gateway, as gRPC clients do.
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let message = grpc_message(b"\x0a\x07service");
    let (head, body, trailers) = grpc_call(&client, &h, &cookie, &message).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.version(), Version::HTTP_2);
    assert_eq!(head.headers()["content-type"], "application/grpc");
    assert_eq!(body, message, "the message came back intact");
    let trailers = trailers.expect("no trailers reached the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");

    let seen = up.next_seen().await;
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.path, "/grpc.health.v1.Health/Check");
    assert_eq!(seen.header("te"), Some("trailers"));
    assert_eq!(seen.header("x-iid-profile-id"), Some("518"));
}

#[tokio::test]
async fn grpc_from_an_http1_client_with_te_trailers_gets_chunked_trailers() {
    let mut up = start_upstream(Speaks::Http2, None).await;
    let h = Harness::builder()
        .upstream(up.addr)
        .routes(&routes_to("http://{up}", &["http2 = true"]))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let message = grpc_message(b"over http/1.1");
    let (head, body, trailers) = grpc_call(&client, &h, &cookie, &message).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.version(), Version::HTTP_11);
    assert_eq!(body, message);
    let trailers = trailers.expect("no trailers reached the HTTP/1.1 client");
    assert_eq!(trailers["grpc-status"], "0");
    let seen = up.next_seen().await;
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.header("te"), Some("trailers"));
}

#[tokio::test]
async fn grpc_over_tls_with_alpn_h2_and_the_routes_ca_file() {
    let pki = Pki::new();
    let mut up = start_upstream(Speaks::Http2, Some(pki.acceptor(b"h2"))).await;
    let h = Harness::builder()
        .upstream(up.addr)
        .routes(&routes_to(
            "https://{up}",
            &[&pki.ca_line(), "http2 = true"],
        ))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let message = grpc_message(b"tls");
    let (head, body, trailers) = grpc_call(&client, &h, &cookie, &message).await;
    assert_eq!(head.status(), 200);
    assert_eq!(body, message);
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    assert_eq!(up.next_seen().await.version, Version::HTTP_2);
}

#[tokio::test]
async fn te_trailers_is_not_forwarded_on_an_http1_route() {
    let mut up = start_upstream(Speaks::Http1, None).await;
    let h = Harness::builder()
        .upstream(up.addr)
        .routes(&routes_to("http://{up}", &[]))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get("/x", &[("cookie", &cookie), ("te", "trailers")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.next_seen().await.header("te"), None);
}

/// Writes a WebSocket handshake for `path` on a fresh connection to the
/// gateway and returns the connection and the response head.
async fn ws_handshake(h: &Harness, path: &str, extra: &[&str]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte so nothing after the head is consumed here.
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut byte))
            .await
            .expect("no response head")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (s, String::from_utf8(head).unwrap().to_ascii_lowercase())
}

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut buf))
        .await
        .expect("echo did not arrive")
        .unwrap();
    buf
}

#[tokio::test]
async fn websocket_upgrade_with_a_session_is_spliced_to_the_upstream() {
    let mut up = start_upstream(Speaks::Http1, None).await;
    let h = Harness::builder().upstream(up.addr).start().await;
    let cookie = h.login(users::INVESTOR);
    let (mut s, head) = ws_handshake(
        &h,
        "/ws/chat?room=1",
        &[
            &format!("Cookie: {cookie}"),
            // Listing an identity header must not get the injected one dropped.
            "Connection: keep-alive, Upgrade, X-IID-Profile-Id",
            "X-IID-Profile-Id: 7001",
        ],
    )
    .await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("sec-websocket-accept: "), "{head}");

    let seen = up.next_seen().await;
    assert_eq!(seen.path, "/ws/chat");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("connection"), Some("upgrade"));
    assert_eq!(seen.header("x-iid-profile-id"), Some("518"));
    assert_eq!(seen.headers.get_all("x-iid-profile-id").iter().count(), 1);
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    // Bytes flow both ways, small and large.
    s.write_all(b"ping").await.unwrap();
    assert_eq!(read_exactly(&mut s, 4).await, b"ping");
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = s.into_split();
    let sent = big.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        // Closing our side must close the tunnel: the echo ends, then the upstream closes.
        wr.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(DEADLINE, rd.read_to_end(&mut back))
        .await
        .expect("the tunnel did not close after the client did")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big, "echoed bytes differ");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn websocket_upgrade_without_a_session_is_401_and_never_reaches_the_upstream() {
    let up = start_upstream(Speaks::Http1, None).await;
    let h = Harness::builder().upstream(up.addr).start().await;
    let (_s, head) = ws_handshake(&h, "/ws/chat", &["Connection: Upgrade"]).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    let r = h
        .get(
            "/ws/chat",
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("cookie", "iid_session_id=nope; iid_session_token=nope"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.reason(), "invalid_session");
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn h2c_upgrade_is_never_forwarded() {
    let mut up = start_upstream(Speaks::Http1, None).await;
    let h = Harness::builder().upstream(up.addr).start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get(
            "/x",
            &[
                ("cookie", &cookie),
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "answered as a plain request");
    let seen = up.next_seen().await;
    for hop in ["upgrade", "connection", "http2-settings"] {
        assert_eq!(seen.header(hop), None, "{hop} was forwarded");
    }
}

#[test]
fn config_errors_name_the_routes_ca_file() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-ca.pem");
    let garbage = scratch_file("garbage.pem", "not a certificate\n");
    for (path, why) in [(&missing, "cannot read"), (&garbage, "no CERTIFICATE")] {
        let err = Config::from_toml_str(&format!(
            "[[routes]]\nprefix = \"/\"\nupstream = \"https://127.0.0.1:1\"\nca_file = {:?}\n",
            path.display().to_string()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("routes[0].ca_file"), "{err}");
        assert!(err.contains(why), "{err}");
    }
    let _ = std::fs::remove_file(&garbage);

    // A CA only makes sense for https.
    let pki = Pki::new();
    let err = Config::from_toml_str(&format!(
        "[[routes]]\nprefix = \"/\"\nupstream = \"https://127.0.0.1:1\"\n\
         [[routes]]\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\n{}\n",
        pki.ca_line()
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("routes[1].ca_file"), "{err}");
}

#[test]
fn routes_share_a_client_per_ca_file_and_protocol() {
    let pki = Pki::new();
    let ca = pki.ca_line();
    let cfg = Config::from_toml_str(&format!(
        "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\n\
         [[routes]]\nprefix = \"/a\"\nupstream = \"https://127.0.0.1:2\"\n{ca}\n\
         [[routes]]\nprefix = \"/b\"\nupstream = \"https://127.0.0.1:3\"\n{ca}\n\
         [[routes]]\nprefix = \"/c\"\nupstream = \"https://127.0.0.1:3\"\n{ca}\nhttp2 = true\n\
         [[routes]]\nprefix = \"/d\"\nupstream = \"https://127.0.0.1:4\"\n"
    ))
    .unwrap();
    let clients: Vec<usize> = cfg.routes.iter().map(|r| r.client).collect();
    assert_eq!(clients, [0, 1, 1, 2, 0]);
    assert_eq!(cfg.upstream.clients.len(), 3);
    assert!(cfg.upstream.clients[2].http2);
    assert_eq!(
        cfg.upstream.clients[1].ca.as_ref().unwrap().path,
        pki.ca_file
    );
}

/// A TLS terminator in front of `backend`, for an IdP served over https.
async fn tls_front(acceptor: TlsAcceptor, backend: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let Ok(mut back) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
            });
        }
    });
    addr
}

/// An emulator with the harness' API key behind TLS signed by `pki`.
async fn https_idp(pki: &Pki) -> (Arc<sessiongate::dev::emulator::Emulator>, String) {
    use sessiongate::dev::emulator::{self, Emulator, EmulatorConfig};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = l.local_addr().unwrap();
    let emu = Emulator::new(EmulatorConfig {
        api_key: support::API_KEY.into(),
        ..EmulatorConfig::default()
    });
    tokio::spawn(emulator::run(l, Arc::clone(&emu), std::future::pending()));
    let front = tls_front(pki.acceptor(b"http/1.1"), plain).await;
    (
        emu,
        format!("https://127.0.0.1:{}{}", front.port(), emulator::BASE_PATH),
    )
}

#[tokio::test]
async fn an_https_idp_with_a_private_ca_is_trusted_through_idp_ca_file() {
    let pki = Pki::new();
    let (emu, base_url) = https_idp(&pki).await;
    let h = Harness::builder()
        .idp_base_url(&base_url)
        .set("idp", &pki.ca_line())
        .start()
        .await;
    let s = emu.create_session(users::INVESTOR, None).unwrap();
    let cookie = format!(
        "iid_session_id={}; iid_session_token={}",
        s.session_id, s.session_token
    );
    let r = h.get("/portal/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(emu.stats().fetch, 1);
}

#[tokio::test]
async fn an_https_idp_with_an_untrusted_certificate_fails_closed() {
    let pki = Pki::new();
    let (emu, base_url) = https_idp(&pki).await;
    let h = Harness::builder().idp_base_url(&base_url).start().await;
    let s = emu.create_session(users::INVESTOR, None).unwrap();
    let cookie = format!(
        "iid_session_id={}; iid_session_token={}",
        s.session_id, s.session_token
    );
    let r = h.get("/portal/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.reason(), "idp_unavailable");
    assert_eq!(emu.stats().fetch, 0, "nothing got past TLS");
}
