//! Secrets in the apply pipeline (Istio's `cacerts`): their data goes to the
//! cluster and nowhere else. Diffs, history and audit see a Secret only through
//! `redacted`: each entry's certificates (subject, fingerprint, expiry) or, for
//! anything else, its size and a SHA-256, never the bytes. What a rollback needs
//! is kept where the key already is: before a Secret is replaced, its content is
//! copied to `<name>-kept-<hash>` beside it (same namespace, same RBAC), and a
//! rollback restores from that copy after checking its hash against the record.

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::ObjRef;
use super::target;
use crate::registry::Cluster;

/// Kept copies are named `<name>-kept-<first 12 hex of the content hash>`.
pub use super::target::{KEPT_MARK, is_kept_copy};

/// Where a redacted object says which content it stood for.
const REDACTED: &str = "meshdeckRedacted";

/// kubectl's copy of what it applied: for a Secret, the whole data again.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Where kubectl's annotation is, as a JSON pointer.
fn last_applied_pointer() -> String {
    format!("/metadata/annotations/{}", LAST_APPLIED.replace('/', "~1"))
}

fn is_secret(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Secret")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over a Secret's data, entries in key order: names its content.
pub fn content_hash(data: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(data[k].as_str().unwrap_or_default().as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// The kept copy's name for a Secret `name` holding `data`.
pub fn kept_name(name: &str, data: &Map<String, Value>) -> String {
    format!("{name}{KEPT_MARK}{}", &content_hash(data)[..12])
}

/// One data entry in words: its certificates, or its size and hash.
pub fn describe_entry(b64: &str) -> String {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return "not base64".into();
    };
    let digest = hex(&Sha256::digest(&bytes))[..16].to_string();
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("PRIVATE KEY") {
        return format!("private key ({} bytes, sha256:{digest}, not shown)", bytes.len());
    }
    let now = chrono::Utc::now();
    let certs: Vec<String> = crate::inventory::trust::pem_blocks(&text)
        .iter()
        .map(|pem| match crate::inventory::trust::cert_facts(pem, now) {
            Some(c) => format!("{} {} until {}", c.subject, &c.fingerprint[..23.min(c.fingerprint.len())], &c.not_after[..10]),
            None => "unreadable certificate".into(),
        })
        .collect();
    if certs.is_empty() { format!("{} bytes, sha256:{digest}", bytes.len()) } else { certs.join(" + ") }
}

/// The object with every Secret value replaced by its description (other kinds unchanged).
pub fn redacted(v: &Value) -> Value {
    if !is_secret(v) {
        return v.clone();
    }
    let mut out = v.clone();
    if let Some(data) = v.get("data").and_then(Value::as_object) {
        let described: Map<String, Value> =
            data.iter().map(|(k, b64)| (k.clone(), json!(describe_entry(b64.as_str().unwrap_or_default())))).collect();
        out["data"] = Value::Object(described);
        out[REDACTED] = json!({"contentSha256": content_hash(data)});
    }
    if let Some(o) = out.as_object_mut() {
        o.remove("stringData");
    }
    if let Some(a) = out.pointer_mut(&last_applied_pointer()) {
        *a = json!("(redacted: holds the Secret's data)");
    }
    out
}

/// The content hash a redacted object stood for.
fn redacted_hash(v: &Value) -> Option<&str> {
    v.pointer(&format!("/{REDACTED}/contentSha256")).and_then(Value::as_str)
}

/// A copy of a live Secret to keep beside it: its type, data and kubectl's annotation.
pub fn kept_copy(live: &Value) -> Option<Value> {
    let data = live.get("data")?.as_object()?;
    let name = live.pointer("/metadata/name").and_then(Value::as_str)?;
    let namespace = live.pointer("/metadata/namespace").and_then(Value::as_str)?;
    let mut annotations = json!({"meshdeck.io/kept-from": name});
    if let Some(a) = live.pointer(&last_applied_pointer()) {
        annotations[LAST_APPLIED] = a.clone();
    }
    Some(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": kept_name(name, data), "namespace": namespace,
                     "labels": {crate::render::MANAGED_BY: "meshdeck", "meshdeck.io/kept-copy": "true"},
                     "annotations": annotations},
        "type": live.get("type").cloned().unwrap_or(json!("Opaque")),
        "data": data,
    }))
}

/// A redacted before-state made whole again from its kept copy in the cluster, whose
/// content must hash to what was recorded. Anything not redacted is returned as it is.
pub async fn unredact(cluster: &Cluster, t: &ObjRef, v: &Value) -> Result<Value, String> {
    let Some(hash) = redacted_hash(v) else { return Ok(v.clone()) };
    let name = format!("{}{KEPT_MARK}{}", t.name, &hash[..12.min(hash.len())]);
    let kept_ref = ObjRef { name: name.clone(), ..t.clone() };
    let kept = target::get(cluster, &kept_ref)
        .await?
        .ok_or_else(|| format!("{t}: its kept copy {name} is gone, so its data cannot be restored"))?;
    let data = kept.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
    if content_hash(&data) != hash {
        return Err(format!("{t}: its kept copy {name} does not hold the recorded content"));
    }
    let mut out = v.clone();
    out["data"] = Value::Object(data);
    if let Some(o) = out.as_object_mut() {
        o.remove(REDACTED);
    }
    let pointer = last_applied_pointer();
    if let (Some(a), Some(kept_a)) = (out.pointer_mut(&pointer), kept.pointer(&pointer)) {
        *a = kept_a.clone();
    }
    Ok(out)
}

/// A change set as it may be written down: every Secret redacted.
pub fn redact_changes(set: &super::ChangeSet) -> super::ChangeSet {
    let mut out = set.clone();
    for s in out.steps.iter_mut().filter(|s| s.target.kind == "Secret") {
        s.desired = match &s.desired {
            super::Desired::Apply(v) => super::Desired::Apply(redacted(v)),
            super::Desired::Restore(v) => super::Desired::Restore(redacted(v)),
            super::Desired::Absent => super::Desired::Absent,
        };
        s.previous = s.previous.as_ref().map(redacted);
        s.expected = s.expected.as_ref().map(redacted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn a_redacted_secret_keeps_no_byte_of_its_data_and_names_its_content() {
        let tls = crate::render::trust::Root::generate("a root", chrono::Utc::now()).expect("ca");
        let key_pem = tls.key_pem();
        let data = json!({"ca-cert.pem": b64(&tls.cert_pem), "ca-key.pem": b64(&key_pem)});
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cacerts", "namespace": "istio-system", "annotations": {LAST_APPLIED: format!("{{\"data\":{data}}}")}},
            "data": data});
        let r = redacted(&secret);
        let text = r.to_string();
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "key line in {text}");
        }
        assert!(!text.contains(&b64(&key_pem)[..40]));
        assert!(r["data"]["ca-key.pem"].as_str().expect("described").starts_with("private key ("), "{r:#}");
        assert!(r["data"]["ca-cert.pem"].as_str().expect("described").contains("a root"), "{r:#}");
        let data = secret["data"].as_object().expect("data");
        assert_eq!(redacted_hash(&r), Some(content_hash(data).as_str()));
        // Other kinds pass as they are.
        let cm = json!({"kind": "ConfigMap", "data": {"a": "b"}});
        assert_eq!(redacted(&cm), cm);
        // The kept copy's name follows the content.
        let copy = kept_copy(&secret).expect("copy");
        assert_eq!(copy["metadata"]["name"], format!("cacerts-kept-{}", &content_hash(data)[..12]));
        assert_eq!(copy["data"], secret["data"]);
    }
}
