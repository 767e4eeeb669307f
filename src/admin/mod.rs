//! The admin listener: liveness, readiness and Prometheus metrics, served on
//! their own port (`[admin] listen`) and never on the public listener, so
//! clients cannot read metrics or flip probes.
//!
//! - `GET /healthz`: 200 `{"status":"ok"}` while the process runs (liveness).
//! - `GET /readyz`: 200 `{"status":"ready"}`, or 503 `{"status":"not_ready","reason":"..."}`
//!   until [`Admin::set_ready`] says otherwise (readiness: starting, shutting down).
//! - `GET /metrics`: OpenMetrics text, see [`Metrics`].
//! - `GET /.well-known/jwks.json`: the identity token's public keys, with `[jwt]` on.
//! - `POST /revoke`: revokes a session on this replica and, with `[cluster]`,
//!   on every replica (see the gateway's handler).

mod cluster_metrics;
mod metrics;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tokio::net::TcpListener;

use crate::server::{self, ServeOptions};

pub use cluster_metrics::ClusterMetrics;
pub use metrics::{
    AuthOutcome, BreakerState, IdpRejection, IdpResult, Metrics, Mode, ProbeResult, RefreshResult,
    RouteLabel, UpstreamResult, LATENCY_BUCKETS_NANOS, MAX_ROUTE_LABELS, NO_ROUTE, OTHER_ROUTE,
};

/// Content-Type of `/metrics` answers.
pub const METRICS_CONTENT_TYPE: &str = metrics::CONTENT_TYPE;

/// Readiness reason before the first [`Admin::set_ready`].
pub const STARTING: &str = "starting";

/// A hook run before each `/metrics` encode, to refresh gauges read at scrape time.
pub type ScrapeHook = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Where `/.well-known/jwks.json` comes from (the JWT signer's current keys).
pub type JwksSource = Box<dyn Fn() -> Bytes + Send + Sync>;

/// Answers a `POST /revoke` body (the gateway parses it and revokes).
pub type RevokeHandler =
    Arc<dyn Fn(Bytes) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync>;

/// Path of the revocation endpoint.
pub const REVOKE: &str = "/revoke";

/// Largest `/revoke` body accepted: a credential is at most a few KiB.
const MAX_REVOKE_BODY: usize = 16 * 1024;

/// Path of the JWKS (also served on the public listener with `jwt.public_jwks`).
const JWKS: &str = "/.well-known/jwks.json";

/// A registered [`ScrapeHook`], shared so a scrape can run it outside the lock.
type SharedHook = Arc<dyn Fn(&Metrics) + Send + Sync>;

/// Shared admin state: the readiness latch and the metrics registry.
pub struct Admin {
    /// `(ready, reason)`; one lock so a probe never sees a ready flag with a stale reason.
    readiness: Mutex<(bool, &'static str)>,
    metrics: Metrics,
    /// Hooks run before each scrape; a hook may itself call `on_scrape` without deadlocking.
    on_scrape: Mutex<Vec<SharedHook>>,
    /// The JWKS, with `[jwt]` on; the endpoint answers 404 without it.
    jwks: Mutex<Option<Arc<dyn Fn() -> Bytes + Send + Sync>>>,
    /// `POST /revoke`, once the gateway is built.
    revoke: Mutex<Option<RevokeHandler>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ready, reason) = self.readiness();
        f.debug_struct("Admin")
            .field("ready", &ready)
            .field("reason", &reason)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Not ready (`"starting"`), with empty metrics and the route prefixes
    /// interned up front (others are interned on first use).
    pub fn with_routes(route_prefixes: &[&str]) -> Arc<Admin> {
        Arc::new(Admin {
            readiness: Mutex::new((false, STARTING)),
            metrics: Metrics::new(route_prefixes),
            on_scrape: Mutex::new(Vec::new()),
            jwks: Mutex::new(None),
            revoke: Mutex::new(None),
        })
    }

    /// Flips `/readyz`; `reason` is shown while not ready (e.g. `"shutting down"`).
    pub fn set_ready(&self, ready: bool, reason: &'static str) {
        *self
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (ready, reason);
    }

    /// The current `(ready, reason)`.
    pub fn readiness(&self) -> (bool, &'static str) {
        *self
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The metrics to record into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds a hook run before each scrape (e.g. to set the cache entry count).
    pub fn on_scrape(&self, hook: ScrapeHook) {
        self.on_scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::from(hook));
    }

    /// Serves `/.well-known/jwks.json` from `source`.
    pub fn set_jwks(&self, source: JwksSource) {
        *self.jwks.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::from(source));
    }

    /// Serves `POST /revoke` with `handler`.
    pub fn set_revoke(&self, handler: RevokeHandler) {
        *self.revoke.lock().unwrap_or_else(PoisonError::into_inner) = Some(handler);
    }

    /// `POST /revoke`: reads the (bounded) body and hands it to the handler.
    pub async fn revoke<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let handler = self
            .revoke
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(handler) = handler else {
            return json(StatusCode::NOT_FOUND, r#"{"status":"not_found"}"#.into());
        };
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        match Limited::new(req.into_body(), MAX_REVOKE_BODY)
            .collect()
            .await
        {
            Ok(body) => handler(body.to_bytes()).await,
            Err(_) => json(
                StatusCode::BAD_REQUEST,
                r#"{"status":"bad_request","reason":"body unreadable or over 16 KiB"}"#.into(),
            ),
        }
    }

    /// Answers one admin request; pure, so tests can call it without a socket.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let jwks = match path {
            JWKS => self
                .jwks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            _ => None,
        };
        if !matches!(path, "/healthz" | "/readyz" | "/metrics") && jwks.is_none() {
            return json(StatusCode::NOT_FOUND, r#"{"status":"not_found"}"#.into());
        }
        // HEAD too: some probes and load balancers use it; hyper drops the body.
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        match path {
            "/healthz" => json(StatusCode::OK, r#"{"status":"ok"}"#.into()),
            JWKS => match jwks {
                Some(source) => jwks_response(source()),
                None => json(StatusCode::NOT_FOUND, r#"{"status":"not_found"}"#.into()),
            },
            "/readyz" => match self.readiness() {
                (true, _) => json(StatusCode::OK, r#"{"status":"ready"}"#.into()),
                (false, reason) => json(StatusCode::SERVICE_UNAVAILABLE, not_ready_body(reason)),
            },
            _ => self.scrape(),
        }
    }

    /// Runs the scrape hooks, then encodes every metric.
    fn scrape(&self) -> Response<Full<Bytes>> {
        let hooks = self
            .on_scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for hook in hooks {
            hook(&self.metrics);
        }
        match self.metrics.encode() {
            Ok(text) => {
                let mut resp = Response::new(Full::new(Bytes::from(text)));
                let headers = resp.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                resp
            }
            Err(err) => {
                tracing::error!(error = %err, "metrics encoding failed");
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"status":"error"}"#.into(),
                )
            }
        }
    }
}

/// A JWKS answer. Verifiers may keep it a minute: a rotated key is served
/// beside the previous one, and a verifier meeting an unknown `kid` refetches.
pub fn jwks_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp
}

/// `{"status":"not_ready","reason":...}`, with `status` first for people reading probe output.
fn not_ready_body(reason: &str) -> String {
    #[derive(serde::Serialize)]
    struct NotReady<'a> {
        status: &'static str,
        reason: &'a str,
    }
    serde_json::to_string(&NotReady {
        status: "not_ready",
        reason,
    })
    .unwrap_or_else(|_| r#"{"status":"not_ready"}"#.to_owned())
}

/// 405, naming the methods the endpoint takes.
fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = json(
        StatusCode::METHOD_NOT_ALLOWED,
        r#"{"status":"method_not_allowed"}"#.into(),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

/// A small JSON answer that no cache keeps (probe results go stale at once).
fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    crate::error::json_bytes(status, body)
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    server::serve(
        listener,
        ServeOptions::default(),
        move |req: Request<hyper::body::Incoming>, _peer| {
            let admin = Arc::clone(&admin);
            async move {
                if req.uri().path() == REVOKE {
                    return admin.revoke(req).await;
                }
                admin.handle(&req)
            }
        },
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Duration;

    use http::HeaderMap;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::sync::oneshot;

    use super::*;

    /// An admin listener on 127.0.0.1:0; it stops when the sender is dropped.
    async fn start(admin: Arc<Admin>) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(run(listener, admin, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    async fn request(
        addr: SocketAddr,
        method: Method,
        path: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Empty::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, String) {
        request(addr, Method::GET, path).await
    }

    /// One sample line of the text exposition: `name{k="v",...} value`.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// Parses a sample line strictly; `None` if it is not `name{labels} value`.
    fn parse_sample(line: &str) -> Option<Sample> {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut body = body;
            loop {
                if let Some(after) = body.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = body.find("=\"")?;
                let key = &body[..eq];
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return None;
                }
                let mut value = String::new();
                let mut chars = body[eq + 2..].char_indices();
                let end = loop {
                    match chars.next()? {
                        (i, '"') => break eq + 2 + i + 1,
                        (_, '\\') => value.push(chars.next()?.1),
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key.to_string(), value);
                body = &body[end..];
                body = body.strip_prefix(',').unwrap_or(body);
            }
        }
        let value = rest.strip_prefix(' ')?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().ok()?,
        };
        Some(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }

    /// Every sample of an exposition; panics on a line that is neither a comment nor a sample.
    fn parse_exposition(text: &str) -> Vec<Sample> {
        assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a sample line: {l:?}")))
            .collect()
    }

    /// The value of the one sample named `name` with exactly `labels`.
    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?} in {samples:#?}");
        found[0].value
    }

    #[tokio::test]
    async fn healthz_is_ok_while_running() {
        let (addr, _stop) = start(Admin::with_routes(&[])).await;
        let (status, headers, body) = get(addr, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"status":"ok"}"#);
        assert_eq!(headers[CONTENT_TYPE], "application/json; charset=utf-8");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn readyz_follows_the_latch() {
        let admin = Admin::with_routes(&[]);
        let (addr, _stop) = start(Arc::clone(&admin)).await;

        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"status":"not_ready","reason":"starting"}"#);

        admin.set_ready(true, "ok");
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"status":"ready"}"#);

        admin.set_ready(false, "shutting down");
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"status":"not_ready","reason":"shutting down"}"#);
        // Liveness does not follow readiness: a draining process is still alive.
        assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_other_methods_405() {
        let (addr, _stop) = start(Admin::with_routes(&[])).await;
        for path in ["/", "/metricsx", "/healthz/", "/admin"] {
            assert_eq!(get(addr, path).await.0, StatusCode::NOT_FOUND, "{path}");
        }
        let (status, headers, _) = request(addr, Method::POST, "/readyz").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[ALLOW], "GET, HEAD");
        let (status, _, body) = request(addr, Method::HEAD, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "");
    }

    #[tokio::test]
    async fn metrics_are_valid_exposition_with_recorded_values() {
        let admin = Admin::with_routes(&["/api/", "/"]);
        let m = admin.metrics();
        let api = m.route(Some("/api/"));
        m.request(&api, Mode::Proxy, 200, Duration::from_micros(80));
        m.request(&api, Mode::Proxy, 200, Duration::from_millis(3));
        m.request(&api, Mode::Proxy, 503, Duration::from_secs(20));
        m.request(&m.route(None), Mode::Proxy, 404, Duration::from_micros(10));
        m.request(&api, Mode::ForwardAuth, 200, Duration::from_micros(50));
        for _ in 0..3 {
            m.auth(AuthOutcome::CacheHit);
        }
        m.auth(AuthOutcome::IdpTimeout);
        m.idp_call(Duration::from_millis(7), IdpResult::Valid);
        m.idp_call(Duration::from_secs(2), IdpResult::Timeout);
        m.upstream(Duration::from_millis(1), UpstreamResult::Ok);
        m.upstream(Duration::from_millis(2), UpstreamResult::Unreachable);
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        admin.on_scrape(Box::new(|m: &Metrics| m.set_cache_entries(42)));

        let (addr, _stop) = start(Arc::clone(&admin)).await;
        let (status, headers, text) = get(addr, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], METRICS_CONTENT_TYPE);
        let s = parse_exposition(&text);

        let req = "sessiongate_requests_total";
        let proxied = |route, status| [("route", route), ("status", status), ("mode", "proxy")];
        assert_eq!(value(&s, req, &proxied("/api/", "200")), 2.0);
        assert_eq!(value(&s, req, &proxied("/api/", "503")), 1.0);
        assert_eq!(value(&s, req, &proxied("none", "404")), 1.0);
        // Decisions are counted apart from proxied requests, by the same route.
        let decided = [
            ("route", "/api/"),
            ("status", "200"),
            ("mode", "forward_auth"),
        ];
        assert_eq!(value(&s, req, &decided), 1.0);

        let dur = "sessiongate_request_duration_seconds";
        let decisions_l = [("route", "/api/"), ("mode", "forward_auth")];
        assert_eq!(value(&s, &format!("{dur}_count"), &decisions_l), 1.0);
        // A route without decisions exports no decision series.
        assert!(!text.contains(r#"route="/",mode="forward_auth""#), "{text}");
        let api_l = [("route", "/api/"), ("mode", "proxy")];
        assert_eq!(value(&s, &format!("{dur}_count"), &api_l), 3.0);
        let sum = value(&s, &format!("{dur}_sum"), &api_l);
        assert!((sum - 20.00308).abs() < 1e-9, "{sum}");
        let bucket = |le: &str| {
            value(
                &s,
                &format!("{dur}_bucket"),
                &[("route", "/api/"), ("mode", "proxy"), ("le", le)],
            )
        };
        assert_eq!(bucket("0.0001"), 1.0);
        assert_eq!(bucket("0.005"), 2.0);
        assert_eq!(bucket("10.0"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        // A route interned up front is exported (at zero) before its first request.
        assert_eq!(
            value(
                &s,
                &format!("{dur}_count"),
                &[("route", "/"), ("mode", "proxy")]
            ),
            0.0
        );
        // Buckets are cumulative.
        let mut last = 0.0;
        for sample in s.iter().filter(|x| x.name == format!("{dur}_bucket")) {
            if sample.labels["route"] == "/api/" && sample.labels["mode"] == "proxy" {
                assert!(sample.value >= last, "{sample:?}");
                last = sample.value;
            }
        }

        let auth = "sessiongate_auth_outcomes_total";
        assert_eq!(value(&s, auth, &[("outcome", "cache_hit")]), 3.0);
        assert_eq!(value(&s, auth, &[("outcome", "idp_timeout")]), 1.0);
        for outcome in AuthOutcome::ALL {
            value(&s, auth, &[("outcome", outcome.as_str())]); // every series exists from the start
        }
        assert_eq!(value(&s, auth, &[("outcome", "forbidden")]), 0.0);

        let idp = "sessiongate_idp_requests_total";
        assert_eq!(value(&s, idp, &[("result", "valid")]), 1.0);
        assert_eq!(value(&s, idp, &[("result", "timeout")]), 1.0);
        assert_eq!(value(&s, idp, &[("result", "bad_answer")]), 0.0);
        assert_eq!(
            value(&s, "sessiongate_idp_request_duration_seconds_count", &[]),
            2.0
        );
        let up = "sessiongate_upstream_requests_total";
        assert_eq!(value(&s, up, &[("result", "ok")]), 1.0);
        assert_eq!(value(&s, up, &[("result", "unreachable")]), 1.0);
        assert_eq!(
            value(&s, "sessiongate_upstream_duration_seconds_count", &[]),
            2.0
        );
        assert_eq!(value(&s, "sessiongate_open_connections", &[]), 1.0);
        assert_eq!(value(&s, "sessiongate_cache_entries", &[]), 42.0);
        assert!(text.contains("# TYPE sessiongate_request_duration_seconds histogram"));
        assert!(text.contains("# UNIT sessiongate_request_duration_seconds seconds"));
        assert!(text.contains("# TYPE sessiongate_requests counter"));
    }

    #[tokio::test]
    async fn scrape_hooks_run_at_every_scrape() {
        let admin = Admin::with_routes(&[]);
        let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&scrapes);
        admin.on_scrape(Box::new(move |m: &Metrics| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            m.set_cache_entries(n * 10);
        }));
        let (addr, _stop) = start(admin).await;
        for expected in [10.0, 20.0] {
            let s = parse_exposition(&get(addr, "/metrics").await.2);
            assert_eq!(value(&s, "sessiongate_cache_entries", &[]), expected);
        }
    }

    #[tokio::test]
    async fn run_returns_after_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, Admin::with_routes(&[]), async move {
            let _ = rx.await;
        }));
        assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
        tx.send(()).unwrap();
        // The client's pooled keep-alive connection is idle, so the drain ends at once.
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("admin listener did not stop")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn parser_rejects_malformed_lines() {
        for bad in [
            "",
            "1abc 1",
            "a{b=\"c\" 1",
            "a{b=c} 1",
            "a 1 2",
            "a{b=\"c\"}1",
            "a x",
        ] {
            assert!(parse_sample(bad).is_none(), "{bad:?}");
        }
        let ok = parse_sample(r#"a_b{x="1",y="q\"z"} 2.5"#).unwrap();
        assert_eq!(ok.labels["y"], "q\"z");
        assert_eq!(ok.value, 2.5);
    }
}
