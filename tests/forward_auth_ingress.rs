//! Forward-auth through real ingress proxies: nginx `auth_request` and Caddy
//! `forward_auth` in front of the decision listener, each configured with
//! the README's snippet, the echo upstream behind them as the app. Skipped
//! (or failed under `SESSIONGATE_REQUIRE_SYSTEM_TESTS=1`) without the tool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::Method;
use sessiongate::dev::emulator::Fault;
use support::ingress::{Ingress, Kind, CADDY_SNIPPET, NGINX_SNIPPET};
use support::{users, Harness, Reply};

const BROWSER: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

async fn get(h: &Harness, ingress: &Ingress, path: &str, headers: &[(&str, &str)]) -> Reply {
    h.request_url(Method::GET, &ingress.url(path), headers, Bytes::new())
        .await
}

/// Every behaviour the issue asks of an ingress in front of the decision listener.
async fn through(kind: Kind) {
    let h = Harness::builder().sign_in().forward_auth().start().await;
    let Some(ingress) = Ingress::start(kind, h.forward_auth.unwrap(), h.echo).await else {
        return;
    };
    let admin = h.login(users::ESTABLISHMENT_ADMIN);
    let investor = h.login(users::INVESTOR);

    // A valid session reaches the app with the identity headers the decision returned.
    let r = get(&h, &ingress, "/admin/x?q=1", &[("cookie", &admin)]).await;
    assert_eq!(r.status, 200, "{kind:?}: {}", ingress.log());
    assert!(r.from_upstream());
    assert_eq!(r.upstream_uri(), "/admin/x?q=1");
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["7001"]);
    let decided = h
        .decide("/", &[("cookie", &admin), ("x-forwarded-uri", "/admin/x")])
        .await;
    for (name, value) in decided.headers.iter() {
        if name.as_str().starts_with("x-iid-") {
            assert_eq!(
                r.upstream_header(name.as_str()).unwrap(),
                [value.to_str().unwrap()],
                "{kind:?}: {name}"
            );
        }
    }
    assert!(r.upstream_header("x-iid-user-context").is_some());
    assert!(r.upstream_header("x-iid-permissions").unwrap()[0].contains("P2001"));

    // No session: 401, and a browser is sent to the login page.
    let r = get(&h, &ingress, "/admin/x", &[]).await;
    assert_eq!(r.status, 401, "{kind:?}");
    assert!(!r.from_upstream());
    let r = get(&h, &ingress, "/admin/x?q=1", &[("accept", BROWSER)]).await;
    assert_eq!(r.status, 302, "{kind:?}: {r:?}");
    assert_eq!(
        r.headers["location"],
        format!("{}?return_to=%2Fadmin%2Fx%3Fq%3D1", h.sign_in_url()).as_str()
    );

    // A missing permission: 403.
    let r = get(&h, &ingress, "/admin/x", &[("cookie", &investor)]).await;
    assert_eq!(r.status, 403, "{kind:?}");
    assert!(!r.from_upstream());

    // A spoofed identity header from the client never reaches the app.
    let mut spoofed = vec![
        ("x-iid-profile-id", "7001"),
        ("x-iid-roles", "IID-ESTABLISHMENT-ADMIN"),
        ("x-iid-org-id", "1"),
        ("X-IID-Session-Id", "forged"),
        ("X_IID_Profile_Id", "7001"),
    ];
    if kind == Kind::Caddy {
        // nginx replaces the names it lists only (README: list every one the app reads).
        spoofed.push(("x-iid-anything", "forged"));
    }
    let mut headers = spoofed.clone();
    headers.push(("cookie", &investor));
    let r = get(&h, &ingress, "/x", &headers).await;
    assert_eq!(r.status, 200, "{kind:?}");
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    assert_eq!(r.upstream_header("x-iid-roles").unwrap(), ["IID-INVESTOR"]);
    assert_ne!(r.upstream_header("x-iid-session-id").unwrap(), ["forged"]);
    assert_eq!(r.upstream_header("x-iid-org-id"), None, "{kind:?}");
    let names = r.upstream_header_names();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("iid") || n.starts_with("x-iid-")),
        "{kind:?}: an underscore variant passed: {names:?}"
    );
    assert!(!names.contains(&"x-iid-anything".to_string()), "{kind:?}");
    let r = get(&h, &ingress, "/public/x", &spoofed).await;
    assert!(r.from_upstream());
    assert_eq!(r.status, 200, "{kind:?}");
    let names = r.upstream_header_names();
    assert!(
        !names.iter().any(|n| n.starts_with("x-iid-")),
        "{kind:?}: {names:?}"
    );

    // Decided on the normalized path: /admin/x, not the public route.
    for path in ["/public/../admin/x", "/public/%2e%2e/admin/x"] {
        let r = get(&h, &ingress, path, &[]).await;
        assert_eq!(r.status, 401, "{kind:?} {path}");
        assert!(!r.from_upstream());
        let r = get(&h, &ingress, path, &[("cookie", &investor)]).await;
        assert_eq!(r.status, 403, "{kind:?} {path}");
    }

    // The IdP down: 503, and nothing reaches the app.
    let fresh = h.login(users::ARABIC);
    h.emulator.set_fault(Fault::Status { status: 503 });
    let r = get(&h, &ingress, "/x", &[("cookie", &fresh)]).await;
    assert_eq!(r.status, 503, "{kind:?}: {r:?}");
    assert!(!r.from_upstream());
    h.emulator.set_fault(Fault::None);
    let r = get(&h, &ingress, "/x", &[("cookie", &fresh)]).await;
    assert_eq!(r.status, 200, "{kind:?}");

    // Every one of those was a decision, counted as such.
    let metrics = h.metrics();
    assert!(
        metrics.contains(r#"route="/admin",status="403",mode="forward_auth"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn nginx_auth_request() {
    through(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_forward_auth() {
    through(Kind::Caddy).await;
}

/// The README shows exactly the configs these tests run.
#[test]
fn the_readme_snippets_are_the_tested_configs() {
    let readme = include_str!("../README.md");
    for snippet in [NGINX_SNIPPET, CADDY_SNIPPET] {
        assert!(
            readme.contains(snippet),
            "README.md lacks, verbatim:\n{snippet}"
        );
    }
}
