//! The signed identity token (`[jwt]`), end to end: the real gateway, the
//! IID emulator and the echo upstream. Tokens are checked the way an app
//! would: with another JWT library (jsonwebtoken on RustCrypto's p256; the
//! gateway signs with ring), against the JWKS fetched over HTTP from the
//! admin listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use support::{eventually, users, Harness};
use tokio::net::TcpListener;

const AUDIENCE: &str = "billing";

/// A scratch directory for key files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("sessiongate-jwt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes a fresh P-256 key to `jwt.key` the way a secret rotation does:
    /// whole, then renamed into place.
    fn write_new_key(&self) -> PathBuf {
        let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let tmp = self.0.join("jwt.key.tmp");
        let path = self.0.join("jwt.key");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway with `[jwt]` on (plus `extra` lines in that section) and its
/// admin listener; returns the harness and the admin address.
async fn start(dir: &Scratch, extra: &[&str]) -> (Harness, std::net::SocketAddr) {
    let key = dir.write_new_key();
    let mut b = Harness::builder()
        .set(
            "jwt",
            &format!("key_file = {:?}", key.display().to_string()),
        )
        .set("jwt", &format!("audience = \"{AUDIENCE}\""));
    for line in extra {
        b = b.set("jwt", line);
    }
    let h = b.start().await;
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = admin.local_addr().unwrap();
    tokio::spawn(sessiongate::admin::run(
        admin,
        Arc::clone(h.gateway.admin()),
        std::future::pending(),
    ));
    (h, addr)
}

async fn jwks(h: &Harness, url: &str) -> JwkSet {
    let r = h.request_url(Method::GET, url, &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{url}");
    assert_eq!(r.headers["content-type"], "application/json");
    serde_json::from_slice(&r.body).unwrap()
}

async fn admin_jwks(h: &Harness, admin: std::net::SocketAddr) -> JwkSet {
    jwks(h, &format!("http://{admin}/.well-known/jwks.json")).await
}

/// The one token the upstream received for a request with `cookie`.
async fn token_for(h: &Harness, path: &str, cookie: &str, extra: &[(&str, &str)]) -> String {
    let mut headers = vec![("cookie", cookie)];
    headers.extend_from_slice(extra);
    let r = h.get(path, &headers).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mut sent = r
        .upstream_header("x-iid-jwt")
        .expect("the upstream got a token");
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent.pop().unwrap()
}

/// Verifies `token` as an app for `audience` would: find its `kid` in the
/// JWKS, check the ES256 signature, `iss`, `aud` and `exp`.
fn verify(token: &str, keys: &JwkSet, audience: &str) -> jsonwebtoken::errors::Result<Value> {
    let kid = decode_header(token)?.kid.expect("kid");
    let jwk = keys.find(&kid).expect("kid in the JWKS");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[audience]);
    v.set_issuer(&["sessiongate"]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &v).map(|d| d.claims)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn payload_text(token: &str) -> String {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_upstream_gets_a_token_that_verifies_against_the_jwks_for_its_audience_only() {
    let dir = Scratch::new("verify");
    let (h, admin) = start(&dir, &[]).await;
    let session = h
        .emulator
        .create_session(users::INVESTOR, Some(120))
        .unwrap();
    let logged_in = unix_now();
    let cookie = format!(
        "iid_session_id={}; iid_session_token={}",
        session.session_id, session.session_token
    );
    let token = token_for(&h, "/portal/x", &cookie, &[]).await;
    let keys = admin_jwks(&h, admin).await;
    assert_eq!(keys.keys.len(), 1);

    let claims = verify(&token, &keys, AUDIENCE).unwrap();
    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), keys.keys[0].common.key_id.as_deref());
    assert_eq!(claims["sub"], users::INVESTOR);
    assert_eq!(claims["aud"], AUDIENCE);
    let roles: Vec<&str> = claims["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(roles, ["IID-INVESTOR"]);
    assert!(claims["permissions"].as_array().unwrap().len() > 10);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    // The session (120 s) is shorter than jwt.ttl (5 min): it bounds the token.
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(
        (exp as f64) <= logged_in + 120.0,
        "exp {exp} after the session's end"
    );
    assert!(exp - iat <= 120 && exp > iat, "iat {iat} exp {exp}");

    // Neither the session id nor its token appears, in the token or its claims.
    let sid = claims["sid"].as_str().unwrap();
    assert!(sid.len() >= 32, "{sid}");
    for secret in [&session.session_id, &session.session_token] {
        assert!(!token.contains(secret.as_str()));
        assert!(!payload_text(&token).contains(secret.as_str()));
    }

    // Another app's verifier refuses it.
    let err = verify(&token, &keys, "other-app").unwrap_err();
    assert!(
        matches!(err.kind(), jsonwebtoken::errors::ErrorKind::InvalidAudience),
        "{err:?}"
    );

    // A cache hit sends the token signed at insert: no signing per request.
    let again = token_for(&h, "/portal/y", &cookie, &[]).await;
    assert_eq!(again, token);
    // Another session of the same user gets another sid.
    let other = token_for(&h, "/portal/x", &h.login(users::INVESTOR), &[]).await;
    assert_ne!(
        verify(&other, &keys, AUDIENCE).unwrap()["sid"],
        claims["sid"]
    );
}

#[tokio::test]
async fn a_client_sent_token_never_reaches_the_app() {
    let dir = Scratch::new("spoof");
    let (h, admin) = start(&dir, &[]).await;
    let keys = admin_jwks(&h, admin).await;
    let cookie = h.login(users::INVESTOR);
    for name in ["x-iid-jwt", "X_IID_JWT"] {
        let token = token_for(&h, "/portal/x", &cookie, &[(name, "forged.token.here")]).await;
        assert!(verify(&token, &keys, AUDIENCE).is_ok());
    }
    let r = h
        .get("/public/x", &[("x-iid-jwt", "forged.token.here")])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_header("x-iid-jwt").is_none());
}

#[tokio::test]
async fn a_custom_header_outside_the_prefix_is_stripped_too() {
    let dir = Scratch::new("custom");
    let (h, admin) = start(&dir, &["header = \"X-App-Assertion\""]).await;
    let keys = admin_jwks(&h, admin).await;
    let cookie = h.login(users::INVESTOR);
    for spoof in ["x-app-assertion", "X_App_Assertion"] {
        let r = h
            .get("/portal/x", &[("cookie", &cookie), (spoof, "forged")])
            .await;
        assert_eq!(r.status, 200);
        let sent = r.upstream_header("x-app-assertion").unwrap();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(verify(&sent[0], &keys, AUDIENCE).is_ok());
        assert!(r.upstream_header("x_app_assertion").is_none());
        assert!(r.upstream_header("x-iid-jwt").is_none());
        let r = h.get("/public/x", &[(spoof, "forged")]).await;
        assert_eq!(r.status, 200);
        assert!(r
            .upstream_header_names()
            .iter()
            .all(|n| n.replace('_', "-") != "x-app-assertion"));
    }
}

#[tokio::test]
async fn the_jwks_is_public_only_when_asked() {
    let dir = Scratch::new("public");
    let (h, _admin) = start(&dir, &[]).await;
    // Default: the main listener treats the path as any other (a required route).
    let r = h.get("/.well-known/jwks.json", &[]).await;
    assert_eq!(r.status, 401);
    drop(h);

    let dir = Scratch::new("public-on");
    let (h, admin) = start(&dir, &["public_jwks = true"]).await;
    let public = jwks(&h, &h.url("/.well-known/jwks.json")).await;
    let private = admin_jwks(&h, admin).await;
    assert_eq!(public.keys.len(), 1);
    assert_eq!(public.keys[0].common.key_id, private.keys[0].common.key_id);
}

#[tokio::test]
async fn after_a_key_rotation_old_tokens_still_verify_and_new_ones_carry_the_new_kid() {
    let dir = Scratch::new("rotate");
    let (h, admin) = start(&dir, &["reload_interval = \"100ms\""]).await;
    let before = admin_jwks(&h, admin).await;
    let old_kid = before.keys[0].common.key_id.clone().unwrap();
    let old_token = token_for(&h, "/portal/x", &h.login(users::INVESTOR), &[]).await;
    assert_eq!(
        decode_header(&old_token).unwrap().kid.as_deref(),
        Some(old_kid.as_str())
    );

    dir.write_new_key();
    let rotated = eventually(Duration::from_secs(10), || async {
        admin_jwks(&h, admin).await.keys.len() == 2
    })
    .await;
    assert!(rotated, "the JWKS never showed the new key");
    let after = admin_jwks(&h, admin).await;
    let new_kid = after.keys[0].common.key_id.clone().unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(
        after.keys[1].common.key_id.as_deref(),
        Some(old_kid.as_str())
    );

    // Signed before the rotation, still valid against the JWKS served after it.
    verify(&old_token, &after, AUDIENCE).unwrap();
    // A session entering the cache now gets a token under the new key.
    let new_token = token_for(&h, "/portal/x", &h.login(users::ESTABLISHMENT_ADMIN), &[]).await;
    assert_eq!(
        decode_header(&new_token).unwrap().kid.as_deref(),
        Some(new_kid.as_str())
    );
    assert_eq!(
        verify(&new_token, &after, AUDIENCE).unwrap()["sub"],
        users::ESTABLISHMENT_ADMIN
    );
}

#[tokio::test]
async fn a_forward_auth_decision_returns_the_same_verifiable_token() {
    let dir = Scratch::new("forward-auth");
    let key = dir.write_new_key();
    let h = Harness::builder()
        .set(
            "jwt",
            &format!("key_file = {:?}", key.display().to_string()),
        )
        .set("jwt", &format!("audience = \"{AUDIENCE}\""))
        .forward_auth()
        .start()
        .await;
    let cookie = h.login(users::INVESTOR);
    let decided = h
        .decide("/", &[("cookie", &cookie), ("x-forwarded-uri", "/app/x")])
        .await;
    assert_eq!(decided.status, 200);
    let token = decided
        .headers
        .get("x-iid-jwt")
        .expect("the decision carries the token")
        .to_str()
        .unwrap()
        .to_string();
    // The decision filled the cache; the proxy sends the token it signed then.
    assert_eq!(token_for(&h, "/app/x", &cookie, &[]).await, token);
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = admin.local_addr().unwrap();
    tokio::spawn(sessiongate::admin::run(
        admin,
        Arc::clone(h.gateway.admin()),
        std::future::pending(),
    ));
    let claims = verify(&token, &admin_jwks(&h, addr).await, AUDIENCE).unwrap();
    assert_eq!(claims["sub"], users::INVESTOR);
}
