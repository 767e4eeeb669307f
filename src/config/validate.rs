//! `RawConfig` -> `Config`: one function per section, all writing into one
//! `Problems`, so every mistake in a file is reported at once with its key
//! path. A section with problems still returns a placeholder value, so the
//! sections after it are checked too; `Config` is only built when there are
//! none.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use ipnet::IpNet;

use super::raw::{
    RawAdmin, RawCache, RawCluster, RawConfig, RawForwardAuth, RawHeaders, RawIdp, RawJwt, RawLog,
    RawRoute, RawServer, RawSession, RawTls, RawUpstream,
};
use super::SsoIdentityConfig;
use super::{
    AdminConfig, Auth, BreakerConfig, CaBundle, CacheConfig, CiamConfig, ClusterConfig, Config,
    ConfigError, EnosConfig, ForwardAuthConfig, HeadersConfig, IdpConfig, IidConfig, LogConfig,
    LogFormat, ProviderConfig, RefreshAhead, RouteConfig, Secret, ServerConfig, SessionConfig,
    StaticHeaders, TlsConfig, Upstream, UpstreamClientConfig, UpstreamConfig,
    DEFAULT_CIAM_SUBJECT_POINTER, DEFAULT_IID_CLIENT_ID, DEFAULT_STALE_IF_ERROR,
};
use super::{JwtConfig, DEFAULT_JWT_HEADER_SUFFIX, MIN_CLUSTER_SECRET_BYTES, MIN_JWT_TTL};
use crate::server::pem;

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

impl RawConfig {
    /// Checks every section, then builds the runtime config only if none had a problem.
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let server = server(self.server, &mut p);
        let session = session(self.session, &mut p);
        let idp = idp(self.idp, &mut p);
        let cache = cache(self.cache, &mut p);
        let mut upstream = upstream(self.upstream, &mut p);
        let headers = headers(self.headers, &mut p);
        let jwt = jwt(self.jwt, &headers, &mut p);
        let log = log(self.log, &mut p);
        let admin = admin(self.admin, server.listen, &mut p);
        let forward_auth = forward_auth(self.forward_auth, server.listen, &admin, &mut p);
        let cluster = cluster(self.cluster, &mut p);
        let routes = routes(
            self.routes,
            forward_auth.listen.is_some(),
            &session,
            &idp.provider,
            &mut upstream.clients,
            &mut p,
        );
        if !p.0.is_empty() {
            return Err(ConfigError::Invalid(p.0));
        }
        Ok(Config {
            server,
            session,
            idp,
            cache,
            upstream,
            headers,
            log,
            admin,
            forward_auth,
            routes,
            jwt,
            cluster,
        })
    }
}

fn server(raw: RawServer, p: &mut Problems) -> ServerConfig {
    let listen = raw.listen.parse().unwrap_or_else(|e| {
        p.push(
            "server.listen",
            format_args!("{e} (want host:port, e.g. \"0.0.0.0:8080\")"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let trusted_proxies = raw
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
    if raw.max_header_bytes < 1024 {
        p.push("server.max_header_bytes", "must be at least 1024");
    }
    if raw.max_connections == 0 {
        p.push("server.max_connections", "must be greater than zero");
    }
    ServerConfig {
        listen,
        trusted_proxies,
        workers: raw.workers,
        max_header_bytes: raw.max_header_bytes,
        header_read_timeout: p
            .positive_duration("server.header_read_timeout", &raw.header_read_timeout),
        idle_timeout: p.positive_duration("server.idle_timeout", &raw.idle_timeout),
        max_connections: raw.max_connections,
        shutdown_grace: p.duration("server.shutdown_grace", &raw.shutdown_grace),
        http2: raw.http2,
        tls: raw.tls.map(|t| tls(t, p)),
    }
}

/// Both files must exist and parse now, so a bad path fails at startup
/// (and in `sessiongate check`), not at the first handshake.
fn tls(raw: RawTls, p: &mut Problems) -> TlsConfig {
    let cfg = TlsConfig {
        cert_file: PathBuf::from(raw.cert_file),
        key_file: PathBuf::from(raw.key_file),
        reload_interval: p.positive_duration("server.tls.reload_interval", &raw.reload_interval),
    };
    let certs = pem::read_certs(&cfg.cert_file);
    let key = pem::read_key(&cfg.key_file);
    let pair = match (certs, key) {
        (Ok(certs), Ok(key)) => {
            pem::certified_key(certs, key, &cfg.cert_file, &cfg.key_file).map(drop)
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

fn session(raw: RawSession, p: &mut Problems) -> SessionConfig {
    for (key, name) in [
        ("session.id_cookie", &raw.id_cookie),
        ("session.token_cookie", &raw.token_cookie),
    ] {
        let optional = key == "session.token_cookie";
        if name.is_empty() && !optional {
            p.push(key, "must not be empty");
        } else if !name.bytes().all(is_cookie_name_byte) {
            p.push(key, format_args!("{name:?} is not a valid cookie name"));
        }
    }
    if !raw.login_url.is_empty() {
        let ok = raw.login_url.starts_with('/') && !raw.login_url.starts_with("//")
            || raw
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
    if !raw.logout_path.starts_with('/') {
        p.push("session.logout_path", "must start with '/'");
    }
    SessionConfig {
        id_cookie: raw.id_cookie,
        token_cookie: raw.token_cookie,
        login_url: (!raw.login_url.is_empty()).then_some(raw.login_url),
        logout_path: raw.logout_path,
        bearer: raw.bearer,
    }
}

/// One `idp.provider` value: the provider-specific keys it reads and how its
/// own config is built from them. Adding a provider is one entry here.
struct Provider {
    name: &'static str,
    keys: &'static [&'static str],
    /// Headers the client sets itself (lowercase); `[idp] headers` may not
    /// replace them, or a static value would silently override the credential.
    own_headers: &'static [&'static str],
    build: fn(&RawIdp, &mut Problems) -> ProviderConfig,
}

const PROVIDERS: &[Provider] = &[
    Provider {
        name: IidConfig::PROVIDER,
        keys: &["api_key", "client_id"],
        own_headers: &["x-iid-api-key", "x-iid-client-id", "content-type", "accept"],
        build: iid,
    },
    Provider {
        name: EnosConfig::PROVIDER,
        keys: &[],
        own_headers: &["authorization", "content-type", "accept"],
        build: |_, _| ProviderConfig::Enos(EnosConfig {}),
    },
    Provider {
        name: SsoIdentityConfig::PROVIDER,
        keys: &[],
        own_headers: &["accept"],
        build: |_, _| ProviderConfig::SsoIdentity(SsoIdentityConfig {}),
    },
    Provider {
        name: CiamConfig::PROVIDER,
        keys: &[
            "access_token",
            "userinfo_url",
            "subject_pointer",
            "roles_pointer",
            "permissions_pointer",
        ],
        own_headers: &["authorization", "content-type", "accept"],
        build: ciam,
    },
];

/// Headers that frame or route the request; hyper sets them, a static copy
/// would corrupt the exchange.
const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// `[idp] headers`: every name and value must be sendable; errors name
/// `idp.headers.NAME` but never echo the value, which is a secret.
fn static_headers(
    raw: &std::collections::BTreeMap<String, String>,
    own: &[&str],
    p: &mut Problems,
) -> StaticHeaders {
    let mut pairs = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let key = format!("idp.headers.{name}");
        let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
            p.push(&key, "not a valid header name");
            continue;
        };
        if FRAMING_HEADERS.contains(&header.as_str()) || own.contains(&header.as_str()) {
            p.push(
                &key,
                "is set by the gateway itself and cannot be configured",
            );
            continue;
        }
        match http::HeaderValue::from_str(value) {
            Ok(v) => pairs.push((header, v)),
            Err(_) => p.push(&key, "value contains characters not allowed in a header"),
        }
    }
    StaticHeaders::new(pairs)
}

fn idp(raw: RawIdp, p: &mut Problems) -> IdpConfig {
    let known = PROVIDERS.iter().find(|known| known.name == raw.provider);
    let headers = static_headers(
        &raw.headers,
        known.map(|k| k.own_headers).unwrap_or_default(),
        p,
    );
    let provider = match known {
        Some(known) => {
            foreign_keys(&raw.provider_keys(), known.name, known.keys, p);
            (known.build)(&raw, p)
        }
        None => {
            let names: Vec<String> = PROVIDERS.iter().map(|k| format!("{:?}", k.name)).collect();
            p.push(
                "idp.provider",
                format_args!(
                    "unknown provider {:?} (supported: {})",
                    raw.provider,
                    names.join(", ")
                ),
            );
            // Never used: the problem above keeps a Config from being built.
            ProviderConfig::Iid(IidConfig {
                api_key: Secret::default(),
                client_id: String::new(),
            })
        }
    };
    let base_url = raw.base_url.trim_end_matches('/').to_string();
    if !raw.emulate {
        match base_url.parse::<Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {}
            _ => p.push(
                "idp.base_url",
                format_args!("{base_url:?} is not an absolute http(s) URL"),
            ),
        }
    }
    IdpConfig {
        base_url,
        timeout: p.positive_duration("idp.timeout", &raw.timeout),
        emulate: raw.emulate,
        ca: match raw.ca_file.trim() {
            "" => None,
            path => ca_bundle(Path::new(path), "idp.ca_file", p),
        },
        headers,
        provider,
        max_concurrent: {
            if raw.max_concurrent == 0 {
                p.push("idp.max_concurrent", "must be greater than zero");
            }
            raw.max_concurrent
        },
        breaker: breaker(&raw, p),
    }
}

fn breaker(raw: &RawIdp, p: &mut Problems) -> BreakerConfig {
    let b = &raw.breaker;
    let cool_down = p.positive_duration("idp.breaker.cool_down", &b.cool_down);
    let max_cool_down = p.positive_duration("idp.breaker.max_cool_down", &b.max_cool_down);
    if max_cool_down < cool_down {
        p.push(
            "idp.breaker.max_cool_down",
            "must be at least idp.breaker.cool_down",
        );
    }
    BreakerConfig {
        failures: b.failures,
        cool_down,
        max_cool_down,
    }
}

/// Names each provider-specific key that is set but that `provider` does not read.
fn foreign_keys(set: &[(&str, bool)], provider: &str, reads: &[&str], p: &mut Problems) {
    for (key, _) in set.iter().filter(|(key, set)| *set && !reads.contains(key)) {
        p.push(
            &format!("idp.{key}"),
            format_args!("not a key of provider {provider:?}"),
        );
    }
}

fn iid(raw: &RawIdp, p: &mut Problems) -> ProviderConfig {
    let api_key = raw.api_key.clone().unwrap_or_default();
    let client_id = raw
        .client_id
        .clone()
        .unwrap_or_else(|| DEFAULT_IID_CLIENT_ID.into());
    if http::HeaderValue::from_str(&api_key).is_err() {
        p.push("idp.api_key", "contains characters not allowed in a header");
    }
    if http::HeaderValue::from_str(&client_id).is_err() {
        p.push(
            "idp.client_id",
            "contains characters not allowed in a header",
        );
    }
    ProviderConfig::Iid(IidConfig {
        api_key: Secret::new(api_key),
        client_id,
    })
}

fn ciam(raw: &RawIdp, p: &mut Problems) -> ProviderConfig {
    let access_token = raw.access_token.clone().unwrap_or_default();
    // The error never quotes the value: it is a secret.
    if access_token.is_empty() && !raw.emulate {
        p.push(
            "idp.access_token",
            "is required (the gateway's bearer token for the tenant API)",
        );
    } else if http::HeaderValue::from_str(&format!("Bearer {access_token}")).is_err() {
        p.push(
            "idp.access_token",
            "contains characters not allowed in a header",
        );
    }
    let userinfo_url = raw
        .userinfo_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    if let Some(url) = userinfo_url {
        let ok = url
            .parse::<Uri>()
            .map(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
            .unwrap_or(false);
        if !ok || url.contains('#') {
            p.push(
                "idp.userinfo_url",
                format_args!("{url:?} is not an absolute http(s) URL"),
            );
        }
    }
    let mut pointer = |key: &str, value: &Option<String>| -> Option<String> {
        let value = value.as_deref()?;
        if !is_json_pointer(value) {
            p.push(
                &format!("idp.{key}"),
                format_args!(
                    "{value:?} is not a JSON Pointer (e.g. \"/sub\", \"/realm_access/roles\")"
                ),
            );
        } else if userinfo_url.is_none() && !raw.emulate {
            // Without userinfo there is no answer to point into.
            p.push(&format!("idp.{key}"), "needs idp.userinfo_url");
        }
        Some(value.to_owned())
    };
    let subject_pointer = pointer("subject_pointer", &raw.subject_pointer)
        .unwrap_or_else(|| DEFAULT_CIAM_SUBJECT_POINTER.into());
    let roles_pointer = pointer("roles_pointer", &raw.roles_pointer);
    let permissions_pointer = pointer("permissions_pointer", &raw.permissions_pointer);
    ProviderConfig::Ciam(CiamConfig {
        access_token: Secret::new(access_token),
        userinfo_url: userinfo_url.map(str::to_owned),
        subject_pointer,
        roles_pointer,
        permissions_pointer,
    })
}

/// RFC 6901, non-empty: `/` then tokens where `~` is only `~0` or `~1`.
fn is_json_pointer(s: &str) -> bool {
    s.starts_with('/')
        && s.split('~')
            .skip(1)
            .all(|rest| rest.starts_with('0') || rest.starts_with('1'))
}

fn cache(raw: RawCache, p: &mut Problems) -> CacheConfig {
    if raw.max_entries == 0 {
        p.push("cache.max_entries", "must be greater than zero");
    }
    CacheConfig {
        max_entries: raw.max_entries,
        max_ttl: p.duration("cache.max_ttl", &raw.max_ttl),
        negative_ttl: p.duration("cache.negative_ttl", &raw.negative_ttl),
        refresh_ahead: refresh_ahead(&raw.refresh_ahead, p),
    }
}

/// `"10%"` of each entry's lifetime, a duration (`"30s"`), or `"0"` for off.
fn refresh_ahead(text: &str, p: &mut Problems) -> RefreshAhead {
    const KEY: &str = "cache.refresh_ahead";
    let text = text.trim();
    if let Some(number) = text.strip_suffix('%') {
        return match number.trim().parse::<u8>() {
            Ok(0) => RefreshAhead::Off,
            Ok(n @ 1..=90) => RefreshAhead::Percent(n),
            _ => {
                p.push(
                    KEY,
                    format_args!("{text:?} is not a whole percentage from 0% to 90%"),
                );
                RefreshAhead::Off
            }
        };
    }
    if text == "0" {
        return RefreshAhead::Off;
    }
    match p.duration(KEY, text) {
        d if d.is_zero() => RefreshAhead::Off,
        d => RefreshAhead::Before(d),
    }
}

/// The timeouts; the clients are added by `routes`, which knows which are needed.
fn upstream(raw: RawUpstream, p: &mut Problems) -> UpstreamConfig {
    UpstreamConfig {
        connect_timeout: p.positive_duration("upstream.connect_timeout", &raw.connect_timeout),
        timeout: p.positive_duration("upstream.timeout", &raw.timeout),
        clients: Vec::new(),
    }
}

/// Longest `headers.prefix`: room for the suffixes within what proxies and
/// log pipelines comfortably handle as a header name.
const MAX_HEADER_PREFIX_BYTES: usize = 32;

fn headers(raw: RawHeaders, p: &mut Problems) -> HeadersConfig {
    let prefix = raw.prefix;
    if prefix.is_empty() {
        // Without a prefix, stripping client copies would strip every header.
        p.push("headers.prefix", "must not be empty");
    } else if prefix.len() > MAX_HEADER_PREFIX_BYTES {
        p.push(
            "headers.prefix",
            format_args!("{prefix:?} is longer than {MAX_HEADER_PREFIX_BYTES} bytes"),
        );
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        p.push(
            "headers.prefix",
            format_args!("{prefix:?} may contain only ASCII letters, digits and '-'"),
        );
    }
    HeadersConfig {
        include_pii: raw.include_pii,
        // Header names are case-insensitive; one spelling makes matching a byte compare.
        prefix: prefix.to_ascii_lowercase(),
    }
}

/// Off without a key file; with one, the key must load now (a P-256 key)
/// and the audience must name the app, so no token is valid for every app.
fn jwt(raw: RawJwt, headers: &HeadersConfig, p: &mut Problems) -> Option<JwtConfig> {
    if raw.key_file.is_empty() {
        return None;
    }
    let key_file = PathBuf::from(raw.key_file);
    if let Err(e) = pem::read_p256_key(&key_file) {
        p.push(&format!("jwt.{}", e.file.key()), &e.message);
    }
    if raw.audience.trim().is_empty() {
        p.push(
            "jwt.audience",
            "must name the app behind this gateway when jwt.key_file is set",
        );
    }
    if raw.issuer.trim().is_empty() {
        p.push("jwt.issuer", "must not be empty");
    }
    let ttl = p.positive_duration("jwt.ttl", &raw.ttl);
    if !ttl.is_zero() && ttl < MIN_JWT_TTL {
        p.push(
            "jwt.ttl",
            format_args!(
                "must be at least {} (tokens are re-signed in their last 30s)",
                humantime::format_duration(MIN_JWT_TTL)
            ),
        );
    }
    let name = raw
        .header
        .unwrap_or_else(|| format!("{}{DEFAULT_JWT_HEADER_SUFFIX}", headers.prefix));
    let header =
        http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap_or_else(|_| {
            p.push(
                "jwt.header",
                format_args!("{name:?} is not a valid header name"),
            );
            http::HeaderName::from_static("x-iid-jwt")
        });
    Some(JwtConfig {
        key_file,
        header,
        issuer: raw.issuer,
        audience: raw.audience,
        ttl,
        public_jwks: raw.public_jwks,
        reload_interval: p.positive_duration("jwt.reload_interval", &raw.reload_interval),
    })
}

fn log(raw: RawLog, p: &mut Problems) -> LogConfig {
    LogConfig {
        format: match raw.format.as_str() {
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
        level: raw.level,
        access: raw.access,
    }
}

/// `public` is the validated `server.listen`, which the admin listener must not share.
fn admin(raw: RawAdmin, public: SocketAddr, p: &mut Problems) -> AdminConfig {
    if raw.listen.trim().is_empty() {
        return AdminConfig { listen: None };
    }
    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(a) if a == public => {
            p.push(
                "admin.listen",
                "must differ from server.listen: metrics and probes are never on the public listener",
            );
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
    };
    AdminConfig { listen }
}

/// Off without a URL; with one, a `redis://`/`rediss://` URL and a secret
/// long enough to key an HMAC and a cipher.
fn cluster(raw: RawCluster, p: &mut Problems) -> Option<ClusterConfig> {
    let url = raw.redis_url.trim();
    if url.is_empty() {
        return None;
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        p.push(
            "cluster.redis_url",
            format_args!(
                "{:?} must start with redis:// or rediss:// (TLS)",
                crate::config::redact_url(url)
            ),
        );
    } else if let Err(e) = redis::Client::open(url) {
        p.push(
            "cluster.redis_url",
            format_args!("{}: {e}", crate::config::redact_url(url)),
        );
    }
    if raw.secret.len() < MIN_CLUSTER_SECRET_BYTES {
        p.push(
            "cluster.secret",
            format_args!(
                "required with cluster.redis_url: at least {MIN_CLUSTER_SECRET_BYTES} bytes (from a Kubernetes Secret; e.g. `head -c 48 /dev/urandom | base64`), got {}",
                raw.secret.len()
            ),
        );
    }
    let connect_timeout = p.positive_duration("cluster.connect_timeout", &raw.connect_timeout);
    let command_timeout = p.positive_duration("cluster.command_timeout", &raw.command_timeout);
    let revocation_retention =
        p.positive_duration("cluster.revocation_retention", &raw.revocation_retention);
    if raw.outage_buffer == 0 {
        p.push("cluster.outage_buffer", "must be greater than zero");
    }
    Some(ClusterConfig {
        redis_url: url.to_owned(),
        secret: raw.secret.into_bytes(),
        connect_timeout,
        command_timeout,
        revocation_retention,
        outage_buffer: raw.outage_buffer,
    })
}

/// The decision listener shares no port with the public or admin listener
/// (port 0, "any free port", is never a clash); `path_prefix` is a
/// normalized path without a trailing '/', so stripping it leaves a path.
fn forward_auth(
    raw: RawForwardAuth,
    public: SocketAddr,
    admin: &AdminConfig,
    p: &mut Problems,
) -> ForwardAuthConfig {
    let listen = match raw.listen.trim() {
        "" => None,
        text => match text.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 && (a == public || Some(a) == admin.listen) => {
                p.push(
                    "forward_auth.listen",
                    "must differ from server.listen and admin.listen: decisions get a listener of their own",
                );
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                p.push(
                    "forward_auth.listen",
                    format_args!("{e} (want host:port, or \"\" to disable)"),
                );
                None
            }
        },
    };
    let prefix = raw.path_prefix;
    if !prefix.is_empty() {
        let normalized = crate::path::normalize_path(&prefix)
            .map(|n| n == prefix.as_str())
            .unwrap_or(false);
        if !prefix.starts_with('/') || prefix.ends_with('/') || !normalized {
            p.push(
                "forward_auth.path_prefix",
                format_args!(
                    "{prefix:?} must be \"\" or a normalized path starting with '/' and not ending with one (e.g. \"/ext_authz\")"
                ),
            );
        }
    }
    ForwardAuthConfig {
        listen,
        trust_loopback: raw.trust_loopback,
        path_prefix: prefix,
    }
}

/// Routes in file order; each gets the index of its upstream client in `clients`.
/// A route may omit `upstream` only when `decisions_only_allowed` (the
/// forward-auth listener is on): it then answers decisions alone.
fn routes(
    raw: Vec<RawRoute>,
    decisions_only_allowed: bool,
    session: &SessionConfig,
    provider: &ProviderConfig,
    clients: &mut Vec<UpstreamClientConfig>,
    p: &mut Problems,
) -> Vec<RouteConfig> {
    if raw.is_empty() {
        p.push("routes", "at least one [[routes]] entry is required");
    }
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
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
        let upstream = match r.upstream.as_deref().map(str::trim) {
            None | Some("") if decisions_only_allowed => None,
            None | Some("") => {
                p.push(
                    &format!("{key}.upstream"),
                    "required (only with [forward_auth] listen set may a route omit it, to serve decisions alone)",
                );
                None
            }
            Some(text) => Some(parse_upstream(text).unwrap_or_else(|msg| {
                p.push(&format!("{key}.upstream"), msg);
                Upstream {
                    scheme: Scheme::HTTP,
                    authority: Authority::from_static("invalid"),
                }
            })),
        };
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
        let stale_if_error = match &r.stale_if_error {
            None => DEFAULT_STALE_IF_ERROR,
            Some(_) if auth == Auth::Public => {
                // A public route never asks the IdP: a grace there means nothing,
                // and reads like a promise the gateway does not keep.
                p.push(
                    &format!("{key}.stale_if_error"),
                    format_args!(
                        "route {:?} is public; stale_if_error applies to auth = \"required\" routes only",
                        r.prefix
                    ),
                );
                Duration::ZERO
            }
            Some(text) => p.duration(&format!("{key}.stale_if_error"), text),
        };
        if auth == Auth::Public && (!r.permissions.is_empty() || !r.roles.is_empty()) {
            p.push(&key, "a public route cannot require permissions or roles");
        }
        for (field, list, reported) in [
            (
                "permissions",
                &r.permissions,
                provider.reports_permissions(),
            ),
            ("roles", &r.roles, provider.reports_roles()),
        ] {
            if list.iter().any(|v| v.is_empty() || v.contains(',')) {
                p.push(
                    &format!("{key}.{field}"),
                    "entries must be non-empty and contain no ','",
                );
            }
            if !list.is_empty() && !reported {
                // Every request would be denied: a config mistake, not a policy.
                p.push(
                    &format!("{key}.{field}"),
                    format_args!("provider {:?} reports no {field}", provider.name()),
                );
            }
        }
        let ca_file = r.ca_file.filter(|f| !f.is_empty()).map(PathBuf::from);
        let client = upstream_client(clients, p, &key, &ca_file, r.http2);
        if ca_file.is_some() && upstream.as_ref().map(|u| &u.scheme) != Some(&Scheme::HTTPS) {
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
            stale_if_error,
        });
    }
    routes
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
        Some(path) => match ca_bundle(path, &format!("{key}.ca_file"), p) {
            Some(bundle) => Some(bundle),
            None => return 0,
        },
    };
    clients.push(UpstreamClientConfig { ca, http2 });
    clients.len() - 1
}

/// Reads and checks a CA bundle now, so a bad one fails at startup under `key`.
fn ca_bundle(path: &Path, key: &str, p: &mut Problems) -> Option<CaBundle> {
    match pem::read_ca_file(path) {
        Ok(certs) => Some(CaBundle {
            path: path.to_path_buf(),
            certs: certs.into(),
        }),
        Err(e) => {
            p.push(key, e.message);
            None
        }
    }
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

    const ROUTE: &str = "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n";

    fn error_of(toml: &str) -> String {
        match Config::from_toml_str(toml) {
            Ok(_) => panic!("accepted:\n{toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_provider_lists_the_known_ones() {
        let err = error_of(&format!("[idp]\nprovider = \"okta\"\n{ROUTE}"));
        assert!(
            err.contains(
                r#"idp.provider: unknown provider "okta" (supported: "iid", "enos", "sso_identity", "ciam")"#
            ),
            "{err}"
        );
    }

    #[test]
    fn iid_reads_its_own_keys() {
        let c = Config::from_toml_str(&format!(
            "[idp]\nprovider = \"iid\"\napi_key = \"k\"\nclient_id = \"APP\"\n{ROUTE}"
        ))
        .unwrap();
        assert_eq!(c.idp.provider.name(), "iid");
        let ProviderConfig::Iid(iid) = &c.idp.provider else {
            panic!("not iid")
        };
        assert_eq!(iid.api_key.expose(), "k");
        assert_eq!(iid.client_id, "APP");
    }

    #[test]
    fn a_key_the_provider_does_not_read_is_named() {
        let mut p = Problems::default();
        foreign_keys(
            &[("api_key", true), ("client_id", true), ("realm", false)],
            "xyz",
            &["api_key", "realm"],
            &mut p,
        );
        assert_eq!(p.0, [r#"idp.client_id: not a key of provider "xyz""#]);
    }

    #[test]
    fn every_provider_reads_only_keys_the_raw_mirror_has() {
        let raw = RawIdp::default();
        let known: Vec<&str> = raw.provider_keys().iter().map(|(k, _)| *k).collect();
        for provider in PROVIDERS {
            for key in provider.keys {
                assert!(known.contains(key), "{}: {key}", provider.name);
            }
        }
    }

    #[test]
    fn session_bearer_defaults_off() {
        assert!(!Config::from_toml_str(ROUTE).unwrap().session.bearer);
        let c = Config::from_toml_str(&format!("[session]\nbearer = true\n{ROUTE}")).unwrap();
        assert!(c.session.bearer);
    }

    #[test]
    fn enos_has_no_own_keys_and_refuses_iid_keys() {
        let c = Config::from_toml_str(&format!("[idp]\nprovider = \"enos\"\n{ROUTE}")).unwrap();
        assert_eq!(c.idp.provider, ProviderConfig::Enos(EnosConfig {}));
        let err = error_of(&format!(
            "[idp]\nprovider = \"enos\"\napi_key = \"k\"\n{ROUTE}"
        ));
        assert!(
            err.contains(r#"idp.api_key: not a key of provider "enos""#),
            "{err}"
        );
    }

    #[test]
    fn sso_identity_has_no_own_keys_and_refuses_others_keys() {
        let c =
            Config::from_toml_str(&format!("[idp]\nprovider = \"sso_identity\"\n{ROUTE}")).unwrap();
        assert_eq!(
            c.idp.provider,
            ProviderConfig::SsoIdentity(SsoIdentityConfig {})
        );
        let err = error_of(&format!(
            "[idp]\nprovider = \"sso_identity\"\napi_key = \"k\"\nclient_id = \"c\"\n{ROUTE}"
        ));
        for key in ["api_key", "client_id"] {
            assert!(
                err.contains(&format!(
                    r#"idp.{key}: not a key of provider "sso_identity""#
                )),
                "{err}"
            );
        }
        let err = error_of(&format!(
            "[idp]\nprovider = \"sso_identity\"\nheaders = {{ \"Accept\" = \"text/html\" }}\n{ROUTE}"
        ));
        assert!(
            err.contains("idp.headers.Accept: is set by the gateway"),
            "{err}"
        );
    }

    #[test]
    fn ciam_reads_its_keys_checks_pointers_and_keeps_the_token_secret() {
        let c = Config::from_toml_str(&format!(
            "[idp]\nprovider = \"ciam\"\naccess_token = \"tok-s3cret\"\n{ROUTE}"
        ))
        .unwrap();
        let ProviderConfig::Ciam(ciam) = &c.idp.provider else {
            panic!("not ciam")
        };
        assert_eq!(ciam.access_token.expose(), "tok-s3cret");
        assert_eq!(ciam.subject_pointer, "/sub");
        assert_eq!(ciam.userinfo_url, None);
        assert!(!c.idp.provider.reports_roles() && !c.idp.provider.reports_permissions());
        assert!(!format!("{c:?}").contains("tok-s3cret"));

        let c = Config::from_toml_str(&format!(
            "[idp]\nprovider = \"ciam\"\naccess_token = \"t\"\n\
             userinfo_url = \"https://ciam.example.com/api/v2/userinfo\"\n\
             subject_pointer = \"/data/id\"\nroles_pointer = \"/realm~1roles\"\n{ROUTE}"
        ))
        .unwrap();
        assert!(c.idp.provider.reports_roles() && !c.idp.provider.reports_permissions());

        let err = error_of(&format!(
            "[idp]\nprovider = \"ciam\"\nsubject_pointer = \"sub\"\n\
             roles_pointer = \"/a~2\"\npermissions_pointer = \"/p\"\n\
             userinfo_url = \"ftp://x\"\napi_key = \"k\"\n{ROUTE}"
        ));
        for want in [
            "idp.access_token: is required",
            "idp.subject_pointer: \"sub\" is not a JSON Pointer",
            "idp.roles_pointer: \"/a~2\" is not a JSON Pointer",
            "idp.userinfo_url: \"ftp://x\" is not an absolute http(s) URL",
            r#"idp.api_key: not a key of provider "ciam""#,
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
        let err = error_of(&format!(
            "[idp]\nprovider = \"ciam\"\naccess_token = \"t\"\nroles_pointer = \"/roles\"\n{ROUTE}"
        ));
        assert!(
            err.contains("idp.roles_pointer: needs idp.userinfo_url"),
            "{err}"
        );
        let err = error_of(&format!(
            "[idp]\nprovider = \"ciam\"\naccess_token = \"bad\\ntoken\"\n{ROUTE}"
        ));
        assert!(
            err.contains("idp.access_token: contains characters"),
            "{err}"
        );
        assert!(!err.contains("bad"), "{err}");
        assert!(Config::from_toml_str(&format!(
            "[idp]\nprovider = \"ciam\"\nemulate = true\n{ROUTE}"
        ))
        .is_ok());
    }

    #[test]
    fn idp_headers_are_checked_and_never_echoed() {
        let c = Config::from_toml_str(&format!(
            "[idp]\nheaders = {{ \"X-Gateway-Key\" = \"s3cret-value\" }}\n{ROUTE}"
        ))
        .unwrap();
        let pairs: Vec<_> = c.idp.headers.iter().collect();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0.as_str(), "x-gateway-key");
        assert!(pairs[0].1.is_sensitive());
        let debug = format!("{:?}", c.idp);
        assert!(
            !debug.contains("s3cret-value") && debug.contains("x-gateway-key"),
            "{debug}"
        );

        let err = error_of(&format!(
            "[idp]\nheaders = {{ \"bad name\" = \"v\", \"X-Ok\" = \"s3cret\\nvalue\", \"Host\" = \"h\", \"X-IID-API-KEY\" = \"k\" }}\n{ROUTE}"
        ));
        assert!(
            err.contains("idp.headers.bad name: not a valid header name"),
            "{err}"
        );
        assert!(err.contains("idp.headers.X-Ok: value contains"), "{err}");
        assert!(
            err.contains("idp.headers.Host: is set by the gateway"),
            "{err}"
        );
        assert!(
            err.contains("idp.headers.X-IID-API-KEY: is set by the gateway"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn roles_or_permissions_need_a_provider_that_reports_them() {
        let routes = "[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:3000\"\n\
            [[routes]]\nprefix = \"/b/\"\nupstream = \"http://127.0.0.1:3000\"\nroles = [\"R\"]\n\
            [[routes]]\nprefix = \"/c/\"\nupstream = \"http://127.0.0.1:3000\"\npermissions = [\"P\"]\n";
        let err = error_of(&format!("[idp]\nprovider = \"enos\"\n{routes}"));
        assert!(
            err.contains(r#"routes[1].roles: provider "enos" reports no roles"#),
            "{err}"
        );
        assert!(
            err.contains(r#"routes[2].permissions: provider "enos" reports no permissions"#),
            "{err}"
        );
        let err = error_of(&format!("[idp]\nprovider = \"sso_identity\"\n{routes}"));
        assert!(
            err.contains(r#"routes[1].roles: provider "sso_identity" reports no roles"#),
            "{err}"
        );
        assert!(
            err.contains(
                r#"routes[2].permissions: provider "sso_identity" reports no permissions"#
            ),
            "{err}"
        );
        assert!(Config::from_toml_str(routes).is_ok(), "iid reports both");
    }

    #[test]
    fn cluster_is_off_by_default_and_needs_a_url_and_a_long_secret() {
        assert!(Config::from_toml_str(ROUTE).unwrap().cluster.is_none());
        let secret = "s".repeat(MIN_CLUSTER_SECRET_BYTES);
        let c = Config::from_toml_str(&format!(
            "[cluster]\nredis_url = \"rediss://:pw@redis.portal.svc:6380/1\"\nsecret = \"{secret}\"\ncommand_timeout = \"50ms\"\n{ROUTE}"
        ))
        .unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.command_timeout, Duration::from_millis(50));
        assert_eq!(cluster.revocation_retention, Duration::from_secs(24 * 3600));
        let shown = format!("{cluster:?}");
        assert!(
            !shown.contains(&secret) && !shown.contains(":pw@"),
            "{shown}"
        );
        for (bad, key) in [
            (
                "redis_url = \"http://redis:6379\"\nsecret = \"SECRET\"",
                "cluster.redis_url: ",
            ),
            (
                "redis_url = \"redis://redis:6379\"",
                "cluster.secret: required",
            ),
            (
                "redis_url = \"redis://redis:6379\"\nsecret = \"short\"",
                "cluster.secret: ",
            ),
            (
                "redis_url = \"redis://redis:6379\"\nsecret = \"SECRET\"\ncommand_timeout = \"0s\"",
                "cluster.command_timeout: ",
            ),
            (
                "redis_url = \"redis://redis:6379\"\nsecret = \"SECRET\"\noutage_buffer = 0",
                "cluster.outage_buffer: ",
            ),
        ] {
            let bad = bad.replace("SECRET", &secret);
            let err = error_of(&format!("[cluster]\n{bad}\n{ROUTE}"));
            assert!(err.contains(key), "{bad}: {err}");
            assert!(!err.contains(&secret), "{err}");
        }
    }

    #[test]
    fn forward_auth_is_off_by_default_and_checked() {
        let c = Config::from_toml_str(ROUTE).unwrap();
        assert!(c.forward_auth.listen.is_none());
        assert!(c.forward_auth.trust_loopback);
        assert_eq!(c.forward_auth.path_prefix, "");
        let c = Config::from_toml_str(&format!(
            "[forward_auth]\nlisten = \"127.0.0.1:8081\"\ntrust_loopback = false\npath_prefix = \"/ext_authz\"\n{ROUTE}"
        ))
        .unwrap();
        assert_eq!(
            c.forward_auth.listen,
            Some("127.0.0.1:8081".parse().unwrap())
        );
        assert!(!c.forward_auth.trust_loopback);
        assert_eq!(c.forward_auth.path_prefix, "/ext_authz");
        // Port 0 ("any free port", as tests bind) never clashes.
        Config::from_toml_str(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[forward_auth]\nlisten = \"127.0.0.1:0\"\n{ROUTE}"
        ))
        .unwrap();
        for (section, bad) in [
            (
                "[server]\nlisten = \"127.0.0.1:7000\"\n",
                "listen = \"127.0.0.1:7000\"",
            ),
            (
                "[admin]\nlisten = \"127.0.0.1:7001\"\n",
                "listen = \"127.0.0.1:7001\"",
            ),
            ("", "listen = \"nope\""),
        ] {
            let err = error_of(&format!("{section}[forward_auth]\n{bad}\n{ROUTE}"));
            assert!(err.contains("forward_auth.listen: "), "{bad}: {err}");
        }
        for bad in ["ext_authz", "/ext_authz/", "/a//b", "/a/../b", "/"] {
            let err = error_of(&format!(
                "[forward_auth]\nlisten = \"127.0.0.1:8081\"\npath_prefix = {bad:?}\n{ROUTE}"
            ));
            assert!(err.contains("forward_auth.path_prefix: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_route_may_omit_its_upstream_only_for_forward_auth() {
        let route = "[[routes]]\nprefix = \"/\"\n";
        let err = error_of(route);
        assert!(
            err.contains("routes[0].upstream: required (only with [forward_auth] listen set"),
            "{err}"
        );
        let c = Config::from_toml_str(&format!(
            "[forward_auth]\nlisten = \"127.0.0.1:8081\"\n{route}"
        ))
        .unwrap();
        assert_eq!(c.routes[0].upstream, None);
        // A route that names an upstream still gets it checked.
        let err = error_of(&format!(
            "[forward_auth]\nlisten = \"127.0.0.1:8081\"\n{route}upstream = \"ftp://x\"\n"
        ));
        assert!(err.contains("routes[0].upstream: "), "{err}");
    }

    #[test]
    fn header_prefix_has_a_default_is_lowercased_and_checked() {
        let c = Config::from_toml_str(ROUTE).unwrap();
        assert_eq!(c.headers.prefix, "x-iid-");
        assert_eq!(c.headers.prefix, crate::config::DEFAULT_HEADER_PREFIX);
        let c =
            Config::from_toml_str(&format!("[headers]\nprefix = \"X-Auth-\"\n{ROUTE}")).unwrap();
        assert_eq!(c.headers.prefix, "x-auth-");
        for bad in ["", "x_iid_", "x iid", "x-iid:", "é-", &"x".repeat(33)] {
            let err = error_of(&format!("[headers]\nprefix = {bad:?}\n{ROUTE}"));
            assert!(err.contains("headers.prefix: "), "{bad:?}: {err}");
        }
        let c = Config::from_toml_str(&format!(
            "[headers]\nprefix = {:?}\n{ROUTE}",
            "x".repeat(32)
        ))
        .unwrap();
        assert_eq!(c.headers.prefix.len(), 32);
    }

    #[test]
    fn resilience_knobs_have_defaults() {
        let c = Config::from_toml_str(ROUTE).unwrap();
        assert_eq!(c.cache.refresh_ahead, RefreshAhead::Percent(10));
        assert_eq!(c.idp.max_concurrent, 64);
        assert_eq!(c.idp.breaker, BreakerConfig::default());
        assert_eq!(c.idp.breaker.failures, 5);
        assert_eq!(c.routes[0].stale_if_error, Duration::ZERO);
    }

    #[test]
    fn resilience_knobs_are_read_and_checked() {
        let c = Config::from_toml_str(&format!(
            "[cache]\nrefresh_ahead = \"30s\"\n\
             [idp]\nmax_concurrent = 8\nbreaker = {{ failures = 3, cool_down = \"1s\", max_cool_down = \"4s\" }}\n\
             {ROUTE}stale_if_error = \"1m\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.cache.refresh_ahead,
            RefreshAhead::Before(Duration::from_secs(30))
        );
        assert_eq!(c.idp.max_concurrent, 8);
        assert_eq!(
            c.idp.breaker,
            BreakerConfig {
                failures: 3,
                cool_down: Duration::from_secs(1),
                max_cool_down: Duration::from_secs(4),
            }
        );
        assert_eq!(c.routes[0].stale_if_error, Duration::from_secs(60));
        for (text, want) in [
            ("0", RefreshAhead::Off),
            ("0%", RefreshAhead::Off),
            ("0s", RefreshAhead::Off),
            ("25%", RefreshAhead::Percent(25)),
        ] {
            let c = Config::from_toml_str(&format!("[cache]\nrefresh_ahead = {text:?}\n{ROUTE}"))
                .unwrap();
            assert_eq!(c.cache.refresh_ahead, want, "{text}");
        }
        let err = error_of(&format!(
            "[cache]\nrefresh_ahead = \"95%\"\n\
             [idp]\nmax_concurrent = 0\nbreaker = {{ cool_down = \"10s\", max_cool_down = \"5s\" }}\n\
             [[routes]]\nprefix = \"/pub/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"public\"\nstale_if_error = \"1m\"\n\
             {ROUTE}stale_if_error = \"soon\"\n"
        ));
        for want in [
            "cache.refresh_ahead: \"95%\"",
            "idp.max_concurrent: must be greater than zero",
            "idp.breaker.max_cool_down: must be at least idp.breaker.cool_down",
            "routes[0].stale_if_error: route \"/pub/\" is public",
            "routes[1].stale_if_error: ",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = error_of(&format!("[idp]\nbreaker = {{ failure = 3 }}\n{ROUTE}"));
        assert!(err.contains("failure"), "{err}");
    }

    #[test]
    fn refresh_window_follows_each_entry_lifetime() {
        let ttl = Duration::from_secs(100);
        assert_eq!(RefreshAhead::Off.window(ttl), Duration::ZERO);
        assert_eq!(
            RefreshAhead::Percent(10).window(ttl),
            Duration::from_secs(10)
        );
        assert_eq!(
            RefreshAhead::Before(Duration::from_secs(500)).window(ttl),
            ttl
        );
    }
}
