//! Threat: a path the gateway reads as public (or as one route) while the
//! upstream reads it as another — dot segments, encodings, `;` parameters,
//! doubled slashes, query/fragment tricks, case — to skip authentication.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{raw_status, users, Harness, Reply};

/// Without a cookie, `path` must be treated as a session-required route:
/// 401 `no_session`, the upstream untouched, the IdP not asked.
async fn assert_needs_a_session(path: &str) {
    let h = Harness::start().await;
    let r = h.get(path, &[]).await;
    assert_eq!(r.status, 401, "{path}: {:?}", r.body);
    assert!(!r.from_upstream(), "{path} reached the upstream");
    assert_eq!(r.reason(), "no_session", "{path}");
    assert_eq!(h.idp_fetches(), 0, "{path}");
}

/// Even with a session allowed everywhere, `path` is refused as ambiguous:
/// 400 `bad_request` JSON, the upstream untouched, the IdP not asked.
async fn assert_rejected_as_ambiguous(path: &str) {
    let h = Harness::start().await;
    let cookie = h.login(users::ESTABLISHMENT_ADMIN);
    let r = h.get(path, &[("cookie", &cookie)]).await;
    assert_rejected(&h, path, &r);
}

fn assert_rejected(h: &Harness, path: &str, r: &Reply) {
    assert_eq!(r.status, 400, "{path}: {:?}", r.body);
    assert!(!r.from_upstream(), "{path} reached the upstream");
    assert_eq!(r.reason(), "bad_request", "{path}");
    assert_eq!(h.idp_fetches(), 0, "{path}");
}

/// Splits a raw response into status, lowercased header lines and body.
fn split_raw(resp: &str) -> (u16, String, String) {
    let status = raw_status(resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn dot_dot_out_of_public_is_not_public() {
    assert_needs_a_session("/public/../admin/x").await;
}

#[tokio::test]
async fn encoded_dot_dot_out_of_public_is_not_public() {
    assert_needs_a_session("/public/%2e%2e/admin/x").await;
}

#[tokio::test]
async fn mixed_case_encoded_dot_dot_out_of_public_is_not_public() {
    assert_needs_a_session("/public/%2E%2e/admin/x").await;
}

#[tokio::test]
async fn half_encoded_dot_dot_out_of_public_is_not_public() {
    assert_needs_a_session("/public/.%2e/admin/").await;
}

#[tokio::test]
async fn leading_double_slash_is_not_public() {
    assert_needs_a_session("//admin/x").await;
}

#[tokio::test]
async fn double_slash_then_dot_dot_out_of_public_is_not_public() {
    assert_needs_a_session("/public//../admin/x").await;
}

#[tokio::test]
async fn dot_dot_beyond_the_root_stays_below_the_root() {
    assert_needs_a_session("/public/../../../admin/x").await;
}

#[tokio::test]
async fn absolute_form_target_is_routed_on_its_normalized_path() {
    let h = Harness::start().await;
    let resp = h
        .raw(
            format!(
                "GET http://{}/public/../admin/x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                h.addr, h.addr
            )
            .as_bytes(),
        )
        .await;
    let (status, head, body) = split_raw(&resp);
    assert_eq!(status, 401, "{resp}");
    assert!(!head.contains("x-echo"), "{resp}");
    assert!(body.contains("no_session"), "{body}");
    assert_eq!(h.idp_fetches(), 0);
}

#[tokio::test]
async fn dot_dot_into_admin_without_the_permission_is_forbidden() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/public/../admin/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(r.reason(), "forbidden");
}

#[tokio::test]
async fn dot_dot_into_admin_with_the_permission_forwards_the_normalized_path() {
    let h = Harness::start().await;
    let cookie = h.login(users::ESTABLISHMENT_ADMIN);
    let r = h.get("/public/../admin/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_uri(), "/admin/x");
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["7001"]);
}

#[tokio::test]
async fn query_does_not_take_part_in_routing() {
    assert_needs_a_session("/private?x=/public/").await;
}

#[tokio::test]
async fn fragment_does_not_take_part_in_routing() {
    let h = Harness::start().await;
    let resp = h
        .raw(b"GET /private#/public/ HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await;
    let (status, head, _) = split_raw(&resp);
    assert!(matches!(status, 401 | 400), "{resp}");
    assert!(!head.contains("x-echo"), "{resp}");
    assert_eq!(h.idp_fetches(), 0);
}

#[tokio::test]
async fn dot_dot_semicolon_is_rejected() {
    // Tomcat-style `..;/`: raw, exactly as an attacker would send it.
    let h = Harness::start().await;
    let cookie = h.login(users::ESTABLISHMENT_ADMIN);
    let resp = h
        .raw(
            format!(
                "GET /public/..;/admin/x HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    let (status, head, body) = split_raw(&resp);
    assert_eq!(status, 400, "{resp}");
    assert!(!head.contains("x-echo"), "{resp}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["errors"][0]["reason"], "bad_request");
    assert_eq!(h.idp_fetches(), 0);
}

#[tokio::test]
async fn path_parameter_is_rejected() {
    assert_rejected_as_ambiguous("/public;x=1/a").await;
}

#[tokio::test]
async fn encoded_slash_before_dot_dot_is_rejected() {
    assert_rejected_as_ambiguous("/public/%2f../admin").await;
}

#[tokio::test]
async fn encoded_slashes_around_dot_dot_are_rejected() {
    assert_rejected_as_ambiguous("/public/%2F..%2Fadmin").await;
}

#[tokio::test]
async fn encoded_backslash_is_rejected() {
    assert_rejected_as_ambiguous("/public/a%5cb").await;
}

#[tokio::test]
async fn double_encoded_dot_dot_is_rejected() {
    assert_rejected_as_ambiguous("/public/%252e%252e/admin").await;
}

#[tokio::test]
async fn encoded_semicolon_is_rejected() {
    assert_rejected_as_ambiguous("/public/..%3B/admin/x").await;
}

#[tokio::test]
async fn encoded_control_character_is_rejected() {
    assert_rejected_as_ambiguous("/public/..%00/admin/x").await;
}

#[tokio::test]
async fn raw_backslash_is_rejected() {
    let h = Harness::start().await;
    let resp = h
        .raw(b"GET /public/..\\admin/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await;
    let (status, head, body) = split_raw(&resp);
    assert_eq!(status, 400, "{resp}");
    assert!(!head.contains("x-echo"), "{resp}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["errors"][0]["reason"], "bad_request");
}

#[tokio::test]
async fn upstream_receives_the_normalized_path() {
    let h = Harness::start().await;
    let r = h.get("/public//a/./b/../c?q=1", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_uri(), "/public/a/c?q=1");
}

#[tokio::test]
async fn encoded_unreserved_characters_are_decoded_before_routing_and_forwarding() {
    // `%70ublic` is `public`: routed as public and forwarded decoded, so the
    // upstream and the gateway agree on what was asked for.
    let h = Harness::start().await;
    let r = h.get("/%70ublic/x", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream_uri(), "/public/x");
    // And `%61dmin` is `admin`: it needs the admin permissions.
    let r = h.get("/%61dmin/x", &[]).await;
    assert_eq!(r.status, 401);
    assert!(!r.from_upstream());
}

#[tokio::test]
async fn query_string_is_forwarded_verbatim() {
    let h = Harness::start().await;
    let r = h.get("/public/q?x=%2F..&y", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_uri(), "/public/q?x=%2F..&y");
}

#[tokio::test]
async fn route_prefixes_are_case_sensitive() {
    assert_needs_a_session("/PUBLIC/x").await;
}

#[tokio::test]
async fn public_prefix_without_its_trailing_slash_is_not_public() {
    assert_needs_a_session("/publicx/a").await;
}
