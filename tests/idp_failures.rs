//! IdP failures fail closed: the upstream is never reached, the client gets
//! the JSON error (503 + Retry-After when retrying may help), and no failure
//! is cached, so the next request asks the IdP again.
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

use sessiongate::dev::emulator::{self, Emulator, EmulatorConfig, Fault};
use support::{users, Harness, Reply};
use tokio::net::TcpListener;

/// A 200 `CommonResponse` with code 0 but no `data`: success without a session.
const CODE_0_WITHOUT_DATA: &[u8] = b"HTTP/1.1 200 OK\r\n\
content-type: application/json\r\n\
connection: close\r\n\
\r\n\
{\"code\":0,\"desc\":{\"en\":\"Success\",\"ar\":\"Success\"},\"errors\":null}";

/// The gateway's own error answer: status, reason, JSON, never stored, and
/// `Retry-After` exactly on 503s; the upstream must not have been reached.
fn assert_refused(r: &Reply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert!(!r.from_upstream(), "the upstream must not be reached");
    assert_eq!(r.reason(), reason);
    let content_type = r.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    if status == 503 {
        assert_eq!(r.headers["retry-after"], "5");
    } else {
        assert!(r.headers.get("retry-after").is_none());
    }
}

#[tokio::test]
async fn idp_down_is_503_idp_unavailable_with_retry_after() {
    let dead = support::dead_addr().await;
    let h = Harness::builder()
        .idp_base_url(&format!("http://{dead}{}", emulator::BASE_PATH))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    for _ in 0..2 {
        let r = h.get("/app", &[("cookie", &cookie)]).await;
        assert_refused(&r, 503, "idp_unavailable");
    }
    assert_eq!(h.idp_fetches(), 0, "the emulator is not the configured IdP");
}

#[tokio::test]
async fn idp_slower_than_its_timeout_is_503_idp_timeout() {
    let h = Harness::builder()
        .set("idp", "timeout = \"300ms\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    h.emulator.set_fault(Fault::Delay { ms: 5000 });
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_refused(&r, 503, "idp_timeout");

    // The timeout was not cached: with the IdP fast again the session works.
    // (300 ms is short on a loaded machine, so a normal call may still time
    // out now and then; it must succeed eventually.)
    h.emulator.set_fault(Fault::None);
    let (h, cookie) = (&h, cookie.as_str());
    let recovered = support::eventually(Duration::from_secs(20), move || async move {
        let r = h.get("/app", &[("cookie", cookie)]).await;
        if r.status == 200 {
            assert!(r.from_upstream());
            assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
            return true;
        }
        assert_refused(&r, 503, "idp_timeout");
        false
    })
    .await;
    assert!(recovered, "the timeout was cached");
}

#[tokio::test]
async fn idp_garbage_is_502_idp_bad_answer_and_not_cached() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    h.emulator.set_fault(Fault::Garbage);
    for n in 1..=2 {
        let r = h.get("/app", &[("cookie", &cookie)]).await;
        assert_refused(&r, 502, "idp_bad_answer");
        assert_eq!(h.idp_fetches(), n, "every request must ask the IdP again");
    }
}

#[tokio::test]
async fn idp_server_errors_and_throttling_are_503_idp_unavailable() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    for (n, status) in [500u16, 502, 503, 429].into_iter().enumerate() {
        h.emulator.set_fault(Fault::Status { status });
        let r = h.get("/app", &[("cookie", &cookie)]).await;
        assert_refused(&r, 503, "idp_unavailable");
        assert_eq!(h.idp_fetches(), n as u64 + 1, "HTTP {status} was cached");
    }
}

#[tokio::test]
async fn idp_dropping_the_connection_is_503_idp_unavailable() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    h.emulator.set_fault(Fault::Close);
    for _ in 0..2 {
        let r = h.get("/app", &[("cookie", &cookie)]).await;
        assert_refused(&r, 503, "idp_unavailable");
    }
    assert!(
        h.idp_fetches() >= 2,
        "the failure must not be cached (fetches: {})",
        h.idp_fetches()
    );
}

#[tokio::test]
async fn idp_success_without_data_is_502_idp_bad_answer() {
    let idp = support::canned_server(CODE_0_WITHOUT_DATA, Duration::ZERO).await;
    let h = Harness::builder()
        .idp_base_url(&format!("http://{idp}{}", emulator::BASE_PATH))
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    for _ in 0..2 {
        let r = h.get("/app", &[("cookie", &cookie)]).await;
        assert_refused(&r, 502, "idp_bad_answer");
    }
}

#[tokio::test]
async fn after_the_idp_recovers_the_next_request_succeeds() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    h.emulator.set_fault(Fault::Status { status: 500 });
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_refused(&r, 503, "idp_unavailable");
    assert_eq!(h.idp_fetches(), 1);

    h.emulator.set_fault(Fault::None);
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    assert_eq!(h.idp_fetches(), 2, "the error must not have been cached");

    // The success, unlike the error, is cached.
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.idp_fetches(), 2);
}

#[tokio::test]
async fn a_wrong_api_key_is_an_idp_failure_not_an_invalid_session() {
    // An IdP that demands another API key than the gateway sends.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let idp = Emulator::new(EmulatorConfig {
        api_key: "the-real-key".into(),
        ..EmulatorConfig::default()
    });
    tokio::spawn(emulator::run(
        listener,
        Arc::clone(&idp),
        std::future::pending(),
    ));
    let h = Harness::builder()
        .idp_base_url(&format!("http://{addr}{}", emulator::BASE_PATH))
        .start()
        .await;

    // The session is alive at that IdP, yet the gateway cannot confirm it.
    let s = idp.create_session(users::INVESTOR, None).unwrap();
    let cookie = format!(
        "iid_session_id={}; iid_session_token={}",
        s.session_id, s.session_token
    );
    // A refused key would otherwise look like every user being logged out:
    // it is reported as an IdP failure (502), and never cached.
    for attempt in 1..=2 {
        let r = h.get("/app", &[("cookie", &cookie)]).await;
        assert_eq!(r.status, 502, "{:?}", r.body);
        assert!(!r.from_upstream());
        assert_eq!(r.reason(), "idp_bad_answer");
        let stats = idp.stats();
        assert_eq!(stats.rejected_api_key, attempt);
        assert_eq!(stats.fetch, 0);
    }
}
