//! Request ids follow a request upstream and back; the access log of the real
//! binary records every request and never shows a session id, token or API key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiongate::dev::emulator::{self, Emulator, EmulatorConfig};
use support::{users, Harness};
use tokio::net::TcpListener;

#[tokio::test]
async fn an_incoming_request_id_is_kept_upstream_and_returned() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get("/x", &[("cookie", &cookie), ("x-request-id", "trace-42")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-request-id").unwrap(), ["trace-42"]);
    assert_eq!(r.headers["x-request-id"], "trace-42");
}

#[tokio::test]
async fn a_missing_request_id_is_generated_once_for_both_sides() {
    let h = Harness::start().await;
    let r = h.get("/public/x", &[]).await;
    let sent = r.upstream_header("x-request-id").unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 32);
    assert_eq!(r.headers["x-request-id"], sent[0].as_str());
    // Gateway-made answers carry it too.
    let r = h.get("/x", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["x-request-id"].len(), 32);
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_every_request_and_no_secret_in_clear() {
    const API_KEY: &str = "sekrit-api-key-7f3a9c";
    let idp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = idp_listener.local_addr().unwrap();
    let emu = Emulator::new(EmulatorConfig {
        api_key: API_KEY.into(),
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

    let gw = free_addr();
    let dir = std::env::temp_dir().join(format!(
        "sessiongate-logtest-{}-{}",
        std::process::id(),
        gw.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{gw}\"\n[admin]\nlisten = \"\"\n[idp]\nbase_url = \"http://{idp}{}\"\n\
             [log]\nformat = \"json\"\nlevel = \"debug\"\n[[routes]]\nprefix = \"/\"\nupstream = \"http://{up_addr}\"\n",
            emulator::BASE_PATH
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiongate"))
        .args(["--config", config.to_str().unwrap()])
        .env("SESSIONGATE_IDP__API_KEY", API_KEY)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let s = emu.create_session(users::INVESTOR, None).unwrap();
    let good = format!(
        "iid_session_id={}; iid_session_token={}",
        s.session_id, s.session_token
    );
    let bad =
        "iid_session_id=0badc0de-0000-4000-8000-feedfacecafe; iid_session_token=nottherighttoken99";
    let raw = |path: &str, cookie: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n")
    };
    // Wait for the listener, then send the requests whose traces we inspect.
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(gw).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gateway never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = support::raw_exchange(gw, raw("/app/x?token=abc", &good).as_bytes()).await;
    assert_eq!(support::raw_status(&ok), 200, "{ok}");
    let denied = support::raw_exchange(gw, raw("/app/y", bad).as_bytes()).await;
    assert_eq!(support::raw_status(&denied), 401, "{denied}");
    let out = support::raw_exchange(gw, raw("/logout", &good).as_bytes()).await;
    assert_eq!(support::raw_status(&out), 200, "{out}");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "sessiongate::access")
        .collect();
    let paths: Vec<&str> = access.iter().filter_map(|v| v["path"].as_str()).collect();
    assert_eq!(paths, ["/app/x", "/app/y", "/logout"], "{logs}");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["profile_id"], "518");
    assert_eq!(access[0]["cache"], "miss");
    assert_eq!(access[1]["status"], 401);
    assert_eq!(access[1]["reason"], "invalid_session");
    assert!(access
        .iter()
        .all(|v| v["request_id"].as_str().is_some_and(|id| id.len() == 32)));
    assert!(access[0]["session"].as_str().is_some_and(|h| h.len() == 8));

    for secret in [
        s.session_id.as_str(),
        s.session_token.as_str(),
        "0badc0de-0000-4000-8000-feedfacecafe",
        "nottherighttoken99",
        API_KEY,
        "token=abc",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} appears in the logs:\n{logs}"
        );
    }
}
