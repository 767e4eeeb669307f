//! Proxying: large bodies stream both ways intact, requests arrive as sent,
//! upstream answers pass through, and upstream or request-size failures get
//! the gateway's JSON errors (502, 504, 431, 404).
// Helpers outside #[test] fns unwrap too; `from_upstream` in the shared harness
// trips wrong_self_convention.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{users, Harness, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

/// Deterministic bytes that do not repeat with any short period.
fn upload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn assert_gateway_error(r: &Reply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(r.reason(), reason);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

/// A request body of unknown length (sent chunked) in 64 KiB frames.
struct Chunked {
    data: Bytes,
    sent: usize,
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.data.len() {
            return Poll::Ready(None);
        }
        let end = (self.sent + 64 * 1024).min(self.data.len());
        let chunk = self.data.slice(self.sent..end);
        self.sent = end;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// Sends `request` (head only) without insisting that the server reads it
/// all: a server refusing a huge head may close before it is written.
/// Returns whatever was read until the server closed.
async fn raw_head(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open until the reader is done.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut out)).await;
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_8_mib_upload_arrives_intact() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let data = upload(8 * MIB);
    let r = h
        .request(
            Method::POST,
            "/files/upload",
            &[
                ("cookie", &cookie),
                ("content-type", "application/octet-stream"),
            ],
            Bytes::from(data.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body_len"], 8 * MIB);
    assert_eq!(v["body_fnv1a64"], support::fnv_hex(&data));
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
}

#[tokio::test]
async fn an_8_mib_chunked_upload_of_unknown_length_arrives_intact() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let data = Bytes::from(upload(8 * MIB));
    let client = Client::builder(TokioExecutor::new()).build_http::<Chunked>();
    let req = Request::post(h.url("/files/stream"))
        .header("cookie", &cookie)
        .body(Chunked {
            data: data.clone(),
            sent: 0,
        })
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-echo"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["body_len"], 8 * MIB);
    assert_eq!(v["body_fnv1a64"], support::fnv_hex(&data));
}

#[tokio::test]
async fn an_8_mib_download_arrives_intact() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let n = 8 * MIB;
    let r = h
        .get(&format!("/__echo/bytes?n={n}"), &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.from_upstream());
    assert_eq!(r.headers["content-length"], n.to_string().as_str());
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    assert_eq!(r.body.len(), n);
    let first_bad = r
        .body
        .iter()
        .enumerate()
        .position(|(i, &b)| b != (i % 251) as u8);
    assert_eq!(first_bad, None, "the byte pattern is broken");
}

#[tokio::test]
async fn method_query_and_headers_arrive_as_sent() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let body = Bytes::from_static(b"{\"name\":\"x\"}");
    let r = h
        .request(
            Method::PUT,
            "/api/items/42?b=2&a=1&a=%20x&flag&empty=",
            &[
                ("cookie", &cookie),
                ("content-type", "application/json"),
                ("x-custom", "Some Value; with=stuff"),
                ("x-multi", "one"),
                ("x-multi", "two"),
                ("accept-language", "ar-AE"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    let v = r.json();
    assert_eq!(v["method"], "PUT");
    assert_eq!(r.upstream_uri(), "/api/items/42?b=2&a=1&a=%20x&flag&empty=");
    assert_eq!(
        r.upstream_header("x-custom").unwrap(),
        ["Some Value; with=stuff"]
    );
    assert_eq!(r.upstream_header("x-multi").unwrap(), ["one", "two"]);
    assert_eq!(r.upstream_header("accept-language").unwrap(), ["ar-AE"]);
    assert_eq!(
        r.upstream_header("content-type").unwrap(),
        ["application/json"]
    );
    assert_eq!(v["body_len"], body.len());
    assert_eq!(v["body_fnv1a64"], support::fnv_hex(&body));

    for method in [Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let r = h
            .request(
                method.clone(),
                "/api/items/42",
                &[("cookie", &cookie)],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.json()["method"], method.as_str());
    }
}

#[tokio::test]
async fn upstream_down_is_502_upstream_unreachable() {
    let dead = support::dead_addr().await;
    let h = Harness::builder().upstream(dead.addr()).start().await;
    assert_gateway_error(&h.get("/public/x", &[]).await, 502, "upstream_unreachable");
    let cookie = h.login(users::INVESTOR);
    assert_gateway_error(
        &h.get("/app", &[("cookie", &cookie)]).await,
        502,
        "upstream_unreachable",
    );
    assert_eq!(h.idp_fetches(), 1, "the session was checked first");
}

#[tokio::test]
async fn upstream_slower_than_its_timeout_is_504_upstream_timeout() {
    let h = Harness::builder()
        .set("upstream", "timeout = \"300ms\"")
        // Nothing else on the connection wakes it before the upstream answers.
        .set("server", "header_read_timeout = \"600s\"")
        .set("server", "idle_timeout = \"600s\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    // The upstream would answer in ten minutes: the 504 must come at the
    // deadline, not when the upstream finally answers (a deadline nothing
    // wakes the request for is only noticed then).
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        h.get("/__echo/slow?ms=600000", &[("cookie", &cookie)]),
    )
    .await
    .expect("the 504 comes at the upstream deadline");
    assert_gateway_error(&r, 504, "upstream_timeout");
    assert!(r.headers.get("retry-after").is_none());

    // A fast answer on the same route still works (eventually: 300 ms is
    // short on a loaded machine).
    let (h, cookie) = (&h, cookie.as_str());
    let answered = support::eventually(Duration::from_secs(20), move || async move {
        let r = h.get("/__echo/slow?ms=0", &[("cookie", cookie)]).await;
        if r.status == 200 {
            assert!(r.from_upstream());
            assert_eq!(&r.body[..], b"slow");
            return true;
        }
        assert_gateway_error(&r, 504, "upstream_timeout");
        false
    })
    .await;
    assert!(answered);
}

#[tokio::test]
async fn a_20_kib_header_is_431_headers_too_large() {
    let h = Harness::start().await;
    let big = "a".repeat(20 * 1024);
    let r = h.get("/public/x", &[("x-big", &big)]).await;
    assert_gateway_error(&r, 431, "headers_too_large");
    assert_eq!(r.json()["code"], 43100);

    // Just under the limit is fine.
    let fits = "a".repeat(12 * 1024);
    let r = h.get("/public/x", &[("x-big", &fits)]).await;
    assert_eq!(r.status, 200);
    assert!(r.from_upstream());
}

#[tokio::test]
async fn a_200_kib_header_is_431_from_hyper_itself() {
    let h = Harness::start().await;
    let big = "a".repeat(200 * 1024);
    let request =
        format!("GET /public/x HTTP/1.1\r\nhost: gw\r\nx-big: {big}\r\nconnection: close\r\n\r\n");
    let response = raw_head(h.addr, request.into_bytes()).await;
    assert_eq!(support::raw_status(&response), 431, "{response}");
    assert!(!response.to_ascii_lowercase().contains("x-echo"));
    // Either hyper's bare 431 or the gateway's JSON: both are fine.
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        body.is_empty() || body.contains("headers_too_large"),
        "{body}"
    );
}

#[tokio::test]
async fn a_path_no_route_matches_is_404_no_route() {
    let h = Harness::builder()
        .routes(
            r#"
[[routes]]
prefix = "/only/"
upstream = "http://{up}"
auth = "public"
"#,
        )
        .start()
        .await;
    assert_gateway_error(&h.get("/other/x", &[]).await, 404, "no_route");
    assert_gateway_error(&h.get("/", &[]).await, 404, "no_route");
    let r = h.get("/only/x", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.from_upstream());
    assert_eq!(h.idp_fetches(), 0);
}

#[tokio::test]
async fn upstream_status_and_headers_pass_through() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get("/__echo/status?code=418", &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, 418);
    assert!(r.from_upstream(), "the upstream's own headers are kept");
    assert!(r.body.is_empty(), "{:?}", r.body);

    // An upstream 503 is the upstream's, not turned into the gateway's JSON.
    let r = h
        .get("/__echo/status?code=503", &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, 503);
    assert!(r.from_upstream());
    assert!(r.body.is_empty());
    assert!(r.headers.get("retry-after").is_none());

    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
}
