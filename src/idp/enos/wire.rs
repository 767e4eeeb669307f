//! Wire types of EnOS IAM "Get Session Information" (seed 002), shared by
//! the EnOS client and its emulator so both speak exactly the same JSON.
//!
//! Every field is optional: the gateway needs only `session.user.id` and the
//! expiry, and extra or `null` fields must never turn a valid session into
//! an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Path prefix of the IAM service; `idp.base_url` ends with it.
pub const SERVICE_PATH: &str = "/enos-iam-service";
/// Path of "Get Session Information" under `base_url`.
pub const PATH_SESSION_INFO: &str = "/v2.0/session/info";
/// Body `status`: "The provided bearer token is not valid."
pub const STATUS_INVALID_TOKEN: i64 = 30401;
/// Body `status`: "The session information is not found."
pub const STATUS_NOT_FOUND: i64 = 30404;

/// The envelope of every EnOS answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfoResponse {
    /// `true` on failure.
    #[serde(default)]
    pub fail: Option<bool>,
    /// The session, on success.
    #[serde(default)]
    pub session: Option<Session>,
    /// `true` on success.
    #[serde(default)]
    pub success: Option<bool>,
    /// Request id (the seed sends `null`).
    #[serde(default)]
    pub request_id: Option<String>,
    /// Same as `fail`.
    #[serde(default)]
    pub failed: Option<bool>,
    /// Human text; empty on success.
    #[serde(default)]
    pub message: Option<String>,
    /// 0 on success, else an error code such as 30401.
    #[serde(default)]
    pub status: Option<i64>,
    /// Same as `success`.
    #[serde(default)]
    pub successful: Option<bool>,
}

/// `session`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The organization the user is working in.
    #[serde(default)]
    pub working_organization: Option<Organization>,
    /// Lifetime in seconds, counted from `refreshTime`.
    #[serde(default)]
    pub expires: Option<f64>,
    /// Creation time, epoch seconds.
    #[serde(default)]
    pub create_time: Option<i64>,
    /// The organization the user belongs to.
    #[serde(default)]
    pub resident_organization: Option<Organization>,
    /// Last refresh, epoch seconds; the session ends `expires` after it.
    #[serde(default)]
    pub refresh_time: Option<f64>,
    /// The session id (a secret: never logged or forwarded).
    #[serde(default)]
    pub id: Option<String>,
    /// Who is logged in.
    #[serde(default)]
    pub user: Option<User>,
}

/// An organization reference.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Organization {
    /// Domain (may be `null`).
    #[serde(default)]
    pub domain: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Organization id, e.g. `o1557...`.
    #[serde(default)]
    pub id: Option<String>,
}

/// `session.user`: the fields the gateway reads; the rest are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User id, e.g. `u1557...`: the subject.
    #[serde(default)]
    pub id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Account type (a number in the seed).
    #[serde(default, rename = "type")]
    pub kind: Option<Value>,
    /// Home organization id.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// Personal data: e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Personal data: phone.
    #[serde(default)]
    pub phone: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_shape_and_tolerates_nulls() {
        // The seed's shape with fake values.
        let body = r#"{"fail":false,"session":{"workingOrganization":{"domain":"d","name":"n","id":"o1"},
            "expires":7200,"createTime":1562849746,"residentOrganization":{"domain":null,"name":"n","id":"o1"},
            "refreshTime":1562850052,"id":"IAM_S_x","user":{"guestOrganizations":null,"type":2,
            "organizationId":"o1","phone":"","name":"user","id":"u1","email":"a@example.com","password_state":0.0}},
            "success":true,"requestId":null,"failed":false,"message":"","status":0,"successful":true}"#;
        let r: SessionInfoResponse = serde_json::from_str(body).unwrap();
        let s = r.session.unwrap();
        assert_eq!(s.expires, Some(7200.0));
        assert_eq!(s.refresh_time, Some(1_562_850_052.0));
        let u = s.user.unwrap();
        assert_eq!(u.id.as_deref(), Some("u1"));
        assert_eq!(u.kind, Some(Value::from(2)));
        assert_eq!(s.resident_organization.unwrap().domain, None);
    }
}
