//! Per-request cost of each hot-path step, in ns (criterion):
//! `cargo bench --bench hot_path`.
//!
//! The whole-pipeline bench uses a real gateway whose cache was filled by one
//! call to the real emulator on loopback; the measured iterations are cache
//! hits and make no IdP call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use sessiongate::app;
use sessiongate::auth::cache::{Fresh, SessionCache};
use sessiongate::auth::credential::{Credential, CredentialSource, Found};
use sessiongate::auth::headers::{Authenticated, Carries, HeaderPlan};
use sessiongate::config::Config;
use sessiongate::dev::emulator::{self, Emulator, EmulatorConfig};
use sessiongate::idp::iid::classify_fetch;
use sessiongate::idp::Verdict;
use sessiongate::pipeline::{Admission, Gateway, Outcome};
use sessiongate::routes::RouteTable;

const SEED: &[u8] = include_bytes!("../tests/data/seed_fetch_response.json");

const ROUTES: &str = r#"
[[routes]]
prefix = "/public/"
upstream = "http://127.0.0.1:9"
auth = "public"
[[routes]]
prefix = "/admin/"
upstream = "http://127.0.0.1:9"
permissions = ["P1001"]
[[routes]]
prefix = "/api/v1/services"
upstream = "http://127.0.0.1:9"
roles = ["IID-INVESTOR"]
[[routes]]
prefix = "/api/v1/payments"
upstream = "http://127.0.0.1:9"
[[routes]]
prefix = "/static/"
upstream = "http://127.0.0.1:9"
auth = "public"
[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:9"
"#;

fn names() -> CredentialSource {
    CredentialSource {
        id_cookie: "iid_session_id".into(),
        token_cookie: "iid_session_token".into(),
        bearer: false,
    }
}

/// A realistic browser request head.
fn browser_headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("portal.example.ae"));
    h.insert("user-agent", HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"));
    h.insert(
        "accept",
        HeaderValue::from_static("application/json, text/plain, */*"),
    );
    h.insert(
        "accept-language",
        HeaderValue::from_static("en-US,en;q=0.9,ar;q=0.8"),
    );
    h.insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    h.insert(
        "referer",
        HeaderValue::from_static("https://portal.example.ae/services"),
    );
    h.insert(
        "x-request-id",
        HeaderValue::from_static("5f0c6f0e-3c1c-4a57-9d7e-3f2b8d1b2a90"),
    );
    h.insert("cookie", HeaderValue::from_str(cookie).unwrap());
    h
}

fn cookie_for(id: &str, token: &str) -> String {
    format!("_ga=GA1.2.12345.67890; lang=en; iid_session_id={id}; iid_session_token={token}; theme=dark")
}

fn parts(path: &str, headers: &HeaderMap) -> Parts {
    let mut req = Request::get(path).body(()).unwrap();
    *req.headers_mut() = headers.clone();
    req.into_parts().0
}

/// The default plan: `x-iid-` headers, no personal data.
fn plan() -> HeaderPlan {
    let carries = Carries {
        roles: true,
        permissions: true,
    };
    HeaderPlan::new("x-iid-", false, carries).unwrap()
}

fn seed_authenticated() -> Authenticated {
    let key = Credential::new("b26e93f2-19bc-4473-95ed-db72bd1eb5f2", "");
    let Verdict::Valid { identity, .. } = classify_fetch(StatusCode::OK, SEED, &key).unwrap()
    else {
        panic!("seed is valid")
    };
    plan().render(&identity).unwrap()
}

fn steps(c: &mut Criterion) {
    let headers = browser_headers(&cookie_for(
        "b26e93f2-19bc-4473-95ed-db72bd1eb5f2",
        "Zk3q9XcP0aLr7TnB2mVy5HsQ8dWe1uJo",
    ));
    let mut g = c.benchmark_group("step");

    g.bench_function("cookie_extraction", |b| {
        let names = names();
        b.iter(|| {
            let Found::Present(key) = names.read(black_box(&headers)) else {
                panic!()
            };
            key
        })
    });

    let cfg = Config::from_toml_str(ROUTES).unwrap();
    let table = RouteTable::new(&cfg.routes);
    g.bench_function("route_match_normalized", |b| {
        b.iter(|| {
            let p = sessiongate::path::normalize_path(black_box("/api/v1/services/8812/details"))
                .unwrap();
            table.find(&p).map(|r| r.prefix.len())
        })
    });
    g.bench_function("route_match_needs_normalizing", |b| {
        b.iter(|| {
            let p = sessiongate::path::normalize_path(black_box(
                "/api//v1/./services/%38812/x/../details",
            ))
            .unwrap();
            table.find(&p).map(|r| r.prefix.len())
        })
    });

    let plan = plan();
    g.bench_function("strip_identity_headers_clean", |b| {
        b.iter_batched_ref(|| headers.clone(), |h| plan.strip(h), BatchSize::SmallInput)
    });
    let mut spoofed = headers.clone();
    spoofed.insert("x-iid-profile-id", HeaderValue::from_static("1"));
    spoofed.insert("x_iid_roles", HeaderValue::from_static("ADMIN"));
    g.bench_function("strip_identity_headers_spoofed", |b| {
        b.iter_batched_ref(|| spoofed.clone(), |h| plan.strip(h), BatchSize::SmallInput)
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache: SessionCache<sessiongate::idp::IdpError> = SessionCache::new(&cfg.cache);
    let key = Credential::new(
        "b26e93f2-19bc-4473-95ed-db72bd1eb5f2",
        "Zk3q9XcP0aLr7TnB2mVy5HsQ8dWe1uJo",
    );
    let auth = Arc::new(seed_authenticated());
    rt.block_on(cache.get_or_resolve(&key, || async {
        Ok(Fresh::Valid(auth, Duration::from_secs(3600)))
    }))
    .unwrap();
    g.bench_function("cache_hit_and_inject", |b| {
        b.to_async(&rt).iter_batched(
            || headers.clone(),
            |mut h| {
                let cache = &cache;
                let key = &key;
                async move {
                    let resolved = cache
                        .get_or_resolve(key, || async { unreachable!("cache hit expected") })
                        .await
                        .unwrap();
                    if let sessiongate::auth::cache::Cached::Valid(a) = resolved.value {
                        a.inject(&mut h);
                    }
                    h
                }
            },
            BatchSize::SmallInput,
        )
    });

    g.bench_function("parse_seed_answer_into_cache_entry", |b| {
        let key = Credential::new("b26e93f2-19bc-4473-95ed-db72bd1eb5f2", "");
        b.iter(|| {
            let Verdict::Valid { identity, .. } =
                classify_fetch(StatusCode::OK, black_box(SEED), &key).unwrap()
            else {
                panic!()
            };
            plan.render(&identity).unwrap()
        })
    });
    g.finish();
}

/// A gateway whose cache holds one session, filled through the real
/// emulator; with `jwt_key`, `[jwt]` is on and the cached entry carries a token.
async fn filled_gateway(jwt_key: Option<&std::path::Path>) -> (Arc<Gateway>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = listener.local_addr().unwrap();
    let emu = Emulator::new(EmulatorConfig {
        api_key: "bench".into(),
        client_id: None,
        expires_in: 3600,
        users: emulator::default_users(),
    });
    tokio::spawn(emulator::run(
        listener,
        Arc::clone(&emu),
        std::future::pending(),
    ));
    let jwt = jwt_key
        .map(|k| {
            format!(
                "[jwt]\nkey_file = {:?}\naudience = \"bench\"\n",
                k.display().to_string()
            )
        })
        .unwrap_or_default();
    let toml = format!(
        "{jwt}[idp]\nbase_url = \"http://{idp}{}\"\napi_key = \"bench\"\n{ROUTES}",
        emulator::BASE_PATH
    );
    let cfg = Config::from_toml_str(&toml).unwrap();
    let gateway = app::build_gateway(&cfg).unwrap();
    let s = emu.create_session("518", None).unwrap();
    let cookie = cookie_for(&s.session_id, &s.session_token);
    // Fill the cache through the real IdP path once.
    let mut p = parts("/api/v1/services/1", &browser_headers(&cookie));
    let mut log = Outcome::default();
    let admitted = gateway
        .admit(&mut p, IpAddr::from([127, 0, 0, 1]), &mut log)
        .await
        .unwrap();
    assert!(matches!(admitted, Admission::Forward(_)));
    assert_eq!(p.headers.contains_key("x-iid-jwt"), jwt_key.is_some());
    assert_eq!(emu.stats().fetch, 1);
    (gateway, cookie)
}

fn whole_pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let key_file =
        std::env::temp_dir().join(format!("sessiongate-bench-jwt-{}.key", std::process::id()));
    std::fs::write(
        &key_file,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    )
    .unwrap();
    let (gateway, cookie) = rt.block_on(filled_gateway(None));
    let (with_jwt, jwt_cookie) = rt.block_on(filled_gateway(Some(&key_file)));
    let _ = std::fs::remove_file(&key_file);
    let headers = browser_headers(&cookie);
    let peer = IpAddr::from([127, 0, 0, 1]);
    let mut g = c.benchmark_group("pipeline");
    g.bench_function("admit_cache_hit", |b| {
        b.to_async(&rt).iter_batched(
            || parts("/api/v1/services/8812/details?x=1", &headers),
            |mut p| {
                let gateway = &gateway;
                async move {
                    let mut log = Outcome::default();
                    let a = gateway.admit(&mut p, peer, &mut log).await.unwrap();
                    assert!(matches!(a, Admission::Forward(_)));
                    p
                }
            },
            BatchSize::SmallInput,
        )
    });
    // The same cache hit with `[jwt]` on: the token was signed at insert, so
    // this adds a timestamp compare and one more header clone, never a signature.
    let jwt_headers = browser_headers(&jwt_cookie);
    g.bench_function("admit_cache_hit_jwt_on", |b| {
        b.to_async(&rt).iter_batched(
            || parts("/api/v1/services/8812/details?x=1", &jwt_headers),
            |mut p| {
                let gateway = &with_jwt;
                async move {
                    let mut log = Outcome::default();
                    let a = gateway.admit(&mut p, peer, &mut log).await.unwrap();
                    assert!(matches!(a, Admission::Forward(_)));
                    p
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("admit_public_route", |b| {
        b.to_async(&rt).iter_batched(
            || parts("/static/app.js", &headers),
            |mut p| {
                let gateway = &gateway;
                async move {
                    let mut log = Outcome::default();
                    gateway.admit(&mut p, peer, &mut log).await.unwrap();
                    p
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = steps, whole_pipeline
}
criterion_main!(benches);
