//! Threat: a client spoofs its address, scheme or host through
//! `X-Forwarded-*`, `Forwarded` or `X-Real-IP` (IP allow-lists, rate limits,
//! "https only" checks upstream); and the proxy must not mangle anything else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::Method;
use support::{fnv_hex, users, Harness, Reply};

/// What a client behind no proxy at all might claim.
const SPOOFED: [(&str, &str); 6] = [
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil"),
    ("forwarded", "for=6.6.6.6;proto=https;host=evil"),
    ("x-real-ip", "6.6.6.6"),
    ("host", "portal.example"),
];

async fn spoofed_request(h: &Harness, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers: Vec<(&str, &str)> = SPOOFED.to_vec();
    headers.extend_from_slice(extra);
    let r = h.get(path, &headers).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    r
}

#[tokio::test]
async fn untrusted_peer_x_forwarded_for_is_replaced_by_the_peer_address() {
    let h = Harness::start().await;
    let r = spoofed_request(&h, "/public/x", &[("x-forwarded-for", "7.7.7.7")]).await;
    assert_eq!(r.upstream_header("x-forwarded-for").unwrap(), ["127.0.0.1"]);
}

#[tokio::test]
async fn untrusted_peer_x_forwarded_proto_is_replaced_by_the_real_scheme() {
    let h = Harness::start().await;
    let r = spoofed_request(&h, "/public/x", &[]).await;
    assert_eq!(r.upstream_header("x-forwarded-proto").unwrap(), ["http"]);
}

#[tokio::test]
async fn untrusted_peer_x_forwarded_host_is_the_host_the_client_sent() {
    let h = Harness::start().await;
    let r = spoofed_request(&h, "/public/x", &[]).await;
    assert_eq!(
        r.upstream_header("x-forwarded-host").unwrap(),
        ["portal.example"]
    );
}

#[tokio::test]
async fn untrusted_peer_forwarded_and_x_real_ip_are_dropped() {
    let h = Harness::start().await;
    let r = spoofed_request(&h, "/public/x", &[("x-forwarded-prefix", "/evil")]).await;
    assert_eq!(r.upstream_header("forwarded"), None);
    assert_eq!(r.upstream_header("x-real-ip"), None);
    assert_eq!(r.upstream_header("x-forwarded-prefix"), None);
}

#[tokio::test]
async fn untrusted_peer_underscore_forwarding_headers_are_dropped() {
    let h = Harness::start().await;
    let resp = h
        .raw(
            b"GET /public/x HTTP/1.1\r\nHost: portal.example\r\nX_Forwarded_For: 6.6.6.6\r\n\
              X_Forwarded_Proto: https\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(support::raw_status(&resp), 200, "{resp}");
    let (_, body) = resp.split_once("\r\n\r\n").expect("a body");
    let json: serde_json::Value = serde_json::from_str(body).expect("echo JSON");
    let headers = json["headers"].as_object().expect("headers");
    assert!(!headers.contains_key("x_forwarded_for"), "{headers:?}");
    assert!(!headers.contains_key("x_forwarded_proto"), "{headers:?}");
    assert_eq!(headers["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"][0], "http");
}

#[tokio::test]
async fn untrusted_peer_forwarding_headers_are_replaced_on_required_routes_too() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = spoofed_request(&h, "/portal/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    assert_eq!(r.upstream_header("x-forwarded-for").unwrap(), ["127.0.0.1"]);
    assert_eq!(r.upstream_header("x-forwarded-proto").unwrap(), ["http"]);
    assert_eq!(
        r.upstream_header("x-forwarded-host").unwrap(),
        ["portal.example"]
    );
    assert_eq!(r.upstream_header("forwarded"), None);
    assert_eq!(r.upstream_header("x-real-ip"), None);
}

#[tokio::test]
async fn without_forwarding_headers_the_gateway_adds_its_own() {
    let h = Harness::start().await;
    let r = h.get("/public/x", &[]).await;
    assert_eq!(r.upstream_header("x-forwarded-for").unwrap(), ["127.0.0.1"]);
    assert_eq!(r.upstream_header("x-forwarded-proto").unwrap(), ["http"]);
    assert_eq!(
        r.upstream_header("x-forwarded-host").unwrap(),
        [h.addr.to_string()]
    );
}

#[tokio::test]
async fn trusted_proxy_chain_is_extended_and_its_proto_kept() {
    let h = Harness::builder()
        .set("server", "trusted_proxies = [\"127.0.0.0/8\"]")
        .start()
        .await;
    let r = spoofed_request(&h, "/public/x", &[]).await;
    assert_eq!(
        r.upstream_header("x-forwarded-for").unwrap(),
        ["6.6.6.6, 127.0.0.1"]
    );
    assert_eq!(r.upstream_header("x-forwarded-proto").unwrap(), ["https"]);
    assert_eq!(r.upstream_header("x-forwarded-host").unwrap(), ["evil"]);
}

#[tokio::test]
async fn trusted_proxy_without_forwarding_headers_gets_the_peer_address() {
    let h = Harness::builder()
        .set("server", "trusted_proxies = [\"127.0.0.0/8\"]")
        .start()
        .await;
    let r = h.get("/public/x", &[]).await;
    assert_eq!(r.upstream_header("x-forwarded-for").unwrap(), ["127.0.0.1"]);
    assert_eq!(r.upstream_header("x-forwarded-proto").unwrap(), ["http"]);
}

#[tokio::test]
async fn end_to_end_headers_reach_the_upstream_intact() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let end_to_end = [
        ("x-app-thing", "a, b;c=\"d\""),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) test/1.0"),
        ("authorization", "Bearer abc.def.ghi"),
        ("accept-language", "ar-AE, en;q=0.8"),
    ];
    for (path, cookie) in [("/public/x", None), ("/portal/x", Some(cookie.as_str()))] {
        let mut headers = end_to_end.to_vec();
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        let r = h.get(path, &headers).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.from_upstream());
        for (name, value) in &end_to_end {
            assert_eq!(
                r.upstream_header(name).unwrap(),
                [value.to_string()],
                "{path}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn repeated_end_to_end_headers_keep_every_value_in_order() {
    let h = Harness::start().await;
    let r = h
        .get(
            "/public/x",
            &[("x-app-thing", "one"), ("x-app-thing", "two")],
        )
        .await;
    assert_eq!(r.upstream_header("x-app-thing").unwrap(), ["one", "two"]);
}

async fn assert_method_and_body_forwarded(method: Method, body: &'static [u8]) {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .request(
            method.clone(),
            "/portal/items/7?v=2",
            &[("cookie", &cookie), ("content-type", "application/json")],
            Bytes::from_static(body),
        )
        .await;
    assert_eq!(r.status, 200, "{method}: {:?}", r.body);
    assert!(r.from_upstream());
    let v = r.json();
    assert_eq!(v["method"], method.as_str());
    assert_eq!(v["uri"], "/portal/items/7?v=2");
    assert_eq!(v["body_len"], body.len() as u64, "{method}");
    assert_eq!(v["body_fnv1a64"], fnv_hex(body), "{method}");
    assert_eq!(
        r.upstream_header("content-type").unwrap(),
        ["application/json"]
    );
}

#[tokio::test]
async fn put_with_a_body_reaches_the_upstream_intact() {
    assert_method_and_body_forwarded(Method::PUT, br#"{"name":"\u0633\u0627\u0644\u0645"}"#).await;
}

#[tokio::test]
async fn delete_reaches_the_upstream_intact() {
    assert_method_and_body_forwarded(Method::DELETE, b"").await;
}

#[tokio::test]
async fn patch_with_a_body_reaches_the_upstream_intact() {
    assert_method_and_body_forwarded(
        Method::PATCH,
        "{\"op\":\"replace\",\"path\":\"/nameAr\",\"value\":\"سالم\"}".as_bytes(),
    )
    .await;
}

#[tokio::test]
async fn request_with_two_host_headers_is_rejected_before_the_upstream() {
    // RFC 9112 3.2: more than one Host is a 400. Forwarded, the upstream could
    // take the second while X-Forwarded-Host names the first.
    let h = Harness::start().await;
    let resp = h
        .raw(
            b"GET /public/x HTTP/1.1\r\nHost: good.example\r\nHost: evil.example\r\n\
              Connection: close\r\n\r\n",
        )
        .await;
    assert_eq!(support::raw_status(&resp), 400, "{resp}");
    assert!(!resp.to_ascii_lowercase().contains("x-echo"), "{resp}");
    assert!(resp.contains("bad_request"), "{resp}");
}

#[tokio::test]
async fn http11_request_without_host_is_rejected_before_the_upstream() {
    // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400; HTTP/1.0 may omit it.
    let h = Harness::start().await;
    let resp = h
        .raw(b"GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(support::raw_status(&resp), 400, "{resp}");
    assert!(!resp.to_ascii_lowercase().contains("x-echo"), "{resp}");
    let resp = h.raw(b"GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(support::raw_status(&resp), 200, "{resp}");
}
