//! Authorization: per-route permissions (all required) and roles (any of),
//! 403 without reaching the upstream, and public routes that never ask the IdP.
// Helpers outside #[test] fns unwrap too; `from_upstream` in the shared harness
// trips wrong_self_convention.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use support::{users, Harness, Reply};

fn assert_forbidden(r: &Reply) {
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(
        !r.from_upstream(),
        "a forbidden request must not be forwarded"
    );
    assert_eq!(r.reason(), "forbidden");
    assert_eq!(r.json()["code"], 40300);
}

fn assert_forwarded_as(r: &Reply, profile: &str) {
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), [profile]);
}

fn no_identity_headers(r: &Reply) -> bool {
    !r.upstream_header_names()
        .iter()
        .any(|n| n.starts_with("x-iid-"))
}

#[tokio::test]
async fn admin_route_refuses_a_user_without_the_permissions() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    assert_forbidden(&h.get("/admin/users", &[("cookie", &cookie)]).await);
    assert_eq!(h.idp_fetches(), 1, "the session itself was checked");

    // The same session is fine where no permission is needed.
    assert_forwarded_as(
        &h.get("/home", &[("cookie", &cookie)]).await,
        users::INVESTOR,
    );
}

#[tokio::test]
async fn admin_route_forwards_a_user_with_all_permissions() {
    let h = Harness::start().await;
    let cookie = h.login(users::ESTABLISHMENT_ADMIN);
    let r = h.get("/admin/users?page=2", &[("cookie", &cookie)]).await;
    assert_forwarded_as(&r, users::ESTABLISHMENT_ADMIN);
    assert_eq!(r.upstream_uri(), "/admin/users?page=2");
    let perms = &r.upstream_header("x-iid-permissions").unwrap()[0];
    let perms: Vec<&str> = perms.split(',').collect();
    assert!(
        perms.contains(&"P2001") && perms.contains(&"P2002"),
        "{perms:?}"
    );
    assert_eq!(
        r.upstream_header("x-iid-roles").unwrap(),
        ["IID-ESTABLISHMENT-ADMIN"]
    );
}

#[tokio::test]
async fn org_route_needs_one_of_its_roles() {
    let h = Harness::start().await;
    let investor = h.login(users::INVESTOR);
    let admin = h.login(users::ESTABLISHMENT_ADMIN);
    assert_forbidden(&h.get("/org/7", &[("cookie", &investor)]).await);
    let r = h.get("/org/7", &[("cookie", &admin)]).await;
    assert_forwarded_as(&r, users::ESTABLISHMENT_ADMIN);
    assert_eq!(r.upstream_uri(), "/org/7");
}

#[tokio::test]
async fn a_user_without_permissions_or_roles_passes_an_unrestricted_route() {
    let h = Harness::start().await;
    let cookie = h.login(users::NO_ACCESS);
    let r = h.get("/", &[("cookie", &cookie)]).await;
    assert_forwarded_as(&r, users::NO_ACCESS);
    assert_eq!(r.upstream_header("x-iid-permissions").unwrap(), [""]);
    assert_eq!(r.upstream_header("x-iid-roles").unwrap(), [""]);

    assert_forbidden(&h.get("/admin/", &[("cookie", &cookie)]).await);
    assert_forbidden(&h.get("/org/", &[("cookie", &cookie)]).await);
}

#[tokio::test]
async fn a_public_route_without_a_cookie_does_not_call_the_idp() {
    let h = Harness::start().await;
    let r = h.get("/public/info?x=1", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_uri(), "/public/info?x=1");
    assert!(no_identity_headers(&r), "{:?}", r.upstream_header_names());
    assert_eq!(h.idp_fetches(), 0);
}

#[tokio::test]
async fn a_public_route_with_a_cookie_does_not_call_the_idp_either() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    for _ in 0..3 {
        let r = h.get("/public/info", &[("cookie", &cookie)]).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(r.from_upstream());
        assert!(
            no_identity_headers(&r),
            "public routes get no identity: {:?}",
            r.upstream_header_names()
        );
    }
    // A garbage cookie does not matter on a public route either.
    let r = h
        .get("/public/info", &[("cookie", r"iid_session_id=a\b")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.idp_fetches(), 0);
}

#[tokio::test]
async fn the_bare_prefix_path_gets_the_routes_rules_not_the_catch_alls() {
    // `/admin/` is configured; `/admin` must not fall through to `/`, which
    // needs no permission, since many servers treat the two paths alike.
    let h = Harness::start().await;
    let investor = h.login(users::INVESTOR);
    assert_forbidden(&h.get("/admin", &[("cookie", &investor)]).await);
    assert_forbidden(&h.get("/admin?x=1", &[("cookie", &investor)]).await);
    let admin = h.login(users::ESTABLISHMENT_ADMIN);
    assert_forwarded_as(
        &h.get("/admin", &[("cookie", &admin)]).await,
        users::ESTABLISHMENT_ADMIN,
    );
    // A longer name sharing the prefix is a different path.
    assert_forwarded_as(
        &h.get("/administrator", &[("cookie", &investor)]).await,
        users::INVESTOR,
    );
}
