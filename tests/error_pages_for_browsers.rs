//! A browser (`Accept: text/html`) that meets a gateway error a person can
//! meet (401 without `login_url`, 403, 502, 503, 504) gets a small HTML page
//! with the message and the request id, in Arabic when `Accept-Language`
//! prefers it, and no internal detail. API clients keep the JSON.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use sessiongate::dev::emulator::Fault;
use support::{users, Harness, Reply};

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The page: HTML, the English message, the request id the response carries,
/// and nothing of the JSON body.
fn assert_page(r: &Reply, status: u16, message: &str) -> String {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.headers.contains_key("content-security-policy"));
    let page = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains(message), "{message:?} not in {page}");
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert!(
        page.contains(&format!("<code id=\"request-id\">{id}</code>")),
        "request id {id} not in {page}"
    );
    assert!(!page.contains("\"reason\""), "{page}");
    page
}

/// The JSON answer API clients have always had.
fn assert_json(r: &Reply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(r.reason(), reason);
}

#[tokio::test]
async fn a_browser_without_a_session_and_no_login_url_gets_the_401_page() {
    let h = Harness::start().await;
    let r = h.get("/app", &[("accept", BROWSER)]).await;
    assert_page(&r, 401, "Authentication required");
    assert_json(&h.get("/app", &[]).await, 401, "no_session");
}

#[tokio::test]
async fn a_browser_lacking_the_permission_gets_the_403_page_in_its_language() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get("/admin/x", &[("accept", BROWSER), ("cookie", &cookie)])
        .await;
    let page = assert_page(&r, 403, "You do not have permission");
    assert!(page.contains(r#"<html lang="en" dir="ltr">"#), "{page}");
    assert!(
        !page.contains("P2001"),
        "no hint of what was missing: {page}"
    );

    let r = h
        .get(
            "/admin/x",
            &[
                ("accept", BROWSER),
                ("accept-language", "ar-AE,ar;q=0.9,en;q=0.8"),
                ("cookie", &cookie),
            ],
        )
        .await;
    let page = assert_page(&r, 403, "ليس لديك صلاحية");
    assert!(page.contains(r#"<html lang="ar" dir="rtl">"#), "{page}");
    assert_eq!(r.headers["content-language"], "ar");

    let r = h
        .get(
            "/admin/x",
            &[("accept", "application/json"), ("cookie", &cookie)],
        )
        .await;
    assert_json(&r, 403, "forbidden");
}

#[tokio::test]
async fn a_cross_site_logout_shows_the_403_page_to_the_browser() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .request(
            http::Method::POST,
            "/logout",
            &[
                ("accept", BROWSER),
                ("cookie", &cookie),
                ("origin", "https://evil.example"),
            ],
            bytes::Bytes::new(),
        )
        .await;
    assert_page(&r, 403, "You do not have permission");
    assert!(r.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_page_without_its_address() {
    let dead = support::dead_addr().await;
    let h = Harness::builder().upstream(dead.addr()).start().await;
    let r = h.get("/public/x", &[("accept", BROWSER)]).await;
    let page = assert_page(&r, 502, "Application is unreachable");
    assert!(!page.contains(&dead.to_string()), "{page}");
    assert_json(&h.get("/public/x", &[]).await, 502, "upstream_unreachable");
}

#[tokio::test]
async fn an_unavailable_idp_is_a_503_page_that_keeps_retry_after() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    h.emulator.set_fault(Fault::Status { status: 503 });
    let r = h
        .get("/app", &[("accept", BROWSER), ("cookie", &cookie)])
        .await;
    assert_page(&r, 503, "Identity service is unavailable");
    assert_eq!(r.headers["retry-after"], "5");
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_json(&r, 503, "idp_unavailable");
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_page() {
    let h = Harness::builder()
        .set("upstream", "timeout = \"300ms\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get(
            "/__echo/slow?ms=10000",
            &[("accept", BROWSER), ("cookie", &cookie)],
        )
        .await;
    assert_page(&r, 504, "Application did not answer in time");
}
