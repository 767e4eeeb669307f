//! Metrics of the shared state across replicas (`[cluster]`). Registered
//! always, so dashboards see zeros rather than gaps when it is off. Label
//! values are the `as_str` of the cluster layer's own enums.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// `sessiongate_cluster_*`.
#[derive(Debug)]
pub struct ClusterMetrics {
    l2: Family<ResultLabel, Counter>,
    lock_waits: Family<ResultLabel, Counter>,
    sent: Counter,
    received: Counter,
    replayed: Counter,
    dropped: Counter,
    flushes: Family<ReasonLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    degraded: Gauge,
}

impl ClusterMetrics {
    /// Registers every cluster metric in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            l2: Family::default(),
            lock_waits: Family::default(),
            sent: Counter::default(),
            received: Counter::default(),
            replayed: Counter::default(),
            dropped: Counter::default(),
            flushes: Family::default(),
            errors: Family::default(),
            degraded: Gauge::default(),
        };
        registry.register(
            "sessiongate_cluster_l2_lookups",
            "Shared (Redis) cache lookups on a local miss, by result",
            m.l2.clone(),
        );
        registry.register(
            "sessiongate_cluster_lock_waits",
            "Waits for another replica's IdP call on the same session, by how they ended",
            m.lock_waits.clone(),
        );
        registry.register(
            "sessiongate_cluster_revocations_sent",
            "Revocations (logout, admin /revoke) written to the revocation stream",
            m.sent.clone(),
        );
        registry.register(
            "sessiongate_cluster_revocations_received",
            "Other replicas' revocations applied to the local cache",
            m.received.clone(),
        );
        registry.register(
            "sessiongate_cluster_revocations_replayed",
            "Revocations received after a reconnection (published while this replica was disconnected)",
            m.replayed.clone(),
        );
        registry.register(
            "sessiongate_cluster_revocations_dropped",
            "Revocations dropped from the outage buffer (cluster.outage_buffer) before Redis came back",
            m.dropped.clone(),
        );
        registry.register(
            "sessiongate_cluster_cache_flushes",
            "Whole local cache dropped because revocations may have been missed, by reason",
            m.flushes.clone(),
        );
        registry.register(
            "sessiongate_cluster_redis_errors",
            "Failed Redis commands, by kind",
            m.errors.clone(),
        );
        registry.register(
            "sessiongate_cluster_degraded",
            "1 while shared state is degraded (Redis unreachable), else 0",
            m.degraded.clone(),
        );
        m
    }

    /// One L2 lookup ended with `result`.
    pub fn l2(&self, result: &'static str) {
        self.l2.get_or_create(&ResultLabel { result }).inc();
    }

    /// A wait for another replica's IdP call ended with `result`.
    pub fn lock_wait(&self, result: &'static str) {
        self.lock_waits.get_or_create(&ResultLabel { result }).inc();
    }

    /// A revocation reached the stream.
    pub fn revocation_sent(&self) {
        self.sent.inc();
    }

    /// Another replica's revocation was applied.
    pub fn revocation_received(&self) {
        self.received.inc();
    }

    /// A revocation was received after a reconnection.
    pub fn revocation_replayed(&self) {
        self.replayed.inc();
    }

    /// A pending revocation was dropped from the full outage buffer.
    pub fn revocation_dropped(&self) {
        self.dropped.inc();
    }

    /// The local cache was dropped for `reason`.
    pub fn flushed(&self, reason: &'static str) {
        self.flushes.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// A Redis command failed with `kind`.
    pub fn redis_error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Shared state is (not) degraded.
    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.set(i64::from(degraded));
    }
}
