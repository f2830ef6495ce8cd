//! Label and field selectors as `kubectl -l` and `--field-selector` send them.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(check_key(key.trim())?)
            } else if let Some((k, rest)) = split_word(part, " notin ") {
                Requirement::NotIn(check_key(k)?, set_values(rest)?)
            } else if let Some((k, rest)) = split_word(part, " in ") {
                Requirement::In(check_key(k)?, set_values(rest)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(check_key(k.trim())?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Eq(check_key(k.trim())?, v.trim().to_string())
            } else {
                Requirement::Exists(check_key(part)?)
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Field selectors: the API server supports `metadata.name` and `metadata.namespace` for every kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("invalid selector: '{part}'; can't understand '{part}'"));
            };
            let k = k.trim();
            if !matches!(k, "metadata.name" | "metadata.namespace") {
                return Err(format!("field label not supported: {k}"));
            }
            out.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(Self(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let meta = |f: &str| obj.get("metadata").and_then(|m| m.get(f)).and_then(Value::as_str).unwrap_or("");
        self.matches_names(meta("namespace"), meta("name"))
    }

    /// The only fields selectable: an object's namespace and name.
    pub fn matches_names(&self, namespace: &str, name: &str) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let actual = if k == "metadata.name" { name } else { namespace };
            (actual == v) == *eq
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn split_word<'a>(part: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    part.find(word).map(|i| (part[..i].trim(), part[i + word.len()..].trim()))
}

fn set_values(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: expected '(' and ')' around {rest}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn check_key(k: &str) -> Result<String, String> {
    let ok = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok { Ok(k.to_string()) } else { Err(format!("unable to parse requirement: invalid label key \"{k}\"")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_cover_kubectl_forms() {
        let labels = json!({"app": "reviews", "version": "v2"});
        let m = |s: &str| LabelSelector::parse(s).expect(s).matches(Some(&labels));
        assert!(m("app=reviews"));
        assert!(m("app==reviews,version!=v1"));
        assert!(m("version in (v1,v2)"));
        assert!(!m("version notin (v2, v3)"));
        assert!(m("app,!missing"));
        assert!(!m("missing"));
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selector_on_name() {
        let obj = json!({"metadata": {"name": "x", "namespace": "default"}});
        assert!(FieldSelector::parse("metadata.name=x").expect("parse").matches(&obj));
        assert!(!FieldSelector::parse("metadata.name!=x").expect("parse").matches(&obj));
        assert!(FieldSelector::parse("spec.nodeName=a").is_err());
    }
}
