//! An object at rest in a simulated cluster: its JSON text, with the few fields
//! the store looks up beside it. A parsed `serde_json::Value` of a real-sized pod
//! takes 7-8 times its JSON in memory (a map for every nested field), so a fleet
//! of 100 x 200 real-sized services would not fit; the store parses an object
//! when it is read, and a list is written out from the text without parsing.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::selectors::{FieldSelector, LabelSelector};

#[derive(Clone, Debug)]
pub struct Stored(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    api_version: Option<Box<str>>,
    kind: Option<Box<str>>,
    namespace: Box<str>,
    name: Box<str>,
    rv: u64,
    /// `metadata.labels`, for label selectors without parsing the object.
    labels: Option<Value>,
    /// A container in `status.containerStatuses` is not ready (the sim's kubelet
    /// readies them on its next step, without parsing every pod of the fleet).
    unready: bool,
    /// The object without `apiVersion` and `kind`, as JSON text.
    body: Box<str>,
}

impl Stored {
    pub fn new(obj: &Value) -> Stored {
        let text = |p: &str| obj.pointer(p).and_then(Value::as_str);
        let body = match obj.as_object() {
            Some(m) => serde_json::to_string(&WithoutTypeMeta(m)).unwrap_or_else(|_| "{}".into()),
            None => "{}".into(),
        };
        Stored(Arc::new(Inner {
            api_version: text("/apiVersion").map(Into::into),
            kind: text("/kind").map(Into::into),
            namespace: text("/metadata/namespace").unwrap_or_default().into(),
            name: text("/metadata/name").unwrap_or_default().into(),
            rv: text("/metadata/resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0),
            labels: obj.pointer("/metadata/labels").cloned(),
            unready: obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|c| c.get("ready") == Some(&Value::Bool(false)))),
            body: body.into(),
        }))
    }

    /// The whole object, parsed.
    pub fn value(&self) -> Value {
        let mut m = Map::new();
        if let Some(v) = &self.0.api_version {
            m.insert("apiVersion".into(), Value::String(v.to_string()));
        }
        if let Some(k) = &self.0.kind {
            m.insert("kind".into(), Value::String(k.to_string()));
        }
        if let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&self.0.body) {
            m.extend(body);
        }
        Value::Object(m)
    }

    pub fn api_version(&self) -> Option<&str> {
        self.0.api_version.as_deref()
    }

    pub fn kind(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }

    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn rv(&self) -> u64 {
        self.0.rv
    }

    pub fn labels(&self) -> Option<&Value> {
        self.0.labels.as_ref()
    }

    /// A container of this pod is not ready.
    pub fn unready(&self) -> bool {
        self.0.unready
    }

    /// Bytes of JSON held for this object.
    pub fn size(&self) -> usize {
        self.0.body.len()
    }

    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches(self.labels()) && fields.matches_names(self.namespace(), self.name())
    }

    /// Append the object as JSON: without `apiVersion` and `kind` (a built-in kind's
    /// list items), or with them, `api_version` saying which.
    pub fn write_json(&self, out: &mut Vec<u8>, type_meta: Option<&str>) {
        let body = self.0.body.as_bytes();
        let Some(api_version) = type_meta else {
            out.extend_from_slice(body);
            return;
        };
        out.push(b'{');
        out.extend_from_slice(b"\"apiVersion\":");
        out.extend_from_slice(&serde_json::to_vec(api_version).unwrap_or_default());
        if let Some(kind) = &self.0.kind {
            out.extend_from_slice(b",\"kind\":");
            out.extend_from_slice(&serde_json::to_vec(&**kind).unwrap_or_default());
        }
        // The body is a JSON object: `{}` or `{"...`.
        if body.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&body[1..]);
        } else {
            out.push(b'}');
        }
    }
}

/// An object serialized without `apiVersion` and `kind`, without copying it.
pub struct WithoutTypeMeta<'a>(pub &'a Map<String, Value>);

impl serde::Serialize for WithoutTypeMeta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(k, _)| k.as_str() != "apiVersion" && k.as_str() != "kind") {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_reads_back_as_written_and_writes_out_with_or_without_its_type() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "resourceVersion": "12", "labels": {"app": "reviews"}},
            "spec": {"containers": [{"name": "c"}]}});
        let s = Stored::new(&pod);
        assert_eq!(s.value(), pod);
        assert_eq!((s.namespace(), s.name(), s.rv()), ("default", "p", 12));
        assert!(s.matches(&LabelSelector::parse("app=reviews").expect("sel"), &FieldSelector::default()));
        assert!(!s.matches(&LabelSelector::parse("app=ratings").expect("sel"), &FieldSelector::default()));
        let mut out = Vec::new();
        s.write_json(&mut out, Some("v1"));
        assert_eq!(serde_json::from_slice::<Value>(&out).expect("json"), pod);
        out.clear();
        s.write_json(&mut out, None);
        let bare: Value = serde_json::from_slice(&out).expect("json");
        assert!(bare.get("kind").is_none() && bare.get("apiVersion").is_none() && bare["spec"] == pod["spec"]);
        let empty = Stored::new(&json!({"apiVersion": "v1", "kind": "X"}));
        out.clear();
        empty.write_json(&mut out, Some("v1"));
        assert_eq!(serde_json::from_slice::<Value>(&out).expect("json"), json!({"apiVersion": "v1", "kind": "X"}));
    }
}
