//! Logout: the gateway's own endpoint ends the session at the IdP and in the
//! cache at once, and expires both cookies, even when the IdP is down.
// Helpers outside #[test] fns unwrap too; `from_upstream` in the shared harness
// trips wrong_self_convention.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::time::Duration;

use sessiongate::auth::credential::Credential;
use sessiongate::config::{IdpConfig, IidConfig, ProviderConfig, Secret};
use sessiongate::dev::emulator::{self, Fault};
use sessiongate::idp::iid::IidClient;
use sessiongate::idp::{ClientInfo, SessionProvider, Verdict};
use support::{users, Harness, Reply};

/// The (id, token) pair inside a cookie made by `Harness::login`.
fn session_key(cookie: &str) -> Credential {
    let mut id = "";
    let mut token = "";
    for pair in cookie.split("; ") {
        match pair.split_once('=') {
            Some(("iid_session_id", v)) => id = v,
            Some(("iid_session_token", v)) => token = v,
            _ => {}
        }
    }
    assert!(!id.is_empty() && !token.is_empty(), "{cookie}");
    Credential::new(id, token)
}

/// Asks the harness' emulator directly (not through the gateway's cache).
async fn idp_verdict(h: &Harness, key: &Credential) -> Verdict {
    let own = IidConfig {
        api_key: Secret::new(support::API_KEY),
        client_id: "TIBCO_CONSUMER".into(),
    };
    let cfg = IdpConfig {
        base_url: format!("http://{}{}", h.idp, emulator::BASE_PATH),
        timeout: Duration::from_secs(10),
        emulate: false,
        ca: None,
        headers: Default::default(),
        provider: ProviderConfig::Iid(own.clone()),
        max_concurrent: 1,
        breaker: Default::default(),
    };
    let client = IidClient::new(&cfg, &own).unwrap();
    let local = ClientInfo {
        ip: std::net::Ipv4Addr::LOCALHOST.into(),
        user_agent: None,
    };
    client.fetch(key, &local).await.unwrap()
}

/// Both session cookies are expired, whatever the outcome.
fn assert_cookies_expired(r: &Reply) {
    let set: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(set.len(), 2, "{set:?}");
    for name in ["iid_session_id", "iid_session_token"] {
        let cookie = set
            .iter()
            .find(|c| c.starts_with(&format!("{name}=;")))
            .unwrap_or_else(|| panic!("no expired {name} in {set:?}"));
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
        assert!(cookie.contains("Path=/"), "{cookie}");
    }
}

fn assert_logged_out_ok(r: &Reply) {
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        !r.from_upstream(),
        "logout is answered by the gateway itself"
    );
    let v = r.json();
    assert_eq!(v["code"], 0);
    assert_eq!(v["data"]["success"], true);
    assert_cookies_expired(r);
}

#[tokio::test]
async fn logout_ends_the_session_at_the_idp_and_expires_the_cookies() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    assert!(r.from_upstream());

    let r = h.get("/logout", &[("cookie", &cookie)]).await;
    assert_logged_out_ok(&r);
    assert_eq!(h.emulator.stats().logout, 1);
}

#[tokio::test]
async fn a_logged_out_cookie_is_refused_at_once_despite_the_cache() {
    // max_ttl 5m (the default) would otherwise keep serving the cached session.
    let h = Harness::builder()
        .set("cache", "max_ttl = \"5m\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.idp_fetches(), 1);

    assert_logged_out_ok(&h.get("/logout", &[("cookie", &cookie)]).await);

    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(r.reason(), "invalid_session");
    assert_eq!(
        h.idp_fetches(),
        1,
        "refused by the local revocation, not by asking the IdP again"
    );

    // And the IdP itself no longer knows the session as live.
    let verdict = idp_verdict(&h, &session_key(&cookie)).await;
    assert!(
        matches!(verdict, Verdict::Invalid { .. }),
        "the IdP still accepts the session: {verdict:?}"
    );
}

#[tokio::test]
async fn logout_without_a_cookie_does_not_call_the_idp() {
    let h = Harness::start().await;
    let r = h.get("/logout", &[]).await;
    assert_logged_out_ok(&r);
    let stats = h.emulator.stats();
    assert_eq!((stats.logout, stats.fetch), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn logout_while_the_idp_is_down_still_revokes_the_cookie_locally() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.idp_fetches(), 1);

    h.emulator.set_fault(Fault::Status { status: 503 });
    let r = h.get("/logout", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.reason(), "idp_unavailable");
    assert_eq!(r.headers["retry-after"], "5");
    assert_cookies_expired(&r);

    // The IdP is back and still thinks the session is alive...
    h.emulator.set_fault(Fault::None);
    let key = session_key(&cookie);
    assert!(matches!(idp_verdict(&h, &key).await, Verdict::Valid { .. }));
    let fetches = h.idp_fetches();

    // ...but this gateway keeps refusing the cookie it was asked to forget.
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(!r.from_upstream());
    assert_eq!(r.reason(), "invalid_session");
    assert_eq!(h.idp_fetches(), fetches, "served by the local revocation");
}
