//! An IdP outage is logged once, not once per request: one warn per session
//! served stale, one per breaker transition. Every test in this file captures
//! logs (a test without a subscriber on its thread would share the callsites).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sessiongate::dev::emulator::Fault;
use support::{eventually, users, Harness};

const STALE_LOG: &str = "IdP failing: admitting the session on its last valid answer (stale)";
const OPEN_LOG: &str = "IdP circuit breaker open: no IdP calls until the pause ends";

#[tokio::test]
async fn an_outage_warns_once_per_session_and_once_per_breaker_opening() {
    let (lines, _guard) = support::logs::capture();
    let h = Harness::builder()
        .routes(
            r#"
[[routes]]
prefix = "/grace/"
upstream = "http://{up}"
stale_if_error = "1m"
"#,
        )
        .set("cache", "max_ttl = \"1s\"")
        .set("cache", "refresh_ahead = \"0\"")
        .set("idp", "breaker = { failures = 3, cool_down = \"30s\" }")
        .start()
        .await;
    let a = h.login(users::INVESTOR);
    let b = h.login(users::INVESTOR);
    for cookie in [&a, &b] {
        assert_eq!(h.get("/grace/x", &[("cookie", cookie)]).await.status, 200);
    }
    h.emulator.set_fault(Fault::Status { status: 503 });
    let stale = AtomicU32::new(0);
    let served = eventually(Duration::from_secs(20), || {
        let (h, a, b, stale) = (&h, &a, &b, &stale);
        async move {
            for cookie in [a, b] {
                let r = h.get("/grace/x", &[("cookie", cookie)]).await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                if r.upstream_header("x-iid-stale").is_some() {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
            }
            stale.load(Ordering::Relaxed) >= 20
        }
    })
    .await;
    assert!(served, "both sessions served stale, many times");
    let count = |message: &str| {
        lines
            .events()
            .into_iter()
            .filter(|e| e["fields"]["message"] == message)
            .count()
    };
    assert_eq!(count(STALE_LOG), 2, "one per session:\n{}", lines.text());
    assert_eq!(count(OPEN_LOG), 1, "one per opening:\n{}", lines.text());
}
