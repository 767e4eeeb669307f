//! `sessiongate demo`: the gateway, an emulated IdP and an echo upstream on
//! loopback, one signed-in session, and the curl commands that show what the
//! gateway does. `--self-test` sends those requests itself and checks them.
//!
//! With the IID provider (the default) the demo is also the whole browser
//! journey: the gateway's `login_url` is the emulator's sign-in page, which
//! returns to the gateway, and the echo upstream answers browsers with the
//! demo app's page (`app_page`). `--provider NAME` runs the same gateway in
//! front of that provider's emulator (`idp.emulate`); those emulators have no
//! sign-in page, so that demo is the curl journey.

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
use crate::dev::emulator::{self, embedded, AppOrigin, Emulator, EmulatorConfig, SignIn};
use crate::dev::{app_page, echo};

/// API key shared by the demo gateway and its emulator.
const DEMO_API_KEY: &str = "demo-api-key";
/// The seed's profile, shipped in config/users.json.
const DEMO_PROFILE: &str = "518";

/// Runs the demo in front of `provider` (an `idp.provider` name) until
/// Ctrl-C, or once with `self_test`.
pub async fn run(listen: SocketAddr, provider: &str, self_test: bool) -> std::io::Result<()> {
    if provider == "iid" {
        run_iid(listen, self_test).await
    } else {
        run_emulated(listen, provider, self_test).await
    }
}

/// Binds the gateway's listener, or a free port when `listen` is taken.
async fn bind_gateway(listen: SocketAddr) -> std::io::Result<TcpListener> {
    match TcpListener::bind(listen).await {
        Ok(l) => Ok(l),
        Err(e) => {
            eprintln!("note: {listen} is not available ({e}); using a free port instead");
            TcpListener::bind((listen.ip(), 0)).await
        }
    }
}

/// Starts the echo upstream on a free loopback port.
async fn start_upstream() -> std::io::Result<SocketAddr> {
    let upstream_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let upstream_addr = upstream_listener.local_addr()?;
    tokio::spawn(echo::run(upstream_listener, std::future::pending()));
    Ok(upstream_addr)
}

/// Any provider but IID: its emulator in-process (`idp.emulate`), the curl journey.
async fn run_emulated(listen: SocketAddr, provider: &str, self_test: bool) -> std::io::Result<()> {
    let upstream_addr = start_upstream().await?;
    let listener = bind_gateway(listen).await?;
    let gw = listener.local_addr()?;
    let mut cfg = Config::from_toml_str(&emulated_config(gw, upstream_addr, provider))
        .map_err(std::io::Error::other)?;
    let idp = embedded::start(&mut cfg)
        .await?
        .ok_or_else(|| std::io::Error::other("idp.emulate did not start an emulator"))?;
    let Some(cookie) = idp.emulator.sign_in_cookie(&cfg.session, DEMO_PROFILE) else {
        return Err(std::io::Error::other(
            "demo user 518 missing from config/users.json",
        ));
    };
    let roles = cfg.idp.provider.reports_roles();
    let gateway = app::build_gateway(&cfg).map_err(std::io::Error::other)?;
    let serving =
        tokio::spawn(async move { app::serve(&cfg, gateway, listener, shutdown()).await });
    print_guide(gw, idp.addr, upstream_addr, &cookie, provider, roles);
    if self_test {
        return self_check(gw, &cookie, provider, roles).await;
    }
    match serving.await {
        Ok(result) => result.map_err(std::io::Error::other),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// The IID demo: the emulator with its sign-in page, so a browser can walk in.
async fn run_iid(listen: SocketAddr, self_test: bool) -> std::io::Result<()> {
    let idp_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let idp_addr = idp_listener.local_addr()?;

    let upstream_addr = start_upstream().await?;
    let listener = bind_gateway(listen).await?;
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
    print_guide(gw, idp_addr, upstream_addr, &cookie, "iid", true);

    if self_test {
        self_check(gw, &cookie, "iid", true).await?;
        return browser_check(gw, idp_addr).await;
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

/// The demo config for a provider whose emulator runs in-process. The admin
/// route needs a role, so it exists only where the provider reports roles.
fn emulated_config(gw: SocketAddr, upstream: SocketAddr, provider: &str) -> String {
    // ciam reports roles only through userinfo pointers; the embedded
    // emulator's userinfo has them at these.
    let own_keys = match provider {
        "ciam" => "roles_pointer = \"/roles\"\npermissions_pointer = \"/permissions\"\n",
        _ => "",
    };
    let admin = if provider_reports_roles(provider) {
        format!(
            "[[routes]]\nprefix = \"/admin/\"\nupstream = \"http://{upstream}\"\nroles = [\"IID-ESTABLISHMENT-ADMIN\"]\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"
[server]
listen = "{gw}"
[idp]
provider = "{provider}"
emulate = true
{own_keys}[[routes]]
prefix = "/public/"
upstream = "http://{upstream}"
auth = "public"
{admin}[[routes]]
prefix = "/"
upstream = "http://{upstream}"
"#
    )
}

/// Whether the demo's emulator for `provider` reports role codes.
fn provider_reports_roles(provider: &str) -> bool {
    matches!(provider, "iid" | "ciam")
}

fn print_guide(
    gw: SocketAddr,
    idp: SocketAddr,
    upstream: SocketAddr,
    cookie: &str,
    provider: &str,
    roles: bool,
) {
    let browser = if provider == "iid" {
        format!(
            "  IdP       http://{idp}{}   (built-in IID emulator; sign-in page http://{idp}/login)\n\nopen http://{gw}/ in a browser\n",
            emulator::BASE_PATH
        )
    } else {
        format!(
            "  IdP       http://{idp}   (built-in {provider} emulator; new session: curl -s -X POST http://{idp}/__emulator/sessions -d '{{\"profileId\": \"518\"}}')\n"
        )
    };
    let admin = if roles {
        format!(
            "\nA route that requires a role this user lacks (403):\n  curl -si -H 'Cookie: {cookie}' http://{gw}/admin/\n"
        )
    } else {
        String::new()
    };
    println!(
        r#"sessiongate demo ({provider}) is running (Ctrl-C to stop)
  gateway   http://{gw}
  upstream  http://{upstream}   (built-in echo: answers with the request it received)
{browser}
A signed-in request; the echo shows the x-iid-* identity headers the gateway injected:
  curl -s -H '{cookie_header}' http://{gw}/whoami

A spoofed identity header is removed before the real one is added:
  curl -s -H 'X-IID-Profile-Id: 1' -H '{cookie_header}' http://{gw}/whoami

Without a session (401 JSON; a browser is redirected to the sign-in page when login_url is set):
  curl -si http://{gw}/whoami
{admin}
A public route, no session needed:
  curl -s http://{gw}/public/hello

Log out (the same cookie is refused right after):
  curl -si -H '{cookie_header}' http://{gw}/logout
"#,
        cookie_header = format_args!("Cookie: {cookie}"),
    );
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Sends requests and reads whole answers, for the self-test.
struct Probe {
    client: Client<HttpConnector, Full<Bytes>>,
    failures: usize,
}

impl Probe {
    fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            failures: 0,
        }
    }

    async fn send(
        &self,
        method: Method,
        url: String,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> std::io::Result<Answer> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .map_err(std::io::Error::other)?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(std::io::Error::other)?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn get(
        &self,
        gw: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Answer> {
        self.send(Method::GET, format!("http://{gw}{path}"), headers, "")
            .await
    }

    fn check(&mut self, what: &str, ok: bool, detail: &str) {
        println!("[{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            println!("      {detail}");
            self.failures += 1;
        }
    }

    fn verdict(&self) -> std::io::Result<()> {
        if self.failures > 0 {
            return Err(std::io::Error::other(format!(
                "{} demo check(s) failed",
                self.failures
            )));
        }
        Ok(())
    }
}

/// Sends the guide's requests and checks each answer.
async fn self_check(
    gw: SocketAddr,
    cookie: &str,
    provider: &str,
    roles: bool,
) -> std::io::Result<()> {
    let mut p = Probe::new();
    let a = p
        .get(
            gw,
            "/whoami",
            &[("cookie", cookie), ("x-iid-profile-id", "1")],
        )
        .await?;
    println!("{}", a.body);
    let echoed: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
    let headers = &echoed["headers"];
    let profile = headers["x-iid-profile-id"].as_array().cloned();
    p.check(
        "signed-in request reaches the upstream with the user's x-iid-profile-id (spoofed value removed)",
        a.status == StatusCode::OK
            && profile.as_ref().is_some_and(|v| {
                v.len() == 1 && v[0].as_str().is_some_and(|s| !s.is_empty() && s != "1")
            }),
        &a.body,
    );
    let context = headers["x-iid-user-context"][0]
        .as_str()
        .and_then(|c| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c).ok()
        })
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .unwrap_or_default();
    // IID's user-context predates the provider field and is pinned byte for byte.
    if provider != "iid" {
        p.check(
            &format!("x-iid-user-context names the provider ({provider})"),
            context["provider"] == provider,
            &context.to_string(),
        );
    }
    let a = p.get(gw, "/whoami", &[]).await?;
    p.check(
        "no session: 401",
        a.status == StatusCode::UNAUTHORIZED,
        &a.body,
    );
    if roles {
        let a = p.get(gw, "/admin/", &[("cookie", cookie)]).await?;
        p.check(
            "missing role: 403",
            a.status == StatusCode::FORBIDDEN,
            &a.body,
        );
    }
    let a = p.get(gw, "/public/hello", &[]).await?;
    p.check(
        "public route without session: 200",
        a.status == StatusCode::OK,
        &a.body,
    );
    let a = p.get(gw, "/logout", &[("cookie", cookie)]).await?;
    p.check("logout: 200", a.status == StatusCode::OK, &a.body);
    let a = p.get(gw, "/whoami", &[("cookie", cookie)]).await?;
    p.check(
        "same cookie after logout: 401",
        a.status == StatusCode::UNAUTHORIZED,
        &a.body,
    );
    p.verdict()?;
    if provider != "iid" {
        println!("demo self-test passed");
    }
    Ok(())
}

/// Walks the browser journey as a browser would, one redirect at a time.
async fn browser_check(gw: SocketAddr, idp: SocketAddr) -> std::io::Result<()> {
    let mut p = Probe::new();
    let html = [("accept", "text/html")];
    let a = p.get(gw, "/reports?month=2026-11", &html).await?;
    let login = a.location();
    p.check(
        "browser without a session: 302 to the emulator's sign-in page",
        a.status == StatusCode::FOUND
            && login == format!("http://{idp}/login?return_to=%2Freports%3Fmonth%3D2026-11"),
        &login,
    );
    let a = p.send(Method::GET, login, &[], "").await?;
    p.check(
        "sign-in page lists user 518",
        a.status == StatusCode::OK && a.body.contains(r#"value="518""#),
        &a.body,
    );
    let a = p
        .send(
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
    p.check(
        "choosing 518 sets the session cookies and returns to the app",
        a.status == StatusCode::SEE_OTHER
            && back == format!("http://{gw}/reports?month=2026-11")
            && cookies.len() == 2,
        &format!("{back} {cookies:?}"),
    );
    let browser_cookie = cookies.join("; ");
    let a = p
        .send(
            Method::GET,
            back,
            &[("accept", "text/html"), ("cookie", &browser_cookie)],
            "",
        )
        .await?;
    p.check(
        "the app's page shows profile 518",
        a.status == StatusCode::OK && a.body.contains(r#"<dd id="profile-id">518</dd>"#),
        &a.body,
    );
    let a = p
        .send(
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
    p.check(
        "the page's logout button: 302 back to the app, which sends the browser to sign in",
        a.status == StatusCode::FOUND && a.location() == "/",
        &a.body,
    );
    p.verdict()?;
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
