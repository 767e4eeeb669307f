//! `idp.provider = "sso_identity"` end to end: the real gateway, the SSO
//! identity emulator (or a canned IdP for answers the emulator never gives)
//! and the echo upstream on loopback; assertions are on what crosses the wire.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiongate::config::Config;
use sessiongate::dev::emulator::Fault;
use support::providers::{assert_refused, canned_json, fifty_concurrent_gets_pass, user_context};
use support::{eventually, users, Harness, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Routes without roles or permissions: SSO identity sessions report neither.
const ROUTES: &str = r#"
[[routes]]
prefix = "/public/"
upstream = "http://{up}"
auth = "public"

[[routes]]
prefix = "/"
upstream = "http://{up}"
"#;

/// The identity token the canned IdPs answer about.
const CANNED_TOKEN: &str = "0f1e2d3c-4b5a-4697-8877-665544332211";

async fn sso() -> Harness {
    Harness::builder()
        .sso_identity()
        .routes(ROUTES)
        .start()
        .await
}

fn cookie(token: &str) -> String {
    format!("iid_session_id={token}")
}

/// The seed's "Read SSO session" answer with fake values, about `identity`.
fn seed_answer(identity: &str, date_expiration: &str) -> String {
    format!(
        r#"{{"response":{{"request":{{"date":"Fri, 03 Feb 2017 12:14:02  0100",
        "resource":"/sso/sessions/identities/{identity}.json",
        "status":{{"flag":"success","code":200,"info":"Your request has been processed successfully"}}}},
        "result":{{"data":{{"sso_session":{{"sso_session_token":"s-fake-secret","user_token":"u-fake-0001",
        "identity_token":"{identity}","top_realm":"portal","sub_realm":"apps","data":"demo",
        "num_cookies_set":0,"date_creation":"Fri, 03 Feb 2017 12:13:58  0100",
        "date_expiration":"{date_expiration}"}}}}}}}}}}"#
    )
}

/// A canned IdP: answers every request with `status` and a JSON `body`, and
/// counts the requests. Returns the base URL and the count.
async fn canned_sso(status: &str, body: &str) -> (String, Arc<AtomicUsize>) {
    let response = canned_json(status, body);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = s.write_all(response).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

async fn against(url: &str) -> Harness {
    Harness::builder()
        .sso_identity()
        .routes(ROUTES)
        .idp_base_url(url)
        .start()
        .await
}

#[tokio::test]
async fn a_valid_session_reaches_the_upstream_with_the_sso_identity() {
    let h = sso().await;
    let token = h.sso_token(users::INVESTOR, None);
    let r = h.get("/portal/home", &[("cookie", &cookie(&token))]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["u518"]);
    let names = r.upstream_header_names();
    for absent in [
        "x-iid-roles",
        "x-iid-permissions",
        "x-iid-session-id",
        "x-iid-org-id",
    ] {
        assert!(!names.iter().any(|n| n == absent), "{absent} in {names:?}");
    }
    let ctx = user_context(&r);
    let keys: Vec<&str> = ctx
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "provider",
            "userToken",
            "topRealm",
            "subRealm",
            "data",
            "dateExpiration"
        ]
    );
    assert_eq!(ctx["provider"], "sso_identity");
    assert_eq!(ctx["userToken"], "u518");
    assert_eq!(ctx["topRealm"], "portal");
    assert_eq!(ctx["subRealm"], "individual");
    assert_eq!(ctx["data"], "en");
    // The emulator writes +01:00 as the seed does; RFC 3339 keeps it.
    let expiry = ctx["dateExpiration"].as_str().unwrap();
    assert!(
        expiry.len() == 25 && expiry.ends_with("+01:00") && expiry.as_bytes()[10] == b'T',
        "{expiry}"
    );
    assert_eq!(h.sso().stats().fetch, 1);
}

#[tokio::test]
async fn the_idp_receives_exactly_the_seed_request_with_the_static_headers() {
    let h = Harness::builder()
        .sso_identity()
        .routes(ROUTES)
        .set(
            "idp",
            r#"headers = { "X-Gateway-Key" = "gw-secret-1", "X-Tenant" = "t1" }"#,
        )
        .start()
        .await;
    let token = h.sso_token(users::INVESTOR, None);
    assert_eq!(
        h.get("/x", &[("cookie", &cookie(&token))]).await.status,
        200
    );
    let req = h.sso().stats().last_request.unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, format!("/sso/sessions/identities/{token}.json"));
    assert_eq!(req.headers["accept"], ["application/json"]);
    assert_eq!(req.headers["x-gateway-key"], ["gw-secret-1"]);
    assert_eq!(req.headers["x-tenant"], ["t1"]);
    for absent in ["cookie", "authorization", "content-type"] {
        assert!(!req.headers.contains_key(absent), "{:?}", req.headers);
    }
    assert_eq!(req.body, "");
}

#[tokio::test]
async fn an_unknown_token_is_invalid_and_negative_cached() {
    let h = sso().await;
    for _ in 0..3 {
        let r = h.get("/x", &[("cookie", &cookie("unknown-token"))]).await;
        assert_refused(&r, 401, "invalid_session");
    }
    assert_eq!(h.sso().stats().fetch, 1, "the 404 answer is cached");
}

#[tokio::test]
async fn http_401_403_404_and_410_are_invalid() {
    let h = sso().await;
    for status in [401, 403, 404, 410] {
        let token = h.sso_token(users::INVESTOR, None);
        h.sso().set_fault(Fault::Status { status });
        let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
        assert_refused(&r, 401, "invalid_session");
        h.sso().set_fault(Fault::None);
        let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
        assert_refused(&r, 401, "invalid_session");
    }
    assert_eq!(h.sso().stats().fetch, 4, "each refusal is cached");
}

#[tokio::test]
async fn an_expired_session_answers_410_and_is_invalid() {
    let h = sso().await;
    let token = h.sso_token(users::INVESTOR, Some(0));
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 401, "invalid_session");
}

#[tokio::test]
async fn a_flag_other_than_success_with_code_401_403_or_404_is_invalid() {
    for code in ["401", "403", "404", "\"404\""] {
        let body = format!(
            r#"{{"response":{{"request":{{"resource":"/sso/sessions/identities/{CANNED_TOKEN}.json",
            "status":{{"flag":"error","code":{code},"info":"refused"}}}}}}}}"#
        );
        let (url, calls) = canned_sso("200 OK", &body).await;
        let h = against(&url).await;
        for _ in 0..2 {
            let r = h.get("/x", &[("cookie", &cookie(CANNED_TOKEN))]).await;
            assert_refused(&r, 401, "invalid_session");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{code}: cached");
    }
}

#[tokio::test]
async fn server_errors_timeouts_and_dropped_connections_are_503_and_not_cached() {
    let h = Harness::builder()
        .sso_identity()
        .routes(ROUTES)
        .set("idp", "timeout = \"300ms\"")
        // Failures in a row: the breaker would hold the later ones off.
        .set("idp", "breaker = { failures = 0 }")
        .start()
        .await;
    let token = h.sso_token(users::INVESTOR, None);
    let c = cookie(&token);
    for (fault, reason) in [
        (Fault::Status { status: 500 }, "idp_unavailable"),
        (Fault::Status { status: 502 }, "idp_unavailable"),
        (Fault::Status { status: 503 }, "idp_unavailable"),
        (Fault::Status { status: 429 }, "idp_unavailable"),
        (Fault::Close, "idp_unavailable"),
        (Fault::Delay { ms: 1500 }, "idp_timeout"),
    ] {
        h.sso().set_fault(fault.clone());
        let r = h.get("/x", &[("cookie", &c)]).await;
        assert_refused(&r, 503, reason);
        assert_eq!(r.headers["retry-after"], "5", "{fault:?}");
    }
    h.sso().set_fault(Fault::None);
    let before = h.sso().stats().fetch;
    let r = h.get("/x", &[("cookie", &c)]).await;
    assert_eq!(r.status, 200, "no failure was cached: {:?}", r.body);
    assert_eq!(h.sso().stats().fetch, before + 1);
}

#[tokio::test]
async fn garbage_is_502_and_not_cached() {
    let h = sso().await;
    let token = h.sso_token(users::INVESTOR, None);
    h.sso().set_fault(Fault::Garbage);
    let r = h.get("/x", &[("cookie", &cookie(&token))]).await;
    assert_refused(&r, 502, "idp_bad_answer");
    h.sso().set_fault(Fault::None);
    assert_eq!(
        h.get("/x", &[("cookie", &cookie(&token))]).await.status,
        200
    );
}

#[tokio::test]
async fn another_identity_an_unreadable_date_or_a_wrong_shape_is_502_and_not_cached() {
    let far = "Fri, 01 Jan 2100 00:00:00 +0100";
    let valid = seed_answer(CANNED_TOKEN, far);
    for (status, body) in [
        // About another identity: never a session, whoever it belongs to.
        (
            "200 OK",
            seed_answer("b0000000-0000-4000-8000-000000000001", far),
        ),
        ("200 OK", seed_answer(CANNED_TOKEN, "tomorrow")),
        (
            "200 OK",
            seed_answer(CANNED_TOKEN, "2100-01-01T00:00:00+01:00"),
        ),
        (
            "200 OK",
            seed_answer(CANNED_TOKEN, "Fri, 01 Jan 2100 00:00:00 +01:00"),
        ),
        (
            "200 OK",
            seed_answer(CANNED_TOKEN, "Fri, 31 Feb 2100 00:00:00 +0100"),
        ),
        (
            "200 OK",
            valid.replace(r#""flag":"success""#, r#""flag":"ok""#),
        ),
        (
            "200 OK",
            valid.replace(r#""user_token":"u-fake-0001","#, ""),
        ),
        (
            "200 OK",
            r#"{"response":{"request":{"status":{"flag":"success","code":200}}}}"#.into(),
        ),
        (
            "200 OK",
            r#"{"response":{"request":{"status":{"flag":"error","code":500}}}}"#.into(),
        ),
        ("400 Bad Request", valid.clone()),
    ] {
        let (url, calls) = canned_sso(status, &body).await;
        let h = against(&url).await;
        for _ in 0..2 {
            let r = h.get("/x", &[("cookie", &cookie(CANNED_TOKEN))]).await;
            assert_refused(&r, 502, "idp_bad_answer");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "not cached: {body}");
    }
}

#[tokio::test]
async fn an_answer_about_another_identity_is_logged_without_either_token() {
    let (lines, _guard) = support::logs::capture();
    let other = "b0000000-0000-4000-8000-000000000002";
    let far = "Fri, 01 Jan 2100 00:00:00  0100";
    let (url, _) = canned_sso("200 OK", &seed_answer(other, far)).await;
    let h = against(&url).await;
    let r = h.get("/x", &[("cookie", &cookie(CANNED_TOKEN))]).await;
    assert_refused(&r, 502, "idp_bad_answer");
    let logged = lines.events().into_iter().any(|e| {
        e["fields"]["failure"] == "idp_bad_answer"
            && e["fields"]["error"]
                .as_str()
                .is_some_and(|s| s.contains("another identity"))
    });
    assert!(logged, "{}", lines.text());
    let text = lines.text();
    assert!(
        !text.contains(CANNED_TOKEN) && !text.contains(other),
        "{text}"
    );
}

#[tokio::test]
async fn the_expiry_date_is_read_with_a_plus_a_minus_or_the_seeds_space() {
    for (written, rfc3339) in [
        (
            "Fri, 01 Jan 2100 12:00:00 +0100",
            "2100-01-01T12:00:00+01:00",
        ),
        (
            "Fri, 01 Jan 2100 12:00:00 -0100",
            "2100-01-01T12:00:00-01:00",
        ),
        (
            "Fri, 01 Jan 2100 12:00:00  0100",
            "2100-01-01T12:00:00+01:00",
        ),
    ] {
        let (url, calls) = canned_sso("200 OK", &seed_answer(CANNED_TOKEN, written)).await;
        let h = against(&url).await;
        let r = h.get("/x", &[("cookie", &cookie(CANNED_TOKEN))]).await;
        assert_eq!(r.status, 200, "{written}: {:?}", r.body);
        let ctx = user_context(&r);
        assert_eq!(ctx["dateExpiration"], rfc3339, "{written}");
        assert_eq!(ctx["userToken"], "u-fake-0001");
        assert_eq!(
            r.upstream_header("x-iid-profile-id").unwrap(),
            ["u-fake-0001"]
        );
        assert_eq!(
            h.get("/x", &[("cookie", &cookie(CANNED_TOKEN))])
                .await
                .status,
            200
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{written}: cached");
    }
}

#[tokio::test]
async fn a_session_past_its_date_expiration_is_never_cached() {
    let (url, calls) = canned_sso(
        "200 OK",
        &seed_answer(CANNED_TOKEN, "Sat, 04 Feb 2017 12:13:58  0100"),
    )
    .await;
    let h = against(&url).await;
    for _ in 0..2 {
        let r = h.get("/x", &[("cookie", &cookie(CANNED_TOKEN))]).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no time left, not cached");
}

#[tokio::test]
async fn the_session_is_cached_until_its_date_expiration() {
    let h = sso().await;
    let token = h.sso_token(users::INVESTOR, Some(3));
    let c = cookie(&token);
    let start = Instant::now();
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.sso().stats().fetch, 1, "cached before it expires");
    let asked_again = eventually(Duration::from_secs(15), || async {
        h.get("/x", &[("cookie", &c)]).await;
        h.sso().stats().fetch >= 2
    })
    .await;
    assert!(asked_again, "the cache outlived the session");
    // date_expiration is whole seconds, so the entry may end up to 1 s early.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn fifty_concurrent_first_requests_make_one_idp_call() {
    let h = Arc::new(sso().await);
    let token = h.sso_token(users::INVESTOR, None);
    // A slow IdP keeps every request waiting on the same call.
    h.sso().set_fault(Fault::Delay { ms: 300 });
    fifty_concurrent_gets_pass(&h, &cookie(&token)).await;
    assert_eq!(h.sso().stats().fetch, 1);
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped() {
    let h = sso().await;
    let token = h.sso_token(users::INVESTOR, None);
    let c = cookie(&token);
    let r = h
        .get(
            "/x",
            &[
                ("cookie", &c),
                ("x-iid-profile-id", "u1"),
                ("X-IID-USER-CONTEXT", "e30"),
                ("x-iid-roles", "ADMIN"),
                ("x-iid-permissions", "P1"),
                ("x_iid_org_id", "o-evil"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["u518"]);
    assert_eq!(user_context(&r)["userToken"], "u518");
    for n in r.upstream_header_names() {
        assert!(
            !matches!(
                n.as_str(),
                "x-iid-roles" | "x-iid-permissions" | "x_iid_org_id" | "x-iid-org-id"
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
fn roles_or_permissions_on_an_sso_identity_route_is_a_config_error() {
    let toml = "[idp]\nprovider = \"sso_identity\"\n\
        [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n\
        [[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:3000\"\nroles = [\"R\"]\n\
        [[routes]]\nprefix = \"/b/\"\nupstream = \"http://127.0.0.1:3000\"\npermissions = [\"P\"]\n";
    let err = Config::from_toml_str(toml).unwrap_err().to_string();
    assert!(
        err.contains(r#"routes[1].roles: provider "sso_identity" reports no roles"#),
        "{err}"
    );
    assert!(
        err.contains(r#"routes[2].permissions: provider "sso_identity" reports no permissions"#),
        "{err}"
    );
}

#[tokio::test]
async fn a_bearer_credential_is_accepted_only_when_enabled_and_the_cookie_wins() {
    let off = sso().await;
    let token = off.sso_token(users::INVESTOR, None);
    let r = off
        .get("/x", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_refused(&r, 401, "no_session");
    assert_eq!(off.sso().stats().fetch, 0);

    let h = Harness::builder()
        .sso_identity()
        .routes(ROUTES)
        .set("session", "bearer = true")
        .start()
        .await;
    let investor = h.sso_token(users::INVESTOR, None);
    let other = h.sso_token(users::ARABIC, None);
    let r = h
        .get("/x", &[("authorization", &format!("Bearer {investor}"))])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["u518"]);
    let req = h.sso().stats().last_request.unwrap();
    assert_eq!(
        req.path,
        format!("/sso/sessions/identities/{investor}.json")
    );
    assert!(
        !req.headers.contains_key("authorization"),
        "{:?}",
        req.headers
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
async fn logout_destroys_the_sso_session_and_expires_the_cookie() {
    let h = sso().await;
    let token = h.sso_token(users::INVESTOR, None);
    let c = cookie(&token);
    assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
    assert_eq!(h.sso().stats().fetch, 1);

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
    let stats = h.sso().stats();
    assert_eq!(stats.logout, 1);
    let req = stats.last_request.unwrap();
    assert_eq!(req.method, "DELETE");
    assert_eq!(req.path, format!("/sso/sessions/identities/{token}.json"));

    let r = h.get("/x", &[("cookie", &c)]).await;
    assert_refused(&r, 401, "invalid_session");
    // And the IdP no longer knows it: another gateway gets a 404 for it.
    let fresh = Harness::builder()
        .sso_identity()
        .routes(ROUTES)
        .idp_base_url(&format!("http://{}", h.sso.as_ref().unwrap().0))
        .start()
        .await;
    let r = fresh.get("/x", &[("cookie", &c)]).await;
    assert_refused(&r, 401, "invalid_session");
}

#[tokio::test]
async fn logout_answered_204_or_404_still_logs_out() {
    let h = sso().await;
    for status in [204, 404] {
        let token = h.sso_token(users::INVESTOR, None);
        let c = cookie(&token);
        assert_eq!(h.get("/x", &[("cookie", &c)]).await.status, 200);
        h.sso().set_fault(Fault::Status { status });
        let r = h.get("/logout", &[("cookie", &c)]).await;
        h.sso().set_fault(Fault::None);
        assert_eq!(r.status, 200, "{status}: {:?}", r.body);
        let r = h.get("/x", &[("cookie", &c)]).await;
        assert_refused(&r, 401, "invalid_session");
    }
    assert_eq!(h.sso().stats().logout, 2);
}

#[tokio::test]
async fn credentials_that_could_leave_the_identity_path_make_no_idp_call() {
    let h = Harness::builder()
        .sso_identity()
        .routes(ROUTES)
        .set("session", "bearer = true")
        .start()
        .await;
    let long = "a".repeat(257);
    let cookies = ["..%2F..%2Fadmin", "a/b", "a.json", "..", "a%2Eb", &long];
    for bad in cookies {
        let r = h.get("/x", &[("cookie", &cookie(bad))]).await;
        assert_refused(&r, 401, "invalid_session");
        let r = h.get("/logout", &[("cookie", &cookie(bad))]).await;
        assert_eq!(r.status, 200, "{bad}: {:?}", r.body);
    }
    for bad in ["a/b", "a.json", "../admin", &long] {
        let r = h
            .get("/x", &[("authorization", &format!("Bearer {bad}"))])
            .await;
        assert_refused(&r, 401, "invalid_session");
    }
    let stats = h.sso().stats();
    assert_eq!(
        (stats.fetch, stats.logout, stats.other),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.last_request.is_none());
    // The longest safe token is still asked about.
    let longest = "a".repeat(256);
    let r = h.get("/x", &[("cookie", &cookie(&longest))]).await;
    assert_refused(&r, 401, "invalid_session");
    assert_eq!(h.sso().stats().fetch, 1);
}

#[tokio::test]
async fn the_emulator_speaks_the_seed_and_its_control_surface_works_over_http() {
    let h = sso().await;
    let addr = h.sso.as_ref().unwrap().0;
    let created = support::raw_exchange(
        addr,
        b"POST /__emulator/sessions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 37\r\n\r\n{\"profileId\": \"518\", \"expiresIn\": 60}",
    )
    .await;
    let created = Reply::parse_raw(&created);
    assert_eq!(created.status, 200, "{:?}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["expiresIn"], 60);

    let read = Reply::parse_raw(
        &support::raw_exchange(
            addr,
            format!("GET /sso/sessions/identities/{token}.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await,
    );
    assert_eq!(read.status, 200, "{:?}", read.body);
    let answer = read.json();
    let request = &answer["response"]["request"];
    assert_eq!(request["status"]["flag"], "success");
    assert_eq!(request["status"]["code"], 200);
    assert_eq!(
        request["resource"],
        format!("/sso/sessions/identities/{token}.json")
    );
    let session = &answer["response"]["result"]["data"]["sso_session"];
    assert_eq!(session["identity_token"], token.as_str());
    assert_eq!(session["user_token"], "u518");
    assert!(session["sso_session_token"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let expiry = session["date_expiration"].as_str().unwrap();
    assert!(expiry.ends_with("  0100"), "the seed's form: {expiry:?}");

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
    h.sso().set_fault(Fault::None);

    let destroy = |t: String| async move {
        Reply::parse_raw(
            &support::raw_exchange(
                addr,
                format!("DELETE /sso/sessions/identities/{t}.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await,
        )
    };
    let gone = destroy(token.clone()).await;
    assert_eq!(gone.status, 200, "{:?}", gone.body);
    assert_eq!(
        gone.json()["response"]["request"]["status"]["flag"],
        "success"
    );
    let again = destroy(token.clone()).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.json()["response"]["request"]["status"]["code"], 404);

    let stats = Reply::parse_raw(
        &support::raw_exchange(
            addr,
            b"GET /__emulator/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["fetch"], 2);
    assert_eq!(stats["logout"], 2);
    assert_eq!(stats["other"], 0);
    assert_eq!(stats["lastRequest"]["method"], "DELETE");
}
