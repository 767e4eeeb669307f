//! `sessiongate demo`: the gateway, the IID emulator and an echo upstream on
//! loopback, one signed-in session, and the curl commands that show what the
//! gateway does. `--self-test` sends those requests itself and checks them.
//!
//! In a browser the demo is the whole journey: the gateway's `login_url` is
//! the emulator's sign-in page, which returns to the gateway, and the echo
//! upstream answers browsers with the demo app's page (`app_page`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{LOCATION, SET_COOKIE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use crate::app;
use crate::config::Config;
use crate::dev::emulator::{self, AppOrigin, Emulator, EmulatorConfig, SignIn};
use crate::dev::{app_page, echo};

/// API key shared by the demo gateway and its emulator.
const DEMO_API_KEY: &str = "demo-api-key";
/// The seed's profile, shipped in config/users.json.
const DEMO_PROFILE: &str = "518";

/// Runs the demo until Ctrl-C (or once, with `self_test`).
pub async fn run(listen: SocketAddr, self_test: bool) -> std::io::Result<()> {
    let idp_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let idp_addr = idp_listener.local_addr()?;

    let upstream_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let upstream_addr = upstream_listener.local_addr()?;
    tokio::spawn(echo::run(upstream_listener, std::future::pending()));

    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("note: {listen} is not available ({e}); using a free port instead");
            TcpListener::bind((listen.ip(), 0)).await?
        }
    };
    let gw = listener.local_addr()?;
    let cfg = Config::from_toml_str(&demo_config(gw, idp_addr, upstream_addr))
        .map_err(std::io::Error::other)?;

    // The emulator plays the IdP's sign-in page too: it sets the cookies the
    // gateway reads and sends the browser back to the gateway. Cookies ignore
    // ports, so both on 127.0.0.1 share them.
    let sign_in = SignIn {
        app_origin: AppOrigin::parse(&format!("http://{gw}")).map_err(std::io::Error::other)?,
        id_cookie: cfg.session.id_cookie.clone(),
        token_cookie: cfg.session.token_cookie.clone(),
    };
    let emulator = Emulator::with_sign_in(
        EmulatorConfig {
            api_key: DEMO_API_KEY.into(),
            client_id: None,
            expires_in: emulator::embedded::EMBEDDED_SESSION_SECS,
            users: emulator::default_users(),
        },
        sign_in,
    );
    tokio::spawn(emulator::run(
        idp_listener,
        Arc::clone(&emulator),
        std::future::pending(),
    ));

    let gateway = app::build_gateway(&cfg).map_err(std::io::Error::other)?;
    let serving =
        tokio::spawn(async move { app::serve(&cfg, gateway, listener, shutdown()).await });

    let Some(session) = emulator.create_session(DEMO_PROFILE, None) else {
        return Err(std::io::Error::other(
            "demo user 518 missing from config/users.json",
        ));
    };
    let cookie = format!(
        "iid_session_id={}; iid_session_token={}",
        session.session_id, session.session_token
    );
    print_guide(gw, idp_addr, upstream_addr, &cookie);

    if self_test {
        return self_check(gw, idp_addr, &cookie).await;
    }
    match serving.await {
        Ok(result) => result.map_err(std::io::Error::other),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

fn demo_config(gw: SocketAddr, idp: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "{gw}"
[idp]
base_url = "http://{idp}{base}"
api_key = "{DEMO_API_KEY}"
[session]
login_url = "http://{idp}/login"
[[routes]]
prefix = "/public/"
upstream = "http://{upstream}"
auth = "public"
[[routes]]
prefix = "/admin/"
upstream = "http://{upstream}"
roles = ["IID-ESTABLISHMENT-ADMIN"]
[[routes]]
prefix = "/"
upstream = "http://{upstream}"
"#,
        base = emulator::BASE_PATH
    )
}

fn print_guide(gw: SocketAddr, idp: SocketAddr, upstream: SocketAddr, cookie: &str) {
    println!(
        r#"sessiongate demo is running (Ctrl-C to stop)
  gateway   http://{gw}
  upstream  http://{upstream}   (built-in echo: answers with the request it received)
  IdP       http://{idp}{base}   (built-in IID emulator; sign-in page http://{idp}/login)

open http://{gw}/ in a browser

A signed-in request; the echo shows the x-iid-* identity headers the gateway injected:
  curl -s -H '{cookie_header}' http://{gw}/whoami

A spoofed identity header is removed before the real one is added:
  curl -s -H 'X-IID-Profile-Id: 1' -H '{cookie_header}' http://{gw}/whoami

Without a session (401 JSON; a browser is redirected to the sign-in page):
  curl -si http://{gw}/whoami

A route that requires a role this user lacks (403):
  curl -si -H '{cookie_header}' http://{gw}/admin/

A public route, no session needed:
  curl -s http://{gw}/public/hello

Log out (the same cookie is refused right after):
  curl -si -H '{cookie_header}' http://{gw}/logout
"#,
        base = emulator::BASE_PATH,
        cookie_header = format_args!("Cookie: {cookie}"),
    );
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Sends the guide's requests and checks each answer, then walks the
/// browser journey as a browser would, one redirect at a time.
async fn self_check(gw: SocketAddr, idp: SocketAddr, cookie: &str) -> std::io::Result<()> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let send = |method: Method, url: String, headers: &[(&str, &str)], body: &'static str| {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from_static(body.as_bytes())));
        let client = client.clone();
        async move {
            let req = req.map_err(std::io::Error::other)?;
            let resp = client.request(req).await.map_err(std::io::Error::other)?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok::<_, std::io::Error>(Answer {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
    };
    let get = |path: &str, headers: &[(&str, &str)]| {
        send(Method::GET, format!("http://{gw}{path}"), headers, "")
    };
    let mut failures = 0;
    let mut check = |what: &str, ok: bool, detail: &str| {
        println!("[{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            println!("      {detail}");
            failures += 1;
        }
    };

    let a = get("/whoami", &[("cookie", cookie), ("x-iid-profile-id", "1")]).await?;
    println!("{}", a.body);
    check(
        "signed-in request reaches the upstream with x-iid-profile-id 518 (spoofed value removed)",
        a.status == StatusCode::OK && a.body.contains("\"x-iid-profile-id\":[\"518\"]"),
        &a.body,
    );
    let a = get("/whoami", &[]).await?;
    check(
        "no session: 401",
        a.status == StatusCode::UNAUTHORIZED,
        &a.body,
    );
    let a = get("/admin/", &[("cookie", cookie)]).await?;
    check(
        "missing role: 403",
        a.status == StatusCode::FORBIDDEN,
        &a.body,
    );
    let a = get("/public/hello", &[]).await?;
    check(
        "public route without session: 200",
        a.status == StatusCode::OK,
        &a.body,
    );
    let a = get("/logout", &[("cookie", cookie)]).await?;
    check("logout: 200", a.status == StatusCode::OK, &a.body);
    let a = get("/whoami", &[("cookie", cookie)]).await?;
    check(
        "same cookie after logout: 401",
        a.status == StatusCode::UNAUTHORIZED,
        &a.body,
    );

    // The browser journey, without a browser.
    let html = [("accept", "text/html")];
    let a = get("/reports?month=2026-11", &html).await?;
    let login = a.location();
    check(
        "browser without a session: 302 to the emulator's sign-in page",
        a.status == StatusCode::FOUND
            && login == format!("http://{idp}/login?return_to=%2Freports%3Fmonth%3D2026-11"),
        &login,
    );
    let a = send(Method::GET, login, &[], "").await?;
    check(
        "sign-in page lists user 518",
        a.status == StatusCode::OK && a.body.contains(r#"value="518""#),
        &a.body,
    );
    let a = send(
        Method::POST,
        format!("http://{idp}/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "profileId=518&return_to=%2Freports%3Fmonth%3D2026-11",
    )
    .await?;
    let back = a.location();
    let cookies: Vec<&str> = a
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .collect();
    check(
        "choosing 518 sets the session cookies and returns to the app",
        a.status == StatusCode::SEE_OTHER
            && back == format!("http://{gw}/reports?month=2026-11")
            && cookies.len() == 2,
        &format!("{back} {cookies:?}"),
    );
    let browser_cookie = cookies.join("; ");
    let a = send(
        Method::GET,
        back,
        &[("accept", "text/html"), ("cookie", &browser_cookie)],
        "",
    )
    .await?;
    check(
        "the app's page shows profile 518",
        a.status == StatusCode::OK && a.body.contains(r#"<dd id="profile-id">518</dd>"#),
        &a.body,
    );
    let a = send(
        Method::POST,
        format!("http://{gw}{}", app_page::LOGOUT_ACTION),
        &[
            ("accept", "text/html"),
            ("cookie", &browser_cookie),
            ("origin", &format!("http://{gw}")),
        ],
        "",
    )
    .await?;
    check(
        "the page's logout button: 302 back to the app, which sends the browser to sign in",
        a.status == StatusCode::FOUND && a.location() == "/",
        &a.body,
    );

    if failures > 0 {
        return Err(std::io::Error::other(format!(
            "{failures} demo check(s) failed"
        )));
    }
    println!("demo self-test passed");
    Ok(())
}

/// One answer, as the self-test reads it.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}
