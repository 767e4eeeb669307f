//! Session cache: hits, lifetimes (max_ttl vs the IdP's expires_in), coalesced
//! misses, negative caching, the token as part of the key, and malformed
//! cookies that never reach the IdP.
// Helpers outside #[test] fns unwrap too; `from_upstream` in the shared harness
// trips wrong_self_convention.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use sessiongate::dev::emulator::Fault;
use support::{users, Harness, Reply};
use tokio::task::JoinSet;

/// Generous bound for anything that waits on a TTL: the machine is shared.
const PATIENCE: Duration = Duration::from_secs(20);

/// A well-formed session the emulator has never issued.
const UNKNOWN: &str =
    "iid_session_id=00000000-0000-4000-8000-000000000000; iid_session_token=not-a-real-token";

fn assert_forwarded_as(r: &Reply, profile: &str) {
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), [profile]);
}

fn assert_invalid_session(r: &Reply) {
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(r.reason(), "invalid_session");
}

/// The (id, token) pair inside a cookie made by `Harness::login`.
fn split_cookie(cookie: &str) -> (String, String) {
    let mut id = None;
    let mut token = None;
    for pair in cookie.split("; ") {
        match pair.split_once('=') {
            Some(("iid_session_id", v)) => id = Some(v.to_string()),
            Some(("iid_session_token", v)) => token = Some(v.to_string()),
            _ => {}
        }
    }
    (id.unwrap(), token.unwrap())
}

#[tokio::test]
async fn repeated_requests_with_one_cookie_call_the_idp_once() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    for i in 0..10 {
        let r = h.get(&format!("/app/{i}"), &[("cookie", &cookie)]).await;
        assert_forwarded_as(&r, users::INVESTOR);
        assert_eq!(r.upstream_uri(), format!("/app/{i}"));
    }
    assert_eq!(
        h.idp_fetches(),
        1,
        "nine of ten requests must be cache hits"
    );
}

#[tokio::test]
async fn max_ttl_bounds_how_long_a_valid_session_is_cached() {
    // The IdP grants 600 s; the cache may keep the answer for 1 s only.
    let h = Harness::builder()
        .set("cache", "max_ttl = \"1s\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    assert_forwarded_as(
        &h.get("/app", &[("cookie", &cookie)]).await,
        users::INVESTOR,
    );
    assert_eq!(h.idp_fetches(), 1);

    let (h, cookie) = (&h, cookie.as_str());
    let refetched = support::eventually(PATIENCE, move || async move {
        // The session itself stays valid, so every answer is a 200.
        assert_forwarded_as(&h.get("/app", &[("cookie", cookie)]).await, users::INVESTOR);
        h.idp_fetches() >= 2
    })
    .await;
    assert!(
        refetched,
        "after max_ttl the session must be asked for again (fetches: {})",
        h.idp_fetches()
    );
}

#[tokio::test]
async fn the_idps_expires_in_bounds_the_cache_below_max_ttl() {
    // Default max_ttl is 5 minutes; the session itself lives 2 seconds.
    let h = Harness::start().await;
    let cookie = h.login_for(users::INVESTOR, 2);
    assert_forwarded_as(
        &h.get("/app", &[("cookie", &cookie)]).await,
        users::INVESTOR,
    );
    assert_eq!(h.idp_fetches(), 1);

    let (hr, c) = (&h, cookie.as_str());
    let refused = support::eventually(PATIENCE, move || async move {
        let r = hr.get("/app", &[("cookie", c)]).await;
        match r.status.as_u16() {
            200 => {
                assert_forwarded_as(&r, users::INVESTOR);
                false
            }
            _ => {
                assert_invalid_session(&r);
                true
            }
        }
    })
    .await;
    assert!(
        refused,
        "an expired session was still served from the cache: max_ttl, not expires_in, governed"
    );
    assert!(
        h.idp_fetches() >= 2,
        "the expiry must have been learnt from the IdP"
    );
}

#[tokio::test]
async fn concurrent_first_requests_share_one_idp_call() {
    // The IdP timeout is far above the injected delay: only coalescing is tested.
    let h = Arc::new(
        Harness::builder()
            .set("idp", "timeout = \"15s\"")
            .start()
            .await,
    );
    let cookie = h.login(users::INVESTOR);
    // A slow IdP keeps the first call in flight while the others arrive.
    h.emulator.set_fault(Fault::Delay { ms: 500 });

    let mut set = JoinSet::new();
    for i in 0..50 {
        let h = Arc::clone(&h);
        let cookie = cookie.clone();
        set.spawn(async move { h.get(&format!("/app/{i}"), &[("cookie", &cookie)]).await });
    }
    let mut answered = 0;
    while let Some(joined) = set.join_next().await {
        assert_forwarded_as(&joined.unwrap(), users::INVESTOR);
        answered += 1;
    }
    assert_eq!(answered, 50);
    assert_eq!(
        h.idp_fetches(),
        1,
        "concurrent misses on one session must be coalesced into one IdP call"
    );
}

#[tokio::test]
async fn an_unknown_session_is_negatively_cached() {
    let h = Harness::builder()
        .set("cache", "negative_ttl = \"10m\"")
        .start()
        .await;
    for _ in 0..2 {
        assert_invalid_session(&h.get("/app", &[("cookie", UNKNOWN)]).await);
    }
    assert_eq!(
        h.idp_fetches(),
        1,
        "the second refusal must come from the cache"
    );
}

#[tokio::test]
async fn a_negative_answer_expires_after_negative_ttl() {
    let h = Harness::builder()
        .set("cache", "negative_ttl = \"1s\"")
        .start()
        .await;
    assert_invalid_session(&h.get("/app", &[("cookie", UNKNOWN)]).await);
    assert_eq!(h.idp_fetches(), 1);

    let h = &h;
    let refetched = support::eventually(PATIENCE, move || async move {
        assert_invalid_session(&h.get("/app", &[("cookie", UNKNOWN)]).await);
        h.idp_fetches() >= 2
    })
    .await;
    assert!(refetched, "the negative answer outlived negative_ttl");
}

#[tokio::test]
async fn negative_ttl_zero_asks_the_idp_every_time() {
    let h = Harness::builder()
        .set("cache", "negative_ttl = \"0s\"")
        .start()
        .await;
    for n in 1..=3 {
        assert_invalid_session(&h.get("/app", &[("cookie", UNKNOWN)]).await);
        assert_eq!(h.idp_fetches(), n);
    }
}

#[tokio::test]
async fn the_cache_key_includes_the_token() {
    let h = Harness::builder()
        .set("cache", "negative_ttl = \"10m\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let (id, _token) = split_cookie(&cookie);
    assert_forwarded_as(
        &h.get("/app", &[("cookie", &cookie)]).await,
        users::INVESTOR,
    );
    assert_eq!(h.idp_fetches(), 1);

    // Same id, wrong token: must not be served by the cached valid answer.
    let forged = format!("iid_session_id={id}; iid_session_token=guessed-token");
    assert_invalid_session(&h.get("/app", &[("cookie", &forged)]).await);
    assert_eq!(h.idp_fetches(), 2, "a different token must be a cache miss");

    // The forged pair's negative answer does not poison the real one.
    assert_forwarded_as(
        &h.get("/app", &[("cookie", &cookie)]).await,
        users::INVESTOR,
    );
    assert_invalid_session(&h.get("/app", &[("cookie", &forged)]).await);
    assert_eq!(h.idp_fetches(), 2, "both pairs are cached separately");
}

#[tokio::test]
async fn malformed_cookies_are_refused_without_asking_the_idp() {
    let h = Harness::start().await;
    let long_id = format!("iid_session_id={}", "a".repeat(300));
    let long_token = format!("iid_session_id=abc; iid_session_token={}", "t".repeat(5000));
    for cookie in [
        r"iid_session_id=abc\def; iid_session_token=t",
        long_id.as_str(),
        long_token.as_str(),
        "iid_session_id=ab\"cd",
        "iid_session_id=; iid_session_token=token-without-id",
    ] {
        let r = h.get("/app", &[("cookie", cookie)]).await;
        assert_invalid_session(&r);
    }
    assert_eq!(h.idp_fetches(), 0, "garbage must never reach the IdP");
}
