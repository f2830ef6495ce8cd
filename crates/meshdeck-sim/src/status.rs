//! API errors as the Kubernetes `Status` object, with kubectl's usual wording.

use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// A Status's details as a real server writes them: the resource (or kind)
/// and its group apart, `virtualservices` + `networking.istio.io`.
pub fn details(qualified: &str, name: &str) -> Value {
    match qualified.split_once('.') {
        Some((kind, group)) => json!({"name": name, "group": group, "kind": kind}),
        None => json!({"name": name, "kind": qualified}),
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found")).with_details(details(resource, name))
    }

    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists")).with_details(details(resource, name))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(kind_group: &str, name: &str, causes: &[(String, String)]) -> Self {
        let msgs: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let joined = if msgs.len() == 1 { msgs[0].clone() } else { format!("[{}]", msgs.join(", ")) };
        // A value of the wrong JSON type is a type error to a real server.
        let reason = |m: &str| if m.contains(" in body must be of type ") { "FieldValueTypeInvalid" } else { "FieldValueInvalid" };
        let causes: Vec<Value> = causes.iter().map(|(f, m)| json!({"reason": reason(m), "message": m, "field": f})).collect();
        let mut d = details(kind_group, name);
        d["causes"] = json!(causes);
        Self::new(422, "Invalid", format!("{kind_group} \"{name}\" is invalid: {joined}")).with_details(d)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}
