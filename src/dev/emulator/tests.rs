//! End-to-end tests of the emulator over real sockets on `127.0.0.1:0`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::*;

const SEED_FETCH: &str = include_str!("../../../tests/data/seed_fetch_response.json");
const KEY: &str = "test-api-key";
const CLIENT: &str = "TIBCO_CONSUMER";

struct Peer {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    emu: Arc<Emulator>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Status plus the envelope's code and English text, the parts tests pin.
    fn error(&self) -> (u16, i64, String) {
        let v = self.json();
        assert_eq!(v["data"], Value::Null, "{v}");
        (
            self.status.as_u16(),
            v["code"].as_i64().unwrap(),
            v["desc"]["en"].as_str().unwrap().to_owned(),
        )
    }
}

async fn start() -> Peer {
    start_with(EmulatorConfig {
        api_key: KEY.to_owned(),
        client_id: Some(CLIENT.to_owned()),
        expires_in: 60,
        users: default_users(),
    })
    .await
}

async fn start_with(cfg: EmulatorConfig) -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let emu = Emulator::new(cfg);
    tokio::spawn(run(listener, emu.clone(), std::future::pending()));
    let client = Client::builder(TokioExecutor::new()).build_http();
    Peer { base, client, emu }
}

impl Peer {
    async fn try_call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.try_call(method, path, headers, body).await.unwrap()
    }

    /// An IID call with the right credentials.
    async fn iid(&self, path: &str, body: Value) -> Answer {
        self.call(
            Method::POST,
            &format!("{BASE_PATH}{path}"),
            &[
                ("x-iid-api-key", KEY),
                ("x-iid-client-id", CLIENT),
                ("content-type", "application/json"),
            ],
            &body.to_string(),
        )
        .await
    }

    async fn create(&self, profile_id: Value, expires_in: Option<u64>) -> (String, String) {
        let a = self
            .iid(
                "/sso/session/create",
                json!({"profileId": profile_id, "expires_in": expires_in}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
        let v = a.json();
        assert_eq!(v["code"], 0);
        (
            v["data"]["sessionId"].as_str().unwrap().to_owned(),
            v["data"]["sessionToken"].as_str().unwrap().to_owned(),
        )
    }

    async fn fetch(&self, id: &str, token: &str) -> Answer {
        self.iid(
            "/sso/session/fetch",
            json!({"sessionToken": token, "sessionId": id}),
        )
        .await
    }

    async fn set_fault(&self, fault: Value) {
        let a = self
            .call(Method::PUT, "/__emulator/fault", &[], &fault.to_string())
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{fault}");
    }
}

#[tokio::test]
async fn create_then_fetch_returns_the_seed_shape_byte_exact() {
    let peer = start().await;
    let (id, token) = peer.create(json!(518), Some(15)).await;
    let a = peer.fetch(&id, "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json; charset=utf-8");
    let name_ar = "ليلى حسن التجربة";
    assert!(
        a.body
            .windows(name_ar.len())
            .any(|w| w == name_ar.as_bytes()),
        "Arabic name not byte-exact in {}",
        String::from_utf8_lossy(&a.body)
    );

    let mut got = a.json();
    let mut seed: Value = serde_json::from_str(SEED_FETCH).unwrap();
    assert_eq!(got["data"]["sessionId"], id.as_str());
    let left = got["data"]["expires_in"]
        .as_u64()
        .expect("integer expires_in");
    assert!((14..=15).contains(&left), "{left}");
    // The shipped user 518 is the seed's profile with its personal data
    // replaced by obviously fake values; everything else is byte-exact.
    let fake = &got["data"]["selfProfile"][0];
    assert_eq!(fake["email"], "layla.test@example.ae");
    assert!(fake["eid"].as_str().unwrap().starts_with("784-0000"));
    for v in [&mut got, &mut seed] {
        let data = v["data"].as_object_mut().unwrap();
        data.remove("sessionId");
        data.remove("expires_in");
        let profile = v["data"]["selfProfile"][0].as_object_mut().unwrap();
        for pii in ["eid", "email", "mobileNo", "passportNo"] {
            profile.remove(pii);
        }
    }
    assert_eq!(got, seed);

    // The token given by create is accepted too, not only "".
    assert_eq!(peer.fetch(&id, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn arabic_locale_user_round_trips() {
    let peer = start().await;
    let (id, _) = peer.create(json!("1001"), None).await;
    let v = peer.fetch(&id, "").await.json();
    assert_eq!(v["data"]["iidParams"]["locale"], "ar");
    assert_eq!(v["data"]["selfProfile"][0]["nameAr"], "فاطمة سعيد المثال");
    assert_eq!(
        v["data"]["expires_in"].as_u64().map(|s| s >= 59),
        Some(true)
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_not_counted_as_calls() {
    let peer = start().await;
    let (id, _) = peer.create(json!(518), None).await;
    let body = json!({"sessionToken": "", "sessionId": id}).to_string();
    let path = format!("{BASE_PATH}/sso/session/fetch");
    for key in [None, Some("nope")] {
        let mut headers = vec![("x-iid-client-id", CLIENT)];
        headers.extend(key.map(|k| ("x-iid-api-key", k)));
        let a = peer.call(Method::POST, &path, &headers, &body).await;
        assert_eq!(a.error(), (401, 401, "Invalid API Key".to_owned()));
    }
    let a = peer
        .call(Method::POST, &path, &[("x-iid-api-key", KEY)], &body)
        .await;
    assert_eq!(a.error(), (401, 401, "Invalid Client Id".to_owned()));

    let stats = peer.emu.stats();
    assert_eq!(
        (stats.fetch, stats.create, stats.rejected_api_key),
        (0, 1, 3)
    );

    // An empty configured key and no client id accept anything.
    let open = start_with(EmulatorConfig {
        expires_in: 60,
        ..EmulatorConfig::default()
    })
    .await;
    let a = open
        .call(
            Method::POST,
            &format!("{BASE_PATH}/sso/session/create"),
            &[],
            r#"{"profileId": 518}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_then_every_call_says_already_logout() {
    let peer = start().await;
    let (id, _) = peer.create(json!(518), None).await;
    let req = json!({"sessionToken": "", "sessionId": id});
    let a = peer.iid("/sso/session/logout", req.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"code": 0, "desc": {"en": "Success", "ar": "Success", "code": null},
               "errors": null, "data": {"success": true}})
    );
    for path in [
        "/sso/session/fetch",
        "/sso/session/validate",
        "/sso/session/refresh",
        "/sso/session/logout",
    ] {
        let a = peer.iid(path, req.clone()).await;
        assert_eq!(a.error(), (401, 401, "Already Logout".to_owned()), "{path}");
    }
}

#[tokio::test]
async fn sessions_really_expire() {
    let peer = start().await;
    let (id, _) = peer.create(json!(518), Some(1)).await;
    let first = peer.fetch(&id, "").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json()["data"]["expires_in"], 0);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = peer.fetch(&id, "").await;
        if a.status == StatusCode::UNAUTHORIZED {
            assert_eq!(a.error(), (401, 401, "Session Expired".to_owned()));
            break;
        }
        assert_eq!(a.status, StatusCode::OK);
        assert!(Instant::now() < deadline, "session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = peer
        .iid("/sso/session/validate", json!({"sessionId": id}))
        .await;
    assert_eq!(a.error(), (401, 401, "Session Expired".to_owned()));
}

#[tokio::test]
async fn session_tokens_and_unknown_ids() {
    let peer = start().await;
    let (id, token) = peer.create(json!(518), None).await;
    let a = peer.fetch(&id, "not-the-token").await;
    assert_eq!(a.error(), (401, 401, "Invalid Session Token".to_owned()));
    assert_eq!(peer.fetch(&id, &token).await.status, StatusCode::OK);

    let a = peer.fetch("00000000-0000-4000-8000-000000000000", "").await;
    assert_eq!(a.error(), (404, 404, "Session Not Found".to_owned()));

    let a = peer
        .iid("/sso/session/create", json!({"profileId": 404404}))
        .await;
    assert_eq!(a.error(), (404, 404, "User Not Found".to_owned()));
}

#[tokio::test]
async fn validate_and_refresh_answer_their_shapes() {
    let peer = start().await;
    let (id, token) = peer.create(json!(7001), Some(30)).await;
    let req = json!({"sessionToken": token, "sessionId": id});

    let v = peer.iid("/sso/session/validate", req.clone()).await.json();
    assert_eq!(v["code"], 0);
    assert_eq!(v["data"]["valid"], true);
    assert!(v["data"]["expires_in"]
        .as_u64()
        .is_some_and(|s| (29..=30).contains(&s)));

    let v = peer.iid("/sso/session/refresh", req).await.json();
    assert_eq!(
        v["data"],
        json!({"sessionId": id, "sessionToken": token, "expires_in": 30})
    );
}

#[tokio::test]
async fn bad_requests_paths_and_methods() {
    let peer = start().await;
    let path = format!("{BASE_PATH}/sso/session/fetch");
    let creds = [("x-iid-api-key", KEY), ("x-iid-client-id", CLIENT)];
    for body in ["", "{not json", r#"{"sessionToken": ""}"#] {
        let a = peer.call(Method::POST, &path, &creds, body).await;
        assert_eq!(a.error(), (400, 400, "Bad Request".to_owned()), "{body:?}");
        assert!(a.json()["errors"][0].is_string());
    }
    let a = peer.call(Method::GET, &path, &creds, "").await;
    assert_eq!(a.error(), (405, 405, "Method Not Allowed".to_owned()));
    assert_eq!(a.headers["allow"], "POST");
    let a = peer
        .call(Method::POST, &format!("{BASE_PATH}/sso/nope"), &creds, "{}")
        .await;
    assert_eq!(a.error(), (404, 404, "Not Found".to_owned()));
    let a = peer.call(Method::GET, "/", &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn control_surface_needs_no_key() {
    let peer = start().await;
    let a = peer
        .call(
            Method::POST,
            "/__emulator/sessions",
            &[],
            r#"{"profileId": 518, "expires_in": 60}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    let id = v["data"]["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(v["data"]["expires_in"], 60);
    assert_eq!(peer.fetch(&id, "").await.status, StatusCode::OK);

    let a = peer
        .call(
            Method::PUT,
            "/__emulator/fault",
            &[],
            r#"{"kind":"status","status":42}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = peer
        .call(
            Method::PUT,
            "/__emulator/fault",
            &[],
            r#"{"kind":"explode"}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    let a = peer.call(Method::GET, "/__emulator/stats", &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    let stats = a.json();
    let open = &stats["connections"];
    assert_eq!(
        stats,
        json!({"fetch": 1, "validate": 0, "create": 0, "refresh": 0, "logout": 0, "rejected_api_key": 0,
               "connections": open, "peak_connections": stats["peak_connections"]})
    );
    assert!(
        open.as_u64().unwrap() >= 1,
        "this very call's connection is open"
    );
}

#[tokio::test]
async fn every_fault_behaves_and_is_counted() {
    let peer = start().await;
    let (id, _) = peer.create(json!(518), None).await;

    peer.set_fault(json!({"kind": "delay", "ms": 300})).await;
    let started = Instant::now();
    let a = peer.fetch(&id, "").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["code"], 0);

    peer.set_fault(json!({"kind": "status", "status": 503}))
        .await;
    let a = peer
        .iid("/sso/session/validate", json!({"sessionId": id}))
        .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    peer.set_fault(json!({"kind": "garbage"})).await;
    let a = peer
        .iid("/sso/session/refresh", json!({"sessionId": id}))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "text/html");
    assert_eq!(&a.body[..], b"<html>not json");

    peer.set_fault(json!({"kind": "close"})).await;
    let path = format!("{BASE_PATH}/sso/session/logout");
    let creds = [("x-iid-api-key", KEY), ("x-iid-client-id", CLIENT)];
    let body = json!({"sessionId": id}).to_string();
    let closed = peer.try_call(Method::POST, &path, &creds, &body).await;
    assert!(
        closed.is_err(),
        "close fault answered {:?}",
        closed.map(|a| a.status)
    );
    // Create and the control surface are never faulted.
    peer.create(json!(518), None).await;
    assert_eq!(
        peer.call(Method::GET, "/__emulator/stats", &[], "")
            .await
            .status,
        StatusCode::OK
    );

    peer.set_fault(json!({"kind": "none"})).await;
    assert_eq!(peer.fetch(&id, "").await.status, StatusCode::OK);

    // Faulted calls count: they reached the handler.
    let stats = peer.emu.stats();
    assert_eq!(
        stats,
        Stats {
            fetch: 2,
            validate: 1,
            create: 2,
            refresh: 1,
            logout: 1,
            rejected_api_key: 0,
            connections: stats.connections,
            peak_connections: stats.peak_connections,
        }
    );
}
