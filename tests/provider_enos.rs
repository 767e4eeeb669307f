//! `idp.provider = "enos"` end to end: the real gateway, the EnOS emulator
//! and the echo upstream on loopback; assertions are on what crosses the wire.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiongate::config::Config;
use sessiongate::dev::emulator::Fault;
use support::providers::{assert_refused, canned_json, fifty_concurrent_gets_pass, user_context};
use support::{canned_server, eventually, users, Harness, Reply};

/// Routes without roles or permissions: EnOS reports neither.
const ROUTES: &str = r#"
[[routes]]
prefix = "/public/"
upstream = "http://{up}"
auth = "public"

[[routes]]
prefix = "/"
upstream = "http://{up}"
"#;

async fn enos() -> Harness {
    Harness::builder().enos().routes(ROUTES).start().await
}

fn cookie(token: &str) -> String {
    format!("iid_session_id={token}")
}

/// A canned IdP answering `status` with a JSON `body`, as an EnOS base URL.
async fn canned_enos(status: &str, body: &str) -> String {
    let addr = canned_server(canned_json(status, body), Duration::ZERO).await;
    format!("http://{addr}/enos-iam-service")
}

#[tokio::test]
async fn a_valid_session_reaches_the_upstream_with_the_enos_identity() {
    let h = enos().await;
    let token = h.enos_token(users::INVESTOR, None);
    let r = h.get("/portal/home", &[("cookie", &cookie(&token))]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["u518"]);
    assert_eq!(r.upstream_header("x-iid-org-id").unwrap(), ["o518"]);
    let names = r.upstream_header_names();
    for absent in ["x-iid-roles", "x-iid-permissions", "x-iid-session-id"] {
        assert!(!names.iter().any(|n| n == absent), "{absent} in {names:?}");
    }
    let ctx = user_context(&r);
    assert_eq!(ctx["provider"], "enos");
    assert_eq!(ctx["userId"], "u518");
    assert_eq!(ctx["name"], "LAYLA HASSAN AL TEST");
    assert_eq!(ctx["type"], 2);
    assert_eq!(ctx["workingOrganization"]["id"], "o518");
    assert_eq!(
        ctx["residentOrganization"]["name"],
        "Example Organization 518"
    );
    assert!(
        ctx.get("pii").is_none(),
        "personal data stays out by default"
    );
    assert_eq!(h.enos().stats().fetch, 1);
}

#[tokio::test]
async fn personal_data_only_with_include_pii() {
    let h = Harness::builder()
        .enos()
        .routes(ROUTES)
        .set("headers", "include_pii = true")
        .start()
        .await;
    let token = h.enos_token(users::ARABIC, None);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_eq!(r.status, 200);
    let ctx = user_context(&r);
    assert_eq!(ctx["pii"]["email"], "fatima.example@example.ae");
    assert_eq!(ctx["pii"]["phone"], "+971-500000001");
}

#[tokio::test]
async fn the_idp_receives_exactly_the_seed_request_with_the_static_headers() {
    let h = Harness::builder()
        .enos()
        .routes(ROUTES)
        .set(
            "idp",
            r#"headers = { "X-Gateway-Key" = "gw-secret-1", "X-Tenant" = "t1" }"#,
        )
        .start()
        .await;
    let token = h.enos_token(users::INVESTOR, None);
    assert_eq!(
        h.get("/x", &[("cookie", &cookie(&token))]).await.status,
        200
    );
    let req = h.enos().stats().last_request.unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/enos-iam-service/v2.0/session/info");
    assert_eq!(req.headers["authorization"], [format!("Bearer {token}")]);
    assert_eq!(req.headers["content-type"], ["application/json"]);
    assert_eq!(req.headers["x-gateway-key"], ["gw-secret-1"]);
    assert_eq!(req.headers["x-tenant"], ["t1"]);
    assert!(!req.headers.contains_key("cookie"), "{:?}", req.headers);
    assert_eq!(req.body, "{}");
}

#[tokio::test]
async fn an_unknown_token_is_invalid_and_negative_cached() {
    let h = enos().await;
    for _ in 0..3 {
        let r = h.get("/x", &[("cookie", &cookie("IAM_S_unknown"))]).await;
        assert_refused(&r, 401, "invalid_session");
    }
    assert_eq!(h.enos().stats().fetch, 1, "the 401/30401 answer is cached");
}

#[tokio::test]
async fn http_404_is_invalid() {
    let h = enos().await;
    let token = h.enos_token(users::INVESTOR, None);
    h.enos().set_fault(Fault::Status { status: 404 });
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 401, "invalid_session");
    h.enos().set_fault(Fault::None);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 401, "invalid_session");
    assert_eq!(h.enos().stats().fetch, 1, "the 404 answer is cached");
}

#[tokio::test]
async fn an_expired_session_answers_30404_and_is_invalid() {
    let h = enos().await;
    let token = h.enos_token(users::INVESTOR, Some(0));
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 401, "invalid_session");
}

#[tokio::test]
async fn body_status_30401_or_30404_is_invalid_whatever_the_http_status() {
    for (status, body) in [
        ("200 OK", r#"{"fail":true,"status":30401,"success":false}"#),
        ("200 OK", r#"{"fail":true,"status":30404,"success":false}"#),
        ("500 Internal Server Error", r#"{"status":30404}"#),
        ("403 Forbidden", r#"{"status":30401}"#),
    ] {
        let url = canned_enos(status, body).await;
        let h = Harness::builder()
            .enos()
            .routes(ROUTES)
            .idp_base_url(&url)
            .start()
            .await;
        let r = h.get("/x", &[("cookie", &cookie("IAM_S_any"))]).await;
        assert_refused(&r, 401, "invalid_session");
    }
}

#[tokio::test]
async fn server_errors_timeouts_and_dropped_connections_are_503_and_not_cached() {
    let h = Harness::builder()
        .enos()
        .routes(ROUTES)
        .set("idp", "timeout = \"300ms\"")
        // Failures in a row: the breaker would hold the later ones off.
        .set("idp", "breaker = { failures = 0 }")
        .start()
        .await;
    let token = h.enos_token(users::INVESTOR, None);
    let c = cookie(&token);
    for (fault, reason) in [
        (Fault::Status { status: 500 }, "idp_unavailable"),
        (Fault::Status { status: 502 }, "idp_unavailable"),
        (Fault::Status { status: 503 }, "idp_unavailable"),
        (Fault::Status { status: 429 }, "idp_unavailable"),
        (Fault::Close, "idp_unavailable"),
        (Fault::Delay { ms: 1500 }, "idp_timeout"),
    ] {
        h.enos().set_fault(fault.clone());
        let r = h.get("/x", &[("cookie", &c)]).await;
        assert_refused(&r, 503, reason);
        assert_eq!(r.headers["retry-after"], "5", "{fault:?}");
    }
    h.enos().set_fault(Fault::None);
    let before = h.enos().stats().fetch;
    let r = h.get("/x", &[("cookie", &c)]).await;
    assert_eq!(r.status, 200, "no failure was cached: {:?}", r.body);
    assert_eq!(h.enos().stats().fetch, before + 1);
}

#[tokio::test]
async fn garbage_or_a_missing_user_id_is_502_and_not_cached() {
    let h = enos().await;
    let token = h.enos_token(users::INVESTOR, None);
    h.enos().set_fault(Fault::Garbage);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 502, "idp_bad_answer");
    h.enos().set_fault(Fault::None);
    assert_eq!(
        h.get("/x", &[("cookie", &cookie(&token))]).await.status,
        200
    );

    for body in [
        r#"{"fail":false,"success":true,"status":0,"session":{"expires":60,"user":{"name":"x"}}}"#,
        r#"{"fail":false,"success":true,"status":0,"session":{"expires":60,"user":{"id":""}}}"#,
        r#"{"fail":true,"success":true,"status":0,"session":{"expires":60,"user":{"id":"u1"}}}"#,
        r#"{"status":12345,"session":{"expires":60,"user":{"id":"u1"}}}"#,
    ] {
        let url = canned_enos("200 OK", body).await;
        let h = Harness::builder()
            .enos()
            .routes(ROUTES)
            .idp_base_url(&url)
            .start()
            .await;
        let r = h.get("/x", &[("cookie", &cookie("IAM_S_any"))]).await;
        assert_refused(&r, 502, "idp_bad_answer");
    }
}

#[tokio::test]
async fn the_session_is_cached_until_refresh_time_plus_expires() {
    let h = enos().await;
    let token = h.enos_token(users::INVESTOR, Some(3));
    let c = cookie(&token);
    let start = Instant::now();
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.enos().stats().fetch, 1, "cached before it expires");
    let asked_again = eventually(Duration::from_secs(15), || async {
        h.get("/x", &[("cookie", &c)]).await;
        h.enos().stats().fetch >= 2
    })
    .await;
    assert!(asked_again, "the cache outlived the session");
    // refreshTime is whole seconds, so the entry may end up to 1 s early.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn fifty_concurrent_first_requests_make_one_idp_call() {
    let h = Arc::new(enos().await);
    let token = h.enos_token(users::INVESTOR, None);
    // A slow IdP keeps every request waiting on the same call.
    h.enos().set_fault(Fault::Delay { ms: 300 });
    fifty_concurrent_gets_pass(&h, &cookie(&token)).await;
    assert_eq!(h.enos().stats().fetch, 1);
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped() {
    let h = enos().await;
    let token = h.enos_token(users::INVESTOR, None);
    let c = cookie(&token);
    let r = h
        .get(
            "/x",
            &[
                ("cookie", &c),
                ("x-iid-profile-id", "u1"),
                ("X-IID-ORG-ID", "o-evil"),
                ("x-iid-roles", "ADMIN"),
                ("x-iid-permissions", "P1"),
                ("x_iid_session_id", "s"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["u518"]);
    assert_eq!(r.upstream_header("x-iid-org-id").unwrap(), ["o518"]);
    for n in r.upstream_header_names() {
        assert!(
            !matches!(
                n.as_str(),
                "x-iid-roles" | "x-iid-permissions" | "x_iid_session_id"
            ),
            "{n} reached the upstream"
        );
    }
    // Public routes strip them too.
    let r = h.get("/public/a", &[("x-iid-profile-id", "u1")]).await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_header("x-iid-profile-id").is_none());
}

#[test]
fn roles_or_permissions_on_an_enos_route_is_a_config_error() {
    let toml = "[idp]\nprovider = \"enos\"\n\
        [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n\
        [[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:3000\"\nroles = [\"R\"]\n\
        [[routes]]\nprefix = \"/b/\"\nupstream = \"http://127.0.0.1:3000\"\npermissions = [\"P\"]\n";
    let err = Config::from_toml_str(toml).unwrap_err().to_string();
    assert!(
        err.contains(r#"routes[1].roles: provider "enos" reports no roles"#),
        "{err}"
    );
    assert!(
        err.contains(r#"routes[2].permissions: provider "enos" reports no permissions"#),
        "{err}"
    );
}

#[tokio::test]
async fn a_bearer_credential_is_accepted_only_when_enabled_and_the_cookie_wins() {
    let off = enos().await;
    let token = off.enos_token(users::INVESTOR, None);
    let bearer = format!("Bearer {token}");
    let r = off.get("/x", &[("authorization", &bearer)]).await;
    assert_refused(&r, 401, "no_session");
    assert_eq!(off.enos().stats().fetch, 0);

    let h = Harness::builder()
        .enos()
        .routes(ROUTES)
        .set("session", "bearer = true")
        .start()
        .await;
    let investor = h.enos_token(users::INVESTOR, None);
    let other = h.enos_token(users::ARABIC, None);
    let r = h
        .get("/x", &[("authorization", &format!("Bearer {investor}"))])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["u518"]);
    assert_eq!(
        h.enos().stats().last_request.unwrap().headers["authorization"],
        [format!("Bearer {investor}")]
    );
    let r = h
        .get(
            "/x",
            &[
                ("cookie", &cookie(&other)),
                ("authorization", &format!("Bearer {investor}")),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-iid-profile-id").unwrap(),
        ["u1001"],
        "cookie wins"
    );
}

#[tokio::test]
async fn logout_revokes_locally_without_calling_the_idp() {
    let h = enos().await;
    let token = h.enos_token(users::INVESTOR, None);
    let c = cookie(&token);
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.enos().stats().fetch, 1);

    let r = h.get("/logout", &[("cookie", &c)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let set: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        set.iter()
            .any(|s| s.starts_with("iid_session_id=;") && s.contains("Max-Age=0")),
        "{set:?}"
    );
    assert_eq!(h.enos().stats().fetch, 1, "no IdP call for logout");

    let r = h.get("/x", &[("cookie", &c)]).await;
    assert_refused(&r, 401, "invalid_session");
    assert_eq!(h.enos().stats().fetch, 1, "refused by the local revocation");
}

#[tokio::test]
async fn the_emulator_control_surface_works_over_http() {
    let h = enos().await;
    let addr = h.enos.as_ref().unwrap().0;
    let created = support::raw_exchange(
        addr,
        b"POST /__emulator/sessions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 37\r\n\r\n{\"profileId\": \"518\", \"expiresIn\": 60}",
    )
    .await;
    let created = Reply::parse_raw(&created);
    assert_eq!(created.status, 200, "{:?}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["expiresIn"], 60);

    let fault = br#"{"kind":"status","status":503}"#;
    let mut req = format!(
        "POST /__emulator/fault HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        fault.len()
    )
    .into_bytes();
    req.extend_from_slice(fault);
    let set = Reply::parse_raw(&support::raw_exchange(addr, &req).await);
    assert_eq!(set.status, 204);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 503, "idp_unavailable");

    let stats = Reply::parse_raw(
        &support::raw_exchange(
            addr,
            b"GET /__emulator/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["fetch"], 1);
    assert_eq!(stats["lastRequest"]["method"], "POST");
    assert_eq!(
        stats["lastRequest"]["headers"]["authorization"][0],
        format!("Bearer {token}")
    );
}
