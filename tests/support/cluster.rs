//! A fleet: two or three in-process gateways that share one Redis
//! (`[cluster]`), one IID emulator (the first gateway's) and one echo upstream
//! (the first gateway's), as replicas of one deployment do.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::redis::RedisServer;
use super::{Builder, Harness, Reply};

/// The fleet's shared `cluster.secret` (32+ bytes, as a Kubernetes Secret would hold).
pub const SECRET: &str = "cluster-test-secret:0123456789abcdef0123456789abcdef";
/// A different secret, for a replica that was given the wrong one.
pub const WRONG_SECRET: &str = "not-the-fleet-secret:fedcba9876543210fedcba9876543210";

/// How fast a revocation must reach every replica while Redis is up.
pub const REVOCATION_DEADLINE: Duration = Duration::from_secs(1);
/// How often revocation deadlines are polled.
pub const POLL_STEP: Duration = Duration::from_millis(20);
/// Bound on a replica noticing that Redis went away or came back (its
/// reconnect backoff included); generous, as only an upper bound matters.
pub const RECONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Adds `[cluster]` pointing at `redis` with `secret`.
pub fn clustered(builder: Builder, redis: &RedisServer, secret: &str) -> Builder {
    builder
        .set("cluster", &format!("redis_url = \"{}\"", redis.url()))
        .set("cluster", &format!("secret = \"{secret}\""))
        // 200 ms (the default) is short for a loaded 2-core test machine: a
        // slow answer would count as Redis absent and cost an extra IdP call.
        .set("cluster", "command_timeout = \"2s\"")
}

/// Gateways on one Redis; the first one's emulator and upstream serve them all.
pub struct Fleet {
    /// The gateways, `gateways[0]` ("A") owning the emulator and the upstream.
    pub gateways: Vec<Arc<Harness>>,
    /// The shared Redis (dropped last, after the gateways stopped).
    pub redis: RedisServer,
    /// IdP calls made by [`Fleet::wait_connected`]'s probes, left out of
    /// [`Fleet::idp_fetches`].
    probe_fetches: AtomicU64,
}

impl Fleet {
    /// Starts Redis and `n` gateways, each built by `tweak` from a builder that
    /// already has the fleet's `[cluster]`; `None` when redis-server is not
    /// installed (the test is skipped).
    pub async fn start(n: usize, tweak: impl Fn(Builder) -> Builder) -> Option<Fleet> {
        let redis = RedisServer::start().await?;
        let mut fleet = Fleet {
            gateways: Vec::new(),
            redis,
            probe_fetches: AtomicU64::new(0),
        };
        let first = tweak(clustered(Harness::builder(), &fleet.redis, SECRET))
            .start()
            .await;
        fleet.gateways.push(Arc::new(first));
        fleet.wait_connected(&fleet.gateways[0]).await;
        for _ in 1..n {
            let builder = tweak(clustered(Harness::builder(), &fleet.redis, SECRET));
            fleet.join(builder).await;
        }
        Some(fleet)
    }

    /// Starts one more gateway from `builder` (which must carry its own
    /// `[cluster]` lines, see [`clustered`]), on the fleet's emulator and upstream.
    pub async fn join(&mut self, builder: Builder) -> Arc<Harness> {
        let a = self.a();
        let h = builder
            .idp_base_url(&a.idp_base_url())
            .upstream(a.echo)
            .start()
            .await;
        let h = Arc::new(h);
        self.gateways.push(Arc::clone(&h));
        self.wait_connected(&h).await;
        h
    }

    /// Waits until `h` reads Redis: a replica connects in the background after
    /// it starts, and until then it serves from its cache and the IdP alone.
    /// Probes with sessions nobody has (each an IdP call, counted apart) until
    /// one is looked up in Redis and found missing.
    pub async fn wait_connected(&self, h: &Harness) {
        const MISS: &str = r#"sessiongate_cluster_l2_lookups_total{result="miss"}"#;
        static PROBE: AtomicU64 = AtomicU64::new(0);
        let before = h.admin_metric(MISS).await;
        let connected = within(RECONNECT_DEADLINE, POLL_STEP, || async {
            let n = PROBE.fetch_add(1, Ordering::Relaxed);
            let cookie = format!(
                "iid_session_id=00000000-0000-4000-8000-{n:012}; iid_session_token=probe-{n}"
            );
            let fetches = self.a().idp_fetches();
            let r = get_app(h, &cookie).await;
            assert_eq!(r.status, 401, "probe: {:?}", r.body);
            let cost = self.a().idp_fetches() - fetches;
            self.probe_fetches.fetch_add(cost, Ordering::Relaxed);
            h.admin_metric(MISS).await > before
        })
        .await;
        assert!(
            connected.is_some(),
            "gateway {} never looked a session up in Redis",
            h.addr
        );
    }

    /// Every gateway's `sessiongate_cluster_*` series, for assertion messages.
    pub async fn cluster_metrics(&self) -> String {
        let mut out = String::new();
        for (n, h) in self.gateways.iter().enumerate() {
            let r = h.admin_request(http::Method::GET, "/metrics", "").await;
            for line in String::from_utf8_lossy(&r.body).lines() {
                if line.starts_with("sessiongate_cluster_") && !line.ends_with(" 0") {
                    out.push_str(&format!("\n  gateway {n}: {line}"));
                }
            }
        }
        out
    }

    /// Gateway A, whose emulator and upstream everyone uses.
    pub fn a(&self) -> &Arc<Harness> {
        &self.gateways[0]
    }

    /// Gateway B.
    pub fn b(&self) -> &Arc<Harness> {
        &self.gateways[1]
    }

    /// Gateway C.
    pub fn c(&self) -> &Arc<Harness> {
        &self.gateways[2]
    }

    /// Logs `profile` in at the shared emulator; the Cookie header value.
    pub fn login(&self, profile: &str) -> String {
        self.a().login(profile)
    }

    /// IdP fetches for the whole fleet (they all ask A's emulator), but for
    /// those of [`Fleet::wait_connected`]'s probes.
    pub fn idp_fetches(&self) -> u64 {
        self.a().idp_fetches() - self.probe_fetches.load(Ordering::Relaxed)
    }
}

/// `GET /app` with `cookie` (or none, if empty).
pub async fn get_app(h: &Harness, cookie: &str) -> Reply {
    if cookie.is_empty() {
        h.get("/app", &[]).await
    } else {
        h.get("/app", &[("cookie", cookie)]).await
    }
}

/// Asserts the session was admitted for `profile` (the upstream saw it).
pub fn assert_admitted(r: &Reply, profile: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?}", r.body);
    assert!(r.from_upstream(), "{what}: not from the upstream");
    assert_eq!(
        r.upstream_header("x-iid-profile-id"),
        Some(vec![profile.to_owned()]),
        "{what}: the upstream saw another identity"
    );
}

/// Asserts the request was refused as unauthenticated, by the gateway.
pub fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {:?}", r.body);
    assert!(!r.from_upstream(), "{what}: reached the upstream");
}

/// True when a request with `cookie` through `h` is refused (401, not forwarded).
pub async fn refuses(h: &Harness, cookie: &str) -> bool {
    let r = get_app(h, cookie).await;
    assert!(
        r.status == 200 || r.status == 401,
        "neither admitted nor refused: {} {:?}",
        r.status,
        r.body
    );
    r.status == 401 && !r.from_upstream()
}

/// Polls `cond` every `step` until it holds or `deadline` passes; returns how
/// long it took, or `None` if it never held.
pub async fn within<F, Fut>(deadline: Duration, step: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return Some(start.elapsed());
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(step).await;
    }
}

/// The (session id, session token) pair inside a cookie made by `Harness::login`.
pub fn session_pair(cookie: &str) -> (String, String) {
    let mut id = String::new();
    let mut token = String::new();
    for pair in cookie.split("; ") {
        match pair.split_once('=') {
            Some(("iid_session_id", v)) => id = v.to_owned(),
            Some(("iid_session_token", v)) => token = v.to_owned(),
            _ => {}
        }
    }
    assert!(!id.is_empty() && !token.is_empty(), "{cookie}");
    (id, token)
}
