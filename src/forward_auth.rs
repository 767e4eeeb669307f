//! The forward-auth decision listener. An ingress (nginx `auth_request`,
//! Traefik ForwardAuth, Caddy `forward_auth`, Envoy `ext_authz` over HTTP)
//! asks whether a request may pass and gets the decision the proxy would
//! make, from the same steps ([`Gateway::decide`]), in a form an ingress
//! understands:
//! - allowed: `200`, empty body, the identity headers the proxy would inject
//!   ([`Gateway::inject_identity`]), for the ingress to copy;
//! - refused: the proxy's own status and body (`src/error.rs`, `src/html.rs`);
//! - a browser without a session, with `session.login_url` set: `401` and
//!   `Location` (nginx `auth_request` understands only 2xx, 401 and 403);
//! - the IdP down: `503`, never `200`.
//!
//! Which request is decided comes from `X-Forwarded-Method`/`-Uri` (Traefik,
//! Caddy) or `X-Original-Method`/`-URI`/`-URL` (nginx, ingress-nginx), and
//! these are honoured only from trusted peers: a client that could name the
//! request being decided could get any request allowed (GHSA-7x63-xv5r-3p2x).
//! Without them, the decision request's own method and path, minus
//! `forward_auth.path_prefix`, are decided on (Envoy `ext_authz`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use ipnet::IpNet;

use crate::admin::Mode;
use crate::config::Config;
use crate::error::GatewayError;
use crate::html;
use crate::pipeline::{Decision, Gateway, Outcome, Seen};
use crate::request_id;
use crate::server::ConnectionInfo;

/// Traefik and Caddy: the original method.
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// Traefik and Caddy: the original path and query.
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// Traefik: the original `Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Traefik: the original scheme.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// nginx and ingress-nginx: the original method.
pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// nginx (`$request_uri`), and ingress-nginx with `auth-method` set.
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// ingress-nginx, always: `$scheme://$http_host$request_uri`.
pub const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");

/// Headers that describe another request than the decision request itself:
/// honoured from trusted peers only, refused from anyone else.
const DESCRIBING: [HeaderName; 7] = [
    X_FORWARDED_METHOD,
    X_FORWARDED_URI,
    X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
    X_ORIGINAL_METHOD,
    X_ORIGINAL_URI,
    X_ORIGINAL_URL,
];

/// The decision service: the gateway's decide step plus who may describe a request.
pub struct ForwardAuth {
    gateway: Arc<Gateway>,
    trusted_proxies: Box<[IpNet]>,
    trust_loopback: bool,
    path_prefix: Box<str>,
}

impl ForwardAuth {
    /// The decision service for `cfg.forward_auth`, deciding with `gateway`.
    pub fn new(cfg: &Config, gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            trusted_proxies: cfg.server.trusted_proxies.clone().into(),
            trust_loopback: cfg.forward_auth.trust_loopback,
            path_prefix: cfg.forward_auth.path_prefix.as_str().into(),
        }
    }

    /// Answers one decision request; never fails, every error becomes a response.
    pub async fn handle(&self, req: Request<impl Send>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        // The body is never read: a decision is about the request head alone.
        let (mut parts, _body) = req.into_parts();
        let request_id = request_id::ensure(&mut parts.headers);
        let prefs = html::Prefs::of(&parts.headers);
        let gateway = &*self.gateway;
        let mut log = Outcome::default();
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let (decided, method, uri) = match self.original(parts, peer.ip()) {
            Ok(original) => {
                let (method, uri) = (original.method.clone(), original.uri.clone());
                let decided = gateway.decide(&original, peer.ip(), &mut log).await;
                (decided, method, uri)
            }
            Err(err) => (Err(err), method, uri),
        };
        let mut resp = match decided {
            Ok(Decision::Allow(allowed)) => {
                let mut resp = Response::new(Full::new(Bytes::new()));
                gateway.inject_identity(&allowed, resp.headers_mut());
                resp
            }
            Ok(Decision::Respond(resp)) if resp.status() == StatusCode::FOUND => challenge(resp),
            // Logout: the gateway's own answer, as on the main listener.
            Ok(Decision::Respond(resp)) => resp,
            Err(err) => {
                log.failed(&err);
                if matches!(err, GatewayError::UntrustedForwardAuthClient) {
                    // Someone outside the trusted ingress tried to name the request.
                    tracing::warn!(peer = %peer.ip(), "untrusted forward-auth client");
                }
                html::error_response(&err, prefs, Some(&request_id))
            }
        };
        resp.headers_mut()
            .insert(request_id::X_REQUEST_ID, request_id.clone());
        let seen = Seen {
            mode: Mode::ForwardAuth,
            started,
            request_id: &request_id,
            method: &method,
            path: uri.path(),
        };
        gateway.record(&seen, resp.status(), &log);
        resp
    }

    /// Loopback (while `trust_loopback`) and `server.trusted_proxies`.
    fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        (self.trust_loopback && peer.is_loopback())
            || self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// The request the decision is about, shaped as `decide` reads a request:
    /// its method, target, `Host` and scheme; the cookies and `Authorization`
    /// stay the decision request's own.
    fn original(&self, mut parts: Parts, peer: IpAddr) -> Result<Parts, GatewayError> {
        let h = &parts.headers;
        if DESCRIBING.iter().any(|n| h.contains_key(n)) && !self.trusts(peer) {
            return Err(GatewayError::UntrustedForwardAuthClient);
        }
        // An ingress overwrites its own family of headers but passes the
        // client's others on (nginx's subrequest carries every client header),
        // so a request named by both families may be named by the client.
        let forwarded = h.contains_key(X_FORWARDED_METHOD) || h.contains_key(X_FORWARDED_URI);
        let original = [X_ORIGINAL_METHOD, X_ORIGINAL_URI, X_ORIGINAL_URL]
            .iter()
            .any(|n| h.contains_key(n));
        if forwarded && original {
            return Err(GatewayError::BadRequest("forward_auth_ambiguous"));
        }

        let method_header = if forwarded {
            X_FORWARDED_METHOD
        } else {
            X_ORIGINAL_METHOD
        };
        let method = single(h, &method_header)?
            .map(|v| Method::from_bytes(v.as_bytes()))
            .transpose()
            .map_err(|_| GatewayError::BadRequest("forwarded_method"))?;
        let url = single(h, &X_ORIGINAL_URL)?.map(absolute).transpose()?;
        let target = if forwarded {
            single(h, &X_FORWARDED_URI)?.map(origin_form).transpose()?
        } else {
            match (
                single(h, &X_ORIGINAL_URI)?.map(origin_form).transpose()?,
                &url,
            ) {
                // ingress-nginx sets both from `$request_uri`; when they
                // differ, one came from the client.
                (Some(uri), Some(url)) if uri.as_str() != pq_of(url).as_str() => {
                    return Err(GatewayError::BadRequest("forwarded_uri"));
                }
                (Some(uri), _) => Some(uri),
                (None, Some(url)) => Some(pq_of(url)),
                (None, None) => None,
            }
        };
        let (host, https) = match &url {
            Some(url) => (
                url.authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
                url.scheme_str() == Some("https"),
            ),
            None => (
                single(h, &X_FORWARDED_HOST)?.cloned(),
                single(h, &X_FORWARDED_PROTO)?.is_some_and(|p| p.as_bytes() == b"https"),
            ),
        };

        let target = match target {
            Some(target) => target,
            None => self.strip_path_prefix(parts.uri.path_and_query())?,
        };
        parts.uri = Uri::from(target);
        if let Some(method) = method {
            parts.method = method;
        }
        if let Some(host) = host {
            parts.headers.insert(HOST, host);
        }
        if https {
            parts.extensions.insert(ConnectionInfo { tls: true });
        }
        // `decide` sees the original request's head, not the description of it.
        for name in &DESCRIBING {
            parts.headers.remove(name);
        }
        Ok(parts)
    }

    /// The decision request's own target minus `path_prefix` (Envoy puts it
    /// in front of the original path); a path outside the prefix is refused.
    fn strip_path_prefix(&self, pq: Option<&PathAndQuery>) -> Result<PathAndQuery, GatewayError> {
        let pq = pq.map_or("/", PathAndQuery::as_str);
        let outside = || GatewayError::BadRequest("path_prefix");
        let rest = pq.strip_prefix(&*self.path_prefix).ok_or_else(outside)?;
        let rest = match rest.as_bytes().first() {
            None => "/".to_owned(),
            Some(b'/') => rest.to_owned(),
            Some(b'?') => format!("/{rest}"),
            Some(_) => return Err(outside()),
        };
        PathAndQuery::try_from(rest).map_err(|_| outside())
    }
}

/// The one value of `name`; two are ambiguous and refused.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(GatewayError::BadRequest("forwarded_header_repeated"));
    }
    Ok(first)
}

/// `X-Forwarded-Uri`/`X-Original-URI`: an origin-form target (`/path?query`).
fn origin_form(v: &HeaderValue) -> Result<PathAndQuery, GatewayError> {
    let bad = || GatewayError::BadRequest("forwarded_uri");
    if !v.as_bytes().starts_with(b"/") {
        return Err(bad());
    }
    PathAndQuery::try_from(v.as_bytes()).map_err(|_| bad())
}

/// `X-Original-URL`: an absolute `http(s)://host/path?query`.
fn absolute(v: &HeaderValue) -> Result<Uri, GatewayError> {
    let bad = || GatewayError::BadRequest("forwarded_uri");
    let uri = Uri::try_from(v.as_bytes()).map_err(|_| bad())?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(bad()),
    }
}

fn pq_of(url: &Uri) -> PathAndQuery {
    url.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// The login redirect as an ingress can pass it on: nginx `auth_request`
/// turns any status but 2xx, 401 and 403 into a 500, so the redirect becomes
/// `401` with its `Location` (nginx: `error_page 401` redirects to it). The
/// small page sends a browser on when an ingress copies the answer as it is
/// (Caddy, Traefik, Envoy), since browsers follow `Location` only on a 3xx.
fn challenge(redirect: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (mut parts, body) = redirect.into_parts();
    parts.status = StatusCode::UNAUTHORIZED;
    let location = parts
        .headers
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let body = match location {
        Some(location) => {
            let to = html::escape(&location);
            parts.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            Full::new(Bytes::from(format!(
                "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={to}\"><a href=\"{to}\">Sign in</a>\n"
            )))
        }
        None => body,
    };
    parts
        .headers
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_challenge_keeps_the_location_and_escapes_it_in_the_page() {
        let mut redirect = Response::new(Full::new(Bytes::new()));
        *redirect.status_mut() = StatusCode::FOUND;
        redirect.headers_mut().insert(
            LOCATION,
            HeaderValue::from_static("https://sso.example/login?a=1&return_to=%2F\"x"),
        );
        let resp = challenge(redirect);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers()[LOCATION],
            "https://sso.example/login?a=1&return_to=%2F\"x"
        );
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let page = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            page.contains("url=https://sso.example/login?a=1&amp;return_to=%2F&quot;x\""),
            "{page}"
        );
    }
}
