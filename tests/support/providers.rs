//! What the provider tests (`provider_enos`, `provider_sso_identity`,
//! `provider_ciam`) check alike: the refusal, the user context the upstream
//! got, canned IdP answers and the 50-concurrent-requests scaffold.

use std::sync::Arc;

use base64::Engine;
use serde_json::Value;

use super::{Harness, Reply};

/// The `x-iid-user-context` header the upstream received, decoded.
pub fn user_context(r: &Reply) -> Value {
    let ctx = &r.upstream_header("x-iid-user-context").unwrap()[0];
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(ctx)
            .unwrap(),
    )
    .unwrap()
}

/// Refused with `status` and `reason`, and the upstream never reached.
pub fn assert_refused(r: &Reply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert!(!r.from_upstream(), "the upstream must not be reached");
    assert_eq!(r.reason(), reason);
}

/// A whole HTTP/1.1 answer with `status` (e.g. `"200 OK"`) and a JSON
/// `body`, closing the connection; leaked so a canned server can serve it
/// for the rest of the test.
pub fn canned_json(status: &str, body: &str) -> &'static [u8] {
    Box::leak(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    )
}

/// Sends 50 concurrent `GET /x` with `cookie` and asserts every one was
/// let through; the caller then checks how many IdP calls they cost.
pub async fn fifty_concurrent_gets_pass(h: &Arc<Harness>, cookie: &str) {
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let h = Arc::clone(h);
            let c = cookie.to_owned();
            tokio::spawn(async move { h.get("/x", &[("cookie", &c)]).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}
