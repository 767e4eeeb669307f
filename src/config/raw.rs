//! The serde mirror of the TOML file: every key as written, defaults filled
//! in from the `DEFAULT_*` constants, unknown keys rejected by name. Nothing
//! here is checked; `validate` turns it into the runtime types.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{
    RefreshAhead, DEFAULT_ADMIN_LISTEN, DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_FAILURES,
    DEFAULT_BREAKER_MAX_COOL_DOWN, DEFAULT_CACHE_MAX_ENTRIES, DEFAULT_FORWARD_AUTH_TRUST_LOOPBACK,
    DEFAULT_HEADER_PREFIX, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_HTTP2, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_IDP_BASE_URL, DEFAULT_IDP_MAX_CONCURRENT, DEFAULT_IDP_PROVIDER, DEFAULT_IDP_TIMEOUT,
    DEFAULT_ID_COOKIE, DEFAULT_LISTEN, DEFAULT_LOGOUT_PATH, DEFAULT_LOG_ACCESS, DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_TTL,
    DEFAULT_NEGATIVE_TTL, DEFAULT_REFRESH_AHEAD, DEFAULT_ROUTE_AUTH, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_TLS_RELOAD_INTERVAL, DEFAULT_TOKEN_COOKIE, DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
    DEFAULT_UPSTREAM_TIMEOUT, DEFAULT_WORKERS,
};
use super::{
    DEFAULT_CLUSTER_COMMAND_TIMEOUT, DEFAULT_CLUSTER_CONNECT_TIMEOUT,
    DEFAULT_CLUSTER_OUTAGE_BUFFER, DEFAULT_CLUSTER_REVOCATION_RETENTION, DEFAULT_JWT_ISSUER,
    DEFAULT_JWT_RELOAD_INTERVAL, DEFAULT_JWT_TTL,
};

/// A duration default as the text an operator would write (`"5m"`), so the
/// default goes through the same parser as a configured value.
fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `lenient_string` for a key whose absence matters; only reached when the key is present.
fn lenient_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    lenient_string(d).map(Some)
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) session: RawSession,
    pub(super) idp: RawIdp,
    pub(super) cache: RawCache,
    pub(super) upstream: RawUpstream,
    pub(super) headers: RawHeaders,
    pub(super) log: RawLog,
    pub(super) admin: RawAdmin,
    pub(super) forward_auth: RawForwardAuth,
    pub(super) routes: Vec<RawRoute>,
    pub(super) jwt: RawJwt,
    pub(super) cluster: RawCluster,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCluster {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) redis_url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) secret: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) connect_timeout: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) command_timeout: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) revocation_retention: String,
    pub(super) outage_buffer: usize,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            secret: String::new(),
            connect_timeout: duration_text(DEFAULT_CLUSTER_CONNECT_TIMEOUT),
            command_timeout: duration_text(DEFAULT_CLUSTER_COMMAND_TIMEOUT),
            revocation_retention: duration_text(DEFAULT_CLUSTER_REVOCATION_RETENTION),
            outage_buffer: DEFAULT_CLUSTER_OUTAGE_BUFFER,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawJwt {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) key_file: String,
    /// `None` follows `headers.prefix`.
    #[serde(deserialize_with = "lenient_option")]
    pub(super) header: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) issuer: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) audience: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) ttl: String,
    pub(super) public_jwks: bool,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) reload_interval: String,
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            key_file: String::new(),
            header: None,
            issuer: DEFAULT_JWT_ISSUER.into(),
            audience: String::new(),
            ttl: duration_text(DEFAULT_JWT_TTL),
            public_jwks: false,
            reload_interval: duration_text(DEFAULT_JWT_RELOAD_INTERVAL),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) listen: String,
    pub(super) trusted_proxies: Vec<String>,
    pub(super) workers: usize,
    pub(super) max_header_bytes: usize,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) header_read_timeout: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) idle_timeout: String,
    pub(super) max_connections: usize,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) shutdown_grace: String,
    pub(super) http2: bool,
    pub(super) tls: Option<RawTls>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            trusted_proxies: Vec::new(),
            workers: DEFAULT_WORKERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_read_timeout: duration_text(DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: duration_text(DEFAULT_IDLE_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: duration_text(DEFAULT_SHUTDOWN_GRACE),
            http2: DEFAULT_HTTP2,
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: String,
    pub(super) key_file: String,
    #[serde(
        default = "default_reload_interval",
        deserialize_with = "lenient_string"
    )]
    pub(super) reload_interval: String,
}

fn default_reload_interval() -> String {
    duration_text(DEFAULT_TLS_RELOAD_INTERVAL)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSession {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) id_cookie: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) token_cookie: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) login_url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) logout_path: String,
    pub(super) bearer: bool,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            id_cookie: DEFAULT_ID_COOKIE.into(),
            token_cookie: DEFAULT_TOKEN_COOKIE.into(),
            login_url: String::new(),
            logout_path: DEFAULT_LOGOUT_PATH.into(),
            bearer: false,
        }
    }
}

/// Flat like the file: the shared keys, then every provider's own keys as
/// `Option`, so `validate` can tell "not set" from "set for the wrong provider".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawIdp {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) provider: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) base_url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) timeout: String,
    pub(super) emulate: bool,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) ca_file: String,
    /// Static headers for every IdP call, checked by `validate`.
    pub(super) headers: BTreeMap<String, String>,
    // Provider-specific keys.
    #[serde(deserialize_with = "lenient_option")]
    pub(super) api_key: Option<String>,
    #[serde(deserialize_with = "lenient_option")]
    pub(super) client_id: Option<String>,
    #[serde(deserialize_with = "lenient_option")]
    pub(super) access_token: Option<String>,
    #[serde(deserialize_with = "lenient_option")]
    pub(super) userinfo_url: Option<String>,
    #[serde(deserialize_with = "lenient_option")]
    pub(super) subject_pointer: Option<String>,
    #[serde(deserialize_with = "lenient_option")]
    pub(super) roles_pointer: Option<String>,
    #[serde(deserialize_with = "lenient_option")]
    pub(super) permissions_pointer: Option<String>,
    // Shared by every provider.
    pub(super) max_concurrent: usize,
    pub(super) breaker: RawBreaker,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBreaker {
    pub(super) failures: u32,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) cool_down: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) max_cool_down: String,
}

impl Default for RawBreaker {
    fn default() -> Self {
        Self {
            failures: DEFAULT_BREAKER_FAILURES,
            cool_down: duration_text(DEFAULT_BREAKER_COOL_DOWN),
            max_cool_down: duration_text(DEFAULT_BREAKER_MAX_COOL_DOWN),
        }
    }
}

impl RawIdp {
    /// Every provider-specific key, and whether the file (or environment) set it.
    pub(super) fn provider_keys(&self) -> [(&'static str, bool); 7] {
        [
            ("api_key", self.api_key.is_some()),
            ("client_id", self.client_id.is_some()),
            ("access_token", self.access_token.is_some()),
            ("userinfo_url", self.userinfo_url.is_some()),
            ("subject_pointer", self.subject_pointer.is_some()),
            ("roles_pointer", self.roles_pointer.is_some()),
            ("permissions_pointer", self.permissions_pointer.is_some()),
        ]
    }
}

impl Default for RawIdp {
    fn default() -> Self {
        Self {
            provider: DEFAULT_IDP_PROVIDER.into(),
            base_url: DEFAULT_IDP_BASE_URL.into(),
            timeout: duration_text(DEFAULT_IDP_TIMEOUT),
            emulate: false,
            ca_file: String::new(),
            headers: BTreeMap::new(),
            // Provider defaults are applied by `validate`, once the provider is known.
            api_key: None,
            client_id: None,
            max_concurrent: DEFAULT_IDP_MAX_CONCURRENT,
            breaker: RawBreaker::default(),
            access_token: None,
            userinfo_url: None,
            subject_pointer: None,
            roles_pointer: None,
            permissions_pointer: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCache {
    pub(super) max_entries: u64,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) max_ttl: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) negative_ttl: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) refresh_ahead: String,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_CACHE_MAX_ENTRIES,
            max_ttl: duration_text(DEFAULT_MAX_TTL),
            negative_ttl: duration_text(DEFAULT_NEGATIVE_TTL),
            refresh_ahead: match DEFAULT_REFRESH_AHEAD {
                RefreshAhead::Off => "0".into(),
                RefreshAhead::Percent(p) => format!("{p}%"),
                RefreshAhead::Before(d) => duration_text(d),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUpstream {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) connect_timeout: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) timeout: String,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            connect_timeout: duration_text(DEFAULT_UPSTREAM_CONNECT_TIMEOUT),
            timeout: duration_text(DEFAULT_UPSTREAM_TIMEOUT),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHeaders {
    pub(super) include_pii: bool,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) prefix: String,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            include_pii: false,
            prefix: DEFAULT_HEADER_PREFIX.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) format: String,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) level: String,
    pub(super) access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: DEFAULT_LOG_FORMAT.name().into(),
            level: DEFAULT_LOG_LEVEL.into(),
            access: DEFAULT_LOG_ACCESS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawForwardAuth {
    #[serde(deserialize_with = "lenient_string")]
    pub(super) listen: String,
    pub(super) trust_loopback: bool,
    #[serde(deserialize_with = "lenient_string")]
    pub(super) path_prefix: String,
}

impl Default for RawForwardAuth {
    fn default() -> Self {
        Self {
            listen: String::new(),
            trust_loopback: DEFAULT_FORWARD_AUTH_TRUST_LOOPBACK,
            path_prefix: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) prefix: String,
    /// Absent on a route used only by the forward-auth listener.
    #[serde(default, deserialize_with = "lenient_option")]
    pub(super) upstream: Option<String>,
    #[serde(default = "default_auth")]
    pub(super) auth: String,
    #[serde(default)]
    pub(super) permissions: Vec<String>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) ca_file: Option<String>,
    #[serde(default)]
    pub(super) http2: bool,
    #[serde(default)]
    pub(super) max_body_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient_option")]
    pub(super) stale_if_error: Option<String>,
}

fn default_auth() -> String {
    DEFAULT_ROUTE_AUTH.name().into()
}
