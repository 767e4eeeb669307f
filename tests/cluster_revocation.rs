//! Revocation across the fleet: a logout through one replica, or a
//! `POST /revoke` on any replica's admin listener, makes every replica refuse
//! the session within a second, even one that still holds it in its cache and
//! one that never saw it while the IdP would still call it valid.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use http::Method;
use support::cluster::{
    assert_admitted, assert_refused, get_app, refuses, session_pair, within, Fleet, POLL_STEP,
    REVOCATION_DEADLINE,
};
use support::{users, Harness};

/// Every replica keeps sessions for minutes: only a revocation can end them early.
fn long_cache(b: support::Builder) -> support::Builder {
    b.set("cache", "max_ttl = \"5m\"")
}

/// Posts `body` to `h`'s `/revoke`; the answer's `dropped`.
async fn revoke(h: &Harness, body: &str) -> u64 {
    let r = h.admin_request(Method::POST, "/revoke", body).await;
    assert_eq!(r.status, 200, "/revoke {body}: {:?}", r.body);
    r.json()["dropped"]
        .as_u64()
        .unwrap_or_else(|| panic!("no dropped count: {:?}", r.body))
}

#[tokio::test]
async fn a_logout_through_a_is_refused_by_b_within_a_second() {
    let Some(fleet) = Fleet::start(2, long_cache).await else {
        return;
    };
    let (a, b) = (fleet.a(), fleet.b());
    let cookie = fleet.login(users::INVESTOR);
    assert_admitted(&get_app(a, &cookie).await, users::INVESTOR, "A first");
    assert_admitted(&get_app(b, &cookie).await, users::INVESTOR, "B first");
    let fetches = fleet.idp_fetches();
    // B holds it locally now: a hit, no IdP call, so only a revocation can refuse it.
    assert_admitted(&get_app(b, &cookie).await, users::INVESTOR, "B cached");
    assert_eq!(fleet.idp_fetches(), fetches, "B answered from its cache");

    let r = a.get("/logout", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "logout: {:?}", r.body);
    assert_refused(&get_app(a, &cookie).await, "A right after its logout");

    let took = within(REVOCATION_DEADLINE, POLL_STEP, || refuses(b, &cookie)).await;
    assert!(
        took.is_some(),
        "B still admits the cookie {REVOCATION_DEADLINE:?} after the logout through A"
    );
    // And it stays refused (a hit from a stale copy would admit it again).
    for _ in 0..3 {
        assert_refused(&get_app(b, &cookie).await, "B after the revocation");
    }
    let sent = a
        .admin_metric("sessiongate_cluster_revocations_sent_total")
        .await;
    let received = b
        .admin_metric("sessiongate_cluster_revocations_received_total")
        .await;
    assert!(sent >= 1.0, "A counted no revocation sent");
    assert!(received >= 1.0, "B counted no revocation received");
}

#[tokio::test]
async fn a_revoke_on_b_is_refused_by_a_within_a_second_although_the_idp_still_says_valid() {
    let Some(mut fleet) = Fleet::start(2, long_cache).await else {
        return;
    };
    let cookie = fleet.login(users::INVESTOR);
    let other = fleet.login(users::ARABIC);
    let (a, b) = (fleet.a().clone(), fleet.b().clone());
    // Only A has seen the session.
    assert_admitted(&get_app(&a, &cookie).await, users::INVESTOR, "A first");
    assert_admitted(
        &get_app(&a, &other).await,
        users::ARABIC,
        "A, other session",
    );
    let (id, token) = session_pair(&cookie);

    // B never held it: nothing dropped there, but the whole fleet hears of it.
    let body = serde_json::json!({ "credential": id, "token": token }).to_string();
    assert_eq!(revoke(&b, &body).await, 0, "B had nothing to drop");

    let took = within(REVOCATION_DEADLINE, POLL_STEP, || refuses(&a, &cookie)).await;
    assert!(
        took.is_some(),
        "A still admits the cookie {REVOCATION_DEADLINE:?} after POST /revoke on B"
    );
    assert_refused(&get_app(&b, &cookie).await, "B after its own /revoke");
    // The revocation names one session, not everyone's.
    assert_admitted(&get_app(&a, &other).await, users::ARABIC, "another session");

    // A replica that starts afterwards never saw it and the IdP would still
    // call it valid: the revocation record in Redis refuses it.
    let c = fleet
        .join(long_cache(support::cluster::clustered(
            Harness::builder(),
            &fleet.redis,
            support::cluster::SECRET,
        )))
        .await;
    assert_refused(&get_app(&c, &cookie).await, "C, which never saw it");
    assert_admitted(
        &get_app(&c, &other).await,
        users::ARABIC,
        "C, other session",
    );
}

#[tokio::test]
async fn a_revoke_by_session_id_reaches_every_replica_and_counts_what_it_dropped_locally() {
    let Some(fleet) = Fleet::start(3, long_cache).await else {
        return;
    };
    let (a, b, c) = (fleet.a(), fleet.b(), fleet.c());
    let cookie = fleet.login(users::ESTABLISHMENT_ADMIN);
    for (h, name) in [(a, "A"), (b, "B"), (c, "C")] {
        assert_admitted(&get_app(h, &cookie).await, users::ESTABLISHMENT_ADMIN, name);
    }
    let (id, _) = session_pair(&cookie);

    // C holds the session: it drops its own entry and says so.
    let body = serde_json::json!({ "sessionId": id }).to_string();
    assert_eq!(revoke(c, &body).await, 1, "C's own cached entry");
    assert_refused(&get_app(c, &cookie).await, "C at once");
    for (h, name) in [(a, "A"), (b, "B")] {
        let took = within(REVOCATION_DEADLINE, POLL_STEP, || refuses(h, &cookie)).await;
        assert!(took.is_some(), "{name} still admits the revoked session id");
    }
}

#[tokio::test]
async fn revoke_answers_400_with_json_for_a_malformed_body() {
    let Some(fleet) = Fleet::start(1, |b| b).await else {
        return;
    };
    let a = fleet.a();
    for body in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"credential": 42}"#,
        r#"{"sessionId": ""}"#,
    ] {
        let r = a.admin_request(Method::POST, "/revoke", body).await;
        assert_eq!(r.status, 400, "/revoke {body:?}: {:?}", r.body);
        let v = r.json();
        assert!(v.is_object(), "/revoke {body:?}: {v}");
    }
    // The listener still works, and a session stays admitted.
    let cookie = fleet.login(users::INVESTOR);
    assert_admitted(
        &get_app(a, &cookie).await,
        users::INVESTOR,
        "after bad bodies",
    );
}
