//! Configuration: a serde mirror of the TOML file (plus `SESSIONGATE_<SECTION>__<KEY>`
//! environment overrides), validated into runtime types in one pass that
//! collects every error and names its key, so an operator fixes them all at once.
//!
//! # Layout
//! - `raw`: the serde mirror, defaults taken from the `DEFAULT_*` constants below.
//! - `validate`: one function per section, all errors collected with their key paths.
//! - here: the runtime types the rest of the crate sees, and loading.
//!
//! Only leaves of the crate are imported (`path`, `server::pem`), so any
//! module may depend on the config without a cycle.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use http::uri::{Authority, Scheme};
use ipnet::IpNet;

mod raw;
mod validate;

/// Default public listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener (health, readiness, metrics); loopback so it is never public by accident.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default `idp.provider`.
pub const DEFAULT_IDP_PROVIDER: &str = IidConfig::PROVIDER;
/// Default IdP base URL: where `sessiongate emulator` listens by default.
pub const DEFAULT_IDP_BASE_URL: &str = "http://127.0.0.1:9001/middleware/api/external";
/// Default `X-IID-CLIENT-ID` sent to IID.
pub const DEFAULT_IID_CLIENT_ID: &str = "TIBCO_CONSUMER";
/// Default IdP call timeout.
pub const DEFAULT_IDP_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on cached sessions.
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 100_000;
/// Default upper bound on how long a valid session is cached.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);
/// Default lifetime of a cached "invalid session" answer.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Default upstream connect timeout.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to wait for the upstream's response head (then 504).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Default tokio worker threads: 0 means one per available core.
pub const DEFAULT_WORKERS: usize = 0;
/// Default for serving HTTP/2 beside HTTP/1.1.
pub const DEFAULT_HTTP2: bool = true;
/// Default limit on the request line plus headers (then 431).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default time a client has to send its request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default drain time on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default interval at which `server.tls` files are checked for a new certificate.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Default `jwt.issuer` (the `iss` claim).
pub const DEFAULT_JWT_ISSUER: &str = "sessiongate";
/// Default longest life of a signed identity token (`jwt.ttl`).
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);
/// Shortest `jwt.ttl`: tokens are re-signed in their last 30 s, so a shorter
/// life would have every cache hit re-sign.
pub const MIN_JWT_TTL: Duration = Duration::from_secs(60);
/// What follows `headers.prefix` in the token's header when `jwt.header` is not set.
pub const DEFAULT_JWT_HEADER_SUFFIX: &str = "jwt";
/// Default interval at which `jwt.key_file` is checked for a rotated key.
pub const DEFAULT_JWT_RELOAD_INTERVAL: Duration = DEFAULT_TLS_RELOAD_INTERVAL;
/// Default cookie holding the child session id (IID's own name).
pub const DEFAULT_ID_COOKIE: &str = "iid_session_id";
/// Default cookie holding the session token (IID's own name).
pub const DEFAULT_TOKEN_COOKIE: &str = "iid_session_token";
/// Default path the gateway answers itself to log out.
pub const DEFAULT_LOGOUT_PATH: &str = "/logout";
/// Default prefix of the injected identity headers.
pub const DEFAULT_HEADER_PREFIX: &str = "x-iid-";
/// Default log output format.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Pretty;
/// Default tracing filter directive.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default for one access-log event per request.
pub const DEFAULT_LOG_ACCESS: bool = true;
/// Default `cache.refresh_ahead`: revalidate in the last tenth of an entry's life.
pub const DEFAULT_REFRESH_AHEAD: RefreshAhead = RefreshAhead::Percent(10);
/// Default `idp.max_concurrent`: IdP calls in flight at most, per gateway.
pub const DEFAULT_IDP_MAX_CONCURRENT: usize = 64;
/// Default `idp.breaker.failures`: consecutive outages that open the breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default `idp.breaker.cool_down`: the first pause once the breaker opens.
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(5);
/// Default `idp.breaker.max_cool_down`: the pause doubles after each failed probe up to this.
pub const DEFAULT_BREAKER_MAX_COOL_DOWN: Duration = Duration::from_secs(60);
/// Default `stale_if_error` of a route: off, an IdP failure fails closed.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::ZERO;
/// Default `auth` of a route: a forgotten key must not make a route public.
pub const DEFAULT_ROUTE_AUTH: Auth = Auth::Required;
/// Default `forward_auth.trust_loopback`: an ingress in the same pod reaches
/// the decision listener over loopback.
pub const DEFAULT_FORWARD_AUTH_TRUST_LOOPBACK: bool = true;
/// Default `cluster.connect_timeout`.
pub const DEFAULT_CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `cluster.command_timeout`: Redis is an optimisation, so a request
/// never waits long for it.
pub const DEFAULT_CLUSTER_COMMAND_TIMEOUT: Duration = Duration::from_millis(200);
/// Default `cluster.revocation_retention`: how long a disconnected replica can
/// be away and still replay every revocation it missed.
pub const DEFAULT_CLUSTER_REVOCATION_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default `cluster.outage_buffer`: revocations held while Redis is unreachable.
pub const DEFAULT_CLUSTER_OUTAGE_BUFFER: usize = 10_000;
/// Shortest `cluster.secret`, in bytes.
pub const MIN_CLUSTER_SECRET_BYTES: usize = 32;
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
    /// Decision listener for ingress proxies (nginx `auth_request`, Traefik, Caddy, Envoy).
    pub forward_auth: ForwardAuthConfig,
    /// Routes, in file order (matching picks the longest prefix).
    pub routes: Vec<RouteConfig>,
    /// Signed identity token; `None` when `jwt.key_file` is empty.
    pub jwt: Option<JwtConfig>,
    /// Shared state across replicas; `None` when `cluster.redis_url` is empty.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: shared state across replicas on Redis.
#[derive(Clone)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://` URL.
    pub redis_url: String,
    /// Keys and encrypts what is stored; at least [`MIN_CLUSTER_SECRET_BYTES`].
    pub secret: Vec<u8>,
    /// Longest wait for a (re)connection.
    pub connect_timeout: Duration,
    /// Longest wait for one Redis command on a request's behalf.
    pub command_timeout: Duration,
    /// How long the revocation stream keeps an entry.
    pub revocation_retention: Duration,
    /// Revocations held in memory while Redis is unreachable.
    pub outage_buffer: usize,
}

impl std::fmt::Debug for ClusterConfig {
    /// The secret, and a password in the URL, never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("secret", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("revocation_retention", &self.revocation_retention)
            .field("outage_buffer", &self.outage_buffer)
            .finish()
    }
}

/// `url` with any user info (a Redis password) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// `[jwt]`: an ES256 token asserting the identity, sent beside the identity
/// headers, for apps that cannot trust the network path.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// PEM EC P-256 private key (PKCS#8 or SEC1); checked at load, re-read when it changes.
    pub key_file: PathBuf,
    /// Header the token travels in (default `{headers.prefix}jwt`); client copies are stripped.
    pub header: http::HeaderName,
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim: the one app behind this gateway, so a token cannot be replayed at another.
    pub audience: String,
    /// Longest token life; a token never outlives its session.
    pub ttl: Duration,
    /// Also serve `/.well-known/jwks.json` on the public listener.
    pub public_jwks: bool,
    /// How often `key_file` is checked for a rotated key (SIGHUP also reloads).
    pub reload_interval: Duration,
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
    /// Also accept `Authorization: Bearer <credential>` (the cookie wins when both are present).
    pub bearer: bool,
}

/// `[idp]`: what every provider shares, and the chosen provider's own keys.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// Base URL the provider's API paths are appended to.
    pub base_url: String,
    /// Bound on one IdP call, connect to last body byte.
    pub timeout: Duration,
    /// Run the emulator in-process and point the client at it.
    pub emulate: bool,
    /// Trust only this CA bundle for an `https://` IdP (a private PKI).
    pub ca: Option<CaBundle>,
    /// Static headers added to every IdP call (values are secrets).
    pub headers: StaticHeaders,
    /// Which session API, with the keys only it reads.
    pub provider: ProviderConfig,
    /// IdP calls in flight at most; a call waits up to `timeout` for a slot.
    pub max_concurrent: usize,
    /// When to stop calling an IdP that keeps failing.
    pub breaker: BreakerConfig,
}

/// `[idp] breaker`: after `failures` consecutive outages (unavailable or
/// timeout) no call is made for `cool_down`, doubling after each failed
/// probe up to `max_cool_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive outages that open the breaker; 0 turns it off.
    pub failures: u32,
    /// First pause once open.
    pub cool_down: Duration,
    /// Longest pause.
    pub max_cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: DEFAULT_BREAKER_FAILURES,
            cool_down: DEFAULT_BREAKER_COOL_DOWN,
            max_cool_down: DEFAULT_BREAKER_MAX_COOL_DOWN,
        }
    }
}

/// `[idp] headers`: validated names and values, in file order. Values are
/// treated as secrets (API gateway keys): marked sensitive, and Debug shows
/// only the names.
#[derive(Clone, Default)]
pub struct StaticHeaders(Vec<(http::HeaderName, http::HeaderValue)>);

impl StaticHeaders {
    /// Wraps validated pairs, marking every value sensitive.
    pub fn new(pairs: Vec<(http::HeaderName, http::HeaderValue)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(name, mut value)| {
                    value.set_sensitive(true);
                    (name, value)
                })
                .collect(),
        )
    }

    /// The pairs, for the one place that sends them.
    pub fn iter(&self) -> impl Iterator<Item = (&http::HeaderName, &http::HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// Appends every pair to `headers`.
    pub fn apply_to(&self, headers: &mut http::HeaderMap) {
        for (name, value) in &self.0 {
            headers.append(name.clone(), value.clone());
        }
    }

    /// True when none are configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for StaticHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(n, _)| (n.as_str(), "<redacted>")))
            .finish()
    }
}

/// `[idp] provider = "..."`, with the keys only that provider reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    /// IID child sessions (seeds 000/001).
    Iid(IidConfig),
    /// EnOS IAM "Get Session Information" (seed 002); no keys of its own.
    Enos(EnosConfig),
    /// SSO identity sessions, "Read SSO session" (seed 003); no keys of its own.
    SsoIdentity(SsoIdentityConfig),
    /// CIAM session-token exchange (seed 004), optionally redeeming the ticket at userinfo.
    Ciam(CiamConfig),
}

impl ProviderConfig {
    /// The `provider` value, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::Iid(_) => IidConfig::PROVIDER,
            ProviderConfig::Enos(_) => EnosConfig::PROVIDER,
            ProviderConfig::SsoIdentity(_) => SsoIdentityConfig::PROVIDER,
            ProviderConfig::Ciam(_) => CiamConfig::PROVIDER,
        }
    }

    /// Whether the provider reports role codes, so a route requiring roles
    /// can be refused at load time instead of denying every request.
    pub fn reports_roles(&self) -> bool {
        match self {
            ProviderConfig::Ciam(c) => c.roles_pointer.is_some(),
            other => matches!(other, ProviderConfig::Iid(_)),
        }
    }

    /// Whether the provider reports permission codes.
    pub fn reports_permissions(&self) -> bool {
        match self {
            ProviderConfig::Ciam(c) => c.permissions_pointer.is_some(),
            other => matches!(other, ProviderConfig::Iid(_)),
        }
    }
}

/// EnOS IAM's own keys: none; the credential is the session cookie (or bearer
/// token) and `[idp] headers` carries any API-gateway key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnosConfig {}

impl EnosConfig {
    /// The `idp.provider` value that selects EnOS IAM.
    pub const PROVIDER: &'static str = "enos";
}

/// SSO identity sessions' own keys: none; the credential is the identity
/// token from the session cookie (or bearer token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsoIdentityConfig {}

impl SsoIdentityConfig {
    /// The `idp.provider` value that selects SSO identity sessions.
    pub const PROVIDER: &'static str = "sso_identity";
}

/// CIAM's own keys. The pointers are only read with `userinfo_url`
/// (validation refuses them without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiamConfig {
    /// The gateway's own bearer token for the tenant API; redacted in Debug.
    pub access_token: Secret,
    /// Where a ticket is redeemed for the user (`GET ...?sso_ticket=`); without
    /// it the gateway only validates and sends no profile id.
    pub userinfo_url: Option<String>,
    /// JSON Pointer to the subject in the userinfo answer.
    pub subject_pointer: String,
    /// JSON Pointer to an array of role codes; `None`: ciam carries no roles.
    pub roles_pointer: Option<String>,
    /// JSON Pointer to an array of permission codes; `None`: no permissions.
    pub permissions_pointer: Option<String>,
}

impl CiamConfig {
    /// The `idp.provider` value that selects CIAM.
    pub const PROVIDER: &'static str = "ciam";
}

/// Default `idp.subject_pointer` (ciam): the OpenID Connect `sub` claim.
pub const DEFAULT_CIAM_SUBJECT_POINTER: &str = "/sub";

/// IID's own keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IidConfig {
    /// Sent as `X-IID-API-KEY`; redacted in Debug.
    pub api_key: Secret,
    /// Sent as `X-IID-CLIENT-ID`.
    pub client_id: String,
}

impl IidConfig {
    /// The `idp.provider` value that selects IID.
    pub const PROVIDER: &'static str = "iid";
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
    /// When a hit on a valid entry revalidates it in the background.
    pub refresh_ahead: RefreshAhead,
}

/// `cache.refresh_ahead`: how long before a valid entry stops being fresh a
/// hit on it starts one background IdP call to renew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshAhead {
    /// Never: an entry is renewed by the first request after it expires.
    Off,
    /// The last `n` percent (1..=90) of each entry's own lifetime.
    Percent(u8),
    /// This long before the entry expires (capped at its whole lifetime).
    Before(Duration),
}

impl RefreshAhead {
    /// How long before the end of a `ttl`-long freshness a refresh is due.
    pub fn window(self, ttl: Duration) -> Duration {
        match self {
            RefreshAhead::Off => Duration::ZERO,
            RefreshAhead::Percent(p) => ttl * u32::from(p) / 100,
            RefreshAhead::Before(d) => d.min(ttl),
        }
    }
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
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    /// Put eid, passport, mobile and e-mail into `x-iid-user-context`.
    pub include_pii: bool,
    /// Lowercase prefix of every injected identity header (and of the client
    /// copies that are stripped), so upstreams that expect another name need no shim.
    pub prefix: String,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        Self {
            include_pii: false,
            prefix: DEFAULT_HEADER_PREFIX.into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable.
    Pretty,
}

impl LogFormat {
    /// The `log.format` value naming this format.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
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

/// `[forward_auth]`.
#[derive(Debug, Clone, Default)]
pub struct ForwardAuthConfig {
    /// Where decision requests are served; `None` turns forward-auth off.
    pub listen: Option<SocketAddr>,
    /// Honour `X-Forwarded-*`/`X-Original-*` from loopback peers too (an
    /// ingress in the same pod), besides `server.trusted_proxies`.
    pub trust_loopback: bool,
    /// Stripped from a decision request's own path (Envoy `ext_authz`
    /// `path_prefix`); `""` strips nothing. Starts with '/', never ends with one.
    pub path_prefix: String,
}

/// Whether a route needs a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Forwarded without looking at the session.
    Public,
    /// A valid session (and the listed permissions/roles) is required.
    Required,
}

impl Auth {
    /// The `auth` value naming this mode.
    pub fn name(self) -> &'static str {
        match self {
            Auth::Public => "public",
            Auth::Required => "required",
        }
    }
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
    /// Where matching requests go; `None` on a route used only for
    /// forward-auth decisions (the main listener answers 404 `no_upstream`).
    pub upstream: Option<Upstream>,
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
    /// How long past its freshness the last valid answer may still admit a
    /// session when the IdP is down; zero (the default) fails closed.
    pub stale_if_error: Duration,
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
        let raw: raw::RawConfig = figment
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
        let cluster = match &self.cluster {
            Some(c) => format!(", cluster {}", redact_url(&c.redis_url)),
            None => String::new(),
        };
        format!(
            "ok: listen {}, {} routes ({} required, {} public), idp {} ({}), cache {} entries max_ttl {}{cluster}",
            self.server.listen,
            self.routes.len(),
            required,
            self.routes.len() - required,
            self.idp.provider.name(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[routes]]
        prefix = "/"
        upstream = "http://127.0.0.1:3000"
    "#;

    fn iid(c: &Config) -> &IidConfig {
        let ProviderConfig::Iid(iid) = &c.idp.provider else {
            panic!("not iid")
        };
        iid
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.server.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.session.id_cookie, "iid_session_id");
        assert_eq!(c.session.token_cookie, "iid_session_token");
        assert_eq!(c.session.logout_path, "/logout");
        assert!(c.session.login_url.is_none());
        assert_eq!(iid(&c).client_id, "TIBCO_CONSUMER");
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
    fn jwt_is_off_by_default_and_its_header_follows_the_prefix() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert!(c.jwt.is_none());
        let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/ec-p256.sec1.key");
        let with = |extra: &str| {
            Config::from_toml_str(&format!(
                "{extra}\n[jwt]\nkey_file = {key:?}\naudience = \"billing\"\n{MINIMAL}"
            ))
        };
        let j = with("").unwrap().jwt.unwrap();
        assert_eq!(j.header, "x-iid-jwt");
        assert_eq!(j.issuer, DEFAULT_JWT_ISSUER);
        assert_eq!(j.ttl, DEFAULT_JWT_TTL);
        assert!(!j.public_jwks);
        let j = with("[headers]\nprefix = \"X-Portal-\"")
            .unwrap()
            .jwt
            .unwrap();
        assert_eq!(j.header, "x-portal-jwt");
    }

    #[test]
    fn jwt_errors_name_their_keys() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
        let err = |jwt: &str| {
            Config::from_toml_str(&format!("[jwt]\n{jwt}\n{MINIMAL}"))
                .unwrap_err()
                .to_string()
        };
        let ec = data.join("ec-p256.pkcs8.key");
        let e = err(&format!("key_file = {ec:?}"));
        assert!(e.contains("jwt.audience"), "{e}");
        let rsa = data.join("rsa2048.pkcs8.key");
        let e = err(&format!("key_file = {rsa:?}\naudience = \"a\""));
        assert!(e.contains("jwt.key_file") && e.contains("rsa2048"), "{e}");
        let e = err("key_file = \"/nonexistent/jwt.key\"\naudience = \"a\"");
        assert!(e.contains("jwt.key_file"), "{e}");
        let e = err(&format!(
            "key_file = {ec:?}\naudience = \"a\"\nheader = \"bad header\"\nttl = \"10s\""
        ));
        assert!(e.contains("jwt.header") && e.contains("jwt.ttl"), "{e}");
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
            assert_eq!(iid(&c).api_key.expose(), "12345");
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
