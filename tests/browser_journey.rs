//! The browser journey in a real browser, headless Chromium through
//! chromedriver: no session, the sign-in page, back to exactly the URL asked
//! for (a query string with Arabic in it), the gateway's 403 page, logout,
//! and signed out for good. Then pages on other origins that try to log the
//! user out, and the session surviving them.
//!
//! Needs `chromium` and `chromium-driver` (`scripts/test` installs them).
//! Without them these tests print `SKIPPED ...` and pass, unless
//! `SESSIONGATE_REQUIRE_SYSTEM_TESTS=1` (as in `.ci/run`) makes that a failure.
//! Screenshots of each step: `target/browser-journey/*.png`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use sessiongate::server::{serve, ServeOptions};
use support::browser::Browser;
use support::{system, Harness};
use tokio::net::TcpListener;

/// The URL the journey starts from, as typed.
const REPORTS: &str = "/reports?month=2026-11&q=تقرير";
/// The same URL as the browser writes it in the address bar.
const REPORTS_IN_ADDRESS_BAR: &str = "/reports?month=2026-11&q=%D8%AA%D9%82%D8%B1%D9%8A%D8%B1";
/// Bound on each step's navigation; generous, the machine is shared.
const STEP: Duration = Duration::from_secs(60);
const FORBIDDEN: &str = "You do not have permission to access this resource";

/// chromedriver and chromium, or `None` (skipped, and said so).
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    Some((
        system::require_tool("chromedriver")?,
        system::require_tool("chromium")?,
    ))
}

fn session_cookies(cookies: &[Value]) -> Vec<&Value> {
    cookies
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("iid_session_"))
        .collect()
}

#[tokio::test]
async fn sign_in_back_to_the_url_forbidden_page_logout_and_signed_out() {
    let Some((chromedriver, chromium)) = browser_tools() else {
        return;
    };
    let (lines, _guard) = support::logs::capture();
    let h = Harness::builder().sign_in().start().await;
    let b = Browser::start(&chromedriver, &chromium, "journey").await;
    let app = h.url(REPORTS_IN_ADDRESS_BAR);
    let sign_in = h.sign_in_url();

    // 1. No session: the gateway sends the browser to the IdP's sign-in page.
    b.goto(&h.url(REPORTS)).await;
    let at = b.url().await;
    assert_eq!(
        at,
        format!(
            "{sign_in}?return_to=%2Freports%3Fmonth%3D2026-11%26q%3D%25D8%25AA%25D9%2582%25D8%25B1%25D9%258A%25D8%25B1"
        )
    );
    assert_eq!(b.text("h1").await, "Sign in");
    assert_eq!(
        b.text("#return-to").await,
        format!("http://{}{REPORTS}", h.addr)
    );
    b.screenshot("01-sign-in-page").await;

    // 2. User 518: back on exactly that URL, and the app knows who it is.
    b.click(r#"button[value="518"]"#).await;
    let at = b.wait_for_url(STEP, |u| !u.starts_with(&sign_in)).await;
    assert_eq!(at, app);
    assert_eq!(b.text("#profile-id").await, "518");
    assert_eq!(b.text("#roles").await, "IID-INVESTOR");
    assert!(b
        .text("#permissions")
        .await
        .starts_with("P1001, P1002, P1005"));
    assert_eq!(b.text("#locale").await, "en");
    assert_eq!(b.text("#request-target").await, REPORTS);
    let cookies = b.cookies().await;
    let session = session_cookies(&cookies);
    assert_eq!(session.len(), 2, "{cookies:?}");
    for c in &session {
        assert_eq!(c["httpOnly"], true, "{c}");
        assert_eq!(c["sameSite"], "Lax", "{c}");
        assert_eq!(c["path"], "/", "{c}");
        assert_eq!(c["secure"], false, "{c}");
    }
    let old_cookies: Vec<(String, String)> = session
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap().to_owned();
            (field("name"), field("value"))
        })
        .collect();
    b.screenshot("02-back-in-the-app").await;

    // 3. A route this user lacks the permissions for: the gateway's 403 page.
    b.click("#admin-link").await;
    b.wait_for_url(STEP, |u| u == h.url("/admin/")).await;
    assert_eq!(b.text("h1").await, FORBIDDEN);
    assert_eq!(b.text("#request-id").await.len(), 32);
    b.screenshot("03-forbidden").await;

    // 4. Logout from the app's page: the sign-in page again, cookies gone.
    b.goto(&app).await;
    assert_eq!(b.text("#profile-id").await, "518");
    b.click("#logout").await;
    let at = b.wait_for_url(STEP, |u| u.starts_with(&sign_in)).await;
    assert_eq!(at, format!("{sign_in}?return_to=%2F"));
    assert_eq!(b.text("h1").await, "Sign in");
    assert!(session_cookies(&b.cookies().await).is_empty());
    assert_eq!(h.emulator.stats().logout, 1, "the IdP ended the session");
    b.screenshot("04-after-logout").await;

    // 5. The first URL again: the sign-in page, not the app.
    b.goto(&h.url(REPORTS)).await;
    let at = b.url().await;
    assert!(at.starts_with(&format!("{sign_in}?return_to=")), "{at}");
    b.screenshot("05-signed-out-for-good").await;

    // Even a copy of the old cookies opens nothing: the session is over.
    for (name, value) in &old_cookies {
        b.add_cookie(name, value).await;
    }
    b.goto(&h.url(REPORTS)).await;
    let at = b.url().await;
    assert!(at.starts_with(&format!("{sign_in}?return_to=")), "{at}");
    b.quit().await;

    // The whole journey logged no session id or token.
    let logged = lines.text();
    assert!(logged.contains("sessiongate::access"), "nothing logged?");
    for (name, value) in &old_cookies {
        assert!(!logged.contains(value.as_str()), "{name} logged");
    }
}

/// An attacker's site at `ip`: `/img` embeds the gateway's logout as an
/// image, `/form` posts a form to it on load. The title tells the test when
/// the image request is over.
async fn attacker(ip: &str, logout: &str) -> String {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let img = format!(
        r#"<!doctype html><title>loading</title>
<h1>A page on http://{addr}</h1>
<p>It embeds <code>&lt;img src="{logout}"&gt;</code>:</p>
<img src="{logout}" alt="(logout image)" onload="document.title='img-done'" onerror="document.title='img-done'">"#
    );
    let form = format!(
        r#"<!doctype html><title>form</title>
<h1>A page on http://{addr}</h1>
<form id="f" method="post" action="{logout}"><input type="hidden" name="x" value="1"></form>
<script>document.getElementById('f').submit()</script>"#
    );
    tokio::spawn(serve(
        listener,
        ServeOptions::default(),
        move |req, _peer| {
            let page = match req.uri().path() {
                "/img" => Some(img.clone()),
                "/form" => Some(form.clone()),
                _ => None,
            };
            async move {
                let mut resp =
                    Response::new(Full::new(Bytes::from(page.clone().unwrap_or_default())));
                if page.is_some() {
                    resp.headers_mut()
                        .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                } else {
                    *resp.status_mut() = StatusCode::NOT_FOUND;
                }
                resp
            }
        },
        std::future::pending(),
    ));
    format!("http://{addr}")
}

#[tokio::test]
async fn a_logout_from_another_origin_is_refused_and_the_session_survives() {
    let Some((chromedriver, chromium)) = browser_tools() else {
        return;
    };
    let (lines, _guard) = support::logs::capture();
    let h = Harness::builder().sign_in().start().await;
    let b = Browser::start(&chromedriver, &chromium, "cross-site").await;

    b.goto(&h.url("/")).await;
    b.click(r#"button[value="518"]"#).await;
    b.wait_for_url(STEP, |u| u == h.url("/")).await;
    assert_eq!(b.text("#profile-id").await, "518");

    let logout = h.url("/logout");
    let attackers = [
        // Another host is another site: the Lax cookies stay home, and the
        // gateway refuses the request all the same.
        ("other-site", attacker("127.0.0.2", &logout).await),
        // Another port on the same host is the same site: the cookies go
        // along, so only the gateway's refusal keeps the session alive.
        ("same-site", attacker("127.0.0.1", &logout).await),
    ];
    let mut shot = 0;
    for (name, origin) in &attackers {
        b.goto(&format!("{origin}/img")).await;
        b.wait_for_title(STEP, "img-done").await;
        shot += 1;
        b.screenshot(&format!("{shot:02}-{name}-img")).await;

        b.goto(&format!("{origin}/form")).await;
        b.wait_for_url(STEP, |u| u == logout).await;
        assert_eq!(b.text("h1").await, FORBIDDEN, "{name}");
        shot += 1;
        b.screenshot(&format!("{shot:02}-{name}-form-refused"))
            .await;
    }

    // The session survived: the IdP was never asked, and the app still opens.
    assert_eq!(h.emulator.stats().logout, 0);
    b.goto(&h.url("/")).await;
    assert_eq!(b.url().await, h.url("/"));
    assert_eq!(b.text("#profile-id").await, "518");
    assert_eq!(session_cookies(&b.cookies().await).len(), 2);
    b.screenshot(&format!("{:02}-still-signed-in", shot + 1))
        .await;
    b.quit().await;

    // And it was the gateway that refused each attempt, on the browser's word
    // that the request came from another site.
    let refused: Vec<Value> = lines
        .access()
        .into_iter()
        .filter(|a| a["path"] == "/logout")
        .map(|a| json!([a["method"], a["status"], a["detail"]]))
        .collect();
    let img = json!(["GET", 403, "sec_fetch_site"]);
    let form = json!(["POST", 403, "sec_fetch_site"]);
    assert_eq!(refused, [img.clone(), form.clone(), img, form]);
}
