//! Wire types of the Single Sign-On API's "Read SSO session" for an identity
//! (seed 003), shared by the client and its emulator so both speak exactly
//! the same JSON.
//!
//! Every field is optional: the gateway needs only the status, the session's
//! `identity_token`, `user_token` and `date_expiration`, and extra or `null`
//! fields must never turn a valid session into an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Path of the identity sessions under `base_url`; the token and
/// [`PATH_SUFFIX`] follow: `/sso/sessions/identities/{token}.json`.
pub const PATH_IDENTITIES: &str = "/sso/sessions/identities/";
/// Ends every resource path.
pub const PATH_SUFFIX: &str = ".json";
/// `status.flag` of a processed request.
pub const FLAG_SUCCESS: &str = "success";
/// `status.flag` of a failed request (the emulator's choice; the client
/// treats every other value alike).
pub const FLAG_ERROR: &str = "error";
/// Longest identity token accepted (it goes into a URL path).
pub const MAX_TOKEN_LEN: usize = 256;

/// Whether `token` may be put into the URL path: 1 to 256 of
/// `A-Z a-z 0-9 _ -`. Dots, slashes, percent signs and the rest could
/// change which resource is asked for.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The identity session path for `token` (which must be valid).
pub fn identity_path(token: &str) -> String {
    format!("{PATH_IDENTITIES}{token}{PATH_SUFFIX}")
}

/// The envelope of every answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Answer {
    /// Everything is under `response`.
    #[serde(default)]
    pub response: Option<Response>,
}

/// `response`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    /// What was asked and how it went.
    #[serde(default)]
    pub request: Option<RequestInfo>,
    /// The payload, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultBody>,
}

/// `response.request`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestInfo {
    /// When the API answered (RFC 2822).
    #[serde(default)]
    pub date: Option<String>,
    /// The resource path asked for.
    #[serde(default)]
    pub resource: Option<String>,
    /// The outcome.
    #[serde(default)]
    pub status: Option<Status>,
}

/// `response.request.status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// `"success"` when processed.
    #[serde(default)]
    pub flag: Option<String>,
    /// An HTTP-like code (200, 404, ...); a number, or a numeric string.
    #[serde(default)]
    pub code: Option<Value>,
    /// Human text.
    #[serde(default)]
    pub info: Option<String>,
}

impl Status {
    /// `code` as a number, whether sent as `404` or `"404"`.
    pub fn code(&self) -> Option<i64> {
        match self.code.as_ref()? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// `response.result`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResultBody {
    /// `response.result.data`.
    #[serde(default)]
    pub data: Option<Data>,
}

/// `response.result.data`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Data {
    /// The session.
    #[serde(default)]
    pub sso_session: Option<SsoSession>,
}

/// `response.result.data.sso_session`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SsoSession {
    /// The SSO session's own token (a secret: never logged or forwarded).
    #[serde(default)]
    pub sso_session_token: Option<String>,
    /// The user: the subject.
    #[serde(default)]
    pub user_token: Option<String>,
    /// The identity asked about; must equal the requested token.
    #[serde(default)]
    pub identity_token: Option<String>,
    /// Realm.
    #[serde(default)]
    pub top_realm: Option<String>,
    /// Realm below `top_realm`.
    #[serde(default)]
    pub sub_realm: Option<String>,
    /// Free-form data stored with the session (a string in the seed).
    #[serde(default)]
    pub data: Option<Value>,
    /// Cookies set so far.
    #[serde(default)]
    pub num_cookies_set: Option<i64>,
    /// Creation date (RFC 2822).
    #[serde(default)]
    pub date_creation: Option<String>,
    /// Expiry date (RFC 2822, the `+` of its offset possibly a space).
    #[serde(default)]
    pub date_expiration: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_shape() {
        // The seed's shape with fake values.
        let body = r#"{"response":{"request":{"date":"Fri, 03 Feb 2017 12:14:02  0100",
            "resource":"/sso/sessions/identities/id-1.json",
            "status":{"flag":"success","code":200,"info":"Your request has been processed successfully"}},
            "result":{"data":{"sso_session":{"sso_session_token":"s-1","user_token":"u-1",
            "identity_token":"id-1","top_realm":"portal","sub_realm":"apps","data":"demo",
            "num_cookies_set":0,"date_creation":"Fri, 03 Feb 2017 12:13:58  0100",
            "date_expiration":"Sat, 04 Feb 2017 12:13:58  0100"}}}}}"#;
        let a: Answer = serde_json::from_str(body).unwrap();
        let r = a.response.unwrap();
        let status = r.request.unwrap().status.unwrap();
        assert_eq!(status.flag.as_deref(), Some("success"));
        assert_eq!(status.code(), Some(200));
        let s = r.result.unwrap().data.unwrap().sso_session.unwrap();
        assert_eq!(s.identity_token.as_deref(), Some("id-1"));
        assert_eq!(s.data, Some(Value::from("demo")));
    }

    #[test]
    fn only_url_safe_tokens_are_valid() {
        for ok in ["a", "0f1e2d3c-4b5a-4697-8877-665544332211", "A_b-9"] {
            assert!(is_valid_token(ok), "{ok}");
        }
        assert!(is_valid_token(&"a".repeat(256)));
        for bad in [
            "",
            "a.json",
            "a/b",
            "..%2F..%2Fadmin",
            "..",
            "a b",
            "a+b",
            "a?b",
            "a#b",
            "é",
            &"a".repeat(257),
        ] {
            assert!(!is_valid_token(bad), "{bad}");
        }
    }
}
