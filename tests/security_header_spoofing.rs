//! Threat: a client forges identity headers (`x-iid-*` in any case, `_` for
//! `-`) or names them in `Connection:` so the upstream trusts an identity the
//! IdP never vouched for; hop-by-hop headers leak past the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{users, Harness, Reply};

const PUBLIC_PATH: &str = "/public/spoof";
const REQUIRED_PATH: &str = "/portal/spoof";

/// True for names a framework might read as an identity header.
fn identity_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    n.starts_with("x-iid-")
}

/// Sends `GET path` with the given raw header lines (verbatim on the wire,
/// odd case and underscores included) and an optional session cookie.
async fn raw_get(h: &Harness, path: &str, cookie: Option<&str>, lines: &[&str]) -> Reply {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", h.addr);
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str("X-App-Thing: kept\r\nConnection: close\r\n\r\n");
    let r = Reply::parse_raw(&h.raw(req.as_bytes()).await);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.from_upstream());
    // The probe header proves the upstream's header list is being read at all.
    assert_eq!(r.upstream_header("x-app-thing").unwrap(), ["kept"]);
    r
}

/// On a public route no identity-shaped header reaches the upstream at all.
async fn assert_absent_on_public_route(lines: &[&str]) {
    let h = Harness::start().await;
    let r = raw_get(&h, PUBLIC_PATH, None, lines).await;
    let leaked: Vec<String> = r
        .upstream_header_names()
        .into_iter()
        .filter(|n| identity_like(n))
        .collect();
    assert!(leaked.is_empty(), "{lines:?} leaked {leaked:?}");
    assert_eq!(h.idp_fetches(), 0, "public routes never touch the IdP");
}

/// The identity headers the upstream gets for an honest investor request.
async fn honest_identity(h: &Harness, cookie: &str) -> Vec<(String, Vec<String>)> {
    let r: Reply = h.get(REQUIRED_PATH, &[("cookie", cookie)]).await;
    assert_eq!(r.status, 200);
    let mut out: Vec<(String, Vec<String>)> = r
        .upstream_header_names()
        .into_iter()
        .filter(|n| identity_like(n))
        .map(|n| {
            let v = r.upstream_header(&n).unwrap();
            (n, v)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 6, "{out:?}");
    out
}

/// On a required route the upstream sees exactly the gateway's identity
/// headers, one value each, whatever the client added; returns the reply.
async fn assert_replaced_on_required_route(lines: &[&str]) -> Reply {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let honest = honest_identity(&h, &cookie).await;
    let r = raw_get(&h, REQUIRED_PATH, Some(&cookie), lines).await;
    let mut seen: Vec<(String, Vec<String>)> = r
        .upstream_header_names()
        .into_iter()
        .filter(|n| identity_like(n))
        .map(|n| {
            let v = r.upstream_header(&n).unwrap();
            (n, v)
        })
        .collect();
    seen.sort();
    assert_eq!(seen, honest, "{lines:?}");
    for (name, values) in &seen {
        assert_eq!(values.len(), 1, "{name}: {values:?}");
    }
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);
    r
}

#[tokio::test]
async fn client_x_iid_profile_id_never_reaches_a_public_route() {
    assert_absent_on_public_route(&["X-IID-Profile-Id: 7001", "X-IID-Profile-Id: 1"]).await;
}

#[tokio::test]
async fn client_x_iid_profile_id_is_replaced_by_the_sessions_on_a_required_route() {
    assert_replaced_on_required_route(&["X-IID-Profile-Id: 7001", "X-IID-Profile-Id: 1"]).await;
}

#[tokio::test]
async fn client_x_iid_permissions_never_reaches_a_public_route() {
    assert_absent_on_public_route(&["x-iid-permissions: P2001,P2002"]).await;
}

#[tokio::test]
async fn client_x_iid_permissions_is_replaced_by_the_sessions_on_a_required_route() {
    let r = assert_replaced_on_required_route(&["x-iid-permissions: P2001,P2002"]).await;
    let perms = &r.upstream_header("x-iid-permissions").unwrap()[0];
    assert!(!perms.contains("P2001"), "{perms}");
    assert_eq!(perms.split(',').count(), 36);
}

#[tokio::test]
async fn client_x_iid_user_context_never_reaches_a_public_route() {
    assert_absent_on_public_route(&["X-IID-User-Context: eyJwcm9maWxlSWQiOiI3MDAxIn0"]).await;
}

#[tokio::test]
async fn client_x_iid_user_context_is_replaced_by_the_sessions_on_a_required_route() {
    let r = assert_replaced_on_required_route(&["X-IID-User-Context: eyJwcm9maWxlSWQiOiI3MDAxIn0"])
        .await;
    let ctx = &r.upstream_header("x-iid-user-context").unwrap()[0];
    assert_ne!(ctx, "eyJwcm9maWxlSWQiOiI3MDAxIn0");
}

#[tokio::test]
async fn invented_x_iid_header_never_reaches_a_public_route() {
    assert_absent_on_public_route(&["x-iid-anything: admin"]).await;
}

#[tokio::test]
async fn invented_x_iid_header_never_reaches_a_required_route() {
    let r = assert_replaced_on_required_route(&["x-iid-anything: admin"]).await;
    assert_eq!(r.upstream_header("x-iid-anything"), None);
}

#[tokio::test]
async fn underscore_x_iid_profile_id_never_reaches_a_public_route() {
    assert_absent_on_public_route(&["X_IID_Profile_Id: 7001"]).await;
}

#[tokio::test]
async fn underscore_x_iid_profile_id_never_reaches_a_required_route() {
    let r = assert_replaced_on_required_route(&["X_IID_Profile_Id: 7001"]).await;
    assert_eq!(r.upstream_header("x_iid_profile_id"), None);
}

#[tokio::test]
async fn mixed_case_and_underscore_x_iid_roles_never_reaches_a_public_route() {
    assert_absent_on_public_route(&["x-IID_roles: IID-ESTABLISHMENT-ADMIN"]).await;
}

#[tokio::test]
async fn mixed_case_and_underscore_x_iid_roles_never_reaches_a_required_route() {
    let r = assert_replaced_on_required_route(&["x-IID_roles: IID-ESTABLISHMENT-ADMIN"]).await;
    assert_eq!(r.upstream_header("x-iid_roles"), None);
    assert_eq!(r.upstream_header("x-iid-roles").unwrap(), ["IID-INVESTOR"]);
}

#[tokio::test]
async fn forged_identity_cannot_pass_authorization_on_a_required_route() {
    // Headers claiming admin rights change nothing: the decision uses the session.
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let r = h
        .get(
            "/admin/x",
            &[
                ("cookie", &cookie),
                ("x-iid-permissions", "P2001,P2002"),
                ("x-iid-profile-id", users::ESTABLISHMENT_ADMIN),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(!r.from_upstream());
}

#[tokio::test]
async fn identity_header_listed_in_connection_is_still_injected() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let honest = honest_identity(&h, &cookie).await;
    let r = h
        .get(
            REQUIRED_PATH,
            &[
                ("cookie", &cookie),
                ("connection", "keep-alive, x-iid-profile-id"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.from_upstream());
    assert_eq!(r.upstream_header("x-iid-profile-id").unwrap(), ["518"]);

    // Every identity header, in any spelling, listed at once.
    let r = raw_get(
        &h,
        REQUIRED_PATH,
        Some(&cookie),
        &[
            "Connection: keep-alive, X-IID-Profile-Id, x-iid-permissions, X_IID_Roles",
            "Connection: x-iid-user-context, x-iid-session-id, x-iid-locale, x-iid-authority-type",
        ],
    )
    .await;
    for (name, values) in &honest {
        assert_eq!(r.upstream_header(name).as_ref(), Some(values), "{name}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_reach_the_upstream() {
    let h = Harness::start().await;
    let cookie = h.login(users::INVESTOR);
    let lines = [
        "Connection: keep-alive, X-Secret",
        "Keep-Alive: timeout=5, max=100",
        "TE: trailers",
        "Proxy-Authorization: Basic dXNlcjpwYXNz",
        "Proxy-Connection: keep-alive",
        "X-Secret: s3cr3t",
    ];
    for (path, cookie) in [(PUBLIC_PATH, None), (REQUIRED_PATH, Some(cookie.as_str()))] {
        let r = raw_get(&h, path, cookie, &lines).await;
        let names = r.upstream_header_names();
        for hop in [
            "connection",
            "keep-alive",
            "te",
            "proxy-authorization",
            "proxy-connection",
            "x-secret",
        ] {
            assert!(
                !names.iter().any(|n| n == hop),
                "{path}: {hop} in {names:?}"
            );
        }
    }
}

/// An upstream that records the raw bytes of each request it gets (one per
/// connection, chunked bodies read to their end) and answers 200 with `x-echo`.
async fn capturing_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let complete = |b: &[u8]| {
                    let Some(head_end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
                        return false;
                    };
                    let head = String::from_utf8_lossy(&b[..head_end]).to_ascii_lowercase();
                    if !head.contains("transfer-encoding: chunked") {
                        return true;
                    }
                    // Last chunk, optional trailers, blank line (good enough for these tests).
                    let body = &b[head_end + 4..];
                    body.ends_with(b"\r\n\r\n")
                        && (body.starts_with(b"0\r\n")
                            || body.windows(5).any(|w| w == b"\r\n0\r\n"))
                };
                while !complete(&got) {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nx-echo: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                let _ = s.shutdown().await;
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn identity_headers_in_request_trailers_never_reach_the_upstream() {
    let (up, mut captured) = capturing_upstream().await;
    let h = Harness::builder().upstream(up).start().await;
    let cookie = h.login(users::INVESTOR);
    for (path, cookie) in [(PUBLIC_PATH, None), (REQUIRED_PATH, Some(cookie.as_str()))] {
        let cookie_line = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\n{cookie_line}Transfer-Encoding: chunked\r\n\
             Trailer: X-IID-Profile-Id, x_iid_roles\r\nTE: trailers\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\nX-IID-Profile-Id: 7001\r\nx_iid_roles: IID-ESTABLISHMENT-ADMIN\r\n\r\n"
        );
        let resp = h.raw(req.as_bytes()).await;
        assert_eq!(support::raw_status(&resp), 200, "{path}: {resp}");
        assert!(resp.to_ascii_lowercase().contains("x-echo: 1"), "{resp}");
        let wire = String::from_utf8_lossy(&captured.recv().await.unwrap()).to_ascii_lowercase();
        assert!(wire.contains("hello"), "{path}: body lost: {wire}");
        assert!(!wire.contains("7001"), "{path}: {wire}");
        assert!(!wire.contains("iid-establishment-admin"), "{path}: {wire}");
        assert!(!wire.contains("x_iid"), "{path}: {wire}");
        let profile_lines = wire.matches("x-iid-profile-id:").count();
        assert_eq!(
            profile_lines,
            usize::from(cookie.is_some()),
            "{path}: {wire}"
        );
    }
}
