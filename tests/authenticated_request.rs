//! The main path: a signed-in request reaches the upstream with the identity
//! headers; without a session it does not reach it at all.

mod support;

use base64::Engine;
use support::{users, Harness};

#[tokio::test]
async fn signed_in_request_carries_the_identity_headers() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h.get("/portal/home?tab=1", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_uri(), "/portal/home?tab=1");
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    assert_eq!(r.upstream_header("x-iid-roles").unwrap(), ["IID-INVESTOR"]);
    assert_eq!(r.upstream_header("x-iid-locale").unwrap(), ["en"]);
    assert_eq!(r.upstream_header("x-iid-authority-type").unwrap(), ["SELF"]);
    let perms = &r.upstream_header("x-iid-permissions").unwrap()[0];
    assert!(perms.starts_with("P1001,P1002,P1005"), "{perms}");
    assert_eq!(perms.split(',').count(), 36);
    let ctx = &r.upstream_header("x-iid-user-context").unwrap()[0];
    let json: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(ctx)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["profileId"], "518");
    assert_eq!(json["profile"]["nameAr"], "ليلى حسن التجربة");
    assert!(
        json.get("pii").is_none(),
        "personal data must stay out by default"
    );
    assert!(!ctx.contains('='), "base64url without padding");
}

#[tokio::test]
async fn without_a_session_the_upstream_is_not_called() {
    let h = Harness::start().await;
    let r = h.get("/portal/home", &[]).await;
    assert_eq!(r.status, 401);
    assert!(!r.from_upstream());
    assert_eq!(r.reason(), "no_session");
    assert_eq!(h.idp_fetches(), 0);
}
