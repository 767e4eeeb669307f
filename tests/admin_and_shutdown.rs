//! The admin listener (probes, metrics) and graceful shutdown: readiness
//! turns false at once, the public listener stops accepting, an in-flight
//! request still gets its answer, then `run` returns. Readiness turns true
//! only after the TLS certificate loaded: a bad one fails `run` without
//! `/readyz` ever saying 200.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sessiongate::app::{self, Listeners};
use sessiongate::config::Config;
use sessiongate::dev::emulator::{self, Emulator, EmulatorConfig};
use support::eventually;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn get(client: &HttpClient, url: String) -> Option<(u16, String)> {
    let resp = client
        .request(
            http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

struct Running {
    gateway: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), app::StartError>>,
}

async fn start(toml: &str) -> Running {
    start_config(Config::from_toml_str(toml).unwrap()).await
}

/// Runs an already loaded config (files it names may have changed since).
async fn start_config(cfg: Config) -> Running {
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (gateway, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(app::run(
        cfg,
        Listeners {
            public,
            admin: Some(admin),
            forward_auth: None,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        gateway,
        admin: admin_addr,
        stop: Some(stop),
        done,
    }
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_while_readiness_is_false() {
    let (up, mut arrived) = support::slow_upstream(Duration::from_millis(1500)).await;
    let mut gw = start(&format!(
        "[server]\nshutdown_grace = \"20s\"\n[[routes]]\nprefix = \"/\"\nupstream = \"http://{up}\"\nauth = \"public\"\n"
    ))
    .await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let admin = gw.admin;
    assert!(
        eventually(Duration::from_secs(10), || {
            let c = client.clone();
            async move {
                get(&c, format!("http://{admin}/readyz"))
                    .await
                    .is_some_and(|(s, _)| s == 200)
            }
        })
        .await,
        "never ready"
    );

    // A request is in flight at the upstream when shutdown begins.
    let in_flight = {
        let c = client.clone();
        let url = format!("http://{}/slow", gw.gateway);
        tokio::spawn(async move { get(&c, url).await })
    };
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .expect("request reached the upstream");
    drop(gw.stop.take());

    // Readiness turns false while the drain is still going on.
    let saw_not_ready = eventually(Duration::from_secs(10), || {
        let c = client.clone();
        async move {
            get(&c, format!("http://{admin}/readyz"))
                .await
                .is_some_and(|(s, body)| s == 503 && body.contains("shutting down"))
        }
    })
    .await;
    assert!(saw_not_ready, "/readyz never reported the drain");
    // The liveness probe stays green during the drain.
    assert_eq!(
        get(&client, format!("http://{admin}/healthz"))
            .await
            .unwrap()
            .0,
        200
    );
    // New connections are refused.
    let addr = gw.gateway;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "the public listener still accepts"
    );

    // The in-flight request still gets its answer, then run() returns cleanly.
    let answer = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, Some((200, "done".to_string())));
    let result = tokio::time::timeout(Duration::from_secs(20), &mut gw.done)
        .await
        .expect("run returns after the drain")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// An idle keep-alive connection hears of the drain at once and is closed
/// then, not when its idle timeout or the grace (both 600 s here) run out.
#[tokio::test]
async fn sigterm_closes_an_idle_keep_alive_connection_at_once() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    tokio::spawn(sessiongate::dev::echo::run(up, std::future::pending()));
    let mut gw = start(&format!(
        "[server]\nshutdown_grace = \"600s\"\nidle_timeout = \"600s\"\n[[routes]]\nprefix = \"/\"\nupstream = \"http://{up_addr}\"\nauth = \"public\"\n"
    ))
    .await;
    let stream = TcpStream::connect(gw.gateway).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    let closed = tokio::spawn(conn);
    let req = http::Request::get("/x")
        .header("host", "portal.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();

    drop(gw.stop.take());
    tokio::time::timeout(Duration::from_secs(60), closed)
        .await
        .expect("the idle connection is closed when the drain begins")
        .unwrap()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), &mut gw.done)
        .await
        .expect("run returns once the idle connection is gone")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn metrics_count_requests_auth_outcomes_and_idp_calls() {
    let idp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = idp_listener.local_addr().unwrap();
    let emu = Emulator::new(EmulatorConfig {
        api_key: "k".into(),
        client_id: None,
        expires_in: 600,
        users: emulator::default_users(),
    });
    tokio::spawn(emulator::run(
        idp_listener,
        Arc::clone(&emu),
        std::future::pending(),
    ));
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    tokio::spawn(sessiongate::dev::echo::run(up, std::future::pending()));
    let gw = start(&format!(
        "[idp]\nbase_url = \"http://{idp}{}\"\napi_key = \"k\"\n[[routes]]\nprefix = \"/app/\"\nupstream = \"http://{up_addr}\"\n",
        emulator::BASE_PATH
    ))
    .await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let s = emu.create_session("518", None).unwrap();
    let cookie = format!(
        "iid_session_id={}; iid_session_token={}",
        s.session_id, s.session_token
    );
    for _ in 0..2 {
        let req = http::Request::get(format!("http://{}/app/x", gw.gateway))
            .header("cookie", &cookie)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client.request(req).await.unwrap().status(), 200);
    }
    assert_eq!(
        get(&client, format!("http://{}/app/y", gw.gateway))
            .await
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        get(&client, format!("http://{}/elsewhere", gw.gateway))
            .await
            .unwrap()
            .0,
        404
    );

    let (status, text) = get(&client, format!("http://{}/metrics", gw.admin))
        .await
        .unwrap();
    assert_eq!(status, 200);
    for line in [
        r#"sessiongate_requests_total{route="/app",status="200",mode="proxy"} 2"#,
        r#"sessiongate_requests_total{route="/app",status="401",mode="proxy"} 1"#,
        r#"sessiongate_requests_total{route="none",status="404",mode="proxy"} 1"#,
        r#"sessiongate_auth_outcomes_total{outcome="cache_miss"} 1"#,
        r#"sessiongate_auth_outcomes_total{outcome="cache_hit"} 1"#,
        r#"sessiongate_auth_outcomes_total{outcome="no_session"} 1"#,
        r#"sessiongate_idp_requests_total{result="valid"} 1"#,
        r#"sessiongate_upstream_requests_total{result="ok"} 2"#,
        "sessiongate_idp_request_duration_seconds_count 1",
        "sessiongate_cache_entries",
        "sessiongate_open_connections",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // Every sample line is `name{labels} value` (OpenMetrics text).
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }
}

const DEADLINE: Duration = Duration::from_secs(20);

/// A self-signed certificate and key for `localhost` in a fresh directory:
/// the directory, the certificate's path, and the `[server.tls]` TOML.
fn tls_files(tag: &str) -> (PathBuf, PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("sessiongate-readyz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let toml = format!(
        "[server.tls]\ncert_file = '{}'\nkey_file = '{}'\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"public\"\n",
        cert.display(),
        key.display()
    );
    (dir, cert, toml)
}

/// Polls `/readyz` until `run` returns; returns what `run` returned and
/// every status `/readyz` answered meanwhile.
async fn readyz_until_run_returns(gw: &mut Running) -> (Result<(), app::StartError>, Vec<u16>) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{}/readyz", gw.admin);
    let mut seen = Vec::new();
    let polling = async {
        loop {
            tokio::select! {
                done = &mut gw.done => return done.unwrap(),
                answer = get(&client, url.clone()) => {
                    seen.extend(answer.map(|(status, _)| status));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    let result = tokio::time::timeout(DEADLINE, polling)
        .await
        .expect("run did not return");
    (result, seen)
}

#[tokio::test]
async fn a_certificate_removed_after_the_config_was_checked_fails_run_and_readyz_never_says_200() {
    let (dir, cert, toml) = tls_files("removed");
    let cfg = Config::from_toml_str(&toml).unwrap();
    std::fs::remove_file(&cert).unwrap();
    let mut gw = start_config(cfg).await;
    let (result, seen) = readyz_until_run_returns(&mut gw).await;
    assert!(matches!(result, Err(app::StartError::Tls(_))), "{result:?}");
    assert!(!seen.contains(&200), "/readyz said 200: {seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The certificate is replaced by a pipe, so `run` is caught while it
/// reads it: `/readyz` must already answer, and not 200; garbage then
/// arrives through the pipe and `run` fails.
#[cfg(unix)]
// Two workers: a `run` that blocked a worker on the pipe would otherwise
// stall this test instead of failing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_starting_while_the_certificate_is_read_then_garbage_fails_run() {
    use std::io::Write as _;

    let (dir, cert, toml) = tls_files("pipe");
    let cfg = Config::from_toml_str(&toml).unwrap();
    std::fs::remove_file(&cert).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&cert)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    let mut gw = start_config(cfg).await;

    // Opening a pipe to write returns once a reader opened it: once `run`
    // is reading the certificate. A thread, not a runtime task, so a run
    // that never reads cannot hold up the runtime's shutdown.
    let (opened_tx, opened) = oneshot::channel();
    let path = cert.clone();
    std::thread::spawn(move || {
        let pipe = std::fs::OpenOptions::new().write(true).open(path);
        let _ = opened_tx.send(pipe);
    });
    let mut pipe = tokio::time::timeout(DEADLINE, opened)
        .await
        .expect("run never read the certificate")
        .unwrap()
        .unwrap();

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (status, body) = tokio::time::timeout(
        DEADLINE,
        get(&client, format!("http://{}/readyz", gw.admin)),
    )
    .await
    .expect("the admin listener did not answer while the certificate was read")
    .expect("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("starting"), "{body}");

    pipe.write_all(b"not a certificate\n").unwrap();
    drop(pipe);
    let (result, seen) = readyz_until_run_returns(&mut gw).await;
    assert!(matches!(result, Err(app::StartError::Tls(_))), "{result:?}");
    assert!(!seen.contains(&200), "/readyz said 200: {seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
