//! Threat: open redirects — a login `return_to` or logout `return_to` that
//! sends the browser to another host (`//evil`, `https://evil`, `/\evil`,
//! `/\t/evil`) — and redirects served where a 401/200 belongs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use percent_encoding::percent_decode_str;
use support::{users, Harness, Reply};

const LOGIN: &str = "https://login.example/sso";
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn with_login_url(url: &str) -> Harness {
    Harness::builder()
        .set("session", &format!("login_url = \"{url}\""))
        .start()
        .await
}

fn location(r: &Reply) -> Option<&str> {
    r.headers
        .get("location")
        .map(|v| v.to_str().expect("ASCII location"))
}

/// The decoded `return_to` of a login redirect.
fn return_to(location: &str) -> String {
    let (_, raw) = location
        .split_once("return_to=")
        .unwrap_or_else(|| panic!("no return_to in {location}"));
    percent_decode_str(raw)
        .decode_utf8()
        .expect("UTF-8")
        .into_owned()
}

/// Set-Cookie values that expire `name` at once.
fn expires(r: &Reply, name: &str) -> bool {
    r.headers.get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap_or_default();
        v.starts_with(&format!("{name}=;")) && v.contains("Max-Age=0")
    })
}

#[tokio::test]
async fn browser_without_session_is_redirected_to_login_with_an_encoded_return_to() {
    let h = with_login_url(LOGIN).await;
    let r = h.get("/portal?a=1&b=2", &[("accept", BROWSER)]).await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(
        location(&r),
        Some("https://login.example/sso?return_to=%2Fportal%3Fa%3D1%26b%3D2")
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(h.idp_fetches(), 0);
}

#[tokio::test]
async fn scheme_relative_request_path_yields_a_single_slash_return_to() {
    let h = with_login_url(LOGIN).await;
    let r = h.get("//evil.example/x", &[("accept", BROWSER)]).await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    assert!(!r.from_upstream());
    let loc = location(&r).expect("Location");
    assert_eq!(
        loc,
        "https://login.example/sso?return_to=%2Fevil.example%2Fx"
    );
    let back = return_to(loc);
    assert!(back.starts_with('/') && !back.starts_with("//"), "{back}");
}

#[tokio::test]
async fn scheme_relative_path_with_dot_segments_yields_a_single_slash_return_to() {
    let h = with_login_url(LOGIN).await;
    for path in [
        "/.//evil.example/x",
        "/a/..//evil.example/x",
        "///evil.example",
    ] {
        let r = h.get(path, &[("accept", BROWSER)]).await;
        assert_eq!(r.status, 302, "{path}: {:?}", r.body);
        let back = return_to(location(&r).expect("Location"));
        assert!(
            back.starts_with('/') && !back.starts_with("//"),
            "{path}: {back}"
        );
    }
}

#[tokio::test]
async fn login_url_with_a_query_gets_return_to_appended_with_ampersand() {
    let h = with_login_url("https://login.example/sso?app=portal").await;
    let r = h.get("/portal", &[("accept", BROWSER)]).await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    assert_eq!(
        location(&r),
        Some("https://login.example/sso?app=portal&return_to=%2Fportal")
    );
}

#[tokio::test]
async fn api_request_without_session_gets_401_json_not_a_redirect() {
    let h = with_login_url(LOGIN).await;
    for accept in [Some("application/json"), None] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let r = h.get("/portal?a=1", &headers).await;
        assert_eq!(r.status, 401, "{accept:?}");
        assert!(!r.from_upstream());
        assert_eq!(location(&r), None, "{accept:?}");
        assert_eq!(r.reason(), "no_session");
    }
}

#[tokio::test]
async fn browser_with_an_invalid_session_cookie_is_redirected_to_login() {
    let h = with_login_url(LOGIN).await;
    // Well-formed but unknown to the IdP.
    let r = h
        .get(
            "/portal",
            &[
                ("accept", BROWSER),
                (
                    "cookie",
                    "iid_session_id=00000000-0000-0000-0000-000000000000; iid_session_token=nope",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(
        location(&r),
        Some("https://login.example/sso?return_to=%2Fportal")
    );
    assert_eq!(h.idp_fetches(), 1);
    // Malformed: never reaches the IdP, still sent to the login page.
    let r = h
        .get(
            "/portal",
            &[("accept", BROWSER), ("cookie", "iid_session_id=\"a b\"")],
        )
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(h.idp_fetches(), 1);
}

#[tokio::test]
async fn browser_on_a_public_route_is_served_without_redirect() {
    let h = with_login_url(LOGIN).await;
    let r = h.get("/public/page", &[("accept", BROWSER)]).await;
    assert_eq!(r.status, 200);
    assert!(r.from_upstream());
    assert_eq!(location(&r), None);
}

#[tokio::test]
async fn browser_with_a_session_but_no_permission_gets_403_not_a_login_loop() {
    let h = with_login_url(LOGIN).await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get("/admin/x", &[("accept", BROWSER), ("cookie", &cookie)])
        .await;
    assert_eq!(r.status, 403);
    assert!(!r.from_upstream());
    assert_eq!(location(&r), None);
}

#[tokio::test]
async fn logout_redirects_to_a_local_return_to() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get("/logout?return_to=%2Fbye", &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(location(&r), Some("/bye"));
    assert!(expires(&r, "iid_session_id") && expires(&r, "iid_session_token"));
}

/// Logout ignores `return_to` that could leave the host: no Location, 200
/// JSON, and the cookies are expired all the same.
async fn assert_logout_ignores(query: &str) {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get(&format!("/logout?{query}"), &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, 200, "{query}: {:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(location(&r), None, "{query}");
    assert_eq!(r.json()["data"]["success"], true, "{query}");
    assert!(
        expires(&r, "iid_session_id") && expires(&r, "iid_session_token"),
        "{query}: {:?}",
        r.headers
    );
}

#[tokio::test]
async fn logout_ignores_an_absolute_return_to() {
    assert_logout_ignores("return_to=https://evil.example").await;
}

#[tokio::test]
async fn logout_ignores_a_scheme_relative_return_to() {
    assert_logout_ignores("return_to=//evil.example").await;
}

#[tokio::test]
async fn logout_ignores_an_encoded_scheme_relative_return_to() {
    assert_logout_ignores("return_to=%2F%2Fevil.example").await;
}

#[tokio::test]
async fn logout_ignores_a_backslash_return_to() {
    assert_logout_ignores("return_to=/%5Cevil.example").await;
}

#[tokio::test]
async fn logout_ignores_a_return_to_with_a_tab() {
    assert_logout_ignores("return_to=/%09/evil.example").await;
}
