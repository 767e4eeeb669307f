//! Configuration: a serde mirror of the TOML file (plus `SESSIONGATE_<SECTION>__<KEY>`
//! environment overrides), validated into runtime types in one pass that
//! collects every error and names its key, so an operator fixes them all at once.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use http::uri::{Authority, Scheme};
use http::Uri;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// Default public listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener (health, readiness, metrics); loopback so it is never public by accident.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default IdP call timeout.
pub const DEFAULT_IDP_TIMEOUT: Duration = Duration::from_secs(2);
/// Default upper bound on how long a valid session is cached.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);
/// Default lifetime of a cached "invalid session" answer.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Default upstream connect timeout.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to wait for the upstream's response head (then 504).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit on the request line plus headers (then 431).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default time a client has to send its request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = crate::server::DEFAULT_IDLE_TIMEOUT;
/// Default bound on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = crate::server::DEFAULT_MAX_CONNECTIONS;
/// Default drain time on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default interval at which `server.tls` files are checked for a new certificate.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Path used when no file is given and `$SESSIONGATE_CONFIG` is unset.
pub const DEFAULT_CONFIG_PATH: &str = "config/sessiongate.toml";

/// Validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public listener settings.
    pub server: ServerConfig,
    /// Cookie names and browser behaviour.
    pub session: SessionConfig,
    /// Identity provider.
    pub idp: IdpConfig,
    /// Session cache.
    pub cache: CacheConfig,
    /// Upstream connection settings.
    pub upstream: UpstreamConfig,
    /// Injected header options.
    pub headers: HeadersConfig,
    /// Logging.
    pub log: LogConfig,
    /// Health, readiness and metrics listener.
    pub admin: AdminConfig,
    /// Routes, in file order (matching picks the longest prefix).
    pub routes: Vec<RouteConfig>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// Peers whose X-Forwarded-* headers are extended instead of replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// Tokio worker threads; 0 means one per available core.
    pub workers: usize,
    /// Request line + header bytes above which the gateway answers 431.
    pub max_header_bytes: usize,
    /// Time a client has to send its request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Keep-alive connections with no request in flight are closed after this.
    pub idle_timeout: Duration,
    /// Open connections at most; beyond it new ones wait in the accept backlog.
    pub max_connections: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Serve HTTP/2 beside HTTP/1.1: `h2` by ALPN over TLS, prior-knowledge h2c in cleartext.
    pub http2: bool,
    /// TLS termination; `None` serves cleartext.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: PathBuf,
    /// How often both files are checked for a rotated certificate (SIGHUP also reloads).
    pub reload_interval: Duration,
}

/// `[session]`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Cookie holding the child session id.
    pub id_cookie: String,
    /// Cookie holding the session token; empty means none is read.
    pub token_cookie: String,
    /// Browser requests without a valid session are redirected here when set.
    pub login_url: Option<String>,
    /// Path the gateway answers itself to log the session out.
    pub logout_path: String,
}

/// Which session API the gateway talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// IID single sign-on child sessions (seeds 000/001).
    Iid,
}

/// `[idp]`.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// Session API flavour.
    pub provider: Provider,
    /// Base URL the API paths are appended to.
    pub base_url: String,
    /// Sent as `X-IID-API-KEY`; redacted in Debug.
    pub api_key: Secret,
    /// Sent as `X-IID-CLIENT-ID`.
    pub client_id: String,
    /// Bound on one IdP call, connect to last body byte.
    pub timeout: Duration,
    /// Run the emulator in-process and point the client at it.
    pub emulate: bool,
    /// Trust only this CA bundle for an `https://` IdP (a private PKI).
    pub ca: Option<CaBundle>,
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Entry bound; least recently used sessions go first.
    pub max_entries: u64,
    /// Upper bound on a valid session's cache lifetime.
    pub max_ttl: Duration,
    /// Lifetime of a cached "invalid session" answer.
    pub negative_ttl: Duration,
}

/// `[upstream]`.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// TCP connect timeout to an upstream (then 502).
    pub connect_timeout: Duration,
    /// Time to wait for the upstream's response head (then 504).
    pub timeout: Duration,
    /// One pooled client per distinct route `(ca_file, http2)`; `RouteConfig::client` indexes it.
    pub clients: Vec<UpstreamClientConfig>,
}

/// How one pooled upstream client connects; routes that agree share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamClientConfig {
    /// Trust only this CA bundle for `https://`; `None` means the webpki roots.
    pub ca: Option<CaBundle>,
    /// HTTP/2 only: prior knowledge for `http://`, ALPN `h2` for `https://`.
    pub http2: bool,
}

/// A route's `ca_file`, read and checked when the config is validated.
#[derive(Clone)]
pub struct CaBundle {
    /// The file as configured.
    pub path: PathBuf,
    /// Its certificates, each usable as a trust anchor.
    pub certs: std::sync::Arc<[rustls::pki_types::CertificateDer<'static>]>,
}

impl PartialEq for CaBundle {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for CaBundle {}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, n) = (self.path.display(), self.certs.len());
        write!(f, "{path} ({n} certificates)")
    }
}

/// `[headers]`.
#[derive(Debug, Clone, Default)]
pub struct HeadersConfig {
    /// Put eid, passport, mobile and e-mail into `x-iid-user-context`.
    pub include_pii: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable.
    Pretty,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// tracing filter directive; `RUST_LOG` wins when set.
    pub level: String,
    /// One `sessiongate::access` event per request (at info level).
    pub access: bool,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None` disables it.
    pub listen: Option<SocketAddr>,
}

/// Whether a route needs a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Forwarded without looking at the session.
    Public,
    /// A valid session (and the listed permissions/roles) is required.
    Required,
}

/// Where a route forwards to: scheme and authority only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// host:port.
    pub authority: Authority,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Path prefix matched against the normalized request path.
    pub prefix: String,
    /// Where matching requests go.
    pub upstream: Upstream,
    /// Public or required.
    pub auth: Auth,
    /// All must be in the session's permissions.
    pub permissions: Vec<String>,
    /// When non-empty, one must be among the session's role codes.
    pub roles: Vec<String>,
    /// PEM bundle trusted (alone) for this route's `https://` upstream.
    pub ca_file: Option<PathBuf>,
    /// Speak HTTP/2 only to the upstream (gRPC), keeping `TE: trailers`.
    pub http2: bool,
    /// Index into `UpstreamConfig::clients`.
    pub client: usize,
    /// Request bodies above this many bytes get 413; `None` is unlimited.
    pub max_body_bytes: Option<u64>,
}

/// A string that never shows up in Debug output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named on the command line does not exist.
    #[error("config file {0} does not exist")]
    Missing(String),
    /// TOML syntax, wrong types or unknown keys.
    #[error("{0}")]
    Parse(String),
    /// Values that parse but make no sense; one line per problem.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads `path` (must exist) with environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Missing(path.display().to_string()));
        }
        let figment = Figment::new().merge(Toml::file(path)).merge(
            // SESSIONGATE_CONFIG names the file itself, it is not a setting;
            // SESSIONGATE_REQUIRE_SYSTEM_TESTS is the test suite's (scripts/test).
            Env::prefixed("SESSIONGATE_")
                .ignore(&["config", "require_system_tests"])
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Parses TOML text without environment overrides (tests, embedded configs).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment
            .extract()
            .map_err(|e| ConfigError::Parse(render_figment_error(e)))?;
        raw.validate()
    }

    /// One line for `sessiongate check`.
    pub fn summary(&self) -> String {
        let required = self
            .routes
            .iter()
            .filter(|r| r.auth == Auth::Required)
            .count();
        format!(
            "ok: listen {}, {} routes ({} required, {} public), idp {} ({}), cache {} entries max_ttl {}",
            self.server.listen,
            self.routes.len(),
            required,
            self.routes.len() - required,
            match self.idp.provider {
                Provider::Iid => "iid",
            },
            if self.idp.emulate {
                "embedded emulator".to_string()
            } else {
                self.idp.base_url.clone()
            },
            self.cache.max_entries,
            humantime::format_duration(self.cache.max_ttl),
        )
    }
}

fn render_figment_error(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                e.to_string()
            } else {
                format!("{key}: {}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Accepts strings, and numbers or booleans that environment overrides turn
/// into typed values (e.g. an all-digit API key).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::S(s) => s,
        Lenient::I(v) => v.to_string(),
        Lenient::U(v) => v.to_string(),
        Lenient::F(v) => v.to_string(),
        Lenient::B(v) => v.to_string(),
    })
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: RawServer,
    session: RawSession,
    idp: RawIdp,
    cache: RawCache,
    upstream: RawUpstream,
    headers: RawHeaders,
    log: RawLog,
    admin: RawAdmin,
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    #[serde(deserialize_with = "lenient_string")]
    listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    #[serde(deserialize_with = "lenient_string")]
    listen: String,
    trusted_proxies: Vec<String>,
    workers: usize,
    max_header_bytes: usize,
    #[serde(deserialize_with = "lenient_string")]
    header_read_timeout: String,
    #[serde(deserialize_with = "lenient_string")]
    idle_timeout: String,
    max_connections: usize,
    #[serde(deserialize_with = "lenient_string")]
    shutdown_grace: String,
    http2: bool,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    #[serde(
        default = "default_reload_interval",
        deserialize_with = "lenient_string"
    )]
    reload_interval: String,
}

fn default_reload_interval() -> String {
    "5s".into()
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            trusted_proxies: Vec::new(),
            workers: 0,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_read_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: "30s".into(),
            http2: true,
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawSession {
    #[serde(deserialize_with = "lenient_string")]
    id_cookie: String,
    #[serde(deserialize_with = "lenient_string")]
    token_cookie: String,
    #[serde(deserialize_with = "lenient_string")]
    login_url: String,
    #[serde(deserialize_with = "lenient_string")]
    logout_path: String,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            id_cookie: "iid_session_id".into(),
            token_cookie: "iid_session_token".into(),
            login_url: String::new(),
            logout_path: "/logout".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawIdp {
    #[serde(deserialize_with = "lenient_string")]
    provider: String,
    #[serde(deserialize_with = "lenient_string")]
    base_url: String,
    #[serde(deserialize_with = "lenient_string")]
    api_key: String,
    #[serde(deserialize_with = "lenient_string")]
    client_id: String,
    #[serde(deserialize_with = "lenient_string")]
    timeout: String,
    emulate: bool,
    #[serde(deserialize_with = "lenient_string")]
    ca_file: String,
}

impl Default for RawIdp {
    fn default() -> Self {
        Self {
            provider: "iid".into(),
            base_url: "http://127.0.0.1:9001/middleware/api/external".into(),
            api_key: String::new(),
            client_id: "TIBCO_CONSUMER".into(),
            timeout: "2s".into(),
            emulate: false,
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    max_entries: u64,
    #[serde(deserialize_with = "lenient_string")]
    max_ttl: String,
    #[serde(deserialize_with = "lenient_string")]
    negative_ttl: String,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_ttl: "5m".into(),
            negative_ttl: "5s".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    #[serde(deserialize_with = "lenient_string")]
    connect_timeout: String,
    #[serde(deserialize_with = "lenient_string")]
    timeout: String,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            connect_timeout: "5s".into(),
            timeout: "60s".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawHeaders {
    include_pii: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    #[serde(deserialize_with = "lenient_string")]
    format: String,
    #[serde(deserialize_with = "lenient_string")]
    level: String,
    access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            level: "info".into(),
            access: true,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    upstream: String,
    #[serde(default = "default_auth")]
    auth: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    http2: bool,
    #[serde(default)]
    max_body_bytes: Option<u64>,
}

fn default_auth() -> String {
    "required".into()
}

/// Collects validation errors, each prefixed with its key path.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, key: &str, msg: impl fmt::Display) {
        self.0.push(format!("{key}: {msg}"));
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.push(key, format_args!("{e} (e.g. \"2s\", \"500ms\", \"5m\")"));
                Duration::ZERO
            }
        }
    }

    fn positive_duration(&mut self, key: &str, text: &str) -> Duration {
        let d = self.duration(key, text);
        if d.is_zero() && humantime::parse_duration(text.trim()).is_ok() {
            self.push(key, "must be greater than zero");
        }
        d
    }
}

impl RawTls {
    /// Both files must exist and parse now, so a bad path fails at startup
    /// (and in `sessiongate check`), not at the first handshake.
    fn validate(self, p: &mut Problems) -> TlsConfig {
        let cfg = TlsConfig {
            cert_file: PathBuf::from(self.cert_file),
            key_file: PathBuf::from(self.key_file),
            reload_interval: p
                .positive_duration("server.tls.reload_interval", &self.reload_interval),
        };
        let certs = crate::server::pem::read_certs(&cfg.cert_file);
        let key = crate::server::pem::read_key(&cfg.key_file);
        let pair = match (certs, key) {
            (Ok(certs), Ok(key)) => {
                crate::server::pem::certified_key(certs, key, &cfg.cert_file, &cfg.key_file)
                    .map(drop)
            }
            (certs, key) => {
                // Report both files when both are bad.
                if let Err(e) = certs {
                    p.push(&format!("server.tls.{}", e.file.key()), &e.message);
                }
                key.map(drop)
            }
        };
        if let Err(e) = pair {
            p.push(&format!("server.tls.{}", e.file.key()), &e.message);
        }
        cfg
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let mut p = Problems::default();

        let listen = self.server.listen.parse().unwrap_or_else(|e| {
            p.push(
                "server.listen",
                format_args!("{e} (want host:port, e.g. \"0.0.0.0:8080\")"),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let trusted_proxies = self
            .server
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match parse_net(s) {
                Some(net) => Some(net),
                None => {
                    p.push(
                        &format!("server.trusted_proxies[{i}]"),
                        format_args!("{s:?} is not an IP address or CIDR"),
                    );
                    None
                }
            })
            .collect();
        if self.server.max_header_bytes < 1024 {
            p.push("server.max_header_bytes", "must be at least 1024");
        }
        if self.server.max_connections == 0 {
            p.push("server.max_connections", "must be greater than zero");
        }
        let server = ServerConfig {
            listen,
            trusted_proxies,
            workers: self.server.workers,
            max_header_bytes: self.server.max_header_bytes,
            header_read_timeout: p.positive_duration(
                "server.header_read_timeout",
                &self.server.header_read_timeout,
            ),
            idle_timeout: p.positive_duration("server.idle_timeout", &self.server.idle_timeout),
            max_connections: self.server.max_connections,
            shutdown_grace: p.duration("server.shutdown_grace", &self.server.shutdown_grace),
            http2: self.server.http2,
            tls: self.server.tls.map(|t| t.validate(&mut p)),
        };

        for (key, name) in [
            ("session.id_cookie", &self.session.id_cookie),
            ("session.token_cookie", &self.session.token_cookie),
        ] {
            let optional = key == "session.token_cookie";
            if name.is_empty() && !optional {
                p.push(key, "must not be empty");
            } else if !name.bytes().all(is_cookie_name_byte) {
                p.push(key, format_args!("{name:?} is not a valid cookie name"));
            }
        }
        if !self.session.login_url.is_empty() {
            let ok = self.session.login_url.starts_with('/')
                && !self.session.login_url.starts_with("//")
                || self
                    .session
                    .login_url
                    .parse::<Uri>()
                    .map(|u| {
                        matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
                    })
                    .unwrap_or(false);
            if !ok {
                p.push(
                    "session.login_url",
                    "must be an absolute http(s) URL or a path starting with '/'",
                );
            }
        }
        if !self.session.logout_path.starts_with('/') {
            p.push("session.logout_path", "must start with '/'");
        }
        let session = SessionConfig {
            id_cookie: self.session.id_cookie,
            token_cookie: self.session.token_cookie,
            login_url: (!self.session.login_url.is_empty()).then_some(self.session.login_url),
            logout_path: self.session.logout_path,
        };

        let provider = match self.idp.provider.as_str() {
            "iid" => Provider::Iid,
            other => {
                p.push(
                    "idp.provider",
                    format_args!("unknown provider {other:?} (supported: \"iid\")"),
                );
                Provider::Iid
            }
        };
        let base_url = self.idp.base_url.trim_end_matches('/').to_string();
        if !self.idp.emulate {
            match base_url.parse::<Uri>() {
                Ok(u)
                    if matches!(u.scheme_str(), Some("http" | "https"))
                        && u.authority().is_some() => {}
                _ => p.push(
                    "idp.base_url",
                    format_args!("{base_url:?} is not an absolute http(s) URL"),
                ),
            }
        }
        if http::HeaderValue::from_str(&self.idp.api_key).is_err() {
            p.push("idp.api_key", "contains characters not allowed in a header");
        }
        if http::HeaderValue::from_str(&self.idp.client_id).is_err() {
            p.push(
                "idp.client_id",
                "contains characters not allowed in a header",
            );
        }
        let idp = IdpConfig {
            provider,
            base_url,
            api_key: Secret(self.idp.api_key),
            client_id: self.idp.client_id,
            timeout: p.positive_duration("idp.timeout", &self.idp.timeout),
            emulate: self.idp.emulate,
            ca: match self.idp.ca_file.trim() {
                "" => None,
                path => match crate::connector::read_ca_file(std::path::Path::new(path)) {
                    Ok(certs) => Some(CaBundle {
                        path: PathBuf::from(path),
                        certs: certs.into(),
                    }),
                    Err(msg) => {
                        p.push("idp.ca_file", msg);
                        None
                    }
                },
            },
        };

        if self.cache.max_entries == 0 {
            p.push("cache.max_entries", "must be greater than zero");
        }
        let cache = CacheConfig {
            max_entries: self.cache.max_entries,
            max_ttl: p.duration("cache.max_ttl", &self.cache.max_ttl),
            negative_ttl: p.duration("cache.negative_ttl", &self.cache.negative_ttl),
        };

        let mut upstream = UpstreamConfig {
            connect_timeout: p
                .positive_duration("upstream.connect_timeout", &self.upstream.connect_timeout),
            timeout: p.positive_duration("upstream.timeout", &self.upstream.timeout),
            clients: Vec::new(),
        };

        let log = LogConfig {
            format: match self.log.format.as_str() {
                "json" => LogFormat::Json,
                "pretty" => LogFormat::Pretty,
                other => {
                    p.push(
                        "log.format",
                        format_args!("{other:?} is not \"json\" or \"pretty\""),
                    );
                    LogFormat::Pretty
                }
            },
            level: self.log.level,
            access: self.log.access,
        };

        let admin = AdminConfig {
            listen: if self.admin.listen.trim().is_empty() {
                None
            } else {
                match self.admin.listen.parse::<SocketAddr>() {
                    Ok(a) if a == listen => {
                        p.push("admin.listen", "must differ from server.listen: metrics and probes are never on the public listener");
                        None
                    }
                    Ok(a) => Some(a),
                    Err(e) => {
                        p.push(
                            "admin.listen",
                            format_args!("{e} (want host:port, or \"\" to disable)"),
                        );
                        None
                    }
                }
            },
        };

        if self.routes.is_empty() {
            p.push("routes", "at least one [[routes]] entry is required");
        }
        let mut routes: Vec<RouteConfig> = Vec::with_capacity(self.routes.len());
        let clients = &mut upstream.clients;
        for (i, r) in self.routes.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            if !r.prefix.starts_with('/') {
                p.push(&format!("{key}.prefix"), "must start with '/'");
            } else if crate::path::normalize_path(&r.prefix)
                .map(|n| n != r.prefix.as_str())
                .unwrap_or(true)
            {
                p.push(
                    &format!("{key}.prefix"),
                    format_args!(
                        "{:?} is not a normalized path (no '//', '.', '..', ';', '%2F')",
                        r.prefix
                    ),
                );
            }
            let canonical = crate::path::canonical_prefix(&r.prefix);
            if routes
                .iter()
                .any(|o| crate::path::canonical_prefix(&o.prefix) == canonical)
            {
                p.push(
                    &format!("{key}.prefix"),
                    format_args!("{:?} is listed twice", r.prefix),
                );
            }
            if canonical == crate::path::canonical_prefix(&session.logout_path) {
                p.push(
                    &format!("{key}.prefix"),
                    "equals session.logout_path, which the gateway answers itself",
                );
            }
            let upstream = parse_upstream(&r.upstream).unwrap_or_else(|msg| {
                p.push(&format!("{key}.upstream"), msg);
                Upstream {
                    scheme: Scheme::HTTP,
                    authority: Authority::from_static("invalid"),
                }
            });
            let auth = match r.auth.as_str() {
                "public" => Auth::Public,
                "required" => Auth::Required,
                other => {
                    p.push(
                        &format!("{key}.auth"),
                        format_args!("{other:?} is not \"public\" or \"required\""),
                    );
                    Auth::Required
                }
            };
            if auth == Auth::Public && (!r.permissions.is_empty() || !r.roles.is_empty()) {
                p.push(&key, "a public route cannot require permissions or roles");
            }
            for (field, list) in [("permissions", &r.permissions), ("roles", &r.roles)] {
                if list.iter().any(|v| v.is_empty() || v.contains(',')) {
                    p.push(
                        &format!("{key}.{field}"),
                        "entries must be non-empty and contain no ','",
                    );
                }
            }
            let ca_file = r.ca_file.filter(|f| !f.is_empty()).map(PathBuf::from);
            let client = upstream_client(clients, &mut p, &key, &ca_file, r.http2);
            if ca_file.is_some() && upstream.scheme != Scheme::HTTPS {
                p.push(
                    &format!("{key}.ca_file"),
                    "applies to https:// upstreams only",
                );
            }
            routes.push(RouteConfig {
                prefix: r.prefix,
                upstream,
                auth,
                permissions: r.permissions,
                roles: r.roles,
                ca_file,
                http2: r.http2,
                client,
                max_body_bytes: r.max_body_bytes,
            });
        }

        if !p.0.is_empty() {
            return Err(ConfigError::Invalid(p.0));
        }
        Ok(Config {
            server,
            session,
            idp,
            cache,
            upstream,
            headers: HeadersConfig {
                include_pii: self.headers.include_pii,
            },
            log,
            admin,
            routes,
        })
    }
}

/// The index of the client for `(ca_file, http2)`, added on first use; the
/// CA file is read and checked once, here, so a bad one names its route.
fn upstream_client(
    clients: &mut Vec<UpstreamClientConfig>,
    p: &mut Problems,
    key: &str,
    ca_file: &Option<PathBuf>,
    http2: bool,
) -> usize {
    let same = |c: &UpstreamClientConfig| {
        c.http2 == http2 && c.ca.as_ref().map(|b| &b.path) == ca_file.as_ref()
    };
    if let Some(i) = clients.iter().position(same) {
        return i;
    }
    let ca = match ca_file {
        None => None,
        Some(path) => match crate::connector::read_ca_file(path) {
            Ok(certs) => Some(CaBundle {
                path: path.clone(),
                certs: certs.into(),
            }),
            Err(msg) => {
                p.push(&format!("{key}.ca_file"), msg);
                return 0;
            }
        },
    };
    clients.push(UpstreamClientConfig { ca, http2 });
    clients.len() - 1
}

fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(format!("{s:?} must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{s:?} must be scheme://host[:port] only; the request path is forwarded as is"
        ));
    }
    Ok(Upstream { scheme, authority })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[routes]]
        prefix = "/"
        upstream = "http://127.0.0.1:3000"
    "#;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.server.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.session.id_cookie, "iid_session_id");
        assert_eq!(c.session.token_cookie, "iid_session_token");
        assert_eq!(c.session.logout_path, "/logout");
        assert!(c.session.login_url.is_none());
        assert_eq!(c.idp.client_id, "TIBCO_CONSUMER");
        assert_eq!(c.idp.timeout, DEFAULT_IDP_TIMEOUT);
        assert_eq!(c.cache.max_entries, 100_000);
        assert_eq!(c.cache.max_ttl, DEFAULT_MAX_TTL);
        assert_eq!(c.cache.negative_ttl, DEFAULT_NEGATIVE_TTL);
        assert_eq!(c.upstream.timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(c.upstream.connect_timeout, DEFAULT_UPSTREAM_CONNECT_TIMEOUT);
        assert_eq!(c.server.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(c.server.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(c.server.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(c.server.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.server.max_connections, 10_000);
        assert_eq!(c.routes[0].max_body_bytes, None);
        assert_eq!(c.routes[0].auth, Auth::Required);
        assert_eq!(c.admin.listen, Some(DEFAULT_ADMIN_LISTEN.parse().unwrap()));
    }

    #[test]
    fn admin_listener_can_be_disabled_but_never_shares_the_public_port() {
        let c = Config::from_toml_str(&format!("[admin]\nlisten = \"\"\n{MINIMAL}")).unwrap();
        assert!(c.admin.listen.is_none());
        let err = Config::from_toml_str(&format!(
            "[server]\nlisten = \"127.0.0.1:7000\"\n[admin]\nlisten = \"127.0.0.1:7000\"\n{MINIMAL}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("admin.listen"), "{err}");
    }

    #[test]
    fn collects_every_problem_with_its_key() {
        let err = Config::from_toml_str(
            r#"
            [server]
            listen = "nope"
            trusted_proxies = ["10.0.0.0/8", "bogus"]
            max_connections = 0
            idle_timeout = "0s"
            [idp]
            provider = "okta"
            timeout = "soon"
            [[routes]]
            prefix = "api"
            upstream = "ftp://x"
            auth = "maybe"
            "#,
        )
        .unwrap_err()
        .to_string();
        for key in [
            "server.listen",
            "server.trusted_proxies[1]",
            "server.max_connections",
            "server.idle_timeout",
            "idp.provider",
            "idp.timeout",
            "routes[0].prefix",
            "routes[0].upstream",
            "routes[0].auth",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
    }

    #[test]
    fn limits_parse_per_route() {
        let c = Config::from_toml_str(
            "[server]\nmax_connections = 2\nidle_timeout = \"500ms\"\n\
             [[routes]]\nprefix = \"/up\"\nupstream = \"http://127.0.0.1:3000\"\nmax_body_bytes = 1048576\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
        )
        .unwrap();
        assert_eq!(c.server.max_connections, 2);
        assert_eq!(c.server.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.routes[0].max_body_bytes, Some(1_048_576));
        assert_eq!(c.routes[1].max_body_bytes, None);
        let err = Config::from_toml_str(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nmax_body_bytes = -1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_body_bytes"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = Config::from_toml_str(&format!("[cache]\nmax_tll = \"1m\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_tll"), "{err}");
    }

    #[test]
    fn upstream_with_a_path_is_rejected() {
        let err = Config::from_toml_str(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000/base\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("routes[0].upstream"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn environment_overrides_sections() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gw.toml", MINIMAL)?;
            jail.set_env("SESSIONGATE_IDP__API_KEY", "12345");
            jail.set_env("SESSIONGATE_CACHE__MAX_TTL", "90s");
            jail.set_env("SESSIONGATE_CONFIG", "gw.toml");
            let c = Config::load(Path::new("gw.toml")).map_err(|e| e.to_string())?;
            assert_eq!(c.idp.api_key.expose(), "12345");
            assert_eq!(c.cache.max_ttl, Duration::from_secs(90));
            Ok(())
        });
    }

    #[test]
    fn idp_ca_file_errors_name_the_key() {
        let err = Config::from_toml_str(&format!(
            "[idp]\nca_file = \"/nonexistent/ca.pem\"\n{MINIMAL}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("idp.ca_file"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Config::from_toml_str(&format!("[idp]\napi_key = \"s3cr3t\"\n{MINIMAL}")).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let text = include_str!("../../config/sessiongate.toml");
        Config::from_toml_str(text).unwrap();
    }
}
