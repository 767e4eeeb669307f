//! TLS termination and HTTP/2 on the public listener: h2 by ALPN and
//! HTTP/1.1 over TLS, cleartext h2c with prior knowledge, certificate
//! rotation (polling and SIGHUP) without dropping open connections, a broken
//! replacement that is ignored, graceful drain over TLS and h2, and config
//! errors that name the key. Certificates come from a test CA made with
//! rcgen; the client trusts only that CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use sessiongate::app;
use sessiongate::config::Config;
use sessiongate::server::tls::{TlsAcceptorHandle, TlsFiles};
use sessiongate::server::{self, ServeOptions};
use support::{eventually, users, Harness, Reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const ROTATION_DEADLINE: Duration = Duration::from_secs(20);

/// A test CA that signs server certificates for `localhost`.
struct Pki {
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_der: CertificateDer<'static>,
}

/// A server certificate and its key, as PEM, plus the leaf DER to compare
/// against what a handshake presents.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sessiongate test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_der = ca_params.self_signed(&ca_key).unwrap().der().clone();
        Self {
            ca_params,
            ca_key,
            ca_der,
        }
    }

    fn leaf(&self, common_name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.ca_params, &self.ca_key))
            .unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(cfg))
    }
}

/// A directory of its own for each test's certificate files, removed on drop.
struct Files {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sessiongate-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            dir,
        }
    }

    /// Installs `leaf` the way a secret volume updates: each file replaced whole.
    fn install(&self, leaf: &Leaf) {
        replace(&self.key, &leaf.key_pem);
        replace(&self.cert, &leaf.cert_pem);
    }

    fn toml(&self, reload_interval: &str) -> String {
        format!(
            "[server.tls]\ncert_file = '{}'\nkey_file = '{}'\nreload_interval = \"{reload_interval}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    fn tls_config(&self, reload_interval: Duration) -> TlsFiles {
        TlsFiles {
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            reload_interval,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes next to `path`, then renames over it, so no reader sees half a file.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A harness whose gateway terminates TLS with the files in `files`.
async fn tls_harness(files: &Files, reload_interval: &str, extra_server: &[&str]) -> Harness {
    let mut b = Harness::builder();
    for line in files.toml(reload_interval).lines().skip(1) {
        b = b.set("server.tls", line);
    }
    for line in extra_server {
        b = b.set("server", line);
    }
    b.start().await
}

async fn connect_tls(
    pki: &Pki,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    pki.client(alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn negotiated(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// Which certificate a fresh handshake gets right now.
async fn served_cert(pki: &Pki, addr: SocketAddr) -> Option<CertificateDer<'static>> {
    connect_tls(pki, addr, &[b"http/1.1"])
        .await
        .ok()
        .map(|s| presented(&s))
}

async fn h1_client<T>(io: T) -> http1::SendRequest<Full<Bytes>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    tx
}

async fn h2_client<T>(io: T) -> http2::SendRequest<Full<Bytes>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

async fn reply(resp: Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn h1_get(tx: &mut http1::SendRequest<Full<Bytes>>, path: &str) -> Reply {
    tx.ready().await.unwrap();
    reply(
        tx.send_request(get(path, &[("host", "localhost")]))
            .await
            .unwrap(),
    )
    .await
}

async fn h2_get(
    tx: &mut http2::SendRequest<Full<Bytes>>,
    uri: &str,
    headers: &[(&str, &str)],
) -> Reply {
    tx.ready().await.unwrap();
    reply(tx.send_request(get(uri, headers)).await.unwrap()).await
}

fn one(reply: &Reply, header: &str) -> String {
    let values = reply
        .upstream_header(header)
        .unwrap_or_else(|| panic!("upstream saw no {header}"));
    assert_eq!(values.len(), 1, "{header}: {values:?}");
    values[0].clone()
}

#[tokio::test]
async fn tls_with_alpn_h2_reaches_the_upstream_as_https() {
    let pki = Pki::new();
    let files = Files::new();
    files.install(&pki.leaf("gateway"));
    let h = tls_harness(&files, "5s", &[]).await;

    let stream = connect_tls(&pki, h.addr, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(negotiated(&stream).as_deref(), Some(&b"h2"[..]));
    let mut tx = h2_client(stream).await;

    let r = h2_get(&mut tx, "https://localhost/public/hello?x=1", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.from_upstream());
    assert_eq!(r.upstream_uri(), "/public/hello?x=1");
    assert_eq!(one(&r, "x-forwarded-proto"), "https");
    // :authority became Host, so the upstream and X-Forwarded-Host see the client's host.
    assert_eq!(one(&r, "host"), "localhost");
    assert_eq!(one(&r, "x-forwarded-host"), "localhost");

    // HTTP/2 clients may split Cookie into one field per cookie (RFC 9113
    // 8.2.3); the session is still found, on the same connection.
    let cookie = h.login(users::INVESTOR);
    let (id, token) = cookie.split_once("; ").unwrap();
    let r = h2_get(
        &mut tx,
        "https://localhost/account",
        &[("cookie", id), ("cookie", token)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(one(&r, "x-iid-profile-id"), users::INVESTOR);
    assert_eq!(one(&r, "x-forwarded-proto"), "https");
}

#[tokio::test]
async fn tls_with_http1_or_no_alpn_is_served_as_http1() {
    let pki = Pki::new();
    let files = Files::new();
    files.install(&pki.leaf("gateway"));
    let h = tls_harness(&files, "5s", &[]).await;

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let stream = connect_tls(&pki, h.addr, alpn).await.unwrap();
        assert_eq!(
            negotiated(&stream),
            alpn.first().map(|p| p.to_vec()),
            "offered {alpn:?}"
        );
        let mut tx = h1_client(stream).await;
        for _ in 0..2 {
            let r = h1_get(&mut tx, "/public/x").await;
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
            assert_eq!(one(&r, "x-forwarded-proto"), "https");
            assert_eq!(one(&r, "host"), "localhost");
        }
    }
}

#[tokio::test]
async fn cleartext_h2c_with_prior_knowledge_shares_the_port_with_http1() {
    let h = Harness::start().await;

    let mut tx = h2_client(TcpStream::connect(h.addr).await.unwrap()).await;
    let url = h.url("/public/h2c");
    let r = h2_get(&mut tx, &url, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.upstream_uri(), "/public/h2c");
    assert_eq!(one(&r, "x-forwarded-proto"), "http");
    assert_eq!(one(&r, "host"), h.addr.to_string());

    let cookie = h.login(users::INVESTOR);
    let r = h2_get(&mut tx, &h.url("/account"), &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(one(&r, "x-iid-profile-id"), users::INVESTOR);

    let r = h.get("/public/h1", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(one(&r, "x-forwarded-proto"), "http");
}

#[tokio::test]
async fn http2_off_means_http1_only_in_cleartext_and_over_tls() {
    let pki = Pki::new();
    let files = Files::new();
    files.install(&pki.leaf("gateway"));
    let h = tls_harness(&files, "5s", &["http2 = false"]).await;
    let stream = connect_tls(&pki, h.addr, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(negotiated(&stream).as_deref(), Some(&b"http/1.1"[..]));
    let r = h1_get(&mut h1_client(stream).await, "/public/x").await;
    assert_eq!(r.status, StatusCode::OK);

    // In cleartext the HTTP/2 preface reaches the HTTP/1.1 parser.
    let h = Harness::builder()
        .set("server", "http2 = false")
        .start()
        .await;
    // hyper's HTTP/1.1 parser recognizes the preface and closes without an
    // answer; with HTTP/2 on, a SETTINGS frame would come back instead.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("closed")
        .unwrap();
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "{answer:?}"
    );
}

#[tokio::test]
async fn rotated_certificate_reaches_new_handshakes_while_open_connections_keep_working() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("gateway-a"), pki.leaf("gateway-b-rotated"));
    let files = Files::new();
    files.install(&a);
    let h = tls_harness(&files, "100ms", &[]).await;

    let old = connect_tls(&pki, h.addr, &[b"http/1.1"]).await.unwrap();
    assert_eq!(presented(&old), a.der);
    let mut old_h1 = h1_client(old).await;
    assert_eq!(h1_get(&mut old_h1, "/public/before").await.status, 200);
    let old_h2 = connect_tls(&pki, h.addr, &[b"h2"]).await.unwrap();
    assert_eq!(presented(&old_h2), a.der);
    let mut old_h2 = h2_client(old_h2).await;

    files.install(&b);
    let rotated = eventually(ROTATION_DEADLINE, || async {
        served_cert(&pki, h.addr).await.as_ref() == Some(&b.der)
    })
    .await;
    assert!(rotated, "new handshakes never got the rotated certificate");

    // Connections made with A were not dropped: same keep-alive connection, new requests.
    let r = h1_get(&mut old_h1, "/public/after").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = h2_get(&mut old_h2, "https://localhost/public/after", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    let fresh = connect_tls(&pki, h.addr, &[b"h2"]).await.unwrap();
    assert_eq!(presented(&fresh), b.der);
    let r = h2_get(
        &mut h2_client(fresh).await,
        "https://localhost/public/new",
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn broken_replacement_is_ignored_and_the_previous_certificate_kept() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("gateway-a"), pki.leaf("gateway-b"));
    let files = Files::new();
    files.install(&a);
    // The handle is built here (as app::serve does) so the test can see when
    // the reloader has looked at the broken files.
    let tls = Arc::new(
        TlsAcceptorHandle::new(&files.tls_config(Duration::from_millis(50)), true).unwrap(),
    );
    let _reloader = tls.spawn_reloader();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(
        listener,
        ServeOptions {
            http2: true,
            tls: Some(Arc::clone(&tls)),
            ..ServeOptions::default()
        },
        |_req, _peer| async { Response::new(Full::new(Bytes::from_static(b"ok"))) },
        async move {
            let _ = stopped.await;
        },
    ));
    assert_eq!(served_cert(&pki, addr).await.as_ref(), Some(&a.der));

    // Garbage where the certificate was.
    replace(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    assert!(
        eventually(ROTATION_DEADLINE, || async { tls.reload_counts().1 >= 1 }).await,
        "the reloader never looked at the broken file"
    );
    assert_eq!(served_cert(&pki, addr).await.as_ref(), Some(&a.der));

    // A valid certificate with somebody else's key: refused too.
    replace(&files.cert, &b.cert_pem);
    assert!(eventually(ROTATION_DEADLINE, || async { tls.reload_counts().1 >= 2 }).await);
    assert_eq!(served_cert(&pki, addr).await.as_ref(), Some(&a.der));
    assert_eq!(tls.reload_counts().0, 0);

    // Requests are still served with A, and a good pair is picked up afterwards.
    let stream = connect_tls(&pki, addr, &[b"h2"]).await.unwrap();
    let r = h2_get(&mut h2_client(stream).await, "https://localhost/", &[]).await;
    assert_eq!(r.body, "ok");
    replace(&files.key, &b.key_pem);
    assert!(
        eventually(ROTATION_DEADLINE, || async {
            served_cert(&pki, addr).await.as_ref() == Some(&b.der)
        })
        .await
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificate_at_once() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("gateway-a"), pki.leaf("gateway-b-after-hup"));
    let files = Files::new();
    files.install(&a);
    // Polling is effectively off: only SIGHUP can explain the change.
    let h = tls_harness(&files, "1h", &[]).await;
    // A completed handshake means app::serve got past spawning the reloader,
    // which registers the SIGHUP handler: from here SIGHUP cannot kill the
    // test process.
    assert_eq!(served_cert(&pki, h.addr).await.as_ref(), Some(&a.der));

    files.install(&b);
    let pid = std::process::id().to_string();
    let reloaded = eventually(ROTATION_DEADLINE, || async {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        served_cert(&pki, h.addr).await.as_ref() == Some(&b.der)
    })
    .await;
    assert!(reloaded, "SIGHUP did not reload the certificate");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_on_tls_h1_and_h2() {
    let pki = Pki::new();
    let files = Files::new();
    files.install(&pki.leaf("gateway"));
    let (up, mut arrived) = support::slow_upstream(Duration::from_millis(800)).await;
    let cfg = Config::from_toml_str(&format!(
        "[server]\nshutdown_grace = \"20s\"\n{}[[routes]]\nprefix = \"/\"\nupstream = \"http://{up}\"\nauth = \"public\"\n",
        files.toml("5s")
    ))
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = app::build_gateway(&cfg).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        app::serve(&cfg, gateway, listener, async move {
            let _ = stopped.await;
        })
        .await
    });

    let mut h1 = h1_client(connect_tls(&pki, addr, &[b"http/1.1"]).await.unwrap()).await;
    let mut h2 = h2_client(connect_tls(&pki, addr, &[b"h2"]).await.unwrap()).await;
    let in_flight_h1 = tokio::spawn(async move { h1_get(&mut h1, "/slow").await });
    let in_flight_h2 =
        tokio::spawn(async move { h2_get(&mut h2, "https://localhost/slow", &[]).await });
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), arrived.recv())
            .await
            .expect("both requests reached the upstream");
    }
    drop(stop);

    for in_flight in [in_flight_h1, in_flight_h2] {
        let r = tokio::time::timeout(Duration::from_secs(20), in_flight)
            .await
            .expect("answered within the grace")
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "done");
    }
    tokio::time::timeout(Duration::from_secs(20), serving)
        .await
        .expect("serve returned after the drain")
        .unwrap()
        .unwrap();
    assert!(connect_tls(&pki, addr, &[b"h2"]).await.is_err());
}

#[tokio::test]
async fn silent_clients_are_dropped_after_header_read_timeout_with_tls_and_h2c() {
    let pki = Pki::new();
    let files = Files::new();
    files.install(&pki.leaf("gateway"));
    let tls = tls_harness(&files, "5s", &["header_read_timeout = \"300ms\""]).await;
    let clear = Harness::builder()
        .set("server", "header_read_timeout = \"300ms\"")
        .start()
        .await;
    // Nothing sent at all; and a partial HTTP/2 preface that never completes.
    for (addr, bytes) in [
        (tls.addr, &b""[..]),
        (clear.addr, &b""[..]),
        (clear.addr, &b"PRI * HTTP/2.0\r\n"[..]),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "{addr} after {bytes:?}: {closed:?}"
        );
    }
}

const ROUTES: &str = "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n";

fn config_error(toml: &str) -> String {
    Config::from_toml_str(&format!("{toml}{ROUTES}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn tls_config_errors_name_the_key() {
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a"), pki.leaf("b"));
    let files = Files::new();
    files.install(&a);
    let garbage = files.dir.join("garbage.pem");
    std::fs::write(&garbage, "garbage\n").unwrap();
    let missing = files.dir.join("missing.pem");
    let other_key = files.dir.join("other.key");
    std::fs::write(&other_key, &b.key_pem).unwrap();
    let tls = |cert: &Path, key: &Path, extra: &str| {
        format!(
            "[server.tls]\ncert_file = '{}'\nkey_file = '{}'\n{extra}",
            cert.display(),
            key.display()
        )
    };

    let ok =
        Config::from_toml_str(&format!("{}{ROUTES}", tls(&files.cert, &files.key, ""))).unwrap();
    let t = ok.server.tls.as_ref().unwrap();
    assert_eq!(t.reload_interval, Duration::from_secs(5));
    assert!(ok.server.http2);
    assert!(Config::from_toml_str(ROUTES).unwrap().server.tls.is_none());

    let err = config_error(&tls(&missing, &files.key, ""));
    assert!(err.contains("server.tls.cert_file"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
    assert!(!err.contains("server.tls.key_file"), "{err}");

    let err = config_error(&tls(&files.cert, &garbage, ""));
    assert!(err.contains("server.tls.key_file"), "{err}");
    assert!(!err.contains("server.tls.cert_file"), "{err}");

    let err = config_error(&tls(&garbage, &missing, ""));
    assert!(
        err.contains("server.tls.cert_file") && err.contains("server.tls.key_file"),
        "both files are reported: {err}"
    );

    let err = config_error(&tls(&files.cert, &other_key, ""));
    assert!(
        err.contains("server.tls.key_file") && err.contains("does not belong"),
        "{err}"
    );

    let err = config_error(&tls(&files.cert, &files.key, "reload_interval = \"0s\"\n"));
    assert!(err.contains("server.tls.reload_interval"), "{err}");

    let err = config_error(&format!(
        "[server.tls]\ncert_file = '{}'\n",
        files.cert.display()
    ));
    assert!(err.contains("key_file"), "{err}");
    let err = config_error(&tls(&files.cert, &files.key, "ca_file = 'x'\n"));
    assert!(err.contains("ca_file"), "{err}");
}
