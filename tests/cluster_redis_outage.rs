//! When Redis goes away: every request still gets the right answer from the
//! local cache and the IdP, readiness stays true while a metric says shared
//! state is degraded, a logout during the outage reaches the other replicas
//! once Redis is back, and a Redis that comes back empty makes every replica
//! drop its cache (it cannot know what it missed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use http::Method;
use support::cluster::{
    assert_admitted, assert_refused, get_app, refuses, within, Fleet, POLL_STEP, RECONNECT_DEADLINE,
};
use support::{users, Harness, Reply};

fn long_cache(b: support::Builder) -> support::Builder {
    b.set("cache", "max_ttl = \"5m\"")
}

/// No answer of the gateway's own is a 5xx while only Redis is down.
fn assert_no_5xx(r: &Reply, what: &str) {
    assert!(
        !r.status.is_server_error(),
        "{what}: {} {:?}",
        r.status,
        r.body
    );
}

async fn degraded(h: &Harness) -> f64 {
    h.admin_metric("sessiongate_cluster_degraded").await
}

#[tokio::test]
async fn with_redis_killed_every_request_gets_the_right_answer_and_a_logout_is_replayed_after_restart(
) {
    let Some(mut fleet) = Fleet::start(2, long_cache).await else {
        return;
    };
    let (a, b) = (fleet.a().clone(), fleet.b().clone());
    let cached = fleet.login(users::INVESTOR);
    let logged_out = fleet.login(users::ARABIC);
    for (h, name) in [(&a, "A"), (&b, "B")] {
        assert_admitted(&get_app(h, &cached).await, users::INVESTOR, name);
        assert_admitted(&get_app(h, &logged_out).await, users::ARABIC, name);
    }

    fleet.redis.kill();

    // Sessions neither replica has seen, and ones that are no good.
    let fresh = fleet.login(users::ESTABLISHMENT_ADMIN);
    // A real session id with a token the IdP never issued for it.
    let (id, _) = support::cluster::session_pair(&cached);
    let wrong_token = format!("iid_session_id={id}; iid_session_token=not-the-token");
    let bogus = "iid_session_id=00000000-0000-0000-0000-000000000000; iid_session_token=nope";
    for round in 0..3 {
        for (h, name) in [(&a, "A"), (&b, "B")] {
            let what = format!("{name} round {round}");
            let r = get_app(h, &cached).await;
            assert_no_5xx(&r, &what);
            assert_admitted(&r, users::INVESTOR, &format!("{what}: cached session"));
            let r = get_app(h, &fresh).await;
            assert_no_5xx(&r, &what);
            assert_admitted(
                &r,
                users::ESTABLISHMENT_ADMIN,
                &format!("{what}: new session"),
            );
            for (cookie, kind) in [
                (bogus, "unknown"),
                (wrong_token.as_str(), "wrong token"),
                ("", "no"),
            ] {
                let r = get_app(h, cookie).await;
                assert_no_5xx(&r, &what);
                assert_refused(&r, &format!("{what}: {kind} session"));
            }
        }
    }

    // A logout through A while Redis is down: A refuses at once...
    let r = a.get("/logout", &[("cookie", &logged_out)]).await;
    assert_eq!(r.status, 200, "logout during the outage: {:?}", r.body);
    assert_refused(&get_app(&a, &logged_out).await, "A after its logout");
    // ...while B cannot have heard of it and still serves its cached copy.
    assert_admitted(
        &get_app(&b, &logged_out).await,
        users::ARABIC,
        "B during the outage",
    );

    // Redis comes back with its data: A publishes what it buffered, B replays it.
    fleet.redis.restart().await;
    let took = within(RECONNECT_DEADLINE, POLL_STEP, || refuses(&b, &logged_out)).await;
    assert!(
        took.is_some(),
        "B still admits a session logged out through A during the outage, {RECONNECT_DEADLINE:?} after Redis came back"
    );
    // Replayed, not forgotten with everything else: Redis kept its data, so
    // there was no reason to drop the caches.
    for (h, name) in [(&a, "A"), (&b, "B")] {
        for reason in ["redis_reset", "stream_trimmed"] {
            let series = format!(r#"sessiongate_cluster_cache_flushes_total{{reason="{reason}"}}"#);
            assert_eq!(
                h.admin_metric(&series).await,
                0.0,
                "{name} flushed: {reason}"
            );
        }
    }
    assert_refused(&get_app(&a, &logged_out).await, "A after the restart");
    assert_admitted(
        &get_app(&b, &cached).await,
        users::INVESTOR,
        "B, other session",
    );
}

#[tokio::test]
async fn readyz_stays_200_while_redis_is_down_and_the_degraded_gauge_says_so() {
    let Some(mut fleet) = Fleet::start(1, |b| b).await else {
        return;
    };
    let a = fleet.a().clone();
    let cookie = fleet.login(users::INVESTOR);
    assert_admitted(&get_app(&a, &cookie).await, users::INVESTOR, "before");
    assert_eq!(degraded(&a).await, 0.0, "degraded with Redis up");

    fleet.redis.kill();
    let ready_and_degraded = within(RECONNECT_DEADLINE, POLL_STEP, || async {
        let r = a.admin_request(Method::GET, "/readyz", "").await;
        assert_eq!(r.status, 200, "/readyz with Redis down: {:?}", r.body);
        // A request with a new session is what runs into the dead Redis.
        let fresh = a.login(users::ARABIC);
        assert_admitted(&get_app(&a, &fresh).await, users::ARABIC, "during");
        degraded(&a).await == 1.0
    })
    .await;
    assert!(
        ready_and_degraded.is_some(),
        "sessiongate_cluster_degraded never became 1 with Redis down"
    );
    let errors = a
        .admin_request(Method::GET, "/metrics", "")
        .await
        .body
        .clone();
    let errors = String::from_utf8_lossy(&errors);
    assert!(
        errors
            .lines()
            .filter(|l| l.starts_with("sessiongate_cluster_redis_errors_total{"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .any(|n| n > 0.0),
        "no Redis error counted:\n{errors}"
    );

    fleet.redis.restart().await;
    let recovered = within(RECONNECT_DEADLINE, POLL_STEP, || async {
        let r = a.admin_request(Method::GET, "/readyz", "").await;
        assert_eq!(r.status, 200, "/readyz after the restart: {:?}", r.body);
        degraded(&a).await == 0.0
    })
    .await;
    assert!(
        recovered.is_some(),
        "sessiongate_cluster_degraded still 1 {RECONNECT_DEADLINE:?} after Redis came back"
    );
}

#[tokio::test]
async fn a_redis_that_comes_back_empty_makes_every_replica_drop_its_cache() {
    let Some(mut fleet) = Fleet::start(2, long_cache).await else {
        return;
    };
    let (a, b) = (fleet.a().clone(), fleet.b().clone());
    let cookie = fleet.login(users::INVESTOR);
    assert_admitted(&get_app(&a, &cookie).await, users::INVESTOR, "A");
    assert_admitted(&get_app(&b, &cookie).await, users::INVESTOR, "B");
    assert_eq!(fleet.idp_fetches(), 1, "B read A's entry from Redis");
    const RESET: &str = r#"sessiongate_cluster_cache_flushes_total{reason="redis_reset"}"#;
    let before = [a.admin_metric(RESET).await, b.admin_metric(RESET).await];

    fleet.redis.restart_fresh().await;
    for (n, h) in [(0, &a), (1, &b)] {
        let flushed = within(RECONNECT_DEADLINE, POLL_STEP, || async {
            h.admin_metric(RESET).await > before[n]
        })
        .await;
        assert!(
            flushed.is_some(),
            "gateway {n} did not flush its cache after Redis came back empty"
        );
    }

    // Each replica's command connection comes back by itself (its first
    // command after the restart may fail and fall back to the IdP).
    for h in [&a, &b] {
        fleet.wait_connected(h).await;
    }
    assert_eq!(
        fleet.idp_fetches(),
        1,
        "the probes' own IdP calls are not counted"
    );
    // A lost its copy and Redis has none: the IdP again. B then finds A's new entry.
    assert_admitted(&get_app(&a, &cookie).await, users::INVESTOR, "A after");
    assert_eq!(fleet.idp_fetches(), 2, "A asked the IdP again");
    assert_admitted(&get_app(&b, &cookie).await, users::INVESTOR, "B after");
    assert_eq!(fleet.idp_fetches(), 2, "B found A's new entry in Redis");
}

/// The outage tests rely on this: `restart` keeps what was written (every
/// write is fsynced), `restart_fresh` loses it, and both keep the port.
#[tokio::test]
async fn the_test_redis_keeps_its_data_across_restart_and_loses_it_on_restart_fresh() {
    let Some(mut redis) = support::redis::RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let mut con = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    redis.kill();
    assert!(
        tokio::net::TcpStream::connect(redis.addr()).await.is_err(),
        "still listening after kill"
    );
    redis.restart().await;
    assert_eq!(redis.url(), url);
    let mut con = redis.connection().await;
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        v.as_deref(),
        Some("v"),
        "lost across a restart:\n{}",
        redis.log()
    );
    redis.restart_fresh().await;
    let mut con = redis.connection().await;
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v, None, "kept across a fresh restart");
}
