//! What Redis holds is worthless without the secret: its keys and values name
//! no session and carry no personal data in clear, a value altered, copied or
//! forged in Redis is never served as a session, and a replica with the wrong
//! secret cannot read the fleet's entries (it still works from the IdP).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::wrong_self_convention
)]

mod support;

use std::collections::BTreeSet;

use base64::Engine as _;
use http::Method;
use sessiongate::dev::emulator;
use support::cluster::{
    assert_admitted, assert_refused, clustered, get_app, refuses, session_pair, within, Fleet,
    POLL_STEP, REVOCATION_DEADLINE, WRONG_SECRET,
};
use support::redis::{lossy, RedisServer};
use support::{users, Harness};

const SESSION_PREFIX: &[u8] = b"sessiongate:s:";

/// Every byte string a reader of `value` could decode it into: as stored, and
/// as base64 or hex when it parses as such (an encoding is not encryption).
fn readings(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![value.to_vec()];
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        if let Ok(decoded) = engine.decode(text) {
            out.push(decoded);
        }
    }
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let decoded = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        out.push(decoded);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let hay = haystack.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What must never be readable in Redis: every credential, and every
/// personal field of every emulator user, with the field names of the IdP's
/// answer (their presence would mean plaintext JSON).
fn secrets(cookies: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |what: &str, v: &str| needles.push((what.to_owned(), v.as_bytes().to_vec()));
    for cookie in cookies {
        let (id, token) = session_pair(cookie);
        add("session id", &id);
        add("session token", &token);
        // An unkeyed hash of a credential is as good as the credential to
        // whoever has a candidate list: keys must be keyed (HMAC).
        for (what, v) in [
            ("sha256(id)", id.clone()),
            ("sha256(token)", token.clone()),
            ("sha256(id+token)", format!("{id}{token}")),
            ("sha256(id:token)", format!("{id}:{token}")),
        ] {
            add(what, &sha256_hex(v.as_bytes()));
        }
    }
    for user in emulator::default_users() {
        let p = &user.profile;
        let profile_id = p.profile_id.as_ref().unwrap().to_string();
        let profile_id = profile_id.trim_matches('"');
        // Short numbers are only looked for with a delimiter: three random
        // bytes of ciphertext match "518" too often, `"518"` or `:518,` not.
        for form in [
            format!("\"{profile_id}\""),
            format!(":{profile_id},"),
            format!(":{profile_id}}}"),
            format!(": {profile_id}"),
            format!("={profile_id}"),
        ] {
            add("profile id", &form);
        }
        if let Some(la) = &p.la_profile_id {
            add("la profile id", la.to_string().trim_matches('"'));
        }
        for (what, v) in [
            ("nameEn", &p.name_en),
            ("nameAr", &p.name_ar),
            ("mobileNo", &p.mobile_no),
            ("email", &p.email),
            ("passportNo", &p.passport_no),
            ("eid", &p.eid),
            ("unifiedId", &p.unified_id),
        ] {
            if let Some(v) = v {
                add(what, v);
            }
        }
        for role in &user.user_roles {
            add(
                "role",
                &serde_json::to_value(role).unwrap()["code"].to_string(),
            );
        }
    }
    for field in [
        "profileId",
        "nameEn",
        "nameAr",
        "userPermissions",
        "userRoles",
        "selfProfile",
        "x-iid-",
        "IID-INVESTOR",
    ] {
        add("field name", field);
    }
    needles
}

/// The `sessiongate:s:` keys Redis holds now.
async fn session_keys(redis: &RedisServer) -> BTreeSet<Vec<u8>> {
    redis
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(SESSION_PREFIX))
        .collect()
}

/// Requests `cookie` through `h` (which must not hold it) and returns the
/// session key that appeared in Redis for it.
async fn stored_key(h: &Harness, redis: &RedisServer, cookie: &str, profile: &str) -> Vec<u8> {
    let before = session_keys(redis).await;
    assert_admitted(&get_app(h, cookie).await, profile, "first request");
    // The write may land just after the answer: wait for it, briefly.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let new: Vec<_> = loop {
        let new: Vec<_> = session_keys(redis)
            .await
            .difference(&before)
            .cloned()
            .collect();
        if !new.is_empty() || std::time::Instant::now() >= until {
            break new;
        }
        tokio::time::sleep(POLL_STEP).await;
    };
    assert_eq!(
        new.len(),
        1,
        "one new session entry for one session: {:?}",
        new.iter().map(|k| lossy(k)).collect::<Vec<_>>()
    );
    new.into_iter().next().unwrap()
}

async fn get_raw(redis: &RedisServer, key: &[u8]) -> Vec<u8> {
    let mut con = redis.connection().await;
    let v: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut con)
        .await
        .unwrap();
    v.unwrap_or_else(|| panic!("no value at {}", lossy(key)))
}

/// Overwrites `key`'s value, keeping its expiry, as someone with write access
/// to Redis but not the secret could.
async fn set_raw(redis: &RedisServer, key: &[u8], value: &[u8]) {
    let mut con = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("KEEPTTL")
        .query_async(&mut con)
        .await
        .unwrap();
}

#[tokio::test]
async fn scanning_and_dumping_redis_shows_no_session_and_no_personal_data() {
    let Some(fleet) = Fleet::start(2, |b| b.set("cache", "max_ttl = \"5m\"")).await else {
        return;
    };
    let (a, b) = (fleet.a(), fleet.b());
    let profiles = [
        users::INVESTOR,
        users::ARABIC,
        users::ESTABLISHMENT_ADMIN,
        users::NO_ACCESS,
    ];
    let cookies: Vec<String> = profiles.iter().map(|p| fleet.login(p)).collect();
    let before = session_keys(&fleet.redis).await;
    for (cookie, profile) in cookies.iter().zip(profiles) {
        assert_admitted(&get_app(a, cookie).await, profile, "A");
        assert_admitted(&get_app(b, cookie).await, profile, "B");
    }
    // A negative entry too.
    let (live_id, _) = session_pair(&cookies[0]);
    let wrong = format!("iid_session_id={live_id}; iid_session_token=forged-token-0123456789");
    assert_refused(&get_app(a, &wrong).await, "wrong token");
    let stored = within(REVOCATION_DEADLINE, POLL_STEP, || async {
        session_keys(&fleet.redis).await.difference(&before).count() >= 5
    })
    .await;
    assert!(
        stored.is_some(),
        "no entry in Redis for each of 4 sessions and a negative"
    );
    // Every session's entry is in Redis now: look at them before revocations remove any.
    let mut dumps = vec![fleet.redis.dump().await];

    // A logout and revocations by credential and by session id: every kind of
    // record the fleet writes.
    let r = a.get("/logout", &[("cookie", &cookies[1])]).await;
    assert_eq!(r.status, 200, "logout: {:?}", r.body);
    let (id, token) = session_pair(&cookies[2]);
    let body = serde_json::json!({ "credential": id, "token": token }).to_string();
    assert_eq!(
        b.admin_request(Method::POST, "/revoke", &body).await.status,
        200
    );
    let (id, _) = session_pair(&cookies[3]);
    let body = serde_json::json!({ "sessionId": id }).to_string();
    assert_eq!(
        a.admin_request(Method::POST, "/revoke", &body).await.status,
        200
    );
    for (h, cookie) in [(b, &cookies[1]), (a, &cookies[2]), (b, &cookies[3])] {
        let took = within(REVOCATION_DEADLINE, POLL_STEP, || refuses(h, cookie)).await;
        assert!(took.is_some(), "revocation did not arrive");
    }

    dumps.push(fleet.redis.dump().await);
    let dump: Vec<_> = dumps.into_iter().flatten().collect();
    let kinds: BTreeSet<String> = dump
        .iter()
        .map(|(k, _)| {
            let k = lossy(k);
            let rest = k
                .strip_prefix("sessiongate:")
                .unwrap_or_else(|| panic!("key outside the prefix: {k}"));
            match rest.split_once(':') {
                Some((kind, hex)) => {
                    assert!(
                        ["s", "r", "rs", "l"].contains(&kind),
                        "unexpected key kind: {k}"
                    );
                    assert!(
                        hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                        "not an HMAC in hex: {k}"
                    );
                    kind.to_owned()
                }
                None => {
                    assert!(
                        ["revocations", "epoch"].contains(&rest),
                        "unexpected key: {k}"
                    );
                    rest.to_owned()
                }
            }
        })
        .collect();
    for kind in ["s", "revocations"] {
        assert!(kinds.contains(kind), "no {kind} key written: {kinds:?}");
    }
    assert!(
        kinds.contains("r") || kinds.contains("rs"),
        "no revocation record: {kinds:?}"
    );

    let mut wrong_cookies = cookies.clone();
    wrong_cookies.push(wrong.clone());
    let needles = secrets(&wrong_cookies);
    for (key, values) in &dump {
        for (what, needle) in &needles {
            assert!(
                !contains(key, needle),
                "key {} reveals a {what}: {}",
                lossy(key),
                lossy(needle)
            );
        }
        for value in values {
            for reading in readings(value) {
                for (what, needle) in &needles {
                    assert!(
                        !contains(&reading, needle),
                        "the value of {} reveals a {what} ({}): {}",
                        lossy(key),
                        lossy(needle),
                        lossy(value)
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_value_altered_copied_or_forged_in_redis_is_never_served_as_a_session() {
    let Some(fleet) = Fleet::start(2, |b| b.set("cache", "max_ttl = \"5m\"")).await else {
        return;
    };
    let (a, b) = (fleet.a(), fleet.b());
    let redis = &fleet.redis;
    let x = fleet.login(users::INVESTOR);
    let y = fleet.login(users::ARABIC);
    let z = fleet.login(users::ESTABLISHMENT_ADMIN);
    let w = fleet.login(users::NO_ACCESS);
    // Only A has seen them: their entries are in Redis, not in B's memory.
    let x_key = stored_key(a, redis, &x, users::INVESTOR).await;
    let y_key = stored_key(a, redis, &y, users::ARABIC).await;
    let z_key = stored_key(a, redis, &z, users::ESTABLISHMENT_ADMIN).await;
    let w_key = stored_key(a, redis, &w, users::NO_ACCESS).await;
    let x_value = get_raw(redis, &x_key).await;

    // X's sealed entry copied onto Y's key: valid ciphertext, wrong session.
    set_raw(redis, &y_key, &x_value).await;
    // Z's entry with one bit flipped in the middle, and its last byte (the tag) too.
    let mut z_value = get_raw(redis, &z_key).await;
    let mid = z_value.len() / 2;
    z_value[mid] ^= 0x01;
    let last = z_value.len() - 1;
    z_value[last] ^= 0x80;
    set_raw(redis, &z_key, &z_value).await;
    // W's entry replaced by something written without the secret at all.
    let forged = serde_json::json!({
        "profileId": 518,
        "userPermissions": ["P2001", "P2002"],
        "userRoles": [{"code": "IID-ESTABLISHMENT-ADMIN"}],
    })
    .to_string();
    set_raw(redis, &w_key, forged.as_bytes()).await;

    for (cookie, profile, what) in [
        (&y, users::ARABIC, "Y with X's entry copied onto it"),
        (&z, users::ESTABLISHMENT_ADMIN, "Z with its entry altered"),
        (&w, users::NO_ACCESS, "W with a forged entry"),
    ] {
        let fetches = fleet.idp_fetches();
        let r = get_app(b, cookie).await;
        assert_admitted(&r, profile, what);
        assert_eq!(
            fleet.idp_fetches(),
            fetches + 1,
            "{what}: B must ask the IdP, not trust Redis"
        );
    }
    // The forged entry claimed admin rights: W still has none.
    let r = b.get("/admin/x", &[("cookie", &w)]).await;
    assert_eq!(r.status, 403, "W on an admin route: {:?}", r.body);
    // X's own entry, untouched, still serves B from Redis.
    let fetches = fleet.idp_fetches();
    assert_admitted(&get_app(b, &x).await, users::INVESTOR, "X untouched");
    assert_eq!(fleet.idp_fetches(), fetches, "X's entry is readable");
    let unreadable = b
        .admin_metric(r#"sessiongate_cluster_l2_lookups_total{result="unreadable"}"#)
        .await;
    assert!(
        unreadable >= 2.0,
        "unreadable lookups counted: {unreadable}"
    );
}

#[tokio::test]
async fn a_replica_with_the_wrong_secret_cannot_read_the_fleets_entries_and_still_works() {
    let Some(mut fleet) = Fleet::start(2, |b| b).await else {
        return;
    };
    let cookie = fleet.login(users::INVESTOR);
    assert_admitted(&get_app(fleet.a(), &cookie).await, users::INVESTOR, "A");
    assert_admitted(&get_app(fleet.b(), &cookie).await, users::INVESTOR, "B");
    assert_eq!(fleet.idp_fetches(), 1, "B read A's entry");

    let builder = clustered(Harness::builder(), &fleet.redis, WRONG_SECRET);
    let c = fleet.join(builder).await;
    assert_admitted(
        &get_app(&c, &cookie).await,
        users::INVESTOR,
        "C, wrong secret",
    );
    assert_eq!(
        fleet.idp_fetches(),
        2,
        "C could not use the fleet's entry and asked the IdP"
    );
    assert_eq!(
        c.admin_metric(r#"sessiongate_cluster_l2_lookups_total{result="hit"}"#)
            .await,
        0.0,
        "C read an entry sealed with another secret"
    );
    // C's own writes do not disturb the fleet.
    let other = fleet.login(users::ARABIC);
    assert_admitted(&get_app(&c, &other).await, users::ARABIC, "C first");
    let fetches = fleet.idp_fetches();
    assert_admitted(
        &get_app(fleet.a(), &other).await,
        users::ARABIC,
        "A after C",
    );
    assert_eq!(
        fleet.idp_fetches(),
        fetches + 1,
        "A cannot read C's entry either"
    );
}
