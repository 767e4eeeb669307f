//! The emulator's sign-in page: it lists the users, and choosing one creates
//! a child session, sets the gateway's cookies and returns to the app, to a
//! path on the app's origin and nowhere else. Over real sockets; the browser
//! itself is in `browser_journey.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use sessiongate::dev::emulator::{self, AppOrigin, Emulator, EmulatorConfig, SignIn};
use support::{Harness, Reply};
use tokio::net::TcpListener;

const FORM: &str = "application/x-www-form-urlencoded";

fn text(r: &Reply) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

fn form_value(v: &str) -> String {
    utf8_percent_encode(v, NON_ALPHANUMERIC).to_string()
}

/// Chooses `profile` on the sign-in page with this `return_to`.
async fn choose(h: &Harness, profile: &str, return_to: &str) -> Reply {
    let body = format!("return_to={}&profileId={profile}", form_value(return_to));
    h.request_url(
        Method::POST,
        &h.sign_in_url(),
        &[("content-type", FORM)],
        Bytes::from(body),
    )
    .await
}

fn set_cookies(r: &Reply) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `name=value; ...` pairs of Set-Cookie, as a browser would send them back.
fn cookie_header(r: &Reply) -> String {
    set_cookies(r)
        .iter()
        .map(|c| c.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn the_page_lists_every_user_with_locale_and_roles_and_arabic_right_to_left() {
    let h = Harness::builder().sign_in().start().await;
    let r = h
        .request_url(
            Method::GET,
            &format!(
                "{}?return_to=%2Freports%3Fq%3D%25D8%25AA%26x%3D%22%3E%3Cscript%3E",
                h.sign_in_url()
            ),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    let page = text(&r);
    let at = |needle: &str| {
        page.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {page}"))
    };
    // In users-file order, one button each.
    let order: Vec<usize> = ["518", "1001", "7001", "9001"]
        .iter()
        .map(|p| {
            at(&format!(
                r#"<button type="submit" name="profileId" value="{p}">"#
            ))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    at("LAYLA HASSAN AL TEST");
    at("IID-INVESTOR");
    at("IID-ESTABLISHMENT-ADMIN");
    // The Arabic-locale user, in Arabic, right to left.
    at(r#"<li lang="ar" dir="rtl" data-profile="1001">"#);
    at("<h2>فاطمة سعيد المثال</h2>");
    at("<bdi>ar</bdi>");
    at(r#"<li lang="en" dir="ltr" data-profile="518">"#);
    // return_to rides along in the form, escaped.
    at(
        r#"<input type="hidden" name="return_to" value="/reports?q=%D8%AA&amp;x=&quot;&gt;&lt;script&gt;">"#,
    );
    assert!(!page.contains("\"><script>"), "{page}");
    // The page says where sign-in leads (decoded for people).
    at(&format!(
        "<code id=\"return-to\">http://{}/reports?q=ت&amp;x=&quot;&gt;&lt;script&gt;</code>",
        h.addr
    ));
}

#[tokio::test]
async fn choosing_a_user_creates_a_session_sets_the_cookies_and_returns_to_the_app() {
    let h = Harness::builder().sign_in().start().await;
    let back = "/reports?month=2026-11&q=%D8%AA%D9%82%D8%B1%D9%8A%D8%B1";
    let r = choose(&h, "518", back).await;
    assert_eq!(r.status, 303, "{:?}", r.body);
    assert_eq!(r.headers["location"], format!("http://{}{back}", h.addr));
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(h.emulator.stats().create, 1);

    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for name in ["iid_session_id", "iid_session_token"] {
        let c = cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {cookies:?}"));
        let attrs: Vec<&str> = c.split("; ").skip(1).collect();
        assert_eq!(attrs, ["Path=/", "HttpOnly", "SameSite=Lax"], "{c}");
    }

    // Those cookies are a session the gateway accepts.
    let r = h.get(back, &[("cookie", &cookie_header(&r))]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    assert_eq!(r.upstream_uri(), back);
}

#[tokio::test]
async fn the_gateway_sends_browsers_to_the_page_and_the_page_sends_them_back() {
    let h = Harness::builder().sign_in().start().await;
    let r = h
        .get("/reports?month=2026-11", &[("accept", "text/html")])
        .await;
    assert_eq!(r.status, 302);
    let login = r.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        login,
        format!("{}?return_to=%2Freports%3Fmonth%3D2026-11", h.sign_in_url())
    );
    let page = h.request_url(Method::GET, &login, &[], Bytes::new()).await;
    assert!(text(&page).contains(r#"name="return_to" value="/reports?month=2026-11""#));
    let r = choose(&h, "7001", "/reports?month=2026-11").await;
    assert_eq!(
        r.headers["location"],
        format!("http://{}/reports?month=2026-11", h.addr)
    );
}

#[tokio::test]
async fn a_return_to_off_the_app_origin_lands_on_its_root_and_is_logged() {
    // Current-thread runtime: the emulator logs on this thread's subscriber.
    let (lines, _guard) = support::logs::capture();

    let h = Harness::builder().sign_in().start().await;
    let root = format!("http://{}/", h.addr);
    let rejected = [
        ("//evil.example/x", "scheme_relative"),
        ("https://evil.example/x", "not_absolute"),
        ("/\\evil.example/x", "backslash"),
        ("/\t/evil.example/x", "control_or_space"),
        ("/\r\nSet-Cookie: x=1", "control_or_space"),
        ("/x\u{0}", "control_or_space"),
        ("/\u{7f}", "control_or_space"),
        ("@evil.example", "not_absolute"),
        ("evil.example", "not_absolute"),
        (" /x", "not_absolute"),
    ];
    for (return_to, _) in rejected {
        let r = choose(&h, "518", return_to).await;
        assert_eq!(r.status, 303, "{return_to:?}");
        assert_eq!(r.headers["location"], root.as_str(), "{return_to:?}");
        assert_eq!(set_cookies(&r).len(), 2, "still signed in: {return_to:?}");
    }

    let logged: Vec<String> = lines
        .events()
        .into_iter()
        .filter(|v| v["fields"]["reason"] == "return_to_rejected")
        .map(|v| v["fields"]["why"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<&str> = rejected.iter().map(|(_, why)| *why).collect();
    assert_eq!(logged, expected);
    let all = lines.text();
    assert!(
        !all.contains("evil.example"),
        "the value is not logged: {all}"
    );

    // No return_to at all is the app's root too, and not worth a warning.
    let r = h
        .request_url(
            Method::POST,
            &h.sign_in_url(),
            &[("content-type", FORM)],
            Bytes::from("profileId=518"),
        )
        .await;
    assert_eq!(r.headers["location"], root.as_str());

    // Raw non-ASCII stays on the app, percent-encoded.
    let r = choose(&h, "518", "/تقرير?q=١").await;
    assert_eq!(
        r.headers["location"],
        format!("http://{}/%D8%AA%D9%82%D8%B1%D9%8A%D8%B1?q=%D9%A1", h.addr)
    );
}

#[tokio::test]
async fn unknown_or_missing_users_get_no_session() {
    let h = Harness::builder().sign_in().start().await;
    let r = choose(&h, "404404", "/").await;
    assert_eq!(r.status, 404);
    assert!(set_cookies(&r).is_empty());
    let r = h
        .request_url(
            Method::POST,
            &h.sign_in_url(),
            &[("content-type", FORM)],
            Bytes::from("return_to=%2F"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(set_cookies(&r).is_empty());
    assert_eq!(h.emulator.stats().create, 0);
    let r = h
        .request_url(Method::DELETE, &h.sign_in_url(), &[], Bytes::new())
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, POST");
}

/// An emulator alone, with its own sign-in settings.
async fn lone_emulator(sign_in: Option<SignIn>) -> (String, Arc<Emulator>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/login", listener.local_addr().unwrap());
    let emu = match sign_in {
        Some(s) => Emulator::with_sign_in(EmulatorConfig::default(), s),
        None => Emulator::new(EmulatorConfig::default()),
    };
    tokio::spawn(emulator::run(
        listener,
        Arc::clone(&emu),
        std::future::pending(),
    ));
    (url, emu)
}

#[tokio::test]
async fn an_https_app_gets_secure_cookies_and_an_empty_token_cookie_name_sets_none() {
    let h = Harness::start().await;
    let (url, _emu) = lone_emulator(Some(SignIn {
        app_origin: AppOrigin::parse("https://portal.example").unwrap(),
        id_cookie: "sid".into(),
        token_cookie: String::new(),
    }))
    .await;
    let r = h
        .request_url(
            Method::POST,
            &url,
            &[("content-type", FORM)],
            Bytes::from("profileId=518&return_to=%2Fhome"),
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "https://portal.example/home");
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("sid="), "{cookies:?}");
    assert!(
        cookies[0].ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn without_an_app_origin_there_is_no_sign_in_page() {
    let h = Harness::start().await;
    let (url, emu) = lone_emulator(None).await;
    let r = h.request_url(Method::GET, &url, &[], Bytes::new()).await;
    assert_eq!(r.status, 404);
    assert!(text(&r).contains("--app-origin"));
    let r = h
        .request_url(
            Method::POST,
            &url,
            &[("content-type", FORM)],
            Bytes::from("profileId=518"),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(emu.stats().create, 0);
}
