//! The forward-auth decision listener, asked directly as each ingress asks
//! it: Traefik/Caddy (`X-Forwarded-*`), nginx (`X-Original-*`), Envoy
//! (`path_prefix`); and who may describe a request (GHSA-7x63-xv5r-3p2x).
//! `tests/forward_auth_ingress.rs` puts real nginx and Caddy in front of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sessiongate::dev::emulator::Fault;
use support::{users, Harness, Reply};

const BROWSER: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

/// The identity headers of a decision or of a proxied request, by name.
fn identity(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .into_iter()
        .filter(|(k, _)| k.starts_with("x-iid-"))
        .collect();
    v.sort();
    v
}

fn decision_identity(r: &Reply) -> Vec<(String, String)> {
    identity(
        r.headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())),
    )
}

fn upstream_identity(r: &Reply) -> Vec<(String, String)> {
    identity(r.upstream_header_names().into_iter().flat_map(|name| {
        r.upstream_header(&name)
            .unwrap()
            .into_iter()
            .map(move |v| (name.clone(), v))
    }))
}

#[tokio::test]
async fn allowed_is_200_empty_with_the_identity_headers_the_proxy_injects() {
    let h = Harness::builder().forward_auth().start().await;
    let cookie = h.login(users::ESTABLISHMENT_ADMIN);
    let decided = h
        .decide(
            "/",
            &[("cookie", &cookie), ("x-forwarded-uri", "/admin/x?q=1")],
        )
        .await;
    assert_eq!(decided.status, 200);
    assert!(decided.body.is_empty());
    let proxied = h.get("/admin/x?q=1", &[("cookie", &cookie)]).await;
    assert_eq!(proxied.status, 200);
    let headers = decision_identity(&decided);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-iid-profile-id" && v == "7001"),
        "{headers:?}"
    );
    assert!(headers.len() >= 4, "{headers:?}");
    assert_eq!(headers, upstream_identity(&proxied));
    // One IdP call: the decision filled the cache the proxy then used.
    assert_eq!(h.idp_fetches(), 1);
}

#[tokio::test]
async fn a_public_route_is_allowed_without_identity_and_without_the_idp() {
    let h = Harness::builder().forward_auth().start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .decide(
            "/",
            &[("cookie", &cookie), ("x-forwarded-uri", "/public/x")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(decision_identity(&r).is_empty(), "{:?}", r.headers);
    assert_eq!(h.idp_fetches(), 0);
}

/// A path, the client's headers, and the status and reason both listeners answer.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn refusals_are_the_proxys_status_and_body() {
    let h = Harness::builder().forward_auth().start().await;
    let investor = h.login(users::INVESTOR);
    let cases: [Case; 4] = [
        ("/admin/x", vec![], 401, "no_session"),
        (
            "/admin/x",
            vec![("cookie", "iid_session_id=nope; iid_session_token=nope")],
            401,
            "invalid_session",
        ),
        ("/admin/x", vec![("cookie", &investor)], 403, "forbidden"),
        ("/org/x", vec![("cookie", &investor)], 403, "forbidden"),
    ];
    for (uri, mut headers, status, reason) in cases {
        let proxied = h.get(uri, &headers).await;
        headers.push(("x-forwarded-uri", uri));
        let decided = h.decide("/", &headers).await;
        assert_eq!(decided.status, status, "{uri} {reason}");
        assert_eq!(decided.reason(), reason);
        assert_eq!(decided.status, proxied.status);
        assert_eq!(decided.json(), proxied.json());
        assert!(decision_identity(&decided).is_empty());
    }
}

#[tokio::test]
async fn a_browser_without_a_session_gets_401_with_the_login_location() {
    let h = Harness::builder().sign_in().forward_auth().start().await;
    let r = h
        .decide(
            "/",
            &[("accept", BROWSER), ("x-forwarded-uri", "/admin/x?q=1")],
        )
        .await;
    assert_eq!(r.status, 401, "nginx auth_request understands 401, not 302");
    let location = r.headers["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!("{}?return_to=%2Fadmin%2Fx%3Fq%3D1", h.sign_in_url())
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    // An ingress that copies the answer as it is (Caddy, Traefik, Envoy)
    // still sends the browser on: browsers follow Location only on a 3xx.
    let page = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        page.contains(&format!("content=\"0;url={location}\"")),
        "{page}"
    );
    // The proxy redirects the same browser to the same place.
    let proxied = h.get("/admin/x?q=1", &[("accept", BROWSER)]).await;
    assert_eq!(proxied.status, 302);
    assert_eq!(proxied.headers["location"], location);
    // An API client gets the JSON 401.
    let api = h.decide("/", &[("x-forwarded-uri", "/admin/x")]).await;
    assert_eq!(
        (api.status.as_u16(), api.reason().as_str()),
        (401, "no_session")
    );
    assert!(!api.headers.contains_key("location"));
}

#[tokio::test]
async fn the_idp_down_is_503_never_200() {
    let h = Harness::builder().forward_auth().start().await;
    let cookie = h.login(users::INVESTOR);
    h.emulator.set_fault(Fault::Status { status: 503 });
    let r = h
        .decide("/", &[("cookie", &cookie), ("x-forwarded-uri", "/x")])
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.reason(), "idp_unavailable");
    assert_eq!(r.headers["retry-after"], "5");
    assert!(decision_identity(&r).is_empty());
    h.emulator.set_fault(Fault::None);
    let r = h
        .decide("/", &[("cookie", &cookie), ("x-forwarded-uri", "/x")])
        .await;
    assert_eq!(r.status, 200, "the failure was not cached");
}

#[tokio::test]
async fn the_decision_is_on_the_normalized_path() {
    let h = Harness::builder().forward_auth().start().await;
    let investor = h.login(users::INVESTOR);
    for uri in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2E/admin/x",
        "/public/./../admin/x",
        "//admin/x",
    ] {
        let r = h.decide("/", &[("x-forwarded-uri", uri)]).await;
        assert_eq!(r.status, 401, "{uri}: decided as /admin/x, not as public");
        let r = h
            .decide("/", &[("cookie", &investor), ("x-forwarded-uri", uri)])
            .await;
        assert_eq!(
            r.status, 403,
            "{uri}: the investor lacks /admin's permissions"
        );
    }
    for ambiguous in [
        "/public/%2F../admin",
        "/public/x;/../../admin",
        "/public\\..\\admin",
    ] {
        let r = h.decide("/", &[("x-forwarded-uri", ambiguous)]).await;
        assert_eq!(r.status, 400, "{ambiguous}");
    }
    for not_a_path in ["admin/x", "http://evil.example/public/x", "*"] {
        let r = h.decide("/", &[("x-forwarded-uri", not_a_path)]).await;
        assert_eq!(r.status, 400, "{not_a_path}");
        assert_eq!(r.reason(), "bad_request");
    }
}

#[tokio::test]
async fn a_spoofed_identity_header_is_never_in_the_answer() {
    let h = Harness::builder().forward_auth().start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .decide(
            "/",
            &[
                ("cookie", &cookie),
                ("x-forwarded-uri", "/x"),
                ("x-iid-profile-id", "7001"),
                ("x-iid-org-id", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let ids: Vec<_> = r.headers.get_all("x-iid-profile-id").iter().collect();
    assert_eq!(ids, ["518"]);
    assert!(!r.headers.contains_key("x-iid-org-id"));
    let r = h
        .decide(
            "/",
            &[
                ("x-forwarded-uri", "/public/x"),
                ("x-iid-profile-id", "7001"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(decision_identity(&r).is_empty());
}

#[tokio::test]
async fn nginx_style_x_original_headers() {
    let h = Harness::builder().forward_auth().start().await;
    let admin = h.login(users::ESTABLISHMENT_ADMIN);
    let r = h
        .decide(
            "/_auth",
            &[
                ("cookie", &admin),
                ("x-original-uri", "/admin/x?y=1"),
                ("x-original-method", "POST"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-iid-profile-id"], "7001");
    // ingress-nginx without `auth-method` sends the full URL only.
    let r = h
        .decide(
            "/_auth",
            &[("x-original-url", "https://app.example/public/../admin/x")],
        )
        .await;
    assert_eq!(r.status, 401, "decided on /admin/x, not on /_auth");
    let r = h
        .decide(
            "/_auth",
            &[("x-original-url", "https://app.example/public/x")],
        )
        .await;
    assert_eq!(r.status, 200);
    // Both from `$request_uri`: when they differ, one came from the client.
    let r = h
        .decide(
            "/_auth",
            &[
                ("x-original-url", "https://app.example/admin/x"),
                ("x-original-uri", "/public/x"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    // A client header of the other family next to the ingress' own: refused.
    for (ingress, client) in [
        (
            ("x-original-url", "https://app.example/admin/x"),
            ("x-forwarded-uri", "/public/x"),
        ),
        (
            ("x-forwarded-uri", "/admin/x"),
            ("x-original-uri", "/public/x"),
        ),
        (
            ("x-forwarded-uri", "/admin/x"),
            ("x-original-method", "GET"),
        ),
    ] {
        let r = h.decide("/_auth", &[ingress, client]).await;
        assert_eq!(r.status, 400, "{ingress:?} {client:?}");
    }
    // Two values of one header are ambiguous too.
    let r = h
        .decide(
            "/_auth",
            &[
                ("x-forwarded-uri", "/admin/x"),
                ("x-forwarded-uri", "/public/x"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn envoy_style_the_decision_requests_own_path_minus_path_prefix() {
    let h = Harness::builder()
        .set("forward_auth", "path_prefix = \"/ext_authz\"")
        .forward_auth()
        .start()
        .await;
    let admin = h.login(users::ESTABLISHMENT_ADMIN);
    let investor = h.login(users::INVESTOR);
    let r = h
        .decide("/ext_authz/admin/x?q=1", &[("cookie", &admin)])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-iid-profile-id"], "7001");
    let r = h
        .decide("/ext_authz/admin/x", &[("cookie", &investor)])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.decide("/ext_authz/public/x", &[]).await.status, 200);
    assert_eq!(h.decide("/ext_authz/admin/x", &[]).await.status, 401);
    // The prefix is stripped before normalization, so `..` cannot climb out of it.
    assert_eq!(
        h.decide("/ext_authz/public/../admin/x", &[]).await.status,
        401
    );
    assert_eq!(
        h.decide("/ext_authz?x=1", &[]).await.status,
        401,
        "decided on /?x=1"
    );
    for outside in ["/public/x", "/ext_authzx/public/x"] {
        let r = h.decide(outside, &[]).await;
        assert_eq!(r.status, 400, "{outside}");
    }

    // Without a prefix, the own path is decided on as it is.
    let h = Harness::builder().forward_auth().start().await;
    assert_eq!(h.decide("/public/x", &[]).await.status, 200);
    assert_eq!(h.decide("/admin/x", &[]).await.status, 401);
}

#[tokio::test]
async fn describing_headers_from_an_untrusted_peer_are_refused() {
    // GHSA-7x63-xv5r-3p2x: on one machine, a 127.0.0.1 peer that is not trusted.
    let h = Harness::builder()
        .set("forward_auth", "trust_loopback = false")
        .forward_auth()
        .start()
        .await;
    for header in [
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-original-uri",
        "x-original-method",
        "x-original-url",
    ] {
        let value = match header {
            "x-original-url" => "http://app.example/public/x",
            "x-forwarded-method" | "x-original-method" => "GET",
            "x-forwarded-host" => "app.example",
            "x-forwarded-proto" => "https",
            _ => "/public/x",
        };
        let r = h.decide("/admin/x", &[(header, value)]).await;
        assert_eq!(r.status, 403, "{header}");
        assert_eq!(r.reason(), "untrusted_forward_auth_client");
        assert_eq!(r.json()["code"], 40301);
    }
    // Without them the decision request describes itself: decided on its own path.
    assert_eq!(h.decide("/public/x", &[]).await.status, 200);
    assert_eq!(h.decide("/admin/x", &[]).await.status, 401);

    // Loopback listed in trusted_proxies is trusted whatever trust_loopback says.
    let h = Harness::builder()
        .set("server", "trusted_proxies = [\"127.0.0.1\"]")
        .set("forward_auth", "trust_loopback = false")
        .forward_auth()
        .start()
        .await;
    let r = h
        .decide("/admin/x", &[("x-forwarded-uri", "/public/x")])
        .await;
    assert_eq!(r.status, 200);

    // The default trusts loopback: decided on that URI.
    let h = Harness::builder().forward_auth().start().await;
    let r = h
        .decide("/admin/x", &[("x-forwarded-uri", "/public/x")])
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn decisions_are_counted_with_mode_forward_auth() {
    let h = Harness::builder().forward_auth().start().await;
    h.decide("/", &[("x-forwarded-uri", "/public/x")]).await;
    h.decide("/", &[("x-forwarded-uri", "/admin/x")]).await;
    h.get("/public/x", &[]).await;
    let text = h.metrics();
    for line in [
        r#"sessiongate_requests_total{route="/public",status="200",mode="forward_auth"} 1"#,
        r#"sessiongate_requests_total{route="/admin",status="401",mode="forward_auth"} 1"#,
        r#"sessiongate_requests_total{route="/public",status="200",mode="proxy"} 1"#,
        r#"sessiongate_request_duration_seconds_count{route="/admin",mode="forward_auth"} 1"#,
        r#"sessiongate_auth_outcomes_total{outcome="no_session"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn a_decision_only_route_has_no_upstream_on_the_main_listener() {
    let h = Harness::builder()
        .routes(
            r#"
[[routes]]
prefix = "/decided/"
permissions = ["P2001"]

[[routes]]
prefix = "/"
upstream = "http://{up}"
"#,
        )
        .forward_auth()
        .start()
        .await;
    let admin = h.login(users::ESTABLISHMENT_ADMIN);
    let r = h
        .decide(
            "/",
            &[("cookie", &admin), ("x-forwarded-uri", "/decided/x")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-iid-profile-id"], "7001");
    // The main listener decides first (no session: 401), then has nowhere to send it.
    assert_eq!(h.get("/decided/x", &[]).await.status, 401);
    let r = h.get("/decided/x", &[("cookie", &admin)]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.reason(), "no_upstream");
    assert!(!r.from_upstream());
}

/// `app::run`, as the binary calls it, serves decisions on the forward-auth
/// listener beside the main one and stops both on shutdown.
#[tokio::test]
async fn run_serves_decisions_beside_the_main_listener_and_stops_both() {
    use sessiongate::app::{self, Listeners};
    use sessiongate::config::Config;
    use sessiongate::dev::emulator::BASE_PATH;
    use tokio::net::TcpListener;

    let h = Harness::start().await; // the emulator, and a client
    let cfg = Config::from_toml_str(&format!(
        "[idp]\nbase_url = \"http://{}{BASE_PATH}\"\napi_key = \"{}\"\n\
         [forward_auth]\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nprefix = \"/public/\"\nauth = \"public\"\n\
         [[routes]]\nprefix = \"/\"\n",
        h.idp,
        support::API_KEY
    ))
    .unwrap();
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decisions = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, decisions_addr) = (
        public.local_addr().unwrap(),
        decisions.local_addr().unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app::run(
        cfg,
        Listeners {
            public,
            admin: None,
            forward_auth: Some(decisions),
        },
        async move {
            let _ = stopped.await;
        },
    ));

    let cookie = h.login(users::INVESTOR);
    let decide = |uri: &'static str| {
        let (h, cookie) = (&h, &cookie);
        async move {
            let headers = [("cookie", cookie.as_str()), ("x-forwarded-uri", uri)];
            let url = format!("http://{decisions_addr}/");
            h.request_url(http::Method::GET, &url, &headers, bytes::Bytes::new())
                .await
        }
    };
    let r = decide("/x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-iid-profile-id"], "518");
    assert_eq!(decide("/public/x").await.status, 200);
    // Routes without `upstream`: the main listener has nowhere to send them.
    let url = format!("http://{public_addr}/x");
    let r = h
        .request_url(
            http::Method::GET,
            &url,
            &[("cookie", &cookie)],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.reason(), "no_upstream");

    drop(stop);
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), running).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    assert!(
        tokio::net::TcpStream::connect(decisions_addr)
            .await
            .is_err(),
        "the decision listener is closed"
    );
}
