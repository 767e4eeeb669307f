//! The IID header contract, byte for byte: the seed's Get Child Session
//! answer, through the IID provider and the default header plan, yields
//! exactly the headers (names, order, and values) that the gateway sent
//! before providers and header plans became configurable. The values are
//! pinned by length and FNV-1a hash, so the seed's personal data is not
//! copied here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sessiongate::auth::credential::Credential;
use sessiongate::auth::headers::{Carries, HeaderPlan};
use sessiongate::dev::echo::{fnv1a64, FNV_OFFSET};
use sessiongate::idp::iid::classify_fetch;
use sessiongate::idp::Verdict;

const SEED: &[u8] = include_bytes!("data/seed_fetch_response.json");

/// (name, value length, FNV-1a 64 of the value), recorded from the gateway
/// before this refactor: the headers that do not depend on `include_pii`...
const COMMON: [(&str, usize, &str); 6] = [
    ("x-iid-session-id", 36, "f66539954aec25c2"),
    ("x-iid-profile-id", 3, "22c61918047f5331"),
    ("x-iid-permissions", 215, "7795e6f1c765e686"),
    ("x-iid-roles", 12, "aee8358a61bfed70"),
    ("x-iid-locale", 2, "088e3807b53946aa"),
    ("x-iid-authority-type", 4, "420ae624381a4f77"),
];

/// ...and the user context, last, without and with personal data (re-pinned
/// when the seed's personal data in `data/seed_fetch_response.json` was
/// replaced by fake values; the rendering did not change).
const USER_CONTEXT: [(bool, (&str, usize, &str)); 2] = [
    (false, ("x-iid-user-context", 538, "e79d68d168602e4f")),
    (true, ("x-iid-user-context", 692, "0821c72f3018dee0")),
];

#[test]
fn the_default_plan_renders_the_seed_exactly_as_before() {
    let key = Credential::new("b26e93f2-19bc-4473-95ed-db72bd1eb5f2", "");
    let Verdict::Valid { identity, .. } = classify_fetch(StatusCode::OK, SEED, &key).unwrap()
    else {
        panic!("the seed is a valid session")
    };
    let carries = Carries {
        roles: true,
        permissions: true,
    };
    for (include_pii, context) in USER_CONTEXT {
        let plan = HeaderPlan::new("x-iid-", include_pii, carries).unwrap();
        let auth = plan.render(&identity).unwrap();
        let got: Vec<(String, usize, String)> = auth
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    v.len(),
                    format!("{:016x}", fnv1a64(v.as_bytes(), FNV_OFFSET)),
                )
            })
            .collect();
        let expected: Vec<(String, usize, String)> = COMMON
            .iter()
            .chain([&context])
            .map(|(n, l, h)| (n.to_string(), *l, h.to_string()))
            .collect();
        assert_eq!(got, expected, "include_pii = {include_pii}");
    }
}
