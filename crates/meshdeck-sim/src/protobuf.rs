//! Kubernetes protobuf request bodies for the few simple kinds kubectl's typed
//! commands send that way (`create namespace|configmap|secret|serviceaccount`,
//! `auth can-i`). Other kinds answer 415; kubectl sends them as JSON anyway.

use base64::Engine;
use serde_json::{Map, Value, json};

/// Fields of one protobuf message: (number, wire type, bytes or varint).
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => {
                varint(&mut buf)?;
                Field::Varint
            }
            1 => {
                buf = buf.get(8..)?;
                continue;
            }
            5 => {
                buf = buf.get(4..)?;
                continue;
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let (value, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Field::Bytes(value)
            }
            _ => return None,
        };
        out.push((number, f));
    }
    Some(out)
}

#[derive(Clone, Copy)]
enum Field<'a> {
    Varint,
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn bytes_of<'a>(fs: &[(u64, Field<'a>)], n: u64) -> Option<&'a [u8]> {
    fs.iter().find_map(|(k, f)| match f {
        Field::Bytes(b) if *k == n => Some(*b),
        _ => None,
    })
}

fn string_of(fs: &[(u64, Field<'_>)], n: u64) -> Option<String> {
    bytes_of(fs, n).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A `map<string, string>` (or bytes, base64-encoded) field: repeated entries {1: key, 2: value}.
fn map_of(fs: &[(u64, Field<'_>)], n: u64, base64_values: bool) -> Option<Value> {
    let mut m = Map::new();
    for (k, f) in fs {
        if let (true, Field::Bytes(entry)) = (*k == n, f) {
            let e = fields(entry)?;
            let key = string_of(&e, 1).unwrap_or_default();
            let raw = bytes_of(&e, 2).unwrap_or_default();
            let value = if base64_values {
                base64::engine::general_purpose::STANDARD.encode(raw)
            } else {
                String::from_utf8_lossy(raw).into_owned()
            };
            m.insert(key, json!(value));
        }
    }
    if m.is_empty() { None } else { Some(Value::Object(m)) }
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let fs = fields(b)?;
    let mut m = Map::new();
    for (n, key) in [(1, "name"), (2, "generateName"), (3, "namespace")] {
        // Kubernetes' generated marshallers write empty strings too; empty means unset.
        if let Some(s) = string_of(&fs, n).filter(|s| !s.is_empty()) {
            m.insert(key.into(), json!(s));
        }
    }
    if let Some(l) = map_of(&fs, 11, false) {
        m.insert("labels".into(), l);
    }
    if let Some(a) = map_of(&fs, 12, false) {
        m.insert("annotations".into(), a);
    }
    Some(Value::Object(m))
}

/// Decode a `k8s\0`-enveloped body into the JSON form of the object, for the kinds listed above.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body.strip_prefix(b"k8s\x00").ok_or("not a Kubernetes protobuf body")?;
    let unknown = fields(envelope).ok_or("malformed protobuf envelope")?;
    let type_meta = fields(bytes_of(&unknown, 1).unwrap_or_default()).ok_or("malformed typeMeta")?;
    let api_version = string_of(&type_meta, 1).unwrap_or_default();
    let kind = string_of(&type_meta, 2).unwrap_or_default();
    let raw = fields(bytes_of(&unknown, 2).ok_or("empty protobuf body")?).ok_or("malformed object")?;
    let meta = bytes_of(&raw, 1).and_then(object_meta).unwrap_or_else(|| json!({}));
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": meta});
    match kind.as_str() {
        "Namespace" | "ServiceAccount" => {}
        "ConfigMap" => {
            if let Some(d) = map_of(&raw, 2, false) {
                obj["data"] = d;
            }
            if let Some(d) = map_of(&raw, 3, true) {
                obj["binaryData"] = d;
            }
        }
        "Secret" => {
            if let Some(d) = map_of(&raw, 2, true) {
                obj["data"] = d;
            }
            if let Some(t) = string_of(&raw, 3) {
                obj["type"] = json!(t);
            }
        }
        "SelfSubjectAccessReview" => {
            let spec = bytes_of(&raw, 2).and_then(fields).unwrap_or_default();
            let mut attrs = Map::new();
            if let Some(ra) = bytes_of(&spec, 1).and_then(fields) {
                for (n, key) in
                    [(1, "namespace"), (2, "verb"), (3, "group"), (4, "version"), (5, "resource"), (6, "subresource"), (7, "name")]
                {
                    if let Some(v) = string_of(&ra, n) {
                        attrs.insert(key.into(), json!(v));
                    }
                }
            }
            obj["spec"] = json!({"resourceAttributes": attrs});
        }
        other => {
            return Err(format!("protobuf bodies are not supported for {other}; send application/json"));
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(n: u8, payload: &[u8]) -> Vec<u8> {
        [&[(n << 3) | 2, payload.len() as u8][..], payload].concat()
    }

    #[test]
    fn decodes_a_configmap_and_an_access_review() {
        let meta = ld(1, b"cm1");
        let entry = [ld(1, b"a"), ld(2, b"b")].concat();
        let raw = [ld(1, &meta), ld(2, &entry)].concat();
        let tm = [ld(1, b"v1"), ld(2, b"ConfigMap")].concat();
        let body = [&b"k8s\x00"[..], &ld(1, &tm), &ld(2, &raw)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(v, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "b"}}));

        let ra = [ld(1, b"default"), ld(2, b"get"), ld(5, b"pods")].concat();
        let raw = ld(2, &ld(1, &ra));
        let tm = [ld(1, b"authorization.k8s.io/v1"), ld(2, b"SelfSubjectAccessReview")].concat();
        let body = [&b"k8s\x00"[..], &ld(1, &tm), &ld(2, &raw)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(v["spec"]["resourceAttributes"], json!({"namespace": "default", "verb": "get", "resource": "pods"}));
    }

    #[test]
    fn other_kinds_are_refused_by_name() {
        let tm = [ld(1, b"v1"), ld(2, b"Pod")].concat();
        let body = [&b"k8s\x00"[..], &ld(1, &tm), &ld(2, &ld(1, b""))].concat();
        assert!(decode(&body).expect_err("refused").contains("Pod"));
    }
}
