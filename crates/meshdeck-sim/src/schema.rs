//! Structural OpenAPI v3 schemas as CustomResourceDefinitions carry them:
//! validation with the API server's field paths, and pruning of unknown fields.
//! CEL rules (`x-kubernetes-validations`) are not evaluated.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

#[derive(Clone, Debug, Default)]
pub struct Schema {
    /// CEL rules (`x-kubernetes-validations`) here or below: not evaluated, but
    /// a real server says so when other errors stopped it from checking them.
    has_rules: bool,
    ty: Option<String>,
    format: Option<String>,
    properties: BTreeMap<String, Schema>,
    required: Vec<String>,
    additional: Option<Box<Schema>>,
    additional_allowed: bool,
    items: Option<Box<Schema>>,
    enum_values: Vec<Value>,
    nullable: bool,
    int_or_string: bool,
    preserve_unknown: bool,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    min_properties: Option<usize>,
    max_properties: Option<usize>,
    pattern: Option<Regex>,
    one_of: Vec<Schema>,
    any_of: Vec<Schema>,
    all_of: Vec<Schema>,
    not: Option<Box<Schema>>,
}

/// One validation failure, formatted as the API server formats field errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Schema {
    pub fn compile(v: &Value) -> Result<Schema, String> {
        let obj = v.as_object().ok_or("schema must be an object")?;
        let mut s = Schema {
            ty: obj.get("type").and_then(Value::as_str).map(String::from),
            format: obj.get("format").and_then(Value::as_str).map(String::from),
            nullable: flag(obj, "nullable"),
            int_or_string: flag(obj, "x-kubernetes-int-or-string"),
            preserve_unknown: flag(obj, "x-kubernetes-preserve-unknown-fields"),
            minimum: obj.get("minimum").and_then(Value::as_f64),
            maximum: obj.get("maximum").and_then(Value::as_f64),
            exclusive_minimum: flag(obj, "exclusiveMinimum"),
            exclusive_maximum: flag(obj, "exclusiveMaximum"),
            min_length: count(obj, "minLength"),
            max_length: count(obj, "maxLength"),
            min_items: count(obj, "minItems"),
            max_items: count(obj, "maxItems"),
            min_properties: count(obj, "minProperties"),
            max_properties: count(obj, "maxProperties"),
            ..Schema::default()
        };
        if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
            s.pattern = Some(Regex::new(p).map_err(|e| format!("pattern {p:?}: {e}"))?);
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                s.properties.insert(k.clone(), Schema::compile(sub)?);
            }
        }
        if let Some(req) = obj.get("required").and_then(Value::as_array) {
            s.required = req.iter().filter_map(|r| r.as_str().map(String::from)).collect();
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(b)) => s.additional_allowed = *b,
            Some(sub @ Value::Object(_)) => s.additional = Some(Box::new(Schema::compile(sub)?)),
            _ => {}
        }
        if let Some(items) = obj.get("items") {
            s.items = Some(Box::new(Schema::compile(items)?));
        }
        if let Some(e) = obj.get("enum").and_then(Value::as_array) {
            s.enum_values = e.clone();
        }
        let list = |key: &str| -> Result<Vec<Schema>, String> {
            obj.get(key).and_then(Value::as_array).map(|a| a.iter().map(Schema::compile).collect()).unwrap_or(Ok(vec![]))
        };
        s.one_of = list("oneOf")?;
        s.any_of = list("anyOf")?;
        s.all_of = list("allOf")?;
        if let Some(n) = obj.get("not") {
            s.not = Some(Box::new(Schema::compile(n)?));
        }
        s.has_rules = obj.contains_key("x-kubernetes-validations")
            || s.properties.values().any(|p| p.has_rules)
            || s.items.as_ref().is_some_and(|i| i.has_rules)
            || s.additional.as_ref().is_some_and(|a| a.has_rules);
        Ok(s)
    }

    /// Validate a whole object (apiVersion, kind and metadata are the server's, not the schema's).
    pub fn validate_object(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(map) = obj.as_object() {
            for (k, v) in map {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = self.properties.get(k) {
                    sub.validate(v, k, &mut errs);
                }
            }
            for r in &self.required {
                if !map.contains_key(r) {
                    errs.push(FieldError { path: r.clone(), message: "Required value".into() });
                }
            }
        }
        if !errs.is_empty() && self.has_rules {
            errs.push(FieldError {
                path: "<nil>".into(),
                message: "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
            });
        }
        errs
    }

    fn validate(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        if v.is_null() {
            if !self.nullable && self.ty.is_some() {
                errs.push(invalid(
                    path,
                    v,
                    &format!("{path} in body must be of type {}: \"null\"", self.ty.as_deref().unwrap_or("object")),
                ));
            }
            return;
        }
        if self.int_or_string {
            if !(v.is_string() || v.is_i64() || v.is_u64()) {
                errs.push(invalid(
                    path,
                    &serde_json::json!(type_name(v)),
                    &format!("{path} in body must be of type integer or string: \"{}\"", type_name(v)),
                ));
            }
        } else if let Some(ty) = &self.ty {
            let ok = match ty.as_str() {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !ok {
                errs.push(invalid(
                    path,
                    &serde_json::json!(type_name(v)),
                    &format!("{path} in body must be of type {ty}: \"{}\"", type_name(v)),
                ));
                return;
            }
        }
        if !self.enum_values.is_empty() && !self.enum_values.contains(v) {
            let allowed: Vec<String> = self.enum_values.iter().map(|e| e.to_string()).collect();
            errs.push(FieldError {
                path: path.into(),
                message: format!("Unsupported value: {}: supported values: {}", v, allowed.join(", ")),
            });
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = self.minimum
                && (n < min || (self.exclusive_minimum && n <= min))
            {
                errs.push(invalid(path, v, &format!("{path} in body should be greater than or equal to {min}")));
            }
            if let Some(max) = self.maximum
                && (n > max || (self.exclusive_maximum && n >= max))
            {
                errs.push(invalid(path, v, &format!("{path} in body should be less than or equal to {max}")));
            }
            let range = match self.format.as_deref() {
                Some("int32") => Some((i32::MIN as f64, i32::MAX as f64)),
                Some("uint32") => Some((0.0, u32::MAX as f64)),
                _ => None,
            };
            if let Some((lo, hi)) = range
                && (n < lo || n > hi)
            {
                errs.push(invalid(path, v, &format!("{path} in body must be of type {}", self.format.as_deref().unwrap_or(""))));
            }
        }
        if let Some(s) = v.as_str() {
            let len = s.chars().count();
            if let Some(min) = self.min_length
                && len < min
            {
                errs.push(invalid(path, v, &format!("{path} in body should be at least {min} chars long")));
            }
            if let Some(max) = self.max_length
                && len > max
            {
                errs.push(FieldError { path: path.into(), message: format!("Too long: may not be more than {max} bytes") });
            }
            if let Some(re) = &self.pattern
                && !re.is_match(s)
            {
                errs.push(invalid(path, v, &format!("{path} in body should match '{}'", re.as_str())));
            }
        }
        if let Some(items) = v.as_array() {
            if let Some(min) = self.min_items
                && items.len() < min
            {
                errs.push(invalid(path, v, &format!("{path} in body should have at least {min} items")));
            }
            if let Some(max) = self.max_items
                && items.len() > max
            {
                errs.push(FieldError { path: path.into(), message: format!("Too many: {}: must have at most {max} items", items.len()) });
            }
            if let Some(item_schema) = &self.items {
                for (i, item) in items.iter().enumerate() {
                    item_schema.validate(item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        if let Some(map) = v.as_object() {
            if let Some(max) = self.max_properties
                && map.len() > max
            {
                errs.push(FieldError { path: path.into(), message: format!("Too many: {}: must have at most {max} items", map.len()) });
            }
            if let Some(min) = self.min_properties
                && map.len() < min
            {
                errs.push(invalid(path, v, &format!("{path} in body should have at least {min} properties")));
            }
            for (k, child) in map {
                let child_path = format!("{path}.{k}");
                if let Some(sub) = self.properties.get(k) {
                    sub.validate(child, &child_path, errs);
                } else if let Some(add) = &self.additional {
                    add.validate(child, &child_path, errs);
                }
            }
            for r in &self.required {
                if !map.contains_key(r) {
                    errs.push(FieldError { path: format!("{path}.{r}"), message: "Required value".into() });
                }
            }
        }
        self.validate_combinators(v, path, errs);
    }

    fn validate_combinators(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        for s in &self.all_of {
            s.validate(v, path, errs);
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(|s| s.matches(v, path)) {
            errs.push(invalid(path, v, &format!("{path} in body must satisfy at least one of the allowed schemas (anyOf)")));
        }
        if !self.one_of.is_empty() {
            let n = self.one_of.iter().filter(|s| s.matches(v, path)).count();
            if n != 1 {
                let message = if n == 0 {
                    format!("{path} in body must validate one and only one schema (oneOf). Found none valid")
                } else {
                    format!("{path} in body must validate one and only one schema (oneOf). Found {n} valid alternatives")
                };
                errs.push(invalid(path, v, &message));
            }
        }
        if let Some(not) = &self.not
            && not.matches(v, path)
        {
            errs.push(invalid(path, v, &format!("{path} in body must not validate the schema (not)")));
        }
    }

    fn matches(&self, v: &Value, path: &str) -> bool {
        let mut e = Vec::new();
        self.validate(v, path, &mut e);
        e.is_empty()
    }

    /// Remove fields the schema does not know; returns their paths (for strict validation).
    pub fn prune_object(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        if let Some(map) = obj.as_object_mut() {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match self.properties.get(&k) {
                    Some(sub) => {
                        if let Some(child) = map.get_mut(&k) {
                            sub.prune(child, &k, &mut unknown);
                        }
                    }
                    None if !self.preserve_unknown => {
                        map.remove(&k);
                        unknown.push(k);
                    }
                    None => {}
                }
            }
        }
        unknown
    }

    fn prune(&self, v: &mut Value, path: &str, unknown: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if self.preserve_unknown && self.properties.is_empty() && self.additional.is_none() {
                    return;
                }
                prune_map(self, map, path, unknown);
            }
            Value::Array(items) => {
                if let Some(item_schema) = &self.items {
                    for (i, item) in items.iter_mut().enumerate() {
                        item_schema.prune(item, &format!("{path}[{i}]"), unknown);
                    }
                }
            }
            _ => {}
        }
    }
}

fn prune_map(s: &Schema, map: &mut Map<String, Value>, path: &str, unknown: &mut Vec<String>) {
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let child_path = format!("{path}.{k}");
        if let Some(sub) = s.properties.get(&k) {
            if let Some(child) = map.get_mut(&k) {
                sub.prune(child, &child_path, unknown);
            }
        } else if let Some(add) = &s.additional {
            if let Some(child) = map.get_mut(&k) {
                add.prune(child, &child_path, unknown);
            }
        } else if !s.preserve_unknown && !s.additional_allowed && !s.int_or_string {
            map.remove(&k);
            unknown.push(child_path);
        }
    }
}

fn flag(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn count(obj: &Map<String, Value>, key: &str) -> Option<usize> {
    obj.get(key).and_then(Value::as_u64).map(|n| n as usize)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(path: &str, v: &Value, message: &str) -> FieldError {
    let shown = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    };
    FieldError { path: path.into(), message: format!("Invalid value: {shown}: {message}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weight_schema() -> Schema {
        Schema::compile(&json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "weight": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "pick": {"type": "object", "oneOf": [
                    {"not": {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}},
                    {"required": ["a"]}, {"required": ["b"]}],
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
            }}}
        }))
        .expect("compiles")
    }

    #[test]
    fn a_string_weight_is_a_type_error_with_the_field_path() {
        let errs = weight_schema().validate_object(&json!({"spec": {"weight": "ten"}}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "spec.weight");
        assert!(errs[0].message.contains("must be of type integer"), "{}", errs[0]);
    }

    #[test]
    fn ranges_enums_and_one_of_are_enforced() {
        let s = weight_schema();
        assert!(s.validate_object(&json!({"spec": {"weight": 100, "mode": "A", "pick": {"a": "x"}}})).is_empty());
        assert_eq!(s.validate_object(&json!({"spec": {"weight": 101}})).len(), 1);
        assert_eq!(s.validate_object(&json!({"spec": {"mode": "C"}})).len(), 1);
        assert_eq!(s.validate_object(&json!({"spec": {"pick": {"a": "x", "b": "y"}}})).len(), 1);
    }

    #[test]
    fn unknown_fields_are_pruned_and_reported() {
        let mut obj = json!({"apiVersion": "x/v1", "spec": {"weight": 1, "bogus": true}, "extra": 1});
        let unknown = weight_schema().prune_object(&mut obj);
        assert_eq!(unknown, ["spec.bogus", "extra"]);
        assert_eq!(obj, json!({"apiVersion": "x/v1", "spec": {"weight": 1}}));
    }
}
