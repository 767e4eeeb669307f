//! Identity providers: the [`SessionProvider`] trait the gateway depends on,
//! [`build`] to pick one from `[idp]`, and one folder per provider, each with
//! the wire types it shares with its emulator: IID child sessions (`iid`),
//! EnOS IAM sessions (`enos`), SSO identity sessions (`sso_identity`) and
//! CIAM session tokens (`ciam`). `exchange` is the one HTTP round trip they all share, so
//! transport failures and timeouts classify alike.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;

use crate::auth::credential::Credential;
use crate::auth::headers::Carries;
use crate::auth::identity::Identity;
use crate::config::{IdpConfig, ProviderConfig};
use crate::connector::Connector;

pub mod ciam;
pub mod enos;
pub mod guard;
pub mod iid;
pub mod sso_identity;

/// Why a provider client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `base_url` plus an API path is not a URI.
    #[error("idp.base_url: {0}")]
    Url(String),
    /// An IID API key or client id cannot be a header value.
    #[error("idp.{0}: not a valid header value")]
    Header(&'static str),
    /// The CIAM access token cannot be sent as a header.
    #[error("idp.access_token: contains characters not allowed in a header")]
    AccessToken,
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
}

/// The provider `[idp] provider` names, ready to be called.
pub fn build(cfg: &IdpConfig) -> Result<Arc<dyn SessionProvider>, BuildError> {
    Ok(match &cfg.provider {
        ProviderConfig::Iid(own) => Arc::new(iid::IidClient::new(cfg, own)?),
        ProviderConfig::Enos(_) => Arc::new(enos::EnosClient::new(cfg)?),
        ProviderConfig::SsoIdentity(_) => Arc::new(sso_identity::SsoIdentityClient::new(cfg)?),
        ProviderConfig::Ciam(own) => Arc::new(ciam::CiamClient::new(cfg, own)?),
    })
}

/// The HTTP client every provider calls its IdP with.
pub(crate) type HttpClient = Client<Connector, Full<Bytes>>;

/// A pooled HTTP/1 client for the IdP: `idp.timeout` bounds the connect and
/// `idp.ca`, when set, replaces the system roots.
pub(crate) fn http_client(cfg: &IdpConfig) -> Result<HttpClient, rustls::Error> {
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(crate::connector::build_with(
            cfg.timeout,
            cfg.ca.as_ref().map(|c| &*c.certs),
            crate::connector::Alpn::Http1,
        )?))
}

/// `base_url` (without a trailing `/`) followed by an API `path`.
pub(crate) fn endpoint(cfg: &IdpConfig, path: &str) -> String {
    format!("{}{}", cfg.base_url.trim_end_matches('/'), path)
}

/// [`endpoint`] as a URI, checked once when the client is built.
pub(crate) fn endpoint_uri(cfg: &IdpConfig, path: &str) -> Result<http::Uri, BuildError> {
    endpoint(cfg, path)
        .parse()
        .map_err(|e| BuildError::Url(format!("{e}")))
}

/// A request to the IdP with `[idp] headers` first (so a provider's own
/// headers are added after them) and `Accept: application/json`.
pub(crate) fn request(
    method: http::Method,
    uri: http::Uri,
    static_headers: &crate::config::StaticHeaders,
) -> http::request::Builder {
    let mut req = Request::builder().method(method);
    if let Some(headers) = req.headers_mut() {
        static_headers.apply_to(headers);
    }
    req.uri(uri).header(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    )
}

/// A boxed future: providers are called only on cache misses, so the box is off the hot path.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the IdP said about a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A live session; cache it for at most `expires_in`.
    Valid {
        /// Who the user is (boxed: it dwarfs the other variant).
        identity: Box<Identity>,
        /// Time left on the session as the IdP reported it.
        expires_in: Duration,
    },
    /// The IdP says the session is not (or no longer) valid.
    Invalid {
        /// Stable log field value, e.g. `idp_rejected`.
        reason: &'static str,
    },
}

/// The IdP could not give a trustworthy answer: never cached, never forwarded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdpError {
    /// Connection refused, reset, DNS, 5xx, 429.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// No complete answer within `idp.timeout`.
    #[error("identity provider timed out")]
    Timeout,
    /// An answer that cannot be trusted: not JSON, wrong shape, unsafe values.
    #[error("identity provider answered something unusable: {0}")]
    BadAnswer(String),
    /// Hold off for `retry_after`: the IdP said so (429/503 with
    /// `Retry-After`), or the gateway protects it (breaker open, no call slot).
    #[error("identity provider call held off ({cause}) for {retry_after:?}")]
    Backoff {
        /// Who asked for the pause.
        cause: Backoff,
        /// How long the caller should wait before trying again.
        retry_after: Duration,
    },
}

/// Why an IdP call was held off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Backoff {
    /// The IdP answered 429 or 503 with `Retry-After`.
    #[error("the IdP throttles")]
    Throttled,
    /// The circuit breaker is open: recent calls failed, none is made now.
    #[error("circuit breaker open")]
    CircuitOpen,
    /// Every call slot (`idp.max_concurrent`) stayed taken for `idp.timeout`.
    #[error("no free IdP call slot")]
    Saturated,
}

impl IdpError {
    /// Stable log field value.
    pub fn failure(&self) -> &'static str {
        match self {
            IdpError::Unavailable(_) => "idp_unavailable",
            IdpError::Timeout => "idp_timeout",
            IdpError::BadAnswer(_) => "idp_bad_answer",
            IdpError::Backoff { cause, .. } => match cause {
                Backoff::Throttled => "idp_throttled",
                Backoff::CircuitOpen => "idp_circuit_open",
                Backoff::Saturated => "idp_saturated",
            },
        }
    }

    /// True when the IdP could not be asked or did not answer: the only
    /// failures a route's `stale_if_error` may cover. A bad answer is not one
    /// of them: the IdP spoke, and what it said cannot be trusted.
    pub fn is_outage(&self) -> bool {
        !matches!(self, IdpError::BadAnswer(_))
    }

    /// How long the IdP (or the breaker) asked callers to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IdpError::Backoff { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Longest pause a `Retry-After` from the IdP can impose: a wrong or hostile
/// value must not keep the breaker open for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The pause a 429 or 503 asks for, capped at [`MAX_RETRY_AFTER`]; `None`
/// when the answer is another status or names no usable pause. Delta-seconds
/// and HTTP-dates (RFC 9110 10.2.3) are both read.
pub fn retry_after(status: StatusCode, headers: &http::HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let text = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// How a remote logout went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// The IdP ended the session.
    LoggedOut,
    /// The IdP did not know it or had already ended it.
    AlreadyGone,
}

/// What the gateway knows about the client behind a request, for providers
/// whose API wants it (ciam sends the device's address and agent). Built
/// only on a cache miss; the cache key stays the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client address: the peer, or from X-Forwarded-For when the peer
    /// is a trusted proxy.
    pub ip: IpAddr,
    /// The request's `User-Agent`, when it sent a readable one.
    pub user_agent: Option<Box<str>>,
}

/// A session API: validates and ends sessions.
pub trait SessionProvider: Send + Sync + 'static {
    /// Asks the IdP whether `key` is a live session and who it belongs to;
    /// `client` describes the request that brought the credential.
    fn fetch<'a>(
        &'a self,
        key: &'a Credential,
        client: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<Verdict, IdpError>>;
    /// Ends the session at the IdP.
    fn logout<'a>(&'a self, key: &'a Credential) -> BoxFuture<'a, Result<LogoutOutcome, IdpError>>;
    /// Which lists (roles, permissions) this provider reports, so headers and
    /// route checks only rely on what it can deliver.
    fn carries(&self) -> Carries;
}

/// Largest IdP answer read; a bigger one is a bad answer, not a memory problem.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Sends `req` and reads the whole answer; `timeout` covers connect to last
/// body byte. Shared by every provider so they classify transport failures alike.
pub(crate) async fn exchange(
    client: &Client<Connector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), IdpError> {
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| IdpError::Unavailable(describe(&e)))?;
        let status = resp.status();
        // Before any provider classifies the status: a pause the IdP asks for
        // reaches the breaker the same way whichever provider is configured.
        if let Some(retry_after) = retry_after(status, resp.headers()) {
            return Err(IdpError::Backoff {
                cause: Backoff::Throttled,
                retry_after,
            });
        }
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    IdpError::BadAnswer(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
                } else {
                    IdpError::Unavailable(format!("reading answer: {e}"))
                }
            })?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| IdpError::Timeout)?
}

/// Where a body failed to parse, without quoting it: serde's messages can
/// include values from the answer, and an answer may echo a session id.
pub(crate) fn describe_json(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Error text without URIs' user-info or request details.
pub(crate) fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_connect() {
        "connect failed".to_string()
    } else {
        "request failed".to_string()
    };
    if let Some(src) = e.source() {
        text.push_str(": ");
        text.push_str(&src.to_string());
    }
    text
}

/// A provider's serializable context as the JSON object `Identity::context`
/// holds (struct field order kept), or a bad answer.
pub(crate) fn json_object(
    v: &impl serde::Serialize,
) -> Result<serde_json::Map<String, serde_json::Value>, IdpError> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(IdpError::BadAnswer("identity is not a JSON object".into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Route checks at load time trust `ProviderConfig::reports_*`; the header
    /// plan trusts `carries()`. They must agree for every provider.
    #[test]
    fn config_and_client_agree_on_what_each_provider_reports() {
        for provider in [
            "iid",
            "enos",
            "sso_identity",
            "ciam\"\naccess_token = \"t",
            "ciam\"\naccess_token = \"t\"\nuserinfo_url = \"http://127.0.0.1:1/u\"\nroles_pointer = \"/r",
            "ciam\"\naccess_token = \"t\"\nuserinfo_url = \"http://127.0.0.1:1/u\"\npermissions_pointer = \"/p",
        ] {
            let cfg = Config::from_toml_str(&format!(
                "[idp]\nprovider = \"{provider}\"\n\
                 [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n"
            ))
            .unwrap();
            let carries = build(&cfg.idp).unwrap().carries();
            assert_eq!(
                carries.roles,
                cfg.idp.provider.reports_roles(),
                "{provider}"
            );
            assert_eq!(
                carries.permissions,
                cfg.idp.provider.reports_permissions(),
                "{provider}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_from_429_and_503_only_and_capped() {
        let with = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::RETRY_AFTER, v.parse().unwrap());
            h
        };
        let tmr = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(retry_after(tmr, &with("2")), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &with(" 7 ")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(tmr, &with("86400")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(StatusCode::BAD_GATEWAY, &with("2")), None);
        assert_eq!(retry_after(tmr, &http::HeaderMap::new()), None);
        assert_eq!(retry_after(tmr, &with("soon")), None);
        let later = std::time::SystemTime::now() + Duration::from_secs(10);
        let d = retry_after(tmr, &with(&httpdate::fmt_http_date(later))).unwrap();
        assert!(
            d > Duration::from_secs(5) && d <= Duration::from_secs(10),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(std::time::SystemTime::UNIX_EPOCH);
        assert_eq!(retry_after(tmr, &with(&past)), Some(Duration::ZERO));
    }
}
