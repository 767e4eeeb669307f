//! The access log of the forward-auth listener. Its own test binary: log
//! capture is per thread (`tracing` scoped subscribers), and tests in the same
//! binary that log without one can race its callsite interest cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::logs::capture;
use support::{users, Harness};

#[tokio::test]
async fn the_access_log_names_the_mode_and_the_request_decided_on() {
    let (lines, _guard) = capture();
    let h = Harness::builder().forward_auth().start().await;
    let investor = h.login(users::INVESTOR);
    let r = h
        .decide(
            "/_auth",
            &[
                ("cookie", &investor),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/admin/x?token=secret"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    h.get("/public/x", &[]).await;
    let access = lines.access();
    assert_eq!(access.len(), 2, "{access:?}");
    let decision = &access[0];
    assert_eq!(decision["mode"], "forward_auth");
    assert_eq!(decision["method"], "POST");
    assert_eq!(
        decision["path"], "/admin/x",
        "the path only, never the query"
    );
    assert_eq!(decision["route"], "/admin");
    assert_eq!(decision["detail"], "missing_permission");
    assert_eq!(decision["profile_id"], "518");
    assert_eq!(access[1]["mode"], "proxy");
    assert!(!lines.text().contains("secret"));

    let r = Harness::builder()
        .set("forward_auth", "trust_loopback = false")
        .forward_auth()
        .start()
        .await
        .decide("/", &[("x-forwarded-uri", "/public/x")])
        .await;
    assert_eq!(r.status, 403);
    let access = lines.access();
    assert_eq!(access[2]["reason"], "untrusted_forward_auth_client");
    assert_eq!(
        access[2]["path"], "/",
        "the decision request's own: it described nothing trusted"
    );
}
