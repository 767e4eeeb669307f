//! The request pipeline, in the order every request goes through it. This is
//! the one place the gateway's behaviour is assembled; each step says why it
//! sits where it does.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{LOCATION, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use ipnet::IpNet;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;

use crate::admin::{
    Admin, AuthOutcome, BreakerState, IdpRejection, IdpResult, Mode, ProbeResult, RefreshResult,
    RouteLabel, UpstreamResult,
};
use crate::auth::cache::{Cached, Fresh, Lookup, RefreshTicket, Refreshed, Resolved, SessionCache};
use crate::auth::credential::{Credential, CredentialSource, Fingerprint, Found};
use crate::auth::headers::{Authenticated, HeaderPlan, InvalidPrefix};
use crate::auth::jwt::{Signer, JWKS_PATH};
use crate::cluster::{self, Cluster, Target};
use crate::config::{Config, ProviderConfig};
use crate::error::{json_response, GatewayError};
use crate::html;
use crate::idp::guard::{self, Guarded};
use crate::idp::{Backoff, ClientInfo, IdpError, SessionProvider, Verdict};
use crate::path::{local_target, normalize_path};
use crate::proxy::{self, Forwarder, ResponseBody};
use crate::request_id;
use crate::routes::{Access, Route, RouteTable};
use crate::server::{ConnectionInfo, ConnectionScope};
use crate::telemetry;

/// Characters left as-is in `return_to` (RFC 3986 unreserved).
const RETURN_TO_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why the gateway could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// TLS client setup failed.
    #[error("upstream client: {0}")]
    Tls(#[from] rustls::Error),
    /// `headers.prefix` cannot name headers.
    #[error(transparent)]
    HeaderPrefix(#[from] InvalidPrefix),
    /// `cluster.redis_url` cannot be used.
    #[error("cluster.redis_url: {0}")]
    Cluster(#[from] redis::RedisError),
    /// `jwt.key_file` (it may have changed since the config was checked).
    #[error("jwt.{0}")]
    JwtKey(#[from] crate::server::pem::LoadError),
}

/// Everything a request needs, built once from the validated config.
pub struct Gateway {
    routes: RouteTable,
    /// Each route's metric series, at its `Route::index`: a request finds
    /// its series without a lock or a hash of its prefix.
    route_labels: Box<[RouteLabel]>,
    cache: SessionCache<IdpError>,
    idp: Arc<dyn SessionProvider>,
    plan: HeaderPlan,
    /// Signs the identity token, with `[jwt]` on.
    signer: Option<Arc<Signer>>,
    /// Serve the JWKS on this listener too (`jwt.public_jwks`).
    public_jwks: bool,
    /// Shared state across replicas, with `[cluster]` on.
    cluster: Option<Arc<Cluster>>,
    /// The provider's credential starts with its session id (IID), so
    /// `/revoke` takes a `sessionId`.
    session_ids: bool,
    /// `{prefix}stale`, sent upstream with `1` when a request is admitted stale.
    stale_header: HeaderName,
    /// This gateway, for the background renewals it spawns.
    me: Weak<Gateway>,
    credentials: CredentialSource,
    forwarder: Forwarder,
    login_url: Option<String>,
    logout_path: Box<str>,
    trusted_proxies: Box<[IpNet]>,
    max_header_bytes: usize,
    access_log: bool,
    admin: Arc<Admin>,
}

impl Gateway {
    /// Assembles the gateway around a session provider, which it puts behind
    /// `idp.max_concurrent` and the breaker (see [`Guarded`]).
    pub fn new(cfg: &Config, idp: Arc<dyn SessionProvider>) -> Result<Arc<Self>, BuildError> {
        let routes = RouteTable::new(&cfg.routes);
        let admin = Admin::with_routes(&routes.prefixes());
        let route_labels = routes
            .prefixes()
            .into_iter()
            .map(|prefix| admin.metrics().route(Some(prefix)))
            .collect();
        let mut plan =
            HeaderPlan::new(&cfg.headers.prefix, cfg.headers.include_pii, idp.carries())?;
        let signer = match &cfg.jwt {
            Some(jwt) => Some(Arc::new(Signer::new(jwt)?)),
            None => None,
        };
        if let Some(signer) = &signer {
            // The token is an identity header: a client copy never reaches the app,
            // even when its name is outside the prefix.
            plan = plan.also_strip(signer.header().clone());
            let jwks = Arc::clone(signer);
            admin.set_jwks(Box::new(move || jwks.jwks()));
        }
        let stale_header = HeaderName::from_bytes(format!("{}stale", plan.prefix()).as_bytes())
            .map_err(|_| InvalidPrefix(plan.prefix().to_owned()))?;
        let idp: Arc<dyn SessionProvider> = Arc::new(Guarded::new(
            idp,
            &cfg.idp,
            guard_metrics(Arc::clone(&admin)),
        ));
        // The cache keeps the last valid answer as long as the most lenient
        // route may still serve it.
        let retention = cfg
            .routes
            .iter()
            .map(|r| r.stale_if_error)
            .max()
            .unwrap_or(Duration::ZERO);
        let forwarder = Forwarder::new(&cfg.upstream)?;
        let cache = SessionCache::with_retention(&cfg.cache, retention);
        let session_ids = matches!(cfg.idp.provider, ProviderConfig::Iid(_));
        let cluster = match &cfg.cluster {
            Some(c) => Some(Cluster::start(
                c,
                cluster::Settings {
                    cache: cache.clone(),
                    max_ttl: cfg.cache.max_ttl,
                    negative_ttl: cfg.cache.negative_ttl,
                    stale_retention: retention,
                    idp_timeout: cfg.idp.timeout,
                    max_entries: cfg.cache.max_entries,
                    session_ids,
                },
                cluster_metrics(Arc::clone(&admin)),
            )?),
            None => None,
        };
        let gateway = Arc::new_cyclic(|me| Self {
            plan,
            signer,
            public_jwks: cfg.jwt.as_ref().is_some_and(|j| j.public_jwks),
            stale_header,
            me: me.clone(),
            credentials: CredentialSource {
                id_cookie: cfg.session.id_cookie.clone(),
                token_cookie: cfg.session.token_cookie.clone(),
                bearer: cfg.session.bearer,
            },
            routes,
            route_labels,
            admin,
            cache,
            cluster,
            session_ids,
            idp,
            forwarder,
            login_url: cfg.session.login_url.clone(),
            logout_path: cfg.session.logout_path.as_str().into(),
            trusted_proxies: cfg.server.trusted_proxies.clone().into(),
            max_header_bytes: cfg.server.max_header_bytes,
            access_log: cfg.log.access,
        });
        let me = Arc::downgrade(&gateway);
        gateway.admin.set_revoke(Arc::new(move |body| {
            let me = me.clone();
            Box::pin(async move {
                match me.upgrade() {
                    Some(gateway) => gateway.revoke_request(&body).await,
                    None => json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "shutting_down"}),
                    ),
                }
            })
        }));
        Ok(gateway)
    }

    /// Revokes `target` here and, with `[cluster]`, on every replica;
    /// returns how many local entries were dropped. Logout and the admin
    /// `/revoke` both come here.
    pub async fn revoke(&self, target: &Target) -> usize {
        let dropped = target.revoke_in(&self.cache).await;
        if let Some(cluster) = &self.cluster {
            cluster.publish(target);
        }
        dropped
    }

    /// `POST /revoke` on the admin listener: 200 with how many local entries
    /// went, or 400 naming the body it wants.
    async fn revoke_request(&self, body: &[u8]) -> Response<Full<Bytes>> {
        match Target::parse(body, self.session_ids) {
            Ok(target) => {
                let dropped = self.revoke(&target).await;
                tracing::info!(
                    target = match &target {
                        Target::Credential(key) => format!("credential {}", key.fingerprint()),
                        Target::SessionId(_) => "session id".to_owned(),
                    },
                    dropped,
                    cluster = self.cluster.is_some(),
                    "session revoked through the admin listener"
                );
                json_response(StatusCode::OK, &json!({ "dropped": dropped }))
            }
            Err(e) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({"status": "bad_request", "reason": e.to_string()}),
            ),
        }
    }

    /// Readiness latch and metrics.
    pub fn admin(&self) -> &Arc<Admin> {
        &self.admin
    }

    /// The identity token signer, with `[jwt]` on (its key reloader, tests).
    pub fn signer(&self) -> Option<&Arc<Signer>> {
        self.signer.as_ref()
    }

    /// The session cache, for metrics and tests.
    pub fn cache(&self) -> &SessionCache<IdpError> {
        &self.cache
    }

    /// Handles one request; never fails, every error becomes a response.
    /// `scope` is that of the HTTP/1.1 connection it came on, whose task
    /// then drives the request's upstream connection too (see [`crate::proxy`]).
    ///
    /// Not an `async fn`: an async fn keeps its arguments for its whole life,
    /// so the request (264 bytes) would sit in the future beside its own
    /// parts, and once more per wrapper that owns the `Arc`s. The head is
    /// read here, before the future is built; the future keeps the parts
    /// once.
    pub fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        scope: Option<Arc<ConnectionScope>>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        // One id follows the request upstream, back to the client and into the log.
        let request_id = request_id::ensure(&mut parts.headers);
        // Read before the request moves on: an error answer is a page for browsers.
        let prefs = html::Prefs::of(&parts.headers);
        // Cheap clones (shared bytes) so the access log can name the request after it moved on.
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        async move {
            let mut log = Outcome::default();
            let peer = peer.ip();
            // Admission, then forwarding: the only I/O on the way is the IdP
            // call. Written out here rather than in an `async fn`, which
            // would keep its own copy of the parts and the body.
            let admitted = match self.decide_now(&parts, peer, &mut log) {
                Ok(Step::Decided(decision)) => Ok(decision),
                // Boxed: the cache's wait, the IdP call and the logout would
                // otherwise sit in every request's future and be copied with it.
                Ok(step) => Box::pin(self.decide_after(step, &parts, peer, &mut log)).await,
                Err(err) => Err(err),
            }
            .and_then(|decision| self.admission(decision, &mut parts, peer));
            let processed = match admitted {
                Ok(Admission::Forward(onward)) => {
                    let sent = Instant::now();
                    // Boxed: inline, the forwarding future would be copied
                    // once more by each level of the request's future.
                    let req = Request::from_parts(parts, body);
                    let result = Box::pin(self.forwarder.send(onward, req, scope.as_deref())).await;
                    self.record_upstream(&result, sent);
                    result.map(|resp| resp.map(Either::Left))
                }
                Ok(Admission::Respond(resp)) => Ok(resp.map(Either::Right)),
                Err(err) => Err(err),
            };
            let mut resp = match processed {
                Ok(resp) => resp,
                Err(err) => {
                    log.failed(&err);
                    // IdP failures are logged once per IdP call (in `resolve`),
                    // not once per waiting request.
                    if matches!(
                        err,
                        GatewayError::UpstreamUnreachable(_) | GatewayError::UpstreamTimeout
                    ) {
                        tracing::warn!(failure = err.spec().reason, error = %err, "request failed");
                    }
                    html::error_response(&err, prefs, Some(&request_id)).map(Either::Right)
                }
            };
            resp.headers_mut()
                .insert(request_id::X_REQUEST_ID, request_id.clone());
            let seen = Seen {
                mode: Mode::Proxy,
                started,
                request_id: &request_id,
                method: &method,
                path: uri.path(),
            };
            self.record(&seen, resp.status(), &log);
            resp
        }
    }

    /// Counts and logs one answered request, whichever listener answered it.
    pub fn record(&self, seen: &Seen<'_>, status: StatusCode, log: &Outcome<'_>) {
        let metrics = self.admin.metrics();
        let elapsed = seen.started.elapsed();
        metrics.request(
            &self.route_label(log.route),
            seen.mode,
            status.as_u16(),
            elapsed,
        );
        if let Some(outcome) = log.auth_outcome {
            metrics.auth(outcome);
        }
        if self.access_log {
            // The path only: query values may carry tokens. Sessions appear as a
            // short keyed hash, never in clear.
            let session = log.session.map(Fingerprint::digits);
            telemetry::Access {
                request_id: seen.request_id.to_str().unwrap_or_default(),
                mode: seen.mode.as_str(),
                method: seen.method.as_str(),
                path: seen.path,
                route: log.route.map(|r| &*r.prefix),
                status: status.as_u16(),
                latency_us: elapsed.as_micros() as u64,
                cache: log.lookup.map(Lookup::as_str),
                reason: log.reason,
                detail: log.detail,
                missing: log.missing,
                profile_id: log.auth.as_deref().map(Authenticated::subject),
                session: session.as_ref().map(|d| crate::hex::as_str(d)),
            }
            .write();
        }
    }

    /// The identity headers of an allowed request, written into `headers`.
    /// The one place both the proxy (`rewrite`, step c) and a forward-auth
    /// answer get them, so a header added here (a signed assertion, say)
    /// reaches both.
    pub fn inject_identity(&self, allowed: &Allowed<'_>, headers: &mut HeaderMap) {
        if let Some(auth) = &allowed.auth {
            auth.inject(headers);
        }
        // Admitted on the last valid answer while the IdP fails: the upstream
        // (or the ingress) is told, so it can hold back what must not run on one.
        if allowed.stale {
            headers.insert(self.stale_header.clone(), HeaderValue::from_static("1"));
        }
    }

    /// The upstream's share of a forwarded request, for the metrics.
    fn record_upstream<T>(&self, result: &Result<T, GatewayError>, sent: Instant) {
        let upstream = match result {
            Ok(_) => UpstreamResult::Ok,
            Err(GatewayError::UpstreamTimeout) => UpstreamResult::Timeout,
            // The client's body was cut off: the upstream did nothing wrong.
            Err(GatewayError::BodyTooLarge | GatewayError::ClientBody) => return,
            Err(_) => UpstreamResult::Unreachable,
        };
        self.admin.metrics().upstream(sent.elapsed(), upstream);
    }

    /// The decision, then the rewrite of the request head for the upstream:
    /// the whole path up to the socket, measured and tested without one.
    pub async fn admit<'a>(
        &'a self,
        parts: &mut Parts,
        peer: IpAddr,
        log: &mut Outcome<'a>,
    ) -> Result<Admission, GatewayError> {
        let decision = self.decide(parts, peer, log).await?;
        self.admission(decision, parts, peer)
    }

    /// What a decision does to the request: answered here, or rewritten for
    /// the upstream.
    fn admission(
        &self,
        decision: Decision<'_>,
        parts: &mut Parts,
        peer: IpAddr,
    ) -> Result<Admission, GatewayError> {
        match decision {
            Decision::Respond(resp) => Ok(Admission::Respond(resp)),
            Decision::Allow(allowed) => self.rewrite(parts, peer, allowed).map(Admission::Forward),
        }
    }

    /// Every decision about a request, in order, without changing it: the
    /// route, and the authenticated identity or the refusal. The only I/O is
    /// the IdP call (and, for logout, the IdP's logout), so a decision-only
    /// endpoint can run exactly these steps.
    pub async fn decide<'a>(
        &'a self,
        parts: &Parts,
        peer: IpAddr,
        log: &mut Outcome<'a>,
    ) -> Result<Decision<'a>, GatewayError> {
        let step = self.decide_now(parts, peer, log)?;
        self.decide_after(step, parts, peer, log).await
    }

    /// The decision as far as it goes without waiting. A public route and a
    /// cache hit are decided here, so the common request builds no async
    /// state for its decision; the rest is [`Gateway::decide_after`]'s.
    fn decide_now<'a, 'p>(
        &'a self,
        parts: &'p Parts,
        peer: IpAddr,
        log: &mut Outcome<'a>,
    ) -> Result<Step<'a, 'p>, GatewayError> {
        // 1. Oversized or ambiguous request heads are refused before any work is spent on them.
        self.check_head(parts)?;

        // 2. Route on the normalized path alone: the query and fragment never take
        //    part, and ambiguous encodings are refused rather than guessed at.
        let path = normalize_path(parts.uri.path()).map_err(|e| {
            tracing::debug!(error = %e, "path rejected");
            GatewayError::BadRequest("path")
        })?;

        // 3. Logout is the gateway's own endpoint; so is the JWKS when it is public.
        if *path == *self.logout_path {
            return Ok(Step::Logout);
        }
        if let (true, Some(signer)) = (self.public_jwks, &self.signer) {
            if *path == *JWKS_PATH && matches!(parts.method, http::Method::GET | http::Method::HEAD)
            {
                return Ok(Step::Decided(Decision::Respond(
                    crate::admin::jwks_response(signer.jwks()),
                )));
            }
        }

        let route = self.routes.find(&path).ok_or(GatewayError::NoRoute)?;
        log.route = Some(route);

        // 4. A declared length above the route's limit is refused before any
        //    IdP work; a body without one is cut off as it streams (proxy::RequestBody).
        if let Some(max) = route.max_body_bytes {
            if content_length(&parts.headers).is_some_and(|n| n > max) {
                return Err(GatewayError::BodyTooLarge);
            }
        }

        // 5. Public routes never touch the IdP.
        let Access::Required { stale_if_error, .. } = route.access else {
            return Ok(Step::Decided(allow(route, path, None, false)));
        };

        // 6. The session credential; garbage never reaches the IdP, it cannot be a session.
        let key = match self.credentials.read(&parts.headers) {
            Found::Absent => Err(GatewayError::NoSession),
            Found::Malformed => Err(GatewayError::InvalidSession),
            Found::Present(key) => Ok(key),
        };

        // 7. A fresh cache entry answers at once; anything else waits for the
        //    cache or the IdP (step 8, in `decide_after`).
        let auth = match key {
            Ok(key) => {
                log.session = Some(key.fingerprint());
                let Some(resolved) = self.cache.hit(&key) else {
                    return Ok(Step::Authenticate {
                        route,
                        path,
                        key,
                        stale_if_error,
                    });
                };
                self.admitted(resolved, key, &parts.headers, peer, log)
            }
            Err(err) => Err(err),
        };
        self.authorize(parts, route, path, auth, log)
            .map(Step::Decided)
    }

    /// The steps of a decision that wait: the logout's calls, and a session
    /// the cache could not answer at once.
    async fn decide_after<'a>(
        &'a self,
        step: Step<'a, '_>,
        parts: &Parts,
        peer: IpAddr,
        log: &mut Outcome<'a>,
    ) -> Result<Decision<'a>, GatewayError> {
        match step {
            Step::Decided(decision) => Ok(decision),
            Step::Logout => self.logout(parts, peer, log).await.map(Decision::Respond),
            // 8. Cache -> (IdP, coalesced) -> identity, then the same checks as a hit.
            Step::Authenticate {
                route,
                path,
                key,
                stale_if_error,
            } => {
                let auth = self
                    .authenticate(key, &parts.headers, peer, stale_if_error, log)
                    .await;
                self.authorize(parts, route, path, auth, log)
            }
        }
    }

    /// A required route's decision once the session is known: a login
    /// redirect for a browser without a valid one, then permissions and roles.
    fn authorize<'a>(
        &'a self,
        parts: &Parts,
        route: &'a Route,
        path: Cow<'_, str>,
        auth: Result<Arc<Authenticated>, GatewayError>,
        log: &mut Outcome<'a>,
    ) -> Result<Decision<'a>, GatewayError> {
        let auth = match auth {
            Ok(auth) => auth,
            Err(err @ (GatewayError::NoSession | GatewayError::InvalidSession)) => {
                log.auth_outcome = auth_failure(&err);
                return match self.login_redirect(&parts.headers, &path, parts.uri.query()) {
                    Some(location) => {
                        log.reason = Some(err.spec().reason);
                        Ok(Decision::Respond(redirect(location)))
                    }
                    None => Err(err),
                };
            }
            Err(err) => return Err(err),
        };
        log.auth = Some(Arc::clone(&auth));
        if let Access::Required {
            permissions, roles, ..
        } = &route.access
        {
            if let Some(missing) = permissions
                .iter()
                .find(|p| !auth.has_all_permissions(std::slice::from_ref(p)))
            {
                log.missing = Some(missing);
                return Err(GatewayError::Forbidden("missing_permission"));
            }
            if !auth.has_any_role(roles) {
                return Err(GatewayError::Forbidden("missing_role"));
            }
        }
        log.auth_outcome = log.lookup.map(|l| match l {
            Lookup::Hit => AuthOutcome::CacheHit,
            Lookup::Miss => AuthOutcome::CacheMiss,
            Lookup::Coalesced => AuthOutcome::Coalesced,
            Lookup::Stale => AuthOutcome::Stale,
        });
        let stale = log.lookup == Some(Lookup::Stale);
        if stale {
            let metrics = self.admin.metrics();
            metrics.stale_served(&self.route_label(Some(route)));
        }
        Ok(allow(route, path, Some(auth), stale))
    }

    /// The request head as the upstream gets it: only identity headers the
    /// gateway wrote, no hop-by-hop headers, X-Forwarded-* it can vouch for,
    /// and the path the decision was made on.
    fn rewrite(
        &self,
        parts: &mut Parts,
        peer: IpAddr,
        allowed: Allowed<'_>,
    ) -> Result<proxy::Onward, GatewayError> {
        // A route without an upstream serves forward-auth decisions only;
        // here, after the decision, so it never answers for an unauthenticated request.
        let route = allowed.route;
        let upstream = route.upstream.as_deref().ok_or(GatewayError::NoUpstream)?;

        // a. Anything identity-shaped the upstream sees must have been written by
        //    the gateway: drop client copies first, on every route, public too.
        self.plan.strip(&mut parts.headers);

        // b. Hop-by-hop headers go before identity headers are added, so a client
        //    listing `x-iid-*` in `Connection` cannot get an injected one dropped.
        //    A valid upgrade and `TE: trailers` are remembered; the forwarder
        //    writes them back itself when the route's upstream can use them.
        let hop = proxy::remove_request_hop_by_hop(parts);

        // c. Identity headers: rendered (and the token signed) once at cache
        //    insert, cloned here; the token is re-signed only near its expiry.
        //    A request admitted stale also gets `{prefix}stale: 1`.
        self.inject_identity(&allowed, &mut parts.headers);

        // d. X-Forwarded-*: replaced unless the peer is a trusted proxy.
        proxy::set_forwarded(
            &mut parts.headers,
            peer,
            self.is_trusted(peer),
            ConnectionInfo::proto(&parts.extensions),
        );

        // e. Forward the normalized path (what the decision was made on) with the
        //    query untouched; bodies stream both ways.
        parts.uri = proxy::upstream_uri(
            upstream,
            parts.uri.path_and_query(),
            allowed.normalized.as_deref(),
        )?;
        Ok(hop.via(route.client, route.max_body_bytes))
    }

    /// Request-head checks that come before any other work.
    fn check_head(&self, parts: &Parts) -> Result<(), GatewayError> {
        if head_size(parts) > self.max_header_bytes {
            return Err(GatewayError::HeadersTooLarge);
        }
        let mut hosts = parts.headers.get_all(http::header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            // More than one Host is a 400 (RFC 9112 3.2): forwarded, the upstream
            // could read another host than the one X-Forwarded-Host names.
            (Some(_), Some(_)) => Err(GatewayError::BadRequest("host")),
            // HTTP/1.1 requires Host (RFC 9112 3.2); the listener fills it from
            // :authority for HTTP/2, so only a bare HTTP/1.1 request lacks it.
            (None, _) if parts.version == http::Version::HTTP_11 => {
                Err(GatewayError::BadRequest("host"))
            }
            _ => Ok(()),
        }
    }

    /// The metric series of `route` (`None`: no route matched).
    fn route_label(&self, route: Option<&Route>) -> Cow<'_, RouteLabel> {
        match route.and_then(|r| self.route_labels.get(r.index)) {
            Some(label) => Cow::Borrowed(label),
            None => Cow::Owned(self.admin.metrics().route(route.map(|r| &*r.prefix))),
        }
    }

    fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// The client's address as far as the gateway can vouch for it: the
    /// peer, unless the peer is a trusted proxy; then X-Forwarded-For is read
    /// right to left and the first address that is not a trusted proxy wins
    /// (addresses further left were written by nobody the gateway trusts).
    /// An unreadable entry stops the walk at the last vouched-for address.
    fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(text) = value.to_str() else {
                return client;
            };
            for hop in text.rsplit(',') {
                let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                    return client;
                };
                client = ip;
                if !self.is_trusted(ip) {
                    return ip;
                }
            }
        }
        client
    }

    /// Cache -> (IdP, coalesced) -> rendered identity, for a credential the
    /// cache could not answer at once. When the IdP fails, the session's last
    /// valid answer stands in for up to `stale_if_error` past its expiry
    /// (`log.lookup` is then `Stale`).
    async fn authenticate(
        &self,
        key: Credential,
        headers: &HeaderMap,
        peer: IpAddr,
        stale_if_error: Duration,
        log: &mut Outcome<'_>,
    ) -> Result<Arc<Authenticated>, GatewayError> {
        let resolved = match self
            .cache
            .get_or_resolve(&key, || self.resolve(&key, headers, peer))
            .await
        {
            Ok(resolved) => resolved,
            Err(failed) => {
                let error = (*failed.error).clone();
                // Only an outage (never a bad or negative answer), only the
                // last *valid* answer (a revocation or invalid answer leaves
                // none), and only within the route's grace.
                let stale = failed
                    .stale
                    .filter(|s| error.is_outage() && s.within(stale_if_error, Instant::now()));
                let Some(stale) = stale else {
                    return Err(GatewayError::Idp(error));
                };
                if stale.first_serve() {
                    tracing::warn!(
                        session = %key.fingerprint(),
                        failure = error.failure(),
                        stale_if_error_s = stale_if_error.as_secs(),
                        "IdP failing: admitting the session on its last valid answer (stale)"
                    );
                }
                log.lookup = Some(Lookup::Stale);
                return Ok(Arc::clone(stale.auth()));
            }
        };
        self.admitted(resolved, key, headers, peer, log)
    }

    /// The identity a cache or IdP answer admits, or why it admits none. The
    /// hit that opens an entry's refresh window starts the renewal.
    fn admitted(
        &self,
        resolved: Resolved,
        key: Credential,
        headers: &HeaderMap,
        peer: IpAddr,
        log: &mut Outcome<'_>,
    ) -> Result<Arc<Authenticated>, GatewayError> {
        log.lookup = Some(resolved.lookup);
        if let Some(ticket) = resolved.refresh {
            self.refresh_ahead(key, ticket, self.client_info(headers, peer));
        }
        match resolved.value {
            Cached::Valid(auth) => Ok(auth),
            Cached::Invalid => Err(GatewayError::InvalidSession),
        }
    }

    /// Renews a session's entry in the background (`cache.refresh_ahead`),
    /// so an active session never waits for the IdP at expiry. The request
    /// that noticed is served at once from the entry; its client info goes
    /// with the renewal.
    fn refresh_ahead(&self, key: Credential, ticket: RefreshTicket, client: ClientInfo) {
        let Some(gateway) = self.me.upgrade() else {
            return;
        };
        self.admin.metrics().refresh_started();
        tokio::spawn(async move {
            let renewing = Some(ticket.fresh_until());
            let result = gateway
                .cache
                .refresh(&key, ticket, gateway.resolve_for(&key, client, renewing))
                .await;
            gateway.admin.metrics().refreshed(match result {
                Refreshed::Valid => RefreshResult::Valid,
                Refreshed::Invalid => RefreshResult::Invalid,
                Refreshed::Failed => RefreshResult::Failed,
                Refreshed::Superseded => RefreshResult::Superseded,
            });
        });
    }

    /// The client's address and agent, as a provider that wants the device is told.
    fn client_info(&self, headers: &HeaderMap, peer: IpAddr) -> ClientInfo {
        ClientInfo {
            ip: self.client_ip(headers, peer),
            user_agent: headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(Into::into),
        }
    }

    /// One IdP call, rendered into what the cache stores. The client's
    /// address and agent are gathered here, so only a cache miss pays for them.
    async fn resolve(
        &self,
        key: &Credential,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Result<Fresh, IdpError> {
        self.resolve_for(key, self.client_info(headers, peer), None)
            .await
    }

    /// [`Gateway::resolve`] with the client info already gathered. With
    /// `[cluster]`, another replica's answer stands in for the IdP call;
    /// `renewing` (a refresh-ahead) asks for an answer newer than that.
    async fn resolve_for(
        &self,
        key: &Credential,
        client: ClientInfo,
        renewing: Option<Instant>,
    ) -> Result<Fresh, IdpError> {
        let call = self.call_idp(key, &client);
        let answer = match &self.cluster {
            Some(cluster) => {
                let renewing = renewing.map(|until| {
                    SystemTime::now() + until.saturating_duration_since(Instant::now())
                });
                cluster.fetch(key, renewing, call).await
            }
            None => call.await,
        };
        let answer = answer.and_then(|verdict| match verdict {
            Verdict::Valid {
                identity,
                expires_in,
            } => {
                let mut auth = self
                    .plan
                    .render(&identity)
                    .map_err(|e| {
                        tracing::warn!(session = %key.fingerprint(), error = %e, "IdP answer cannot be sent as headers");
                        IdpError::BadAnswer(e.to_string())
                    })?;
                // Signed here, once per cached session, never on a cache hit.
                if let Some(signer) = &self.signer {
                    auth = auth.with_token(signer.issue(
                        &identity,
                        self.plan.carries(),
                        key,
                        expires_in,
                    ));
                }
                Ok(Fresh::Valid(Arc::new(auth), expires_in))
            }
            Verdict::Invalid { reason } => {
                tracing::debug!(session = %key.fingerprint(), reason, "session rejected by the IdP");
                Ok(Fresh::Invalid)
            }
        });
        answer
    }

    /// One IdP call, counted in the metrics and logged when it fails.
    async fn call_idp(&self, key: &Credential, client: &ClientInfo) -> Result<Verdict, IdpError> {
        let asked = Instant::now();
        let answer = self.idp.fetch(key, client).await;
        let result = match &answer {
            Ok(Verdict::Valid { .. }) => Some(IdpResult::Valid),
            Ok(Verdict::Invalid { .. }) => Some(IdpResult::Invalid),
            Err(IdpError::Unavailable(_)) => Some(IdpResult::Unavailable),
            Err(IdpError::Timeout) => Some(IdpResult::Timeout),
            Err(IdpError::BadAnswer(_)) => Some(IdpResult::BadAnswer),
            Err(IdpError::Backoff { cause, .. }) => {
                (*cause == Backoff::Throttled).then_some(IdpResult::Throttled)
            }
        };
        // Held off by the breaker or the slot limit: no call was made.
        if let Some(result) = result {
            self.admin.metrics().idp_call(asked.elapsed(), result);
        }
        match &answer {
            // Once per IdP call: coalesced waiters share this call and its log line.
            Err(e) if result.is_some() => {
                tracing::warn!(session = %key.fingerprint(), failure = e.failure(), error = %e, "IdP call failed")
            }
            // Held off without a call: the breaker logs its own transitions,
            // so an outage is not one warn per request.
            Err(e) => {
                tracing::debug!(session = %key.fingerprint(), failure = e.failure(), "IdP call held off")
            }
            Ok(_) => {}
        }
        answer
    }

    /// Ends the session here (at once) and at the IdP, and expires the cookies.
    /// Only the app's own pages may do this: a cross-site `<img src=/logout>`
    /// or form must not log a user out.
    async fn logout(
        &self,
        parts: &Parts,
        peer: IpAddr,
        log: &mut Outcome<'_>,
    ) -> Result<Response<Full<Bytes>>, GatewayError> {
        if let Some(why) = self.cross_site(parts, peer) {
            log.detail = Some(why);
            return Err(GatewayError::Forbidden("cross_site_logout"));
        }
        let mut remote = Ok(());
        if let Found::Present(key) = self.credentials.read(&parts.headers) {
            log.session = Some(key.fingerprint());
            // Revoke here (and across the fleet) first: the cookie must stop
            // working even if the IdP is down.
            self.revoke(&Target::Credential(key.clone())).await;
            remote = self.idp.logout(&key).await.map(|_| ());
        }
        let mut resp = match (remote, safe_return_to(parts.uri.query())) {
            (Err(e), _) => html::error_response(
                &GatewayError::Idp(e),
                html::Prefs::of(&parts.headers),
                parts.headers.get(request_id::X_REQUEST_ID),
            ),
            (Ok(()), Some(location)) => redirect(location),
            (Ok(()), None) => json_response(
                StatusCode::OK,
                &json!({
                    "code": 0,
                    "desc": {"en": "Logged out", "ar": "تم تسجيل الخروج"},
                    "errors": null,
                    "data": {"success": true},
                }),
            ),
        };
        // Cookies are expired whatever the IdP said: the browser must not keep a dead session.
        for name in [&self.credentials.id_cookie, &self.credentials.token_cookie] {
            if name.is_empty() {
                continue;
            }
            let cookie = format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(SET_COOKIE, v);
            }
        }
        Ok(resp)
    }

    /// Why a request comes from another site, if it does: the browser says so
    /// (`Sec-Fetch-Site`), or its `Origin` is not this request's own origin.
    /// A request with neither header (curl, an old browser's link) is not
    /// judged cross-site.
    fn cross_site(&self, parts: &Parts, peer: IpAddr) -> Option<&'static str> {
        let site = parts
            .headers
            .get("sec-fetch-site")
            .map(HeaderValue::as_bytes);
        if matches!(site, Some(b"cross-site" | b"same-site")) {
            return Some("sec_fetch_site");
        }
        let origin = parts.headers.get(http::header::ORIGIN)?;
        let proto = match parts.headers.get("x-forwarded-proto") {
            Some(p) if self.is_trusted(peer) => p.to_str().unwrap_or("").trim(),
            _ => ConnectionInfo::proto(&parts.extensions),
        };
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(parts.uri.authority().map(|a| a.as_str()));
        let own = host.map(|h| origin_of(proto, h));
        let theirs = origin.to_str().ok().and_then(|o| {
            let (scheme, authority) = o.split_once("://")?;
            Some(origin_of(scheme, authority))
        });
        match (own, theirs) {
            (Some(own), Some(theirs)) if own == theirs => None,
            _ => Some("origin"),
        }
    }

    /// Browsers (Accept: text/html) go to the login page with a `return_to`
    /// that is always a path on this host.
    fn login_redirect(
        &self,
        headers: &HeaderMap,
        path: &str,
        query: Option<&str>,
    ) -> Option<HeaderValue> {
        let login = self.login_url.as_deref()?;
        if !html::wants_html(headers) {
            return None;
        }
        // `path` is normalized: it starts with exactly one '/', so it cannot
        // be read as a scheme-relative URL to another host.
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let sep = if login.contains('?') { '&' } else { '?' };
        let location = format!(
            "{login}{sep}return_to={}",
            utf8_percent_encode(&target, RETURN_TO_ENCODE)
        );
        HeaderValue::from_str(&location).ok()
    }
}

/// The IdP guard's events as admin metrics.
fn guard_metrics(admin: Arc<Admin>) -> guard::Observer {
    Arc::new(move |event| {
        let metrics = admin.metrics();
        match event {
            guard::Event::NoSlot => metrics.idp_rejected(IdpRejection::NoSlot),
            guard::Event::BreakerRejected => metrics.idp_rejected(IdpRejection::BreakerOpen),
            guard::Event::Breaker(phase) => metrics.breaker_state(match phase {
                guard::Phase::Closed => BreakerState::Closed,
                guard::Phase::Open => BreakerState::Open,
                guard::Phase::HalfOpen => BreakerState::HalfOpen,
            }),
            guard::Event::Probe { answered } => metrics.breaker_probe(if answered {
                ProbeResult::Success
            } else {
                ProbeResult::Failure
            }),
            guard::Event::InFlight(delta) => metrics.idp_in_flight(delta),
        }
    })
}

/// The cluster layer's events as admin metrics.
fn cluster_metrics(admin: Arc<Admin>) -> cluster::Observer {
    Arc::new(move |event| {
        let m = admin.metrics().cluster();
        match event {
            cluster::Event::L2(r) => m.l2(r.as_str()),
            cluster::Event::LockWait(r) => m.lock_wait(r.as_str()),
            cluster::Event::RevocationSent => m.revocation_sent(),
            cluster::Event::RevocationReceived => m.revocation_received(),
            cluster::Event::RevocationReplayed => m.revocation_replayed(),
            cluster::Event::RevocationDropped => m.revocation_dropped(),
            cluster::Event::Flushed(r) => m.flushed(r.as_str()),
            cluster::Event::RedisError(k) => m.redis_error(k.as_str()),
            cluster::Event::Degraded(d) => m.set_degraded(d),
        }
    })
}

/// `scheme://host[:port]`, lowercased, with the scheme's default port left out,
/// so `https://App.example:443` and `https://app.example` compare equal.
fn origin_of(scheme: &str, authority: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let authority = authority.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let authority = match authority.strip_suffix(default) {
        Some(bare) if !default.is_empty() => bare,
        _ => &authority,
    };
    format!("{scheme}://{authority}")
}

/// What admission decided: forward the rewritten request, or answer it here.
#[derive(Debug)]
pub enum Admission {
    /// The request head is rewritten for the upstream; send it this way.
    Forward(proxy::Onward),
    /// The gateway answers itself (logout, login redirect).
    Respond(Response<Full<Bytes>>),
}

/// How far [`Gateway::decide_now`] got without waiting.
enum Step<'a, 'p> {
    /// Decided.
    Decided(Decision<'a>),
    /// The logout endpoint: it revokes and calls the IdP.
    Logout,
    /// A session the cache could not answer at once.
    Authenticate {
        route: &'a Route,
        path: Cow<'p, str>,
        key: Credential,
        stale_if_error: Duration,
    },
}

/// An allowed request on `route`, decided on the normalized `path`.
fn allow<'a>(
    route: &'a Route,
    path: Cow<'_, str>,
    auth: Option<Arc<Authenticated>>,
    stale: bool,
) -> Decision<'a> {
    Decision::Allow(Allowed {
        route,
        stale,
        auth,
        normalized: match path {
            Cow::Borrowed(_) => None,
            Cow::Owned(rewritten) => Some(rewritten),
        },
    })
}

/// What [`Gateway::decide`] concluded about a request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Let it through: on a public route, or with an authenticated identity.
    Allow(Allowed<'a>),
    /// The gateway answers itself (logout, login redirect).
    Respond(Response<Full<Bytes>>),
}

/// An allowed request: its route and who is asking.
#[derive(Debug)]
pub struct Allowed<'a> {
    /// The matched route.
    pub route: &'a Route,
    /// Admitted on the session's last valid answer while the IdP fails.
    pub stale: bool,
    /// The identity, on a route that requires one.
    pub auth: Option<Arc<Authenticated>>,
    /// The normalized path, when normalization changed the request's.
    normalized: Option<String>,
}

/// What the access log records about a request, filled in as it moves along
/// so recording it costs no allocation.
#[derive(Default)]
pub struct Outcome<'a> {
    route: Option<&'a Route>,
    auth_outcome: Option<AuthOutcome>,
    lookup: Option<Lookup>,
    reason: Option<&'static str>,
    detail: Option<&'static str>,
    missing: Option<&'a str>,
    auth: Option<Arc<Authenticated>>,
    session: Option<Fingerprint>,
}

impl Outcome<'_> {
    /// Records why the gateway refused a request (for the log and metrics).
    pub fn failed(&mut self, err: &GatewayError) {
        self.reason = Some(err.spec().reason);
        self.detail = self.detail.or(err.detail());
        if self.auth_outcome.is_none() {
            self.auth_outcome = auth_failure(err);
        }
    }
}

/// What [`Gateway::record`] needs to know about a request besides its outcome.
#[derive(Debug)]
pub struct Seen<'a> {
    /// Which listener answered.
    pub mode: Mode,
    /// When its head arrived.
    pub started: Instant,
    /// Its `x-request-id`.
    pub request_id: &'a HeaderValue,
    /// The method decided on.
    pub method: &'a http::Method,
    /// The path decided on (never the query: its values may be tokens).
    pub path: &'a str,
}

/// The auth outcome an error stands for, if it is an authentication failure.
fn auth_failure(err: &GatewayError) -> Option<AuthOutcome> {
    Some(match err {
        GatewayError::NoSession => AuthOutcome::NoSession,
        GatewayError::InvalidSession => AuthOutcome::Invalid,
        GatewayError::Forbidden(_) => AuthOutcome::Forbidden,
        GatewayError::Idp(IdpError::Unavailable(_)) => AuthOutcome::IdpUnavailable,
        GatewayError::Idp(IdpError::Timeout) => AuthOutcome::IdpTimeout,
        GatewayError::Idp(IdpError::BadAnswer(_)) => AuthOutcome::IdpBadAnswer,
        GatewayError::Idp(IdpError::Backoff { .. }) => AuthOutcome::IdpBackoff,
        _ => return None,
    })
}

fn redirect(location: HeaderValue) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(LOCATION, location);
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// `return_to` from a query string, only if it is a path on this host
/// ([`local_target`]) and plain ASCII, as a `Location` must be.
fn safe_return_to(query: Option<&str>) -> Option<HeaderValue> {
    let raw = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("return_to="))?;
    let plus_decoded = raw.replace('+', " ");
    let decoded = percent_decode_str(&plus_decoded).decode_utf8().ok()?;
    local_target(&decoded).ok()?;
    // Visible ASCII only (HeaderValue would take raw UTF-8): non-ASCII text
    // is refused here, not re-encoded.
    if !decoded.is_ascii() {
        return None;
    }
    HeaderValue::from_str(&decoded).ok()
}

/// The declared body length; hyper has already refused malformed or
/// conflicting values.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Request line plus headers, as counted against `server.max_header_bytes`.
fn head_size(parts: &Parts) -> usize {
    let line = parts.method.as_str().len()
        + parts.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    parts
        .headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size<A, B, C, D, F: std::future::Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper moves the request's future into place once per request, and
    /// each level of it copies the level below: at 11 KB (the IdP call, the
    /// logout and the forwarding inline) the copies were 12% of the
    /// gateway's CPU. The rare and the large parts live on the heap, and a
    /// cache hit is decided without an `await` (3,256 bytes before, when
    /// every level of the decision was an `async fn`; 1,928 since). An
    /// `async fn` keeps its arguments for its whole life: 1,328 since
    /// `handle` reads the head before it builds its future, and 888 since
    /// the admission and the forwarding are written out in that future
    /// rather than in an `async fn` that kept its own parts and body.
    #[test]
    fn the_request_future_stays_small() {
        let bytes = size(Gateway::handle);
        assert!(bytes <= 1024, "the request future grew to {bytes} bytes");
    }

    /// The forwarding future is boxed once per request: every byte of it is
    /// written then, and 50 connections' worth sit in the cache together.
    /// An `async fn` wrapper around the send kept two copies of it (4,040
    /// bytes); `proxy::direct::Within` keeps one (2,528), and a struct
    /// future after a synchronous dispatch keeps no copy of the request at
    /// all (1,312).
    #[test]
    fn the_forwarding_future_stays_small() {
        let bytes = size(crate::proxy::Forwarder::send);
        assert!(bytes <= 1536, "the forwarding future grew to {bytes} bytes");
    }

    #[test]
    fn return_to_only_allows_local_paths() {
        let ok = |q: &str| safe_return_to(Some(q)).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            ok("return_to=%2Fhome%3Fa%3D1").as_deref(),
            Some("/home?a=1")
        );
        assert_eq!(ok("x=1&return_to=/bye").as_deref(), Some("/bye"));
        for bad in [
            "return_to=https://evil.example",
            "return_to=//evil.example",
            "return_to=%2F%2Fevil.example",
            "return_to=/%5Cevil.example",
            "return_to=/%09/evil.example",
            "return_to=evil",
            "return_to=/%D8%AA",
            "other=1",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }
}
