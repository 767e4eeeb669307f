//! When the IdP struggles: bounded stale serving per route, refresh-ahead,
//! the IdP concurrency limit and the circuit breaker, and a soak that mixes
//! them. Real gateway, real emulator with injected faults, real upstream;
//! every timing assertion polls with a deadline and leaves wide margins.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use sessiongate::dev::emulator::{self, Fault};
use sessiongate::idp::iid::wire;
use support::{eventually, users, Harness, Reply};

/// Routes: a grace of a minute, a short grace, none, and a public route.
const ROUTES: &str = r#"
[[routes]]
prefix = "/public/"
upstream = "http://{up}"
auth = "public"

[[routes]]
prefix = "/grace/"
upstream = "http://{up}"
stale_if_error = "1m"

[[routes]]
prefix = "/short/"
upstream = "http://{up}"
stale_if_error = "4s"

[[routes]]
prefix = "/strict/"
upstream = "http://{up}"
"#;

async fn get(h: &Harness, path: &str, cookie: &str) -> Reply {
    h.get(path, &[("cookie", cookie)]).await
}

/// The session id of a harness cookie (`iid_session_id=..; iid_session_token=..`).
fn ids(cookie: &str) -> (String, String) {
    let mut id = String::new();
    let mut token = String::new();
    for part in cookie.split("; ") {
        if let Some(v) = part.strip_prefix("iid_session_id=") {
            id = v.to_string();
        }
        if let Some(v) = part.strip_prefix("iid_session_token=") {
            token = v.to_string();
        }
    }
    (id, token)
}

/// Ends a session at the IdP itself, behind the gateway's back.
async fn end_at_idp(h: &Harness, cookie: &str) {
    let (id, token) = ids(cookie);
    let body = serde_json::json!({"sessionId": id, "sessionToken": token}).to_string();
    let r = h
        .request_url(
            Method::POST,
            &format!(
                "http://{}{}{}",
                h.idp,
                emulator::BASE_PATH,
                wire::PATH_LOGOUT
            ),
            &[
                (wire::HEADER_API_KEY, support::API_KEY),
                ("content-type", "application/json"),
            ],
            Bytes::from(body),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The value of one metric series, e.g. `sessiongate_stale_served_total{route="/grace"}`.
fn metric(h: &Harness, series: &str) -> f64 {
    let text = h.gateway.admin().metrics().encode().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn stale_header(r: &Reply) -> Option<Vec<String>> {
    r.upstream_header("x-iid-stale")
}

fn assert_not_admitted(r: &Reply, what: &str) {
    assert!(
        !r.from_upstream(),
        "{what}: reached the upstream ({})",
        r.status
    );
    assert!(
        r.status.is_client_error() || r.status.is_server_error(),
        "{what}: {}",
        r.status
    );
}

#[tokio::test]
async fn stale_is_served_per_route_within_its_grace_and_never_after_revocation_or_invalid() {
    let h = Harness::builder()
        .routes(ROUTES)
        .set("cache", "max_ttl = \"2s\"")
        .set("cache", "negative_ttl = \"1s\"")
        .set("cache", "refresh_ahead = \"0\"")
        .set("idp", "timeout = \"2s\"")
        .start()
        .await;

    // Before the outage: A is valid, B logs out, C's IdP session runs out.
    let a = h.login(users::INVESTOR);
    let b = h.login(users::INVESTOR);
    let c = h.login_for(users::INVESTOR, 1);
    for cookie in [&a, &b, &c] {
        let r = get(&h, "/grace/x", cookie).await;
        assert_eq!(r.status, 200);
        assert_eq!(stale_header(&r), None, "fresh answers are not stale");
    }
    let r = get(&h, "/logout", &b).await;
    assert_eq!(r.status, 200);
    let c_invalid = eventually(Duration::from_secs(15), || async {
        get(&h, "/grace/x", &c).await.status == 401
    })
    .await;
    assert!(
        c_invalid,
        "the IdP answers invalid for C once its session ran out"
    );

    // A is validated again, then the IdP goes down right after.
    let a_validated = eventually(Duration::from_secs(15), || async {
        let before = h.idp_fetches();
        get(&h, "/strict/x", &a).await.status == 200 && h.idp_fetches() > before
    })
    .await;
    assert!(a_validated);
    h.emulator.set_fault(Fault::Status { status: 503 });

    // Wait until A's entry is past its freshness (the strict route says so).
    let expired = eventually(Duration::from_secs(15), || async {
        get(&h, "/strict/x", &a).await.status == 503
    })
    .await;
    assert!(expired, "A's cache entry expires and the IdP is down");

    // The grace route admits A on its last valid answer, and says so upstream.
    for _ in 0..3 {
        let r = get(&h, "/grace/x", &a).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(r.from_upstream());
        assert_eq!(stale_header(&r), Some(vec!["1".to_string()]));
        assert_eq!(
            r.upstream_header("x-iid-profile-id"),
            Some(vec![users::INVESTOR.into()])
        );
    }
    // The route without a grace refuses the same session in the same outage.
    let r = get(&h, "/strict/x", &a).await;
    assert_eq!(r.status, 503);
    assert!(!r.from_upstream());
    assert!(r.headers.contains_key("retry-after"));
    // Logged out before the outage: refused on both routes.
    for path in ["/grace/x", "/strict/x"] {
        assert_not_admitted(&get(&h, path, &b).await, "logged out");
    }
    // Answered invalid by the IdP: refused.
    for path in ["/grace/x", "/short/x"] {
        assert_not_admitted(&get(&h, path, &c).await, "answered invalid");
    }
    // Public routes do not care.
    assert_eq!(h.get("/public/x", &[]).await.status, 200);

    // Past the short grace, the short route refuses while the long one still admits.
    let past_grace = eventually(Duration::from_secs(20), || async {
        get(&h, "/short/x", &a).await.status == 503
    })
    .await;
    assert!(past_grace, "a 4 s grace ends");
    let r = get(&h, "/grace/x", &a).await;
    assert_eq!(r.status, 200);
    assert_eq!(stale_header(&r), Some(vec!["1".to_string()]));

    assert!(metric(&h, "sessiongate_stale_served_total{route=\"/grace\"}") >= 4.0);
    // The IdP is back: A is fresh again, without the stale header.
    h.emulator.set_fault(Fault::None);
    let fresh = eventually(Duration::from_secs(20), || async {
        let r = get(&h, "/grace/x", &a).await;
        r.status == 200 && stale_header(&r).is_none()
    })
    .await;
    assert!(fresh);
}

#[tokio::test]
async fn a_client_cannot_send_the_stale_header() {
    let h = Harness::builder().routes(ROUTES).start().await;
    let a = h.login(users::INVESTOR);
    for name in ["x-iid-stale", "X-IID-STALE", "x_iid_stale"] {
        let r = h.get("/grace/x", &[("cookie", &a), (name, "1")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(stale_header(&r), None, "{name}");
        assert!(
            r.upstream_header_names()
                .iter()
                .all(|n| !n.contains("stale")),
            "{name}"
        );
        let r = h.get("/public/x", &[(name, "1")]).await;
        assert!(r
            .upstream_header_names()
            .iter()
            .all(|n| !n.contains("stale")));
    }
}

#[tokio::test]
async fn the_stale_header_follows_the_configured_prefix() {
    let h = Harness::builder()
        .routes(ROUTES)
        .set("headers", "prefix = \"x-auth-\"")
        .set("cache", "max_ttl = \"1s\"")
        .start()
        .await;
    let a = h.login(users::INVESTOR);
    assert_eq!(get(&h, "/grace/x", &a).await.status, 200);
    h.emulator.set_fault(Fault::Close);
    let stale = eventually(Duration::from_secs(15), || async {
        let r = get(&h, "/grace/x", &a).await;
        r.upstream_header("x-auth-stale") == Some(vec!["1".to_string()])
    })
    .await;
    assert!(stale);
}

#[tokio::test]
async fn refresh_ahead_keeps_an_active_session_off_the_idp_path() {
    // The window (1 s) is wider than the IdP's delay (300 ms), so a renewal
    // lands before the entry it renews expires.
    const TTL: Duration = Duration::from_secs(3);
    let h = Harness::builder()
        .routes(ROUTES)
        .set("cache", "max_ttl = \"3s\"")
        .set("cache", "refresh_ahead = \"1s\"")
        .start()
        .await;
    let a = h.login(users::INVESTOR);
    assert_eq!(get(&h, "/strict/x", &a).await.status, 200, "warm");
    h.emulator.set_fault(Fault::Delay { ms: 300 });
    let fetches_before = h.idp_fetches();
    let misses_before = metric(
        &h,
        "sessiongate_auth_outcomes_total{outcome=\"cache_miss\"}",
    ) + metric(&h, "sessiongate_auth_outcomes_total{outcome=\"coalesced\"}");

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut requests = 0;
    while started.elapsed() < 3 * TTL + Duration::from_millis(500) {
        let sent = Instant::now();
        let r = get(&h, "/strict/x", &a).await;
        let took = sent.elapsed();
        assert_eq!(r.status, 200, "{:?}", r.body);
        slowest = slowest.max(took);
        requests += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fetches = h.idp_fetches() - fetches_before;
    let misses = metric(
        &h,
        "sessiongate_auth_outcomes_total{outcome=\"cache_miss\"}",
    ) + metric(&h, "sessiongate_auth_outcomes_total{outcome=\"coalesced\"}")
        - misses_before;
    println!(
        "refresh-ahead: {requests} requests over {:?}, {fetches} IdP calls, slowest {slowest:?}",
        started.elapsed()
    );
    assert_eq!(misses, 0.0, "no request waited for the IdP");
    assert!(
        slowest < Duration::from_millis(300),
        "every request is served under the IdP's 300 ms delay: {slowest:?}"
    );
    // About one call per TTL (3 TTLs): loosely bounded both ways.
    assert!((2..=6).contains(&fetches), "{fetches} IdP calls");
    assert!(metric(&h, "sessiongate_cache_refreshes_started_total") >= 2.0);
    assert!(metric(&h, "sessiongate_cache_refreshes_total{result=\"valid\"}") >= 2.0);
}

#[tokio::test]
async fn a_refresh_that_finds_the_session_invalid_refuses_the_next_request() {
    let h = Harness::builder()
        .routes(ROUTES)
        .set("cache", "max_ttl = \"3s\"")
        .set("cache", "refresh_ahead = \"90%\"")
        .start()
        .await;
    let a = h.login(users::INVESTOR);
    assert_eq!(get(&h, "/strict/x", &a).await.status, 200);
    end_at_idp(&h, &a).await;
    let refused = eventually(Duration::from_secs(10), || async {
        get(&h, "/strict/x", &a).await.status == 401
    })
    .await;
    assert!(refused);
    assert!(metric(&h, "sessiongate_cache_refreshes_total{result=\"invalid\"}") >= 1.0);
}

#[tokio::test]
async fn a_hanging_idp_gets_at_most_max_concurrent_connections() {
    const MAX: u64 = 8;
    const SESSIONS: usize = 500;
    let h = Arc::new(
        Harness::builder()
            .routes(ROUTES)
            .set("idp", &format!("max_concurrent = {MAX}"))
            .set("idp", "timeout = \"6s\"")
            .set("idp", "breaker = { failures = 0 }")
            .start()
            .await,
    );
    h.emulator.set_fault(Fault::Hang);
    let cookies: Vec<String> = (0..SESSIONS).map(|_| h.login(users::INVESTOR)).collect();
    let started = Instant::now();
    let tasks: Vec<_> = cookies
        .into_iter()
        .map(|cookie| {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let r = get(&h, "/strict/x", &cookie).await;
                (
                    r.status.as_u16(),
                    r.from_upstream(),
                    r.reason(),
                    r.headers.contains_key("retry-after"),
                )
            })
        })
        .collect();

    // Every slot is taken, and no more: read before the first calls time out
    // (6 s), after which closing and reopening connections overlap.
    let full = eventually(Duration::from_secs(4), || async {
        h.emulator.stats().connections == MAX
    })
    .await;
    let peak = h.emulator.stats().peak_connections;
    let in_flight = metric(&h, "sessiongate_idp_in_flight");
    println!(
        "after {:?}: {peak} connections at most at the IdP, {in_flight} calls in flight at the gateway",
        started.elapsed()
    );
    assert!(full, "the limit is reached: {:?}", h.emulator.stats());
    assert_eq!(peak, MAX, "never more than max_concurrent connections");
    assert!(in_flight <= MAX as f64);

    let mut by_reason = BTreeMap::<String, usize>::new();
    for t in tasks {
        let (status, upstream, reason, retry_after) = t.await.unwrap();
        assert_eq!(status, 503);
        assert!(!upstream);
        assert!(retry_after);
        *by_reason.entry(reason).or_default() += 1;
    }
    println!(
        "{SESSIONS} requests with a hanging IdP, done in {:?}: {by_reason:?}; gateway peak RSS {} kB",
        started.elapsed(),
        peak_rss_kb()
    );
    assert!(by_reason.get("idp_saturated").copied().unwrap_or(0) > 0);
    assert!(by_reason.get("idp_timeout").copied().unwrap_or(0) >= MAX as usize);
    h.emulator.set_fault(Fault::None);
}

#[tokio::test]
async fn after_five_failures_calls_stop_until_the_cool_down_and_a_probe_closes_the_breaker() {
    let h = Harness::builder()
        .routes(ROUTES)
        .set(
            "idp",
            "breaker = { failures = 5, cool_down = \"3s\", max_cool_down = \"6s\" }",
        )
        .start()
        .await;
    // Cached before the outage: keeps working while the breaker is open.
    let cached = h.login(users::INVESTOR);
    assert_eq!(get(&h, "/strict/x", &cached).await.status, 200);
    let a = h.login(users::INVESTOR);

    h.emulator.set_fault(Fault::Status { status: 503 });
    let base = h.idp_fetches();
    for _ in 0..5 {
        let r = get(&h, "/strict/x", &a).await;
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (503, "idp_unavailable")
        );
    }
    assert_eq!(h.idp_fetches() - base, 5);
    let opened = Instant::now();
    assert_eq!(metric(&h, "sessiongate_idp_breaker_state"), 1.0, "open");

    // Open: no call, a fast 503 that says when to come back.
    for _ in 0..10 {
        let r = get(&h, "/strict/x", &a).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.reason(), "idp_circuit_open");
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=3).contains(&retry), "{retry}");
    }
    if opened.elapsed() < Duration::from_secs(2) {
        assert_eq!(h.idp_fetches() - base, 5, "no call during the cool-down");
    }
    assert!(
        metric(
            &h,
            "sessiongate_idp_rejected_total{reason=\"breaker_open\"}"
        ) >= 10.0
    );
    // A sidecar keeps serving what needs no IdP call.
    assert_eq!(h.get("/public/x", &[]).await.status, 200);
    assert_eq!(get(&h, "/strict/x", &cached).await.status, 200);

    // The IdP recovers; after the cool-down one probe closes the breaker.
    h.emulator.set_fault(Fault::None);
    let closed = eventually(Duration::from_secs(15), || async {
        get(&h, "/strict/x", &a).await.status == 200
    })
    .await;
    assert!(closed);
    assert!(
        opened.elapsed() >= Duration::from_millis(2500),
        "calls resumed only after the cool-down: {:?}",
        opened.elapsed()
    );
    assert_eq!(metric(&h, "sessiongate_idp_breaker_state"), 0.0, "closed");
    assert!(
        metric(
            &h,
            "sessiongate_idp_breaker_probes_total{result=\"success\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_429_with_retry_after_stops_calls_for_that_long() {
    let h = Harness::builder().routes(ROUTES).start().await;
    let a = h.login(users::INVESTOR);
    h.emulator.set_fault(Fault::RetryAfter {
        status: 429,
        secs: 2,
    });
    let r = get(&h, "/strict/x", &a).await;
    let throttled = Instant::now();
    assert_eq!(r.status, 503);
    assert_eq!(r.reason(), "idp_throttled");
    assert_eq!(r.headers["retry-after"], "2");
    assert!(!r.from_upstream());
    let calls = h.idp_fetches();
    assert_eq!(calls, 1);
    h.emulator.set_fault(Fault::None);

    // Ask steadily: no call goes out for the first second at least, and
    // calls resume (the session is admitted) within 10 s.
    let mut resumed = None;
    let mut checked_early = false;
    while throttled.elapsed() < Duration::from_secs(10) {
        let r = get(&h, "/strict/x", &a).await;
        let at = throttled.elapsed();
        if at < Duration::from_secs(1) {
            assert_eq!(h.idp_fetches(), calls, "a call {at:?} after the 429");
            assert_eq!(r.reason(), "idp_circuit_open");
            checked_early = true;
        }
        if r.status == 200 {
            resumed = Some(at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("calls resumed {resumed:?} after the 429 with Retry-After: 2");
    assert!(
        checked_early,
        "the machine was too slow to look within the first second"
    );
    let resumed = resumed.expect("calls resume within 10 s");
    assert!(resumed >= Duration::from_secs(1), "{resumed:?}");
}

/// Peak resident set of this test process (gateway, emulator and clients), in kB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// How one soak request ended.
#[derive(Debug, Default)]
struct Counts {
    fresh: u64,
    stale: u64,
    public: u64,
    refused_401: u64,
    refused_503: u64,
    other: u64,
}

/// Several clients hit a grace route, a strict route and a public route with
/// valid, logged-out and IdP-invalid sessions while the IdP goes down in the
/// middle. Nothing reaches the upstream without a valid or stale-allowed session.
async fn soak(total: Duration, down_from: Duration, down_for: Duration) {
    let h = Arc::new(
        Harness::builder()
            .routes(ROUTES)
            .set("cache", "max_ttl = \"1s\"")
            .set("cache", "negative_ttl = \"1s\"")
            .set("idp", "timeout = \"1s\"")
            .set(
                "idp",
                "breaker = { failures = 5, cool_down = \"1s\", max_cool_down = \"4s\" }",
            )
            .start()
            .await,
    );
    let valid: Vec<String> = (0..20).map(|_| h.login(users::INVESTOR)).collect();
    let revoked: Vec<String> = (0..3).map(|_| h.login(users::INVESTOR)).collect();
    let invalid: Vec<String> = (0..3).map(|_| h.login(users::INVESTOR)).collect();
    for cookie in valid.iter().chain(&revoked).chain(&invalid) {
        assert_eq!(get(&h, "/grace/x", cookie).await.status, 200);
    }
    for cookie in &revoked {
        assert_eq!(get(&h, "/logout", cookie).await.status, 200);
    }
    for cookie in &invalid {
        end_at_idp(&h, cookie).await;
        // The gateway has heard the IdP say invalid before the soak starts.
        let heard = eventually(Duration::from_secs(10), || async {
            get(&h, "/strict/x", cookie).await.status == 401
        })
        .await;
        assert!(heard);
    }
    let valid = Arc::new(valid);
    let bad = Arc::new([revoked, invalid].concat());

    let started = Instant::now();
    let outage = {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            tokio::time::sleep(down_from).await;
            h.emulator.set_fault(Fault::Status { status: 503 });
            let went_down = Instant::now();
            tokio::time::sleep(down_for).await;
            h.emulator.set_fault(Fault::None);
            went_down
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (h, valid, bad) = (Arc::clone(&h), Arc::clone(&valid), Arc::clone(&bad));
            tokio::spawn(async move {
                let mut counts = Counts::default();
                let mut i = w;
                while started.elapsed() < total {
                    i += 7;
                    let path = ["/grace/x", "/strict/x", "/public/x", "/short/x"][i % 4];
                    let is_bad = i % 5 == 0;
                    let cookie = if is_bad {
                        &bad[i % bad.len()]
                    } else {
                        &valid[i % valid.len()]
                    };
                    let r = get(&h, path, cookie).await;
                    let stale = stale_header_of(&r);
                    if path == "/public/x" {
                        assert_eq!(r.status, 200);
                        assert!(!stale, "public routes are never stale");
                        counts.public += 1;
                        continue;
                    }
                    if is_bad {
                        assert!(
                            !r.from_upstream(),
                            "a revoked or invalid session reached the upstream"
                        );
                    }
                    if stale {
                        assert_ne!(path, "/strict/x", "stale on a route without stale_if_error");
                    }
                    match (r.status.as_u16(), r.from_upstream(), stale) {
                        (200, true, false) => counts.fresh += 1,
                        (200, true, true) => counts.stale += 1,
                        (401, false, _) => counts.refused_401 += 1,
                        (503, false, _) => counts.refused_503 += 1,
                        _ => counts.other += 1,
                    }
                }
                counts
            })
        })
        .collect();
    let mut total_counts = Counts::default();
    for w in workers {
        let c = w.await.unwrap();
        total_counts.fresh += c.fresh;
        total_counts.stale += c.stale;
        total_counts.public += c.public;
        total_counts.refused_401 += c.refused_401;
        total_counts.refused_503 += c.refused_503;
        total_counts.other += c.other;
    }
    outage.await.unwrap();
    println!(
        "soak {total:?} (IdP down {down_for:?} from {down_from:?}): {total_counts:?}; IdP fetches {}; \
         stale served on /grace {} and /short {}; peak RSS {} kB",
        h.idp_fetches(),
        metric(&h, "sessiongate_stale_served_total{route=\"/grace\"}"),
        metric(&h, "sessiongate_stale_served_total{route=\"/short\"}"),
        peak_rss_kb()
    );
    assert_eq!(total_counts.other, 0, "{total_counts:?}");
    assert!(total_counts.stale > 0, "opted-in routes served stale");
    assert!(total_counts.refused_503 > 0, "other routes failed closed");
    assert!(total_counts.refused_401 > 0, "bad sessions were refused");
    assert!(total_counts.fresh > 0);
}

fn stale_header_of(r: &Reply) -> bool {
    r.from_upstream() && stale_header(r).is_some()
}

#[tokio::test]
async fn soak_short() {
    soak(
        Duration::from_secs(12),
        Duration::from_secs(4),
        Duration::from_secs(4),
    )
    .await;
}

/// The issue's 60 s soak with the IdP down for 20 s: run by hand with
/// `cargo test --release --test idp_resilience soak_60s -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn soak_60s() {
    soak(
        Duration::from_secs(60),
        Duration::from_secs(20),
        Duration::from_secs(20),
    )
    .await;
}
