//! Test harness: the real gateway, the IID emulator and the echo upstream,
//! each a real server on 127.0.0.1:0, talking HTTP over loopback.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sessiongate::app;
use sessiongate::config::Config;
use sessiongate::dev::echo;
use sessiongate::dev::emulator::ciam::{self, CiamEmulator};
use sessiongate::dev::emulator::enos::{self, EnosEmulator};
use sessiongate::dev::emulator::sso_identity::{self, SsoIdentityEmulator};
use sessiongate::dev::emulator::{self, AppOrigin, Emulator, EmulatorConfig, SignIn};
use sessiongate::idp::ciam::wire as ciam_wire;
use sessiongate::idp::enos::wire as enos_wire;
use sessiongate::pipeline::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub mod browser;
pub mod cluster;
pub mod ingress;
pub mod logs;
pub mod providers;
pub mod redis;
pub mod system;

/// API key the harness' emulator demands and the gateway sends.
pub const API_KEY: &str = "test-api-key";
/// Access token the CIAM emulator demands and the gateway sends.
pub const CIAM_ACCESS_TOKEN: &str = "test-ciam-access-token";

/// Routes used unless a test replaces them (`{up}` is the upstream address).
pub const DEFAULT_ROUTES: &str = r#"
[[routes]]
prefix = "/public/"
upstream = "http://{up}"
auth = "public"

[[routes]]
prefix = "/admin/"
upstream = "http://{up}"
permissions = ["P2001", "P2002"]

[[routes]]
prefix = "/org/"
upstream = "http://{up}"
roles = ["IID-ESTABLISHMENT-ADMIN", "SOME-OTHER-ROLE"]

[[routes]]
prefix = "/"
upstream = "http://{up}"
"#;

/// Profile ids shipped in config/users.json.
pub mod users {
    /// The seed's investor (36 permissions, role IID-INVESTOR).
    pub const INVESTOR: &str = "518";
    /// Arabic-locale individual.
    pub const ARABIC: &str = "1001";
    /// Establishment admin: P2001, P2002, role IID-ESTABLISHMENT-ADMIN.
    pub const ESTABLISHMENT_ADMIN: &str = "7001";
    /// No permissions, no roles.
    pub const NO_ACCESS: &str = "9001";
}

/// How to build a harness.
pub struct Builder {
    sections: BTreeMap<String, Vec<String>>,
    routes: String,
    idp_base_url: Option<String>,
    upstream: Option<SocketAddr>,
    session_secs: u64,
    sign_in: bool,
    enos: bool,
    forward_auth: bool,
    sso_identity: bool,
    ciam: Option<CiamMode>,
}

/// How [`Builder::ciam`] uses the CIAM emulator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CiamMode {
    ValidateOnly,
    Userinfo,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            sections: BTreeMap::new(),
            routes: DEFAULT_ROUTES.to_string(),
            idp_base_url: None,
            upstream: None,
            session_secs: 600,
            sign_in: false,
            enos: false,
            forward_auth: false,
            sso_identity: false,
            ciam: None,
        }
    }
}

impl Builder {
    /// Adds `key = value` lines (raw TOML) to `[section]`, e.g. `set("cache", "max_ttl = \"2s\"")`.
    pub fn set(mut self, section: &str, line: &str) -> Self {
        self.sections
            .entry(section.to_string())
            .or_default()
            .push(line.to_string());
        self
    }

    /// Replaces the routes; `{up}` stands for the echo upstream's address.
    pub fn routes(mut self, toml: &str) -> Self {
        self.routes = toml.to_string();
        self
    }

    /// Points the gateway's IdP client somewhere other than the emulator.
    pub fn idp_base_url(mut self, url: &str) -> Self {
        self.idp_base_url = Some(url.to_string());
        self
    }

    /// Points routes at this address instead of the echo upstream.
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.upstream = Some(addr);
        self
    }

    /// Lifetime of sessions the emulator creates by default.
    pub fn session_secs(mut self, secs: u64) -> Self {
        self.session_secs = secs;
        self
    }

    /// The browser journey: the emulator serves its sign-in page, returning
    /// to the gateway, and `session.login_url` points at that page.
    pub fn sign_in(mut self) -> Self {
        self.sign_in = true;
        self
    }

    /// Uses `idp.provider = "enos"` against the EnOS emulator (instead of IID
    /// against the IID emulator, which still runs, unused).
    pub fn enos(mut self) -> Self {
        self.enos = true;
        self
    }

    /// Also serves forward-auth decisions on a listener of their own
    /// ([`Harness::forward_auth`]); `[forward_auth]` lines from [`Builder::set`] apply.
    pub fn forward_auth(mut self) -> Self {
        self.forward_auth = true;
        self
    }

    /// Uses `idp.provider = "sso_identity"` against the SSO identity emulator
    /// (the IID emulator still runs, unused).
    pub fn sso_identity(mut self) -> Self {
        self.sso_identity = true;
        self
    }

    /// Uses `idp.provider = "ciam"` against the CIAM emulator, validating
    /// only (no `userinfo_url`).
    pub fn ciam(mut self) -> Self {
        self.ciam = Some(CiamMode::ValidateOnly);
        self
    }

    /// [`Builder::ciam`] with `idp.userinfo_url` at the emulator's userinfo.
    pub fn ciam_userinfo(mut self) -> Self {
        self.ciam = Some(CiamMode::Userinfo);
        self
    }

    /// Starts emulator, upstream and gateway.
    pub async fn start(self) -> Harness {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stop = async move {
            let _ = stop_rx.await;
        };
        let (stop_tx2, stop_rx2) = oneshot::channel::<()>();
        let (stop_tx3, stop_rx3) = oneshot::channel::<()>();

        let idp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = idp_listener.local_addr().unwrap();
        // Bound before the emulator starts: its sign-in page returns here.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = listener.local_addr().unwrap();

        let mut stops = vec![];
        let enos = if self.enos {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let enos = EnosEmulator::new(emulator::default_users(), self.session_secs);
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            tokio::spawn(enos::run(l, Arc::clone(&enos), async move {
                let _ = rx.await;
            }));
            Some((addr, enos))
        } else {
            None
        };
        let sso = if self.sso_identity {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let sso = SsoIdentityEmulator::new(emulator::default_users(), self.session_secs);
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            tokio::spawn(sso_identity::run(l, Arc::clone(&sso), async move {
                let _ = rx.await;
            }));
            Some((addr, sso))
        } else {
            None
        };

        let ciam = if self.ciam.is_some() {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let ciam = CiamEmulator::new(
                emulator::default_users(),
                self.session_secs,
                CIAM_ACCESS_TOKEN,
            );
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            tokio::spawn(ciam::run(l, Arc::clone(&ciam), async move {
                let _ = rx.await;
            }));
            Some((addr, ciam))
        } else {
            None
        };

        let up_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = up_listener.local_addr().unwrap();
        tokio::spawn(echo::run(up_listener, async move {
            let _ = stop_rx3.await;
        }));
        let upstream = self.upstream.unwrap_or(echo_addr);

        let base_url = self
            .idp_base_url
            .clone()
            .unwrap_or_else(|| match (&enos, &sso, &ciam) {
                (Some((addr, _)), _, _) => format!("http://{addr}{}", enos_wire::SERVICE_PATH),
                (_, Some((addr, _)), _) | (_, _, Some((addr, _))) => format!("http://{addr}"),
                _ => format!("http://{idp}{}", emulator::BASE_PATH),
            });
        let mut toml = String::new();
        let mut sections = self.sections;
        if self.sign_in {
            let session_lines = sections.entry("session".into()).or_default();
            session_lines.insert(0, format!("login_url = \"http://{idp}/login\""));
        }
        let idp_lines = sections.entry("idp".into()).or_default();
        idp_lines.insert(0, format!("base_url = \"{base_url}\""));
        if self.enos {
            idp_lines.insert(0, "provider = \"enos\"".into());
        } else if self.sso_identity {
            idp_lines.insert(0, "provider = \"sso_identity\"".into());
        } else if let Some((addr, _)) = &ciam {
            if self.ciam == Some(CiamMode::Userinfo) {
                idp_lines.insert(
                    0,
                    format!(
                        "userinfo_url = \"http://{addr}{}\"",
                        ciam_wire::PATH_USERINFO
                    ),
                );
            }
            idp_lines.insert(0, format!("access_token = \"{CIAM_ACCESS_TOKEN}\""));
            idp_lines.insert(0, "provider = \"ciam\"".into());
        } else {
            idp_lines.insert(0, format!("api_key = \"{API_KEY}\""));
        }
        let server_lines = sections.entry("server".into()).or_default();
        server_lines.insert(0, "listen = \"127.0.0.1:0\"".into());
        if self.forward_auth {
            let lines = sections.entry("forward_auth".into()).or_default();
            lines.insert(0, "listen = \"127.0.0.1:0\"".into());
        }
        for (section, lines) in &sections {
            toml.push_str(&format!("[{section}]\n{}\n", lines.join("\n")));
        }
        toml.push_str(&self.routes.replace("{up}", &upstream.to_string()));
        let config = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));

        let emulator_config = EmulatorConfig {
            api_key: API_KEY.into(),
            client_id: None,
            expires_in: self.session_secs,
            users: emulator::default_users(),
        };
        let emulator = if self.sign_in {
            let sign_in = SignIn {
                app_origin: AppOrigin::parse(&format!("http://{gateway_addr}")).unwrap(),
                id_cookie: config.session.id_cookie.clone(),
                token_cookie: config.session.token_cookie.clone(),
            };
            Emulator::with_sign_in(emulator_config, sign_in)
        } else {
            Emulator::new(emulator_config)
        };
        tokio::spawn(emulator::run(
            idp_listener,
            Arc::clone(&emulator),
            async move {
                let _ = stop_rx2.await;
            },
        ));

        let gateway = app::build_gateway(&config).unwrap();
        let forward_auth = if self.forward_auth {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            let (config, gateway) = (config.clone(), Arc::clone(&gateway));
            tokio::spawn(async move {
                app::serve_forward_auth(&config, gateway, l, async move {
                    let _ = rx.await;
                })
                .await
            });
            Some(addr)
        } else {
            None
        };
        // The admin listener (probes, metrics, revocation) lives as long as the harness.
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let (admin_tx, admin_rx) = oneshot::channel::<()>();
        stops.push(admin_tx);
        tokio::spawn(sessiongate::admin::run(
            admin_listener,
            Arc::clone(gateway.admin()),
            async move {
                let _ = admin_rx.await;
            },
        ));
        let serving = Arc::clone(&gateway);
        let serving =
            tokio::spawn(async move { app::serve(&config, serving, listener, stop).await });
        // As `app::run` does once everything fallible is done (the harness has no TLS to load).
        gateway.admin().set_ready(true, "ok");

        Harness {
            addr: gateway_addr,
            admin,
            forward_auth,
            upstream,
            echo: echo_addr,
            idp,
            emulator,
            enos,
            sso,
            ciam,
            gateway,
            client: Client::builder(TokioExecutor::new()).build_http(),
            serving,
            gateway_stop: Some(stop_tx),
            _stops: {
                stops.extend([stop_tx2, stop_tx3]);
                stops
            },
        }
    }
}

/// A running gateway with its peers; everything stops when dropped.
pub struct Harness {
    /// Gateway address.
    pub addr: SocketAddr,
    /// The admin listener: `/healthz`, `/readyz`, `/metrics`, `/revoke`.
    pub admin: SocketAddr,
    /// With [`Builder::forward_auth`]: the decision listener's address.
    pub forward_auth: Option<SocketAddr>,
    /// Where routes point.
    pub upstream: SocketAddr,
    /// The echo upstream (even when routes point elsewhere).
    pub echo: SocketAddr,
    /// Emulator address.
    pub idp: SocketAddr,
    /// Emulator state: create sessions, read call counts, inject faults.
    pub emulator: Arc<Emulator>,
    /// With [`Builder::enos`]: the EnOS emulator's address and state.
    pub enos: Option<(SocketAddr, Arc<EnosEmulator>)>,
    /// With [`Builder::sso_identity`]: the SSO identity emulator's address and state.
    pub sso: Option<(SocketAddr, Arc<SsoIdentityEmulator>)>,
    /// With [`Builder::ciam`]: the CIAM emulator's address and state.
    pub ciam: Option<(SocketAddr, Arc<CiamEmulator>)>,
    /// The gateway itself (cache introspection).
    pub gateway: Arc<Gateway>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The gateway's accept loop; returns once its shutdown drain is over.
    pub serving: tokio::task::JoinHandle<Result<(), app::StartError>>,
    gateway_stop: Option<oneshot::Sender<()>>,
    _stops: Vec<oneshot::Sender<()>>,
}

/// A response as seen by the client.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Whole body.
    pub body: Bytes,
}

impl Reply {
    /// Parses a response read off a raw connection (see [`Harness::raw`]),
    /// de-chunking the body if needed.
    pub fn parse_raw(resp: &str) -> Reply {
        let status = StatusCode::from_u16(raw_status(resp)).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp, ""));
        let mut headers = HeaderMap::new();
        for (k, v) in head.lines().skip(1).filter_map(|l| l.split_once(':')) {
            headers.append(
                http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                http::HeaderValue::from_str(v.trim()).unwrap(),
            );
        }
        let chunked = headers
            .get("transfer-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        let body = if chunked {
            dechunk(body.as_bytes())
        } else {
            body.as_bytes().to_vec()
        };
        Reply {
            status,
            headers,
            body: Bytes::from(body),
        }
    }

    /// Body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// For echo answers: the values the upstream received for header `name`.
    pub fn upstream_header(&self, name: &str) -> Option<Vec<String>> {
        let v = self.json();
        v["headers"].get(name).map(|vals| {
            vals.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        })
    }

    /// For echo answers: every header name the upstream received.
    pub fn upstream_header_names(&self) -> Vec<String> {
        self.json()["headers"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// For echo answers: the request target the upstream received.
    pub fn upstream_uri(&self) -> String {
        self.json()["uri"].as_str().unwrap().to_string()
    }

    /// For gateway errors: `errors[0].reason`.
    pub fn reason(&self) -> String {
        self.json()["errors"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// True if the echo upstream produced this answer.
    pub fn from_upstream(&self) -> bool {
        self.headers.contains_key("x-echo")
    }
}

impl Harness {
    /// Default harness.
    pub async fn start() -> Harness {
        Builder::default().start().await
    }

    /// Customizable harness.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts the gateway's graceful shutdown, as SIGTERM does; the emulator
    /// and the echo upstream keep running.
    pub fn shutdown(&mut self) {
        self.gateway_stop.take();
    }

    /// `http://gateway{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Logs `profile` in at the emulator; returns the Cookie header value.
    pub fn login(&self, profile: &str) -> String {
        let s = self
            .emulator
            .create_session(profile, None)
            .expect("user exists");
        format!(
            "iid_session_id={}; iid_session_token={}",
            s.session_id, s.session_token
        )
    }

    /// Logs in with an explicit lifetime.
    pub fn login_for(&self, profile: &str, secs: u64) -> String {
        let s = self
            .emulator
            .create_session(profile, Some(secs))
            .expect("user exists");
        format!(
            "iid_session_id={}; iid_session_token={}",
            s.session_id, s.session_token
        )
    }

    /// The EnOS emulator (panics unless built with [`Builder::enos`]).
    pub fn enos(&self) -> &EnosEmulator {
        &self.enos.as_ref().expect("built with Builder::enos").1
    }

    /// Logs `profile` in at the EnOS emulator; returns the bearer token.
    pub fn enos_token(&self, profile: &str, secs: Option<u64>) -> String {
        self.enos()
            .create_session(profile, secs)
            .expect("user exists")
            .token
    }

    /// The SSO identity emulator (panics unless built with [`Builder::sso_identity`]).
    pub fn sso(&self) -> &SsoIdentityEmulator {
        &self
            .sso
            .as_ref()
            .expect("built with Builder::sso_identity")
            .1
    }

    /// Starts an SSO session for `profile` at the SSO identity emulator;
    /// returns its identity token.
    pub fn sso_token(&self, profile: &str, secs: Option<u64>) -> String {
        self.sso()
            .create_session(profile, secs)
            .expect("user exists")
            .token
    }

    /// The CIAM emulator (panics unless built with [`Builder::ciam`]).
    pub fn ciam(&self) -> &CiamEmulator {
        &self.ciam.as_ref().expect("built with Builder::ciam").1
    }

    /// Logs `profile` in at the CIAM emulator; returns the session token.
    pub fn ciam_token(&self, profile: &str, secs: Option<u64>) -> String {
        self.ciam()
            .create_session(profile, secs)
            .expect("user exists")
            .token
    }

    /// The IID emulator's base URL, as `idp.base_url` points at it: other
    /// harnesses given it with [`Builder::idp_base_url`] share this emulator
    /// (and its sessions and call counts).
    pub fn idp_base_url(&self) -> String {
        format!("http://{}{}", self.idp, emulator::BASE_PATH)
    }

    /// A request to the admin listener, whole body in and out.
    pub async fn admin_request(&self, method: Method, path: &str, body: &str) -> Reply {
        let url = format!("http://{}{path}", self.admin);
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        self.request_url(method, &url, headers, Bytes::from(body.to_owned()))
            .await
    }

    /// The value of one series on the admin listener's `/metrics`, e.g.
    /// `sessiongate_cluster_degraded` or `x_total{reason="y"}`; 0 when absent.
    pub async fn admin_metric(&self, series: &str) -> f64 {
        let r = self.admin_request(Method::GET, "/metrics", "").await;
        assert_eq!(r.status, 200, "/metrics: {:?}", r.body);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        metric_value(&text, series)
    }

    /// IdP fetch calls so far.
    pub fn idp_fetches(&self) -> u64 {
        self.emulator.stats().fetch
    }

    /// GET through the gateway.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(Method::GET, path, headers, Bytes::new()).await
    }

    /// The emulator's sign-in page, where `session.login_url` points with [`Builder::sign_in`].
    pub fn sign_in_url(&self) -> String {
        format!("http://{}/login", self.idp)
    }

    /// Any request through the gateway, whole body in and out.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        self.request_url(method, &self.url(path), headers, body)
            .await
    }

    /// Any request to any URL (the emulator's sign-in page, say), whole body in and out.
    pub async fn request_url(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// A decision request to the forward-auth listener (panics unless built
    /// with [`Builder::forward_auth`]), from 127.0.0.1 as an ingress in the same pod.
    pub async fn decide(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let addr = self.forward_auth.expect("built with Builder::forward_auth");
        let url = format!("http://{addr}{path}");
        self.request_url(Method::GET, &url, headers, Bytes::new())
            .await
    }

    /// The gateway's metrics as `/metrics` would show them.
    pub fn metrics(&self) -> String {
        self.gateway.admin().metrics().encode().unwrap()
    }

    /// Sends raw bytes on a fresh connection and returns everything read
    /// until the server closes (send `Connection: close`). For requests a
    /// well-behaved client library would refuse to produce.
    pub async fn raw(&self, request: &[u8]) -> String {
        raw_exchange(self.addr, request).await
    }
}

/// The value of `series` (name with its labels, as exposed) in a metrics text; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Raw HTTP/1.1 exchange with any server; see [`Harness::raw`].
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw HTTP response.
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// Polls `cond` every 50 ms until it holds or `deadline` passes; returns whether it held.
pub async fn eventually<F, Fut>(deadline: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP server that answers every request with `response` verbatim (for
/// IdPs that answer garbage or hang).
pub async fn canned_server(response: &'static [u8], delay: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// An address that refuses connections for as long as it lives.
///
/// The port stays bound but never listens: a port that was bound and
/// released could be taken by a server of a test running in parallel, which
/// would then answer in place of "nothing there".
pub struct DeadAddr {
    addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl DeadAddr {
    /// The refusing address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Display for DeadAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// An address nothing listens on (see [`DeadAddr`]).
pub async fn dead_addr() -> DeadAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    DeadAddr {
        addr,
        _socket: socket,
    }
}

/// FNV-1a of `data`, as the echo upstream reports it.
pub fn fnv_hex(data: &[u8]) -> String {
    format!("{:016x}", echo::fnv1a64(data, echo::FNV_OFFSET))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol]).unwrap();
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + n]);
        b = &b[(start + n + 2).min(b.len())..];
    }
    out
}

/// An upstream that reports each request's arrival, then answers `done` after
/// `hold` (for requests that must be in flight while something else happens).
pub async fn slow_upstream(
    hold: Duration,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = tx.send(());
                tokio::time::sleep(hold).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone",
                    )
                    .await;
            });
        }
    });
    (addr, rx)
}
