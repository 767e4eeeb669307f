//! `idp.provider = "ciam"` end to end: the real gateway, the CIAM emulator
//! (ticket exchange and userinfo) and the echo upstream on loopback;
//! assertions are on what crosses the wire.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sessiongate::config::Config;
use sessiongate::dev::emulator::Fault;
use sessiongate::idp::ciam::wire;
use support::providers::{assert_refused, fifty_concurrent_gets_pass, user_context};
use support::{eventually, logs, users, Harness, Reply, CIAM_ACCESS_TOKEN};

/// Routes without roles or permissions (ciam without pointers reports neither).
const ROUTES: &str = r#"
[[routes]]
prefix = "/public/"
upstream = "http://{up}"
auth = "public"

[[routes]]
prefix = "/"
upstream = "http://{up}"
"#;

/// The seed's example agent.
const WINDOWS_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.82 Safari/537.36";

/// Validation only: no userinfo_url.
async fn ciam() -> Harness {
    Harness::builder().ciam().routes(ROUTES).start().await
}

/// With userinfo at the emulator.
async fn ciam_userinfo() -> Harness {
    Harness::builder()
        .ciam_userinfo()
        .routes(ROUTES)
        .start()
        .await
}

fn cookie(token: &str) -> String {
    format!("iid_session_id={token}")
}

/// The exchange body the emulator last received, as JSON.
fn last_body(h: &Harness) -> Value {
    serde_json::from_str(&h.ciam().stats().last_request.unwrap().body).unwrap()
}

/// The ticket the gateway last redeemed at userinfo.
fn last_ticket(h: &Harness) -> String {
    let path = h.ciam().stats().last_userinfo.unwrap().path;
    let (_, ticket) = path.split_once("?sso_ticket=").unwrap();
    assert!(ticket.starts_with("ssoTicket-"), "{path}");
    ticket.to_owned()
}

#[tokio::test]
async fn a_valid_session_with_userinfo_reaches_the_upstream_with_the_ciam_identity() {
    let h = ciam_userinfo().await;
    let token = h.ciam_token(users::INVESTOR, None);
    let r = h.get("/portal/home", &[("cookie", &cookie(&token))]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    let names = r.upstream_header_names();
    for absent in ["x-iid-roles", "x-iid-permissions", "x-iid-session-id"] {
        assert!(!names.iter().any(|n| n == absent), "{absent} in {names:?}");
    }
    let ctx = user_context(&r);
    assert_eq!(ctx["provider"], "ciam");
    assert_eq!(ctx["sub"], "518");
    assert_eq!(ctx["name"], "LAYLA HASSAN AL TEST");
    assert_eq!(ctx["roles"][0], "IID-INVESTOR", "the whole answer");
    for pii in ["email", "phone", "pii"] {
        assert!(
            ctx.get(pii).is_none(),
            "{pii}: personal data stays out by default"
        );
    }
    let stats = h.ciam().stats();
    assert_eq!((stats.exchange, stats.userinfo), (1, 1));
    // A cache hit redeems nothing.
    assert_eq!(
        h.get("/x", &[("cookie", &cookie(&token))]).await.status,
        200
    );
    let stats = h.ciam().stats();
    assert_eq!((stats.exchange, stats.userinfo), (1, 1));
}

#[tokio::test]
async fn without_userinfo_the_gateway_only_validates() {
    let h = ciam().await;
    let token = h.ciam_token(users::INVESTOR, None);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.upstream_header("x-iid-profile-id").is_none());
    assert_eq!(user_context(&r), serde_json::json!({"provider": "ciam"}));
    let stats = h.ciam().stats();
    assert_eq!((stats.exchange, stats.userinfo), (1, 0));
}

#[tokio::test]
async fn roles_and_permissions_from_the_pointers_gate_routes() {
    // DEFAULT_ROUTES: /admin/ needs P2001 and P2002, /org/ a role.
    let h = Harness::builder()
        .ciam_userinfo()
        .set("idp", "roles_pointer = \"/roles\"")
        .set("idp", "permissions_pointer = \"/permissions\"")
        .start()
        .await;
    let admin = cookie(&h.ciam_token(users::ESTABLISHMENT_ADMIN, None));
    let investor = cookie(&h.ciam_token(users::INVESTOR, None));
    for path in ["/admin/x", "/org/x"] {
        let r = h.get(path, &[("cookie", &admin)]).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["7001"]);
        assert_eq!(
            r.upstream_header("x-iid-roles").unwrap(),
            ["IID-ESTABLISHMENT-ADMIN"]
        );
        let perms = &r.upstream_header("x-iid-permissions").unwrap()[0];
        assert!(
            perms.contains("P2001") && perms.contains("P2002"),
            "{perms}"
        );
    }
    for path in ["/admin/x", "/org/x"] {
        let r = h.get(path, &[("cookie", &investor)]).await;
        assert_refused(&r, 403, "forbidden");
    }
}

#[tokio::test]
async fn personal_data_only_with_include_pii() {
    let h = Harness::builder()
        .ciam_userinfo()
        .routes(ROUTES)
        .set("headers", "include_pii = true")
        .start()
        .await;
    let token = h.ciam_token(users::ARABIC, None);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_eq!(r.status, 200);
    let ctx = user_context(&r);
    assert_eq!(ctx["pii"]["email"], "fatima.example@example.ae");
    assert_eq!(ctx["pii"]["phone"], "+971-500000001");
    assert!(ctx.get("email").is_none());
}

#[tokio::test]
async fn the_idp_receives_exactly_the_seed_request() {
    let h = Harness::builder()
        .ciam_userinfo()
        .routes(ROUTES)
        .set("idp", r#"headers = { "X-Gateway-Key" = "gw-secret-1" }"#)
        .start()
        .await;
    let token = h.ciam_token(users::INVESTOR, None);
    let r = h
        .get(
            "/x",
            &[("cookie", &cookie(&token)), ("user-agent", WINDOWS_UA)],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let req = h.ciam().stats().last_request.unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v2/tenant/sso/session-token/sso-ticket");
    assert_eq!(
        req.headers["authorization"],
        [format!("Bearer {CIAM_ACCESS_TOKEN}")]
    );
    assert_eq!(req.headers["content-type"], ["application/json"]);
    assert_eq!(req.headers["x-gateway-key"], ["gw-secret-1"]);
    assert!(!req.headers.contains_key("cookie"), "{:?}", req.headers);
    let body: Value = serde_json::from_str(&req.body).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "session_token",
            "operating_sys_version",
            "device_ip",
            "device_fingerprint",
            "agent"
        ]
    );
    assert_eq!(body["session_token"], token.as_str());
    assert_eq!(body["operating_sys_version"], "windows10.0");
    assert_eq!(body["device_ip"], "127.0.0.1");
    assert_eq!(body["agent"], WINDOWS_UA);
    let fingerprint = body["device_fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 32, "{fingerprint}");
    assert!(!fingerprint.contains(&token) && !token.contains(fingerprint));

    let info = h.ciam().stats().last_userinfo.unwrap();
    assert_eq!(info.method, "GET");
    assert!(
        info.path
            .starts_with(&format!("{}?sso_ticket=ssoTicket-", wire::PATH_USERINFO)),
        "{}",
        info.path
    );
    assert_eq!(
        info.headers["authorization"],
        [format!("Bearer {CIAM_ACCESS_TOKEN}")]
    );
    assert_eq!(info.headers["x-gateway-key"], ["gw-secret-1"]);
}

#[tokio::test]
async fn without_a_user_agent_agent_is_omitted_and_the_system_unknown() {
    let h = ciam().await;
    let token = h.ciam_token(users::INVESTOR, None);
    assert_eq!(
        h.get("/x", &[("cookie", &cookie(&token))]).await.status,
        200
    );
    let body = last_body(&h);
    assert!(body.get("agent").is_none(), "{body}");
    assert_eq!(body["operating_sys_version"], "unknown");
}

#[tokio::test]
async fn device_ip_comes_from_x_forwarded_for_only_through_a_trusted_proxy() {
    let trusted = Harness::builder()
        .ciam()
        .routes(ROUTES)
        .set(
            "server",
            "trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]",
        )
        .start()
        .await;
    for (xff, device) in [
        ("203.0.113.7", "203.0.113.7"),
        // Right to left: trusted hops are skipped, the first other one is the client.
        ("198.51.100.1, 203.0.113.7, 10.1.2.3", "203.0.113.7"),
        ("2001:db8::5", "2001:db8::5"),
        // Unreadable: the last address vouched for, the proxy itself.
        ("not-an-ip", "127.0.0.1"),
    ] {
        let token = trusted.ciam_token(users::INVESTOR, None);
        let r = trusted
            .get(
                "/x",
                &[("cookie", &cookie(&token)), ("x-forwarded-for", xff)],
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(last_body(&trusted)["device_ip"], device, "{xff}");
    }

    let untrusted = ciam().await;
    let token = untrusted.ciam_token(users::INVESTOR, None);
    let r = untrusted
        .get(
            "/x",
            &[
                ("cookie", &cookie(&token)),
                ("x-forwarded-for", "203.0.113.7"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        last_body(&untrusted)["device_ip"],
        "127.0.0.1",
        "a client's own X-Forwarded-For is ignored"
    );
}

#[tokio::test]
async fn the_fingerprint_is_stable_per_session_and_differs_between_sessions() {
    // max_ttl = 0: every request is a new exchange.
    let h = Harness::builder()
        .ciam()
        .routes(ROUTES)
        .set("cache", "max_ttl = \"0s\"")
        .start()
        .await;
    let token = h.ciam_token(users::INVESTOR, None);
    let other = h.ciam_token(users::INVESTOR, None);
    let mut seen = vec![];
    for (t, ua) in [
        (&token, WINDOWS_UA),
        (&token, "curl/8"),
        (&other, WINDOWS_UA),
    ] {
        let r = h
            .get("/x", &[("cookie", &cookie(t)), ("user-agent", ua)])
            .await;
        assert_eq!(r.status, 200);
        seen.push(last_body(&h)["device_fingerprint"].clone());
    }
    assert_eq!(h.ciam().stats().exchange, 3);
    assert_eq!(seen[0], seen[1], "same session, same fingerprint");
    assert_ne!(seen[0], seen[2], "another session, another fingerprint");
}

#[tokio::test]
async fn http_400_401_403_404_are_invalid_and_negative_cached() {
    let h = ciam_userinfo().await;
    for status in [400, 401, 403, 404] {
        let token = h.ciam_token(users::INVESTOR, None);
        let c = cookie(&token);
        h.ciam().set_fault(Fault::Status { status });
        let r = h.get("/x", &[("cookie", &c)]).await;
        assert_refused(&r, 401, "invalid_session");
        let before = h.ciam().stats().exchange;
        h.ciam().set_fault(Fault::None);
        let r = h.get("/x", &[("cookie", &c)]).await;
        assert_refused(&r, 401, "invalid_session");
        assert_eq!(h.ciam().stats().exchange, before, "{status} is cached");
    }
    // The emulator's own answer for an unknown token.
    for _ in 0..3 {
        let r = h.get("/x", &[("cookie", &cookie("unknown-token"))]).await;
        assert_refused(&r, 401, "invalid_session");
    }
    assert_eq!(h.ciam().stats().userinfo, 0, "no ticket, no userinfo");
}

#[tokio::test]
async fn an_expired_session_is_invalid() {
    let h = ciam().await;
    let token = h.ciam_token(users::INVESTOR, Some(0));
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 401, "invalid_session");
}

#[tokio::test]
async fn server_errors_timeouts_and_dropped_connections_are_503_and_not_cached() {
    let h = Harness::builder()
        .ciam_userinfo()
        .routes(ROUTES)
        .set("idp", "timeout = \"300ms\"")
        // Ten failures in a row: the breaker would hold the later ones off.
        .set("idp", "breaker = { failures = 0 }")
        .start()
        .await;
    let token = h.ciam_token(users::INVESTOR, None);
    let c = cookie(&token);
    let faults = [
        (Fault::Status { status: 500 }, "idp_unavailable"),
        (Fault::Status { status: 503 }, "idp_unavailable"),
        (Fault::Status { status: 429 }, "idp_unavailable"),
        (Fault::Close, "idp_unavailable"),
        (Fault::Delay { ms: 1500 }, "idp_timeout"),
    ];
    for userinfo in [false, true] {
        for (fault, reason) in faults.clone() {
            if userinfo {
                h.ciam().set_userinfo_fault(fault.clone());
            } else {
                h.ciam().set_fault(fault.clone());
            }
            let r = h.get("/x", &[("cookie", &c)]).await;
            assert_refused(&r, 503, reason);
            assert_eq!(r.headers["retry-after"], "5", "{fault:?}");
        }
        h.ciam().set_fault(Fault::None);
        h.ciam().set_userinfo_fault(Fault::None);
    }
    let before = h.ciam().stats().exchange;
    let r = h.get("/x", &[("cookie", &c)]).await;
    assert_eq!(r.status, 200, "no failure was cached: {:?}", r.body);
    assert_eq!(h.ciam().stats().exchange, before + 1);
}

#[tokio::test]
async fn bad_answers_are_502_and_not_cached() {
    let h = ciam_userinfo().await;
    let token = h.ciam_token(users::INVESTOR, None);
    let c = cookie(&token);
    // Garbage from the exchange, then from userinfo; a userinfo refusal of
    // a ticket the exchange just issued is not the session's fault either.
    h.ciam().set_fault(Fault::Garbage);
    assert_refused(&h.get("/x", &[("cookie", &c)]).await, 502, "idp_bad_answer");
    h.ciam().set_fault(Fault::None);
    for fault in [
        Fault::Garbage,
        Fault::Status { status: 401 },
        Fault::Status { status: 404 },
    ] {
        h.ciam().set_userinfo_fault(fault.clone());
        let r = h.get("/x", &[("cookie", &c)]).await;
        assert_refused(&r, 502, "idp_bad_answer");
    }
    h.ciam().set_userinfo_fault(Fault::None);
    let r = h.get("/x", &[("cookie", &c)]).await;
    assert_eq!(r.status, 200, "nothing was cached: {:?}", r.body);

    // An empty ticket.
    let empty = h
        .ciam()
        .create_session_with(users::INVESTOR, None, Some(String::new()))
        .unwrap()
        .token;
    let r = h.get("/x", &[("cookie", &cookie(&empty))]).await;
    assert_refused(&r, 502, "idp_bad_answer");
    let before = h.ciam().stats().exchange;
    let r = h.get("/x", &[("cookie", &cookie(&empty))]).await;
    assert_refused(&r, 502, "idp_bad_answer");
    assert_eq!(h.ciam().stats().exchange, before + 1, "not cached");

    // A subject missing from the userinfo answer.
    let h = Harness::builder()
        .ciam_userinfo()
        .routes(ROUTES)
        .set("idp", "subject_pointer = \"/profile/id\"")
        .start()
        .await;
    let token = h.ciam_token(users::INVESTOR, None);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 502, "idp_bad_answer");
}

#[tokio::test]
async fn the_session_is_cached_for_expire_seconds() {
    let h = ciam_userinfo().await;
    let token = h.ciam_token(users::INVESTOR, Some(3));
    let c = cookie(&token);
    let start = Instant::now();
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.ciam().stats().exchange, 1, "cached before it expires");
    let asked_again = eventually(Duration::from_secs(15), || async {
        h.get("/x", &[("cookie", &c)]).await;
        h.ciam().stats().exchange >= 2
    })
    .await;
    assert!(asked_again, "the cache outlived expire");
    // expire is whole seconds (rounded down), so the entry may end up to 1 s early.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn fifty_concurrent_first_requests_make_one_exchange_and_one_redemption() {
    let h = Arc::new(ciam_userinfo().await);
    let token = h.ciam_token(users::INVESTOR, None);
    // A slow IdP keeps every request waiting on the same call.
    h.ciam().set_fault(Fault::Delay { ms: 300 });
    fifty_concurrent_gets_pass(&h, &cookie(&token)).await;
    let stats = h.ciam().stats();
    assert_eq!((stats.exchange, stats.userinfo), (1, 1));
}

#[tokio::test]
async fn the_ticket_and_the_secrets_never_reach_the_upstream_or_the_logs() {
    let (lines, _guard) = logs::capture();
    let h = ciam_userinfo().await;
    let token = h.ciam_token(users::INVESTOR, None);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_eq!(r.status, 200);
    let ticket = last_ticket(&h);
    // The echo's body is every header and the URI the upstream received.
    let seen = String::from_utf8_lossy(&r.body).into_owned();
    assert!(!seen.contains(&ticket), "{seen}");
    assert!(!seen.contains("ssoTicket"), "{seen}");

    // A failing redemption logs the failure, never the ticket.
    let other = h.ciam_token(users::ARABIC, None);
    h.ciam().set_userinfo_fault(Fault::Status { status: 500 });
    let r = h.get("/x", &[("cookie", &cookie(&other))]).await;
    assert_refused(&r, 503, "idp_unavailable");
    let failed_ticket = last_ticket(&h);

    let text = lines.text();
    assert!(
        text.contains("IdP call failed"),
        "the failure is logged: {text}"
    );
    for secret in [&ticket, &failed_ticket, &token, &other] {
        assert!(!text.contains(secret.as_str()), "{secret} logged:\n{text}");
    }
    assert!(!text.contains(CIAM_ACCESS_TOKEN), "{text}");
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped() {
    let h = ciam_userinfo().await;
    let token = h.ciam_token(users::INVESTOR, None);
    let r = h
        .get(
            "/x",
            &[
                ("cookie", &cookie(&token)),
                ("x-iid-profile-id", "1"),
                ("X-IID-USER-CONTEXT", "e30"),
                ("x-iid-roles", "ADMIN"),
                ("x_iid_permissions", "P1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    assert_eq!(user_context(&r)["provider"], "ciam");
    for n in r.upstream_header_names() {
        assert!(
            !matches!(n.as_str(), "x-iid-roles" | "x_iid_permissions"),
            "{n} reached the upstream"
        );
    }
    // Without userinfo there is no profile id at all, and none from the client.
    let h = ciam().await;
    let token = h.ciam_token(users::INVESTOR, None);
    let r = h
        .get(
            "/x",
            &[("cookie", &cookie(&token)), ("x-iid-profile-id", "1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_header("x-iid-profile-id").is_none());
    // Public routes strip them too.
    let r = h.get("/public/a", &[("x-iid-profile-id", "1")]).await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_header("x-iid-profile-id").is_none());
}

#[test]
fn roles_or_permissions_without_their_pointer_is_a_config_error() {
    let routes = "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n\
        [[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:3000\"\nroles = [\"R\"]\n\
        [[routes]]\nprefix = \"/b/\"\nupstream = \"http://127.0.0.1:3000\"\npermissions = [\"P\"]\n";
    let idp = "[idp]\nprovider = \"ciam\"\naccess_token = \"t\"\n\
        userinfo_url = \"https://ciam.example.com/userinfo\"\n";
    let err = Config::from_toml_str(&format!("{idp}{routes}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"routes[1].roles: provider "ciam" reports no roles"#),
        "{err}"
    );
    assert!(
        err.contains(r#"routes[2].permissions: provider "ciam" reports no permissions"#),
        "{err}"
    );
    let with_pointers = format!(
        "{idp}roles_pointer = \"/roles\"\npermissions_pointer = \"/permissions\"\n{routes}"
    );
    assert!(Config::from_toml_str(&with_pointers).is_ok());
}

#[tokio::test]
async fn a_bearer_credential_is_accepted_only_when_enabled_and_the_cookie_wins() {
    let off = ciam_userinfo().await;
    let token = off.ciam_token(users::INVESTOR, None);
    let r = off
        .get("/x", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_refused(&r, 401, "no_session");
    assert_eq!(off.ciam().stats().exchange, 0);

    let h = Harness::builder()
        .ciam_userinfo()
        .routes(ROUTES)
        .set("session", "bearer = true")
        .start()
        .await;
    let investor = h.ciam_token(users::INVESTOR, None);
    let other = h.ciam_token(users::ARABIC, None);
    let r = h
        .get("/x", &[("authorization", &format!("Bearer {investor}"))])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    assert_eq!(last_body(&h)["session_token"], investor.as_str());
    let req = h.ciam().stats().last_request.unwrap();
    assert_eq!(
        req.headers["authorization"],
        [format!("Bearer {CIAM_ACCESS_TOKEN}")],
        "the IdP gets the gateway's token, the user's is in the body"
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
        ["1001"],
        "cookie wins"
    );
}

#[tokio::test]
async fn logout_revokes_locally_without_calling_the_idp() {
    let h = ciam_userinfo().await;
    let token = h.ciam_token(users::INVESTOR, None);
    let c = cookie(&token);
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.ciam().stats().exchange, 1);

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
    let stats = h.ciam().stats();
    assert_eq!(
        (stats.exchange, stats.userinfo),
        (1, 1),
        "no IdP call for logout"
    );

    let r = h.get("/x", &[("cookie", &c)]).await;
    assert_refused(&r, 401, "invalid_session");
    assert_eq!(
        h.ciam().stats().exchange,
        1,
        "refused by the local revocation"
    );
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn the_emulator_control_surface_and_access_token_check_work_over_http() {
    let h = ciam_userinfo().await;
    let addr = h.ciam.as_ref().unwrap().0;
    let send =
        |req: Vec<u8>| async move { Reply::parse_raw(&support::raw_exchange(addr, &req).await) };
    let created = send(post(
        "/__emulator/sessions",
        r#"{"profileId": "518", "expiresIn": 60}"#,
    ))
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["expiresIn"], 60);

    // The exchange itself, with a wrong and then the right access token.
    let body = format!(
        r#"{{"session_token":"{token}","operating_sys_version":"unknown","device_ip":"192.0.2.1","device_fingerprint":"f"}}"#
    );
    let exchange = |bearer: &str| {
        format!(
            "POST {} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {bearer}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            wire::PATH_SSO_TICKET,
            body.len()
        )
        .into_bytes()
    };
    let refused = send(exchange("wrong")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "invalid_token");
    let issued = send(exchange(CIAM_ACCESS_TOKEN)).await;
    assert_eq!(issued.status, 200, "{:?}", issued.body);
    assert!(issued.json()["sso_ticket"]
        .as_str()
        .unwrap()
        .starts_with("ssoTicket-"));
    assert!(issued.json()["expire"].as_f64().unwrap() > 50.0);

    assert_eq!(
        send(post(
            "/__emulator/userinfo-fault",
            r#"{"kind":"status","status":503}"#
        ))
        .await
        .status,
        204
    );
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 503, "idp_unavailable");
    assert_eq!(
        send(post(
            "/__emulator/fault",
            r#"{"kind":"status","status":404}"#
        ))
        .await
        .status,
        204
    );
    let other = h.ciam_token(users::ARABIC, None);
    let r = h.get("/x", &[("cookie", &cookie(&other))]).await;
    assert_refused(&r, 401, "invalid_session");

    let stats =
        send(b"GET /__emulator/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec())
            .await;
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["exchange"], 4);
    assert_eq!(stats["userinfo"], 1);
    assert_eq!(stats["rejectedAccessToken"], 1);
    assert_eq!(stats["lastRequest"]["method"], "POST");
    assert_eq!(stats["lastUserinfo"]["method"], "GET");
}
