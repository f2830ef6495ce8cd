//! YAML in and out, one place: serde-saphyr for parsing (YAML 1.2, so `on`/`y`
//! stay strings) and a stable emitter for rendered objects.

use serde_json::Value;

/// A YAML syntax error with its position (1-based), for `file:line:col` messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl From<serde_saphyr::Error> for YamlError {
    fn from(e: serde_saphyr::Error) -> Self {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let full = e.without_snippet().to_string();
        // The message repeats "line L column C" that we report in front already.
        let message = full.split_once(": ").filter(|(head, _)| head.contains("line ")).map(|(_, rest)| rest.to_string()).unwrap_or(full);
        YamlError { line, column, message: message.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string() }
    }
}

/// Parse every document of a YAML stream into JSON values; empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(YamlError::from)?;
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
