//! `sessiongate demo`: the gateway, the IID emulator and an echo upstream on
//! loopback, one signed-in session, and the curl commands that show what the
//! gateway does. `--self-test` sends those requests itself and checks them.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use crate::app;
use crate::config::Config;
use crate::dev::echo;
use crate::dev::emulator::{self, Emulator, EmulatorConfig};

/// API key shared by the demo gateway and its emulator.
const DEMO_API_KEY: &str = "demo-api-key";
/// The seed's profile, shipped in config/users.json.
const DEMO_PROFILE: &str = "518";

/// Runs the demo until Ctrl-C (or once, with `self_test`).
pub async fn run(listen: SocketAddr, self_test: bool) -> std::io::Result<()> {
    let idp_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let idp_addr = idp_listener.local_addr()?;
    let emulator = Emulator::new(EmulatorConfig {
        api_key: DEMO_API_KEY.into(),
        client_id: None,
        expires_in: emulator::embedded::EMBEDDED_SESSION_SECS,
        users: emulator::default_users(),
    });
    tokio::spawn(emulator::run(
        idp_listener,
        Arc::clone(&emulator),
        std::future::pending(),
    ));

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
        return self_check(gw, &cookie).await;
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
login_url = "https://login.example/sso"
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
  IdP       http://{idp}{base}   (built-in IID emulator)

A signed-in request; the echo shows the x-iid-* identity headers the gateway injected:
  curl -s -H '{cookie_header}' http://{gw}/whoami

A spoofed identity header is removed before the real one is added:
  curl -s -H 'X-IID-Profile-Id: 1' -H '{cookie_header}' http://{gw}/whoami

Without a session (401 JSON; a browser would be redirected to the login page):
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

/// Sends the guide's requests and checks each answer.
async fn self_check(gw: SocketAddr, cookie: &str) -> std::io::Result<()> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let send = |path: &str, headers: &[(&str, &str)]| {
        let mut req = Request::get(format!("http://{gw}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new()));
        let client = client.clone();
        async move {
            let req = req.map_err(std::io::Error::other)?;
            let resp = client.request(req).await.map_err(std::io::Error::other)?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok::<_, std::io::Error>((status, String::from_utf8_lossy(&body).into_owned()))
        }
    };
    let mut failures = 0;
    let mut check = |what: &str, ok: bool, detail: &str| {
        println!("[{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            println!("      {detail}");
            failures += 1;
        }
    };

    let (s, body) = send("/whoami", &[("cookie", cookie), ("x-iid-profile-id", "1")]).await?;
    println!("{body}");
    check(
        "signed-in request reaches the upstream with x-iid-profile-id 518 (spoofed value removed)",
        s == StatusCode::OK && body.contains("\"x-iid-profile-id\":[\"518\"]"),
        &body,
    );
    let (s, body) = send("/whoami", &[]).await?;
    check("no session: 401", s == StatusCode::UNAUTHORIZED, &body);
    let (s, body) = send("/admin/", &[("cookie", cookie)]).await?;
    check("missing role: 403", s == StatusCode::FORBIDDEN, &body);
    let (s, body) = send("/public/hello", &[]).await?;
    check(
        "public route without session: 200",
        s == StatusCode::OK,
        &body,
    );
    let (s, body) = send("/logout", &[("cookie", cookie)]).await?;
    check("logout: 200", s == StatusCode::OK, &body);
    let (s, body) = send("/whoami", &[("cookie", cookie)]).await?;
    check(
        "same cookie after logout: 401",
        s == StatusCode::UNAUTHORIZED,
        &body,
    );

    if failures > 0 {
        return Err(std::io::Error::other(format!(
            "{failures} demo check(s) failed"
        )));
    }
    println!("demo self-test passed");
    Ok(())
}
