//! Refresh-ahead with shared state: the first replica to renew a session asks
//! the IdP (it must not take back its own old answer from Redis, or the fleet
//! would never renew), and the next replica renews from that newer answer
//! without asking again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::time::Duration;

use support::cluster::{assert_admitted, get_app, within, Fleet, POLL_STEP};
use support::{users, Harness};

const RENEWED: &str = r#"sessiongate_cache_refreshes_total{result="valid"}"#;

/// Sends requests through `g` until one of its background renewals has
/// finished valid (they start in the second half of an entry's life).
async fn renewed(g: &Harness, cookie: &str) -> bool {
    let before = g.admin_metric(RENEWED).await;
    within(Duration::from_secs(30), POLL_STEP * 10, || async {
        assert_admitted(&get_app(g, cookie).await, users::INVESTOR, "renewing");
        g.admin_metric(RENEWED).await > before
    })
    .await
    .is_some()
}

#[tokio::test]
async fn the_first_renewal_asks_the_idp_and_the_next_replica_renews_from_redis() {
    // Entries live 20 s and renew in their second half: 10 s of slack for a
    // loaded machine between the two renewals.
    let Some(fleet) = Fleet::start(2, |b| {
        b.set("cache", "max_ttl = \"20s\"")
            .set("cache", "refresh_ahead = \"50%\"")
    })
    .await
    else {
        return;
    };
    let cookie = fleet.login(users::INVESTOR);
    assert_admitted(&get_app(fleet.a(), &cookie).await, users::INVESTOR, "a");
    assert_admitted(&get_app(fleet.b(), &cookie).await, users::INVESTOR, "b");
    assert_eq!(fleet.idp_fetches(), 1, "b took a's answer from Redis");

    assert!(renewed(fleet.a(), &cookie).await, "a never renewed");
    assert_eq!(
        fleet.idp_fetches(),
        2,
        "a's renewal must ask the IdP, not take back its own answer:{}",
        fleet.cluster_metrics().await
    );
    assert!(renewed(fleet.b(), &cookie).await, "b never renewed");
    assert_eq!(
        fleet.idp_fetches(),
        2,
        "b renews from a's newer answer in Redis:{}",
        fleet.cluster_metrics().await
    );
}
