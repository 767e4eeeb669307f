//! The access log says why a request was refused in stable fields: a 403
//! names the check and the missing permission, a 400 which part of the
//! request was malformed, and an IdP outage is one warning per IdP call,
//! not one per waiting request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use serde_json::Value;
use sessiongate::dev::emulator::Fault;
use support::logs::capture;
use support::{users, Harness};

#[tokio::test]
async fn a_403_log_line_names_the_check_and_the_missing_permission() {
    let (lines, _guard) = capture();
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/admin/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 403);
    let r = h.get("/org/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 403);

    let access = lines.access();
    assert_eq!(access.len(), 2, "{access:?}");
    assert_eq!(access[0]["reason"], "forbidden");
    assert_eq!(access[0]["detail"], "missing_permission");
    assert_eq!(access[0]["missing"], "P2001", "{:?}", access[0]);
    assert_eq!(access[0]["profile_id"], "518");
    assert_eq!(access[1]["detail"], "missing_role");
    // The body says only "forbidden": which check failed is for the log.
    assert!(!String::from_utf8_lossy(&r.body).contains("missing_role"));
}

#[tokio::test]
async fn a_400_log_line_names_what_was_malformed() {
    let (lines, _guard) = capture();
    let h = Harness::start().await;
    let r = h.get("/public/..;/admin", &[]).await;
    assert_eq!(r.status, 400);
    let access = lines.access();
    assert_eq!(access[0]["reason"], "bad_request");
    assert_eq!(access[0]["detail"], "path");
}

#[tokio::test]
async fn an_idp_failure_is_one_warning_per_idp_call() {
    let (lines, _guard) = capture();
    let h = Harness::start().await;
    h.emulator.set_fault(Fault::Status { status: 503 });
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/app", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 503);

    let warnings: Vec<Value> = lines
        .events()
        .into_iter()
        .filter(|v| v["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["fields"]["failure"], "idp_unavailable");
    assert_eq!(h.idp_fetches(), 1);
}
