//! The `admission.k8s.io/v1` AdmissionReview, as much of it as a validating webhook reads and
//! writes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    pub request: Option<Request>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub uid: String,
    pub kind: Kind,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Kind {
    pub group: String,
    pub kind: String,
}

/// The answer to `uid`: allowed, or refused with `message` (HTTP 422, reason Invalid, as the API
/// server's own validation answers; 403 Forbidden for a refused deletion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Invalid(String),
    Forbidden(String),
}

impl Verdict {
    pub fn into_review(self, uid: &str) -> Value {
        let response = match self {
            Self::Allowed => json!({ "uid": uid, "allowed": true }),
            Self::Invalid(message) => refusal(uid, 422, "Invalid", &message),
            Self::Forbidden(message) => refusal(uid, 403, "Forbidden", &message),
        };
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        })
    }
}

fn refusal(uid: &str, code: u16, reason: &str, message: &str) -> Value {
    json!({
        "uid": uid,
        "allowed": false,
        "status": Status { code, reason, message, status: "Failure" },
    })
}

#[derive(Serialize)]
struct Status<'a> {
    status: &'a str,
    code: u16,
    reason: &'a str,
    message: &'a str,
}
