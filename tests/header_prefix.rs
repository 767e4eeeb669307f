//! `[headers] prefix` renames every injected identity header, and the
//! anti-spoofing rule follows it: a client copy under the new prefix, in any
//! spelling, never reaches the upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use support::{users, Harness};

#[tokio::test]
async fn a_custom_prefix_names_the_headers_and_is_stripped_from_clients() {
    let h = Harness::builder()
        .set("headers", "prefix = \"X-Portal-\"")
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get(
            "/app",
            &[
                ("cookie", &cookie),
                ("x-portal-profile-id", "1"),
                ("X_Portal_Roles", "ADMIN"),
                ("x-portal-anything", "spoofed"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.upstream_header("x-portal-profile-id").unwrap(), ["518"]);
    assert_eq!(
        r.upstream_header("x-portal-roles").unwrap(),
        ["IID-INVESTOR"]
    );
    assert!(r.upstream_header("x-portal-user-context").is_some());
    assert!(r.upstream_header("x-portal-anything").is_none());
    let names = r.upstream_header_names();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("x-iid-") || n.starts_with("x_portal")),
        "{names:?}"
    );

    // A public route gets no identity, and no client copy either.
    let r = h.get("/public/x", &[("x-portal-profile-id", "1")]).await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_header("x-portal-profile-id").is_none());
}

#[tokio::test]
async fn a_prefix_that_cannot_name_headers_is_a_config_error() {
    let err = sessiongate::config::Config::from_toml_str(
        "[headers]\nprefix = \"x iid\"\n[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("headers.prefix"), "{err}");
}
