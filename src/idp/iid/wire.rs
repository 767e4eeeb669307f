//! Wire types of the IID child-session API (seeds 000 and 001), shared by the
//! IID client and the emulator so both speak exactly the same JSON.
//!
//! Every field the gateway does not strictly need is optional: the real IdP
//! sends `null` for many of them and adds fields over time, and neither may
//! turn a valid session into an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Path of "Create Child Session" under `base_url`.
pub const PATH_CREATE: &str = "/sso/session/create";
/// Path of "Get Child Session" under `base_url`.
pub const PATH_FETCH: &str = "/sso/session/fetch";
/// Path of "Validate Child Session" under `base_url`.
pub const PATH_VALIDATE: &str = "/sso/session/validate";
/// Path of "Refresh Child Session" under `base_url`.
pub const PATH_REFRESH: &str = "/sso/session/refresh";
/// Path of "Logout Child Session" under `base_url`.
pub const PATH_LOGOUT: &str = "/sso/session/logout";
/// Header carrying the integration's API key.
pub const HEADER_API_KEY: &str = "x-iid-api-key";
/// Header carrying the integration's client id.
pub const HEADER_CLIENT_ID: &str = "x-iid-client-id";

/// Body of fetch, validate, refresh and logout.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRequest {
    /// Child session token; the seed sends `""` when the caller has none.
    #[serde(rename = "sessionToken", default)]
    pub session_token: String,
    /// Child session id.
    #[serde(rename = "sessionId", default)]
    pub session_id: String,
}

/// S360 `CommonResponse` envelope: `code == 0` means success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommonResponse<T> {
    /// 0 on success, anything else is a failure.
    pub code: i64,
    /// Human text in English and Arabic.
    #[serde(default)]
    pub desc: Option<Desc>,
    /// Error details, shape not fixed by the seed.
    #[serde(default)]
    pub errors: Option<Value>,
    /// Payload, present on success.
    #[serde(default)]
    pub data: Option<T>,
}

/// S360 `CommonDescription`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Desc {
    /// English text.
    #[serde(default)]
    pub en: Option<String>,
    /// Arabic text.
    #[serde(default)]
    pub ar: Option<String>,
    /// Optional machine code (the seed sends `null`).
    #[serde(default)]
    pub code: Option<Value>,
}

/// `data` of "Get Child Session".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildSession {
    /// The child session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Calling system, e.g. `D360`.
    #[serde(default)]
    pub external_system_id: Option<String>,
    /// `SELF` or a delegation kind.
    #[serde(default)]
    pub authority_type: Option<String>,
    /// The user's own profile(s); the first one is the acting profile.
    #[serde(default)]
    pub self_profile: Option<Vec<Profile>>,
    /// Session parameters such as the locale.
    #[serde(default)]
    pub iid_params: Option<IidParams>,
    /// Permission codes, in IdP order.
    #[serde(default)]
    pub user_permissions: Option<Vec<String>>,
    /// Delegations, shape not fixed by the seed; passed through as JSON.
    #[serde(default)]
    pub delegations: Option<Vec<Value>>,
    /// Roles with the organizations they apply to.
    #[serde(default)]
    pub user_roles: Option<Vec<Role>>,
    /// Seconds until the session expires (snake_case in the seed).
    #[serde(default, rename = "expires_in")]
    pub expires_in: Option<f64>,
}

/// One entry of `selfProfile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Profile id: a number in the seed, tolerated as a string.
    #[serde(default)]
    pub profile_id: Option<Value>,
    /// Licensing-authority profile id.
    #[serde(default)]
    pub la_profile_id: Option<Value>,
    /// Name in English.
    #[serde(default)]
    pub name_en: Option<String>,
    /// Name in Arabic.
    #[serde(default)]
    pub name_ar: Option<String>,
    /// `M` / `F`.
    #[serde(default)]
    pub gender: Option<String>,
    /// Personal data: mobile number.
    #[serde(default)]
    pub mobile_no: Option<String>,
    /// Personal data: e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Personal data: passport number.
    #[serde(default)]
    pub passport_no: Option<String>,
    /// Personal data: Emirates ID.
    #[serde(default)]
    pub eid: Option<String>,
    /// Unified id.
    #[serde(default)]
    pub unified_id: Option<String>,
    /// Nationality.
    #[serde(default)]
    pub nationality: Option<Nationality>,
    /// `INDIVIDUAL` or an establishment type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Whether the profile is active.
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// Nationality of a profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nationality {
    /// ISO 3166 alpha-3 code.
    #[serde(default)]
    pub code: Option<String>,
    /// Name in English.
    #[serde(default)]
    pub value_en: Option<String>,
    /// Name in Arabic.
    #[serde(default)]
    pub value_ar: Option<String>,
    /// Numeric id.
    #[serde(default)]
    pub id: Option<Value>,
}

/// `iidParams`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IidParams {
    /// `en` or `ar`.
    #[serde(default)]
    pub locale: Option<String>,
}

/// One entry of `userRoles`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Role code, e.g. `IID-INVESTOR`.
    #[serde(default)]
    pub code: Option<String>,
    /// Organizations the role applies to.
    #[serde(default)]
    pub organization_ids: Option<Vec<Value>>,
}

/// `data` of "Create Child Session" (emulator design, same style as the seed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedSession {
    /// New child session id.
    pub session_id: String,
    /// New child session token.
    pub session_token: String,
    /// Seconds until it expires.
    #[serde(rename = "expires_in")]
    pub expires_in: u64,
}

/// Body of "Create Child Session" (emulator design): which user to log in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    /// Profile id of a user in the emulator's users file.
    #[serde(default)]
    pub profile_id: Option<Value>,
    /// Optional override of the session lifetime in seconds.
    #[serde(default, rename = "expires_in")]
    pub expires_in: Option<u64>,
}

/// `data` of "Validate Child Session" (emulator design).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// Whether the session is alive.
    pub valid: bool,
    /// Seconds left.
    #[serde(rename = "expires_in")]
    pub expires_in: u64,
}

/// `data` of "Logout Child Session".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutResult {
    /// Always true on code 0.
    pub success: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_FETCH: &str = include_str!("../../../tests/data/seed_fetch_response.json");

    #[test]
    fn parses_the_seed_fetch_response() {
        let r: CommonResponse<ChildSession> = serde_json::from_str(SEED_FETCH).unwrap();
        assert_eq!(r.code, 0);
        let d = r.data.unwrap();
        assert_eq!(
            d.session_id.as_deref(),
            Some("b26e93f2-19bc-4473-95ed-db72bd1eb5f2")
        );
        let p = &d.self_profile.as_ref().unwrap()[0];
        assert_eq!(p.profile_id, Some(Value::from(518)));
        assert_eq!(p.name_ar.as_deref(), Some("ليلى حسن التجربة"));
        assert_eq!(d.user_permissions.as_ref().unwrap().len(), 36);
        assert_eq!(
            d.user_roles.as_ref().unwrap()[0].code.as_deref(),
            Some("IID-INVESTOR")
        );
        assert_eq!(d.expires_in, Some(15.0));
    }

    #[test]
    fn tolerates_nulls_and_unknown_fields() {
        let body = r#"{"code":0,"desc":null,"errors":null,"extra":1,
            "data":{"sessionId":"s","selfProfile":null,"userPermissions":null,
            "userRoles":[{"code":"R","organizationIds":null,"new":true}],"expires_in":null,"future":{}}}"#;
        let r: CommonResponse<ChildSession> = serde_json::from_str(body).unwrap();
        let d = r.data.unwrap();
        assert!(d.self_profile.is_none());
        assert_eq!(d.user_roles.unwrap()[0].code.as_deref(), Some("R"));
    }
}
