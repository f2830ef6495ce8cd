//! YAML in and out, one place: serde-saphyr for parsing (YAML 1.2, so `on`/`y`
//! stay strings) and a stable emitter for rendered objects.

use serde_json::Value;

/// Parse every document of a YAML stream into JSON values; empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Parse a body that is JSON or YAML (apply patches may be either).
pub fn parse_json_or_yaml(bytes: &[u8]) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Ok(v);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("body is not UTF-8: {e}"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// Serialize one value as a YAML document.
pub fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# unserializable: {e}\n"))
}
