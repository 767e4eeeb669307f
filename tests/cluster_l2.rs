//! The shared session cache (L2): the fleet asks the IdP once per session, not
//! once per replica, and a stampede of first requests spread over the
//! replicas costs one IdP call.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::sync::Arc;

use sessiongate::dev::emulator::Fault;
use support::cluster::{assert_admitted, get_app, Fleet};
use support::users;
use tokio::task::JoinSet;

const PROFILES: [&str; 3] = [users::INVESTOR, users::ARABIC, users::ESTABLISHMENT_ADMIN];

#[tokio::test]
async fn three_gateways_and_300_sessions_each_through_every_gateway_make_300_idp_calls() {
    let Some(fleet) = Fleet::start(3, |b| b.set("cache", "max_ttl = \"5m\"")).await else {
        return;
    };
    let sessions: Vec<(String, &str)> = (0..300)
        .map(|i| {
            let profile = PROFILES[i % PROFILES.len()];
            (fleet.login(profile), profile)
        })
        .collect();

    // Session i goes first to gateway i % 3, so every replica both fills
    // Redis and reads what the others filled. Sessions run in parallel, the
    // three requests of one session in turn.
    let mut tasks = JoinSet::new();
    let gateways: Arc<Vec<_>> = Arc::new(fleet.gateways.clone());
    let sessions = Arc::new(sessions);
    const WORKERS: usize = 12;
    for w in 0..WORKERS {
        let (gateways, sessions) = (Arc::clone(&gateways), Arc::clone(&sessions));
        tasks.spawn(async move {
            for i in (w..sessions.len()).step_by(WORKERS) {
                let (cookie, profile) = &sessions[i];
                for k in 0..3 {
                    let g = &gateways[(i + k) % 3];
                    let r = get_app(g, cookie).await;
                    assert_admitted(
                        &r,
                        profile,
                        &format!("session {i} via gateway {}", (i + k) % 3),
                    );
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let hits: f64 = {
        let mut sum = 0.0;
        for g in fleet.gateways.iter() {
            sum += g
                .admin_metric(r#"sessiongate_cluster_l2_lookups_total{result="hit"}"#)
                .await;
        }
        sum
    };
    assert_eq!(
        fleet.idp_fetches(),
        300,
        "one IdP call per session for the whole fleet (L2 hits counted: {hits}):{}",
        fleet.cluster_metrics().await
    );
    assert_eq!(hits, 600.0, "the second and third replica read Redis");

    // Every replica holds every session now: another round costs nothing.
    for (i, (cookie, profile)) in sessions.iter().enumerate().step_by(29) {
        for g in fleet.gateways.iter() {
            assert_admitted(&get_app(g, cookie).await, profile, &format!("again {i}"));
        }
    }
    assert_eq!(fleet.idp_fetches(), 300);
}

#[tokio::test]
async fn thirty_concurrent_first_requests_over_three_gateways_make_one_idp_call() {
    let Some(fleet) = Fleet::start(3, |b| b.set("idp", "timeout = \"5s\"")).await else {
        return;
    };
    let cookie = fleet.login(users::ESTABLISHMENT_ADMIN);
    // A slow IdP keeps the first call in flight while every other request
    // arrives: without a fleet-wide lock, each replica would call it.
    fleet.a().emulator.set_fault(Fault::Delay { ms: 300 });

    let barrier = Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = JoinSet::new();
    for i in 0..30 {
        let g = Arc::clone(&fleet.gateways[i % 3]);
        let (cookie, barrier) = (cookie.clone(), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            let r = get_app(&g, &cookie).await;
            assert_admitted(&r, users::ESTABLISHMENT_ADMIN, &format!("request {i}"));
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    fleet.a().emulator.set_fault(Fault::None);

    let mut waits = String::new();
    for (n, g) in fleet.gateways.iter().enumerate() {
        for result in ["filled", "gave_up"] {
            let series = format!(r#"sessiongate_cluster_lock_waits_total{{result="{result}"}}"#);
            waits.push_str(&format!(
                " gw{n} {result}={}",
                g.admin_metric(&series).await
            ));
        }
    }
    assert_eq!(
        fleet.idp_fetches(),
        1,
        "30 concurrent first requests over 3 replicas; lock waits:{waits}"
    );
}
