//! A request body the client breaks (a malformed chunk, or a connection
//! closed before the declared length) is the client's fault: it gets 400
//! `bad_request_body` where an answer is still possible, never a 502, and
//! no upstream failure is counted or logged against the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{eventually, raw_status, users, Harness, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// The gateway's metrics, as `/metrics` would serve them.
fn metrics(h: &Harness) -> String {
    h.gateway.admin().metrics().encode().unwrap()
}

/// Waits until the gateway has answered `n` requests on `route` with
/// `status`, so the upstream counters below are final for them.
async fn wait_for_requests(h: &Harness, route: &str, status: u16, n: u64) {
    let line = format!(
        r#"sessiongate_requests_total{{route="{route}",status="{status}",mode="proxy"}} {n}"#
    );
    let counted = eventually(DEADLINE, || {
        let seen = metrics(h).contains(&line);
        async move { seen }
    })
    .await;
    assert!(counted, "never saw {line:?} in:\n{}", metrics(h));
}

/// No forwarded request ended as an upstream failure.
fn assert_no_upstream_failure(h: &Harness) {
    let text = metrics(h);
    for result in ["unreachable", "timeout"] {
        let line = format!(r#"sessiongate_upstream_requests_total{{result="{result}"}} 0"#);
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
}

fn assert_bad_request_body(raw: &str) {
    assert_ne!(raw_status(raw), 502, "{raw}");
    let reply = Reply::parse_raw(raw);
    assert_eq!(reply.status, 400, "{raw}");
    assert_eq!(reply.reason(), "bad_request_body", "{raw}");
    assert_eq!(reply.json()["code"], 40001, "{raw}");
}

/// A chunked POST whose second chunk-size line is not hex.
fn malformed_chunked(path: &str, cookie: Option<&str>) -> Vec<u8> {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\n{cookie}Transfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\nzz\r\nnot a chunk\r\n0\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_malformed_chunk_is_400_bad_request_body_and_no_upstream_failure() {
    let h = Harness::start().await;

    let raw = h.raw(&malformed_chunked("/public/upload", None)).await;
    assert_bad_request_body(&raw);
    wait_for_requests(&h, "/public", 400, 1).await;
    assert_no_upstream_failure(&h);

    // The same on a route that needs a session, with a valid one.
    let cookie = h.login(users::INVESTOR);
    let raw = h.raw(&malformed_chunked("/upload", Some(&cookie))).await;
    assert_bad_request_body(&raw);
    wait_for_requests(&h, "/", 400, 1).await;
    assert_no_upstream_failure(&h);

    // A well-formed body on the same routes still reaches the upstream.
    let ok = h
        .request(
            http::Method::POST,
            "/public/upload",
            &[],
            bytes::Bytes::from_static(b"hello"),
        )
        .await;
    assert!(ok.from_upstream() && ok.status == 200, "{ok:?}");
    assert!(
        metrics(&h).contains(r#"sessiongate_upstream_requests_total{result="ok"} 1"#),
        "{}",
        metrics(&h)
    );
}

#[tokio::test]
async fn a_body_cut_short_of_its_content_length_is_not_an_upstream_failure() {
    let h = Harness::start().await;

    // The client stops sending (half-close) after 10 of 100 bytes but still
    // listens: it is told what it did wrong.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut raw))
        .await
        .expect("no answer within the deadline")
        .unwrap();
    assert_bad_request_body(&String::from_utf8_lossy(&raw));
    wait_for_requests(&h, "/public", 400, 1).await;
    assert_no_upstream_failure(&h);

    // The client goes away entirely after 10 of 100 bytes: nobody is left
    // to answer, but the request still ends as the client's fault.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    drop(s);
    wait_for_requests(&h, "/public", 400, 2).await;
    assert_no_upstream_failure(&h);
}
