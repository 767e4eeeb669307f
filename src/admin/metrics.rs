//! Prometheus metrics, encoded by `prometheus-client`.
//!
//! Recording is on the request path, so it never allocates: label values are
//! enums or interned route prefixes, fixed label sets are created up front
//! (a counter per outcome, a histogram per route), and latency histograms are
//! plain atomics rather than the crate's mutex-guarded `Histogram`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use super::cluster_metrics::ClusterMetrics;

/// Upper bounds of the latency buckets in nanoseconds: 100 µs to 10 s, 1-2.5-5 steps.
pub const LATENCY_BUCKETS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Distinct `route` label values kept; past it, new prefixes share `"other"`.
/// Prefixes come from the route table, so this only guards against misuse.
pub const MAX_ROUTE_LABELS: usize = 256;

/// `route` label of requests that matched no route (400, 404, 431, logout).
pub const NO_ROUTE: &str = "none";

/// `route` label shared by prefixes past [`MAX_ROUTE_LABELS`].
pub const OTHER_ROUTE: &str = "other";

/// Content-Type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus accepts).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How an authentication attempt ended, the `outcome` label of `sessiongate_auth_outcomes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthOutcome {
    /// Answered from the session cache.
    CacheHit,
    /// Not cached: this request made the IdP call.
    CacheMiss,
    /// Not cached: this request waited for another request's IdP call.
    Coalesced,
    /// The session is invalid, expired or logged out (or the cookie cannot be one).
    Invalid,
    /// No session cookie on a protected route.
    NoSession,
    /// A valid session lacking a required permission or role.
    Forbidden,
    /// The IdP was unreachable or answered 5xx/429/408.
    IdpUnavailable,
    /// The IdP did not answer within `idp.timeout`.
    IdpTimeout,
    /// The IdP answered something unusable.
    IdpBadAnswer,
    /// No IdP call: the IdP asked for a pause, the breaker is open, or no call slot freed up.
    IdpBackoff,
    /// The IdP failed and the route's `stale_if_error` admitted the last valid answer.
    Stale,
}

impl AuthOutcome {
    /// Every outcome, in declaration order (index = `self as usize`).
    pub const ALL: [Self; 11] = [
        Self::CacheHit,
        Self::CacheMiss,
        Self::Coalesced,
        Self::Invalid,
        Self::NoSession,
        Self::Forbidden,
        Self::IdpUnavailable,
        Self::IdpTimeout,
        Self::IdpBadAnswer,
        Self::IdpBackoff,
        Self::Stale,
    ];

    /// The label value, stable so alerts can name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CacheHit => "cache_hit",
            Self::CacheMiss => "cache_miss",
            Self::Coalesced => "coalesced",
            Self::Invalid => "invalid",
            Self::NoSession => "no_session",
            Self::Forbidden => "forbidden",
            Self::IdpUnavailable => "idp_unavailable",
            Self::IdpTimeout => "idp_timeout",
            Self::IdpBadAnswer => "idp_bad_answer",
            Self::IdpBackoff => "idp_backoff",
            Self::Stale => "stale",
        }
    }
}

/// How one IdP session call ended, the `result` label of `sessiongate_idp_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdpResult {
    /// The session is valid.
    Valid,
    /// The IdP says the session is invalid.
    Invalid,
    /// Unreachable, 5xx, 429 or 408.
    Unavailable,
    /// No complete answer within `idp.timeout`.
    Timeout,
    /// An answer that is not the documented shape.
    BadAnswer,
    /// 429 or 503 with `Retry-After`: the IdP asked for a pause.
    Throttled,
}

impl IdpResult {
    /// Every result, in declaration order (index = `self as usize`).
    pub const ALL: [Self; 6] = [
        Self::Valid,
        Self::Invalid,
        Self::Unavailable,
        Self::Timeout,
        Self::BadAnswer,
        Self::Throttled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::BadAnswer => "bad_answer",
            Self::Throttled => "throttled",
        }
    }
}

/// How one forwarded request ended, the `result` label of `sessiongate_upstream_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamResult {
    /// The upstream sent a response head (any status).
    Ok,
    /// Connection refused or broken before a response head (502).
    Unreachable,
    /// No response head within `upstream.timeout` (504).
    Timeout,
}

impl UpstreamResult {
    /// Every result, in declaration order (index = `self as usize`).
    pub const ALL: [Self; 3] = [Self::Ok, Self::Unreachable, Self::Timeout];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
        }
    }
}

/// Generates a label enum with `ALL` (index = `self as usize`) and `as_str`.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order (index = `self as usize`).
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }
    };
}

label_enum!(
    /// State of the IdP circuit breaker, the value of `sessiongate_idp_breaker_state`.
    BreakerState {
        /// Calls go through (0).
        Closed => "closed",
        /// No call is made until the cool-down ends (1).
        Open => "open",
        /// One probe call decides (2).
        HalfOpen => "half_open",
    }
);

label_enum!(
    /// Why a session check made no IdP call, the `reason` label of `sessiongate_idp_rejected_total`.
    IdpRejection {
        /// The breaker is open (or a probe is already out).
        BreakerOpen => "breaker_open",
        /// Every `idp.max_concurrent` slot stayed taken for `idp.timeout`.
        NoSlot => "no_slot",
    }
);

label_enum!(
    /// How a breaker probe ended, the `result` label of `sessiongate_idp_breaker_probes_total`.
    ProbeResult {
        /// The IdP answered: the breaker closes.
        Success => "success",
        /// Still failing: the breaker opens again, for longer.
        Failure => "failure",
    }
);

label_enum!(
    /// How a background renewal ended, the `result` label of `sessiongate_cache_refreshes_total`.
    RefreshResult {
        /// Renewed.
        Valid => "valid",
        /// The IdP now says invalid: the entry is replaced.
        Invalid => "invalid",
        /// The call failed: the entry is kept until it expires.
        Failed => "failed",
        /// A logout or a newer answer replaced the entry first.
        Superseded => "superseded",
    }
);
/// Which listener answered a request, the `mode` label of request metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The public listener: the request was proxied (or answered by the gateway).
    Proxy,
    /// The forward-auth listener: the answer is a decision for an ingress.
    ForwardAuth,
}

impl Mode {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::ForwardAuth => "forward_auth",
        }
    }
}

/// Label values are written through `as_str`, so the enums stay plain Rust.
macro_rules! label_value_via_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value_via_as_str!(
    AuthOutcome,
    IdpResult,
    UpstreamResult,
    IdpRejection,
    ProbeResult,
    RefreshResult,
    Mode
);

/// An interned route prefix: the `route` label of request metrics, with its
/// latency histogram attached so recording needs no lookup for it.
#[derive(Clone, Debug)]
pub struct RouteLabel(Arc<RouteSeries>);

impl RouteLabel {
    /// The label value (the route prefix, [`NO_ROUTE`] or [`OTHER_ROUTE`]).
    pub fn as_str(&self) -> &str {
        &self.0.name.0
    }
}

#[derive(Debug)]
struct RouteSeries {
    name: RouteName,
    /// `mode="proxy"`, created with the label.
    duration: LatencyHistogram,
    /// `mode="forward_auth"`, created on the first decision, so a gateway
    /// without forward-auth exports no empty decision series.
    decisions: OnceLock<LatencyHistogram>,
    family: HistogramFamily<RouteLabels>,
    /// `sessiongate_requests_total{status="200",mode="proxy"}` of this route,
    /// the series nearly every request counts in: a clone shares the
    /// family's cell, so the hot path skips the family's lock and label hash.
    proxied_ok: OnceLock<Counter>,
}

/// Shared string so a label set is built per request with a reference-count bump, not a copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RouteName(Arc<str>);

impl EncodeLabelValue for RouteName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: RouteName,
    status: u16,
    mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: RouteName,
    mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StaleLabels {
    route: RouteName,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: AuthOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IdpLabels {
    result: IdpResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    result: UpstreamResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectionLabels {
    reason: IdpRejection,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProbeLabels {
    result: ProbeResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefreshLabels {
    result: RefreshResult,
}

/// One counter per value of a label enum, all exported from the first scrape.
fn counters<
    L: Copy,
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    all: &[L],
    labels: impl Fn(L) -> S,
) -> Box<[Counter]> {
    let family = Family::<S, Counter>::default();
    let out = all
        .iter()
        .map(|l| family.get_or_create_owned(&labels(*l)))
        .collect();
    registry.register(name, help, family);
    out
}

type HistogramFamily<S> = Family<S, LatencyHistogram, fn() -> LatencyHistogram>;

/// The gateway's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    routes: RwLock<HashMap<Box<str>, RouteLabel>>,
    no_route: RouteLabel,
    /// Created on first overflow only, so a healthy setup exports no `other` series.
    other_route: OnceLock<RouteLabel>,
    auth: [Counter; AuthOutcome::ALL.len()],
    idp: [Counter; IdpResult::ALL.len()],
    idp_duration: LatencyHistogram,
    upstream: [Counter; UpstreamResult::ALL.len()],
    upstream_duration: LatencyHistogram,
    cache_entries: Gauge,
    open_connections: Gauge,
    stale_served: Family<StaleLabels, Counter>,
    refreshes_started: Counter,
    refreshes: Box<[Counter]>,
    breaker_state: Gauge,
    idp_rejected: Box<[Counter]>,
    breaker_probes: Box<[Counter]>,
    idp_in_flight: Gauge,
    log_lines_dropped: Counter,
    cluster: ClusterMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric; `route_prefixes` are interned now (others on first use).
    pub fn new(route_prefixes: &[&str]) -> Self {
        let mut registry = Registry::default();

        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "sessiongate_requests",
            "Requests answered, by matched route prefix, status and mode (proxy or forward_auth)",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(LatencyHistogram::new);
        registry.register_with_unit(
            "sessiongate_request_duration",
            "Time from request head to response head, by matched route prefix and mode",
            Unit::Seconds,
            request_duration.clone(),
        );

        // Fixed label sets are created up front: every series is exported from
        // the first scrape (rate() works from zero) and recording is one atomic add.
        let auth_family = Family::<OutcomeLabels, Counter>::default();
        let auth = AuthOutcome::ALL
            .map(|outcome| auth_family.get_or_create_owned(&OutcomeLabels { outcome }));
        registry.register(
            "sessiongate_auth_outcomes",
            "Authentication attempts on protected routes, by outcome",
            auth_family,
        );

        let idp_family = Family::<IdpLabels, Counter>::default();
        let idp =
            IdpResult::ALL.map(|result| idp_family.get_or_create_owned(&IdpLabels { result }));
        registry.register(
            "sessiongate_idp_requests",
            "Session fetch calls to the IdP, by result",
            idp_family,
        );
        let idp_duration = LatencyHistogram::new();
        registry.register_with_unit(
            "sessiongate_idp_request_duration",
            "Duration of session fetch calls to the IdP, failures included",
            Unit::Seconds,
            idp_duration.clone(),
        );

        let upstream_family = Family::<UpstreamLabels, Counter>::default();
        let upstream = UpstreamResult::ALL
            .map(|result| upstream_family.get_or_create_owned(&UpstreamLabels { result }));
        registry.register(
            "sessiongate_upstream_requests",
            "Requests forwarded upstream, by result",
            upstream_family,
        );
        let upstream_duration = LatencyHistogram::new();
        registry.register_with_unit(
            "sessiongate_upstream_duration",
            "Time until the upstream's response head, failures included",
            Unit::Seconds,
            upstream_duration.clone(),
        );

        let cache_entries = Gauge::default();
        registry.register(
            "sessiongate_cache_entries",
            "Sessions in the cache, valid and invalid, as of the last scrape",
            cache_entries.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "sessiongate_open_connections",
            "Client connections open on the gateway listener",
            open_connections.clone(),
        );

        let stale_served = Family::<StaleLabels, Counter>::default();
        registry.register(
            "sessiongate_stale_served",
            "Requests admitted on a session's last valid answer while the IdP failed (stale_if_error), by route",
            stale_served.clone(),
        );
        let refreshes_started = Counter::default();
        registry.register(
            "sessiongate_cache_refreshes_started",
            "Background renewals of cache entries started (cache.refresh_ahead)",
            refreshes_started.clone(),
        );
        let refreshes = counters(
            &mut registry,
            "sessiongate_cache_refreshes",
            "Background renewals of cache entries finished, by result",
            RefreshResult::ALL,
            |result| RefreshLabels { result },
        );
        let breaker_state = Gauge::default();
        registry.register(
            "sessiongate_idp_breaker_state",
            "IdP circuit breaker: 0 closed, 1 open, 2 half-open (one probe out)",
            breaker_state.clone(),
        );
        let idp_rejected = counters(
            &mut registry,
            "sessiongate_idp_rejected",
            "Session checks that made no IdP call, by reason (breaker open, no call slot)",
            IdpRejection::ALL,
            |reason| RejectionLabels { reason },
        );
        let breaker_probes = counters(
            &mut registry,
            "sessiongate_idp_breaker_probes",
            "Probe calls made when a breaker cool-down ended, by result",
            ProbeResult::ALL,
            |result| ProbeLabels { result },
        );
        let idp_in_flight = Gauge::default();
        registry.register(
            "sessiongate_idp_in_flight",
            "IdP calls in flight (at most idp.max_concurrent)",
            idp_in_flight.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "sessiongate_log_lines_dropped",
            "Log lines dropped because the log writer fell behind (its queue was full), as of the last scrape",
            log_lines_dropped.clone(),
        );

        let cluster = ClusterMetrics::register(&mut registry);

        let intern = |name: &str| RouteLabel::new(name, &request_duration);
        let no_route = intern(NO_ROUTE);
        let routes = route_prefixes
            .iter()
            .take(MAX_ROUTE_LABELS)
            .map(|p| (Box::<str>::from(*p), intern(p)))
            .collect();

        Self {
            registry,
            requests,
            request_duration,
            routes: RwLock::new(routes),
            no_route,
            other_route: OnceLock::new(),
            auth,
            idp,
            idp_duration,
            upstream,
            upstream_duration,
            cache_entries,
            open_connections,
            stale_served,
            refreshes_started,
            refreshes,
            breaker_state,
            idp_rejected,
            breaker_probes,
            idp_in_flight,
            log_lines_dropped,
            cluster,
        }
    }

    /// The shared-state metrics (`sessiongate_cluster_*`).
    pub fn cluster(&self) -> &ClusterMetrics {
        &self.cluster
    }

    /// The label for a matched route prefix (`None`: no route matched).
    /// Pass configured prefixes only, never a request path: each distinct value is a series.
    pub fn route(&self, prefix: Option<&str>) -> RouteLabel {
        let Some(prefix) = prefix else {
            return self.no_route.clone();
        };
        if let Some(label) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(prefix)
        {
            return label.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(label) = routes.get(prefix) {
            return label.clone();
        }
        if routes.len() >= MAX_ROUTE_LABELS {
            return self
                .other_route
                .get_or_init(|| RouteLabel::new(OTHER_ROUTE, &self.request_duration))
                .clone();
        }
        let label = RouteLabel::new(prefix, &self.request_duration);
        routes.insert(prefix.into(), label.clone());
        label
    }

    /// One answered request: `sessiongate_requests_total` and `sessiongate_request_duration_seconds`.
    pub fn request(&self, route: &RouteLabel, mode: Mode, status: u16, latency: Duration) {
        let series = &route.0;
        match mode {
            Mode::Proxy => series.duration.observe(latency),
            Mode::ForwardAuth => series
                .decisions
                .get_or_init(|| {
                    series.family.get_or_create_owned(&RouteLabels {
                        route: series.name.clone(),
                        mode,
                    })
                })
                .observe(latency),
        }
        let labels = || RequestLabels {
            route: series.name.clone(),
            status,
            mode,
        };
        if status == 200 && mode == Mode::Proxy {
            series
                .proxied_ok
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc();
        } else {
            self.requests.get_or_create(&labels()).inc();
        }
    }

    /// One authentication attempt: `sessiongate_auth_outcomes_total`.
    pub fn auth(&self, outcome: AuthOutcome) {
        self.auth[outcome as usize].inc();
    }

    /// One IdP session call: `sessiongate_idp_requests_total` and its duration histogram.
    pub fn idp_call(&self, latency: Duration, result: IdpResult) {
        self.idp[result as usize].inc();
        self.idp_duration.observe(latency);
    }

    /// One forwarded request: `sessiongate_upstream_requests_total` and its duration histogram.
    pub fn upstream(&self, latency: Duration, result: UpstreamResult) {
        self.upstream[result as usize].inc();
        self.upstream_duration.observe(latency);
    }

    /// Sets `sessiongate_cache_entries` (meant for an [`super::Admin::on_scrape`] hook).
    pub fn set_cache_entries(&self, entries: u64) {
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Raises `sessiongate_log_lines_dropped` to `total` (meant for an
    /// [`super::Admin::on_scrape`] hook; the count itself lives in the log writer).
    pub fn set_log_lines_dropped(&self, total: u64) {
        let have = self.log_lines_dropped.get();
        if total > have {
            self.log_lines_dropped.inc_by(total - have);
        }
    }

    /// A client connection was accepted: `sessiongate_open_connections` + 1.
    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    /// A client connection ended: `sessiongate_open_connections` - 1.
    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// A request admitted stale on `route`: `sessiongate_stale_served_total`.
    pub fn stale_served(&self, route: &RouteLabel) {
        let labels = StaleLabels {
            route: route.0.name.clone(),
        };
        self.stale_served.get_or_create(&labels).inc();
    }

    /// A background renewal started: `sessiongate_cache_refreshes_started_total`.
    pub fn refresh_started(&self) {
        self.refreshes_started.inc();
    }

    /// A background renewal ended: `sessiongate_cache_refreshes_total`.
    pub fn refreshed(&self, result: RefreshResult) {
        self.refreshes[result as usize].inc();
    }

    /// The breaker changed state: `sessiongate_idp_breaker_state`.
    pub fn breaker_state(&self, state: BreakerState) {
        self.breaker_state.set(state as i64);
    }

    /// A session check made no IdP call: `sessiongate_idp_rejected_total`.
    pub fn idp_rejected(&self, reason: IdpRejection) {
        self.idp_rejected[reason as usize].inc();
    }

    /// A breaker probe ended: `sessiongate_idp_breaker_probes_total`.
    pub fn breaker_probe(&self, result: ProbeResult) {
        self.breaker_probes[result as usize].inc();
    }

    /// An IdP call took (+1) or gave back (-1) its slot: `sessiongate_idp_in_flight`.
    pub fn idp_in_flight(&self, delta: i64) {
        self.idp_in_flight.inc_by(delta);
    }

    /// The OpenMetrics text exposition of every metric (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl RouteLabel {
    fn new(name: &str, family: &HistogramFamily<RouteLabels>) -> Self {
        let name = RouteName(Arc::from(name));
        let duration = family.get_or_create_owned(&RouteLabels {
            route: name.clone(),
            mode: Mode::Proxy,
        });
        Self(Arc::new(RouteSeries {
            name,
            duration,
            decisions: OnceLock::new(),
            family: family.clone(),
            proxied_ok: OnceLock::new(),
        }))
    }
}

/// A latency histogram over [`LATENCY_BUCKETS_NANOS`], lock-free: one atomic
/// add per bucket hit and one for the sum. Clones share the same cells.
#[derive(Clone, Debug)]
struct LatencyHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_NANOS.len() + 1],
    /// Integer nanoseconds, so the sum is an exact atomic add (wraps after 584 years of latency).
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    fn new() -> Self {
        Self(Arc::new(HistogramCells {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS_NANOS.len() + 1],
            sum_nanos: AtomicU64::new(0),
        }))
    }

    fn observe(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        // Buckets are `le` (inclusive): the first bound >= the value.
        let idx = LATENCY_BUCKETS_NANOS.partition_point(|&bound| bound < nanos);
        // Relaxed: the cells are independent counters; a scrape needs no ordering between them.
        self.0.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(f64::INFINITY, 0u64); LATENCY_BUCKETS_NANOS.len() + 1];
        for (i, (bound, count)) in buckets.iter_mut().enumerate() {
            if let Some(nanos) = LATENCY_BUCKETS_NANOS.get(i) {
                *bound = *nanos as f64 / 1e9;
            }
            *count = self.0.buckets[i].load(Ordering::Relaxed);
        }
        // The count is the buckets' total, so `+Inf` always equals `_count`
        // even while observations land during the scrape.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_arrays_are_indexed_by_discriminant() {
        for (i, o) in AuthOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
        for (i, r) in IdpResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, r) in UpstreamResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        let h = LatencyHistogram::new();
        h.observe(Duration::from_micros(100)); // exactly on the first bound
        h.observe(Duration::from_micros(101)); // just above it
        h.observe(Duration::ZERO);
        h.observe(Duration::from_secs(60)); // beyond the last bound: +Inf only
        let counts: Vec<u64> =
            h.0.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[LATENCY_BUCKETS_NANOS.len()], 1);
        assert_eq!(counts.iter().sum::<u64>(), 4);
        assert_eq!(
            h.0.sum_nanos.load(Ordering::Relaxed),
            60_000_000_000 + 201_000
        );
    }

    #[test]
    fn routes_are_interned_and_bounded() {
        let m = Metrics::new(&["/api/"]);
        let a = m.route(Some("/api/"));
        let b = m.route(Some("/api/"));
        assert!(Arc::ptr_eq(&a.0, &b.0), "same prefix, same series");
        assert_eq!(m.route(None).as_str(), NO_ROUTE);
        for i in 0..MAX_ROUTE_LABELS {
            m.route(Some(&format!("/r{i}/")));
        }
        assert_eq!(m.route(Some("/one-too-many/")).as_str(), OTHER_ROUTE);
        assert_eq!(m.route(Some("/api/")).as_str(), "/api/");
    }
}
