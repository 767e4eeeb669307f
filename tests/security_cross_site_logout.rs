//! Logout refuses requests from other sites: a cross-site `<img src=/logout>`
//! or form post must not end a user's session. The app's own pages, and
//! clients that send neither `Sec-Fetch-Site` nor `Origin` (curl, a plain
//! link in an old browser), still log out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use bytes::Bytes;
use http::Method;
use support::{users, Harness, Reply};

async fn logout(h: &Harness, method: Method, cookie: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("cookie", cookie)];
    headers.extend_from_slice(extra);
    h.request(method, "/logout", &headers, Bytes::new()).await
}

/// The session still opens the app, and the IdP was never asked to end it.
async fn assert_still_signed_in(h: &Harness, cookie: &str) {
    let r = h.get("/app", &[("cookie", cookie)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(h.emulator.stats().logout, 0, "the IdP was asked to log out");
}

#[tokio::test]
async fn a_cross_site_logout_is_refused_and_the_session_survives() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    assert_eq!(h.get("/app", &[("cookie", &cookie)]).await.status, 200);

    let attempts: [(Method, &[(&str, &str)]); 5] = [
        // <img src="https://app/logout"> on another site.
        (Method::GET, &[("sec-fetch-site", "cross-site")]),
        // A sibling subdomain is another site's page too.
        (Method::GET, &[("sec-fetch-site", "same-site")]),
        // A form posted from another origin (older browsers send only Origin).
        (Method::POST, &[("origin", "https://evil.example")]),
        // Sandboxed iframes and redirects across origins send `Origin: null`.
        (Method::POST, &[("origin", "null")]),
        // Same host, another port: another origin.
        (Method::POST, &[("origin", "http://127.0.0.1:1")]),
    ];
    for (method, extra) in attempts {
        let r = logout(&h, method.clone(), &cookie, extra).await;
        assert_eq!(r.status, 403, "{method} {extra:?}: {:?}", r.body);
        assert_eq!(r.reason(), "forbidden");
        assert!(!r.from_upstream());
        assert!(
            r.headers.get("set-cookie").is_none(),
            "{extra:?}: a refused logout must not touch the cookies"
        );
        assert_still_signed_in(&h, &cookie).await;
    }
}

#[tokio::test]
async fn a_same_origin_logout_works_with_any_method() {
    let h = Harness::start().await;
    let own = format!("http://{}", h.addr);
    for method in [Method::POST, Method::GET] {
        let cookie = h.login(users::INVESTOR);
        assert_eq!(h.get("/app", &[("cookie", &cookie)]).await.status, 200);
        let r = logout(
            &h,
            method.clone(),
            &cookie,
            &[("origin", &own), ("sec-fetch-site", "same-origin")],
        )
        .await;
        assert_eq!(r.status, 200, "{method}: {:?}", r.body);
        assert_eq!(r.json()["data"]["success"], true);
        let r = h.get("/app", &[("cookie", &cookie)]).await;
        assert_eq!(r.status, 401, "{method}: the session must be gone");
    }
    // A link typed into the address bar: `Sec-Fetch-Site: none`.
    let cookie = h.login(users::INVESTOR);
    let r = logout(&h, Method::GET, &cookie, &[("sec-fetch-site", "none")]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_logout_without_origin_headers_still_works() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    assert_eq!(h.get("/app", &[("cookie", &cookie)]).await.status, 200);
    let r = logout(&h, Method::GET, &cookie, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(h.emulator.stats().logout, 1);
    assert_eq!(h.get("/app", &[("cookie", &cookie)]).await.status, 401);
}
