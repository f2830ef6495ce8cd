//! Plan YAML as written, with the position of every value kept (serde-saphyr
//! `Spanned`), so validation can point at `file:line:col`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::PlanError;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDoc {
    pub api_version: S<String>,
    pub kind: S<String>,
    pub metadata: RawMeta,
    pub spec: S<RawSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMeta {
    pub name: S<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The union of both kinds' fields; validation says which belong to which kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSpec {
    pub service: Option<S<String>>,
    pub from: Option<S<RawFrom>>,
    pub split: Option<S<Vec<S<RawDestination>>>>,
    pub failover: Option<S<Vec<S<RawTarget>>>>,
    pub outlier_detection: Option<S<RawOutlier>>,
    pub retries: Option<S<RawRetries>>,
    pub timeout: Option<S<String>>,
    /// The one Service port to route (default: every HTTP-family port).
    pub port: Option<S<serde_json::Value>>,
    #[serde(rename = "match")]
    pub matches: Option<S<Vec<S<RawMatch>>>>,
    pub topology: Option<S<String>>,
    /// `istio` or `gateway-api` (default: from the calling clusters' mesh mode).
    pub routing: Option<S<String>>,
    pub allow_from: Option<S<Vec<S<RawCaller>>>>,
    /// Clusters that accept the callers' trust domains though meshdeck cannot see it.
    pub trust_accepted_by: Option<S<Vec<S<String>>>>,
    /// How the route lives beside other routing of its host (`delegate`).
    pub coexist: Option<S<String>>,
    /// Step the split in by its metrics (`meshdeck canary`).
    pub canary: Option<S<RawCanary>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCanary {
    pub destination: Option<S<RawTarget>>,
    pub steps: Option<S<Vec<S<serde_json::Value>>>>,
    pub interval: Option<S<String>>,
    pub gates: Option<S<RawGates>>,
    pub rollback_after: Option<S<serde_json::Value>>,
    pub rollback_to: Option<S<String>>,
    pub decide_within: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawGates {
    pub success_rate: Option<S<serde_json::Value>>,
    pub p99: Option<S<String>>,
    pub min_requests: Option<S<serde_json::Value>>,
    pub per: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrom {
    pub clusters: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub cluster: S<String>,
    pub version: S<String>,
    /// Kept as any YAML value so `weight: ten` gets a precise message.
    pub weight: S<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub cluster: S<String>,
    pub version: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawOutlier {
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<S<serde_json::Value>>,
    pub interval: Option<S<String>>,
    pub base_ejection_time: Option<S<String>>,
    pub max_ejection_percent: Option<S<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRetries {
    pub attempts: S<serde_json::Value>,
    pub per_try_timeout: Option<S<String>>,
    pub retry_on: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub headers: BTreeMap<String, S<RawStringMatch>>,
    pub path_prefix: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCaller {
    pub cluster: S<String>,
    pub namespace: S<String>,
    pub service_account: S<String>,
}

/// Parse a plan file's documents; a syntax or shape error names the position.
pub fn parse(file: &str, text: &str) -> Result<Vec<RawDoc>, PlanError> {
    serde_saphyr::from_multiple::<RawDoc>(text).map_err(|e| {
        let e = crate::yaml::YamlError::from(e);
        PlanError { file: file.into(), line: e.line, column: e.column, message: suggest(&e.message) }
    })
}

/// "unknown field `weigth`, expected one of cluster, version, weight": name the
/// closest known field (and drop the position the message repeats).
fn suggest(message: &str) -> String {
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    // The parser's own words, said as an operator needs them.
    if let Some(detail) = message.strip_prefix("budget breached: ") {
        let count = detail.chars().filter(char::is_ascii_digit).collect::<String>();
        return if detail.starts_with("Documents") {
            format!("too many documents: a plan file holds at most 1024, this one has {count}")
        } else {
            format!("the plan is larger than meshdeck reads ({}): split it into several files", detail.split(' ').next().unwrap_or(detail))
        };
    }
    if message.contains("expected mapping") || message.contains("invalid type: sequence") {
        return "each document must be a mapping (a TrafficRoute or AccessPolicy with apiVersion, kind, metadata and spec), not a list"
            .into();
    }
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((field, tail)) = rest.split_once('`') else { return message.to_string() };
    let Some(expected) = tail.split_once("expected ").map(|(_, e)| e) else { return message.to_string() };
    let expected = expected.trim_start_matches("one of ");
    let known: Vec<String> = expected
        .split([',', ' '])
        .map(|k| k.trim_matches(|c| c == '`' || c == ' '))
        .filter(|k| !k.is_empty() && *k != "or")
        .map(String::from)
        .collect();
    let best = known.iter().map(|k| (edit_distance(field, k), k)).min();
    match best {
        Some((d, k)) if d <= 2.max(field.len() / 3) => format!("{message}; did you mean `{k}`?"),
        _ => message.to_string(),
    }
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_get_a_suggestion_and_a_position() {
        let text = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: x}\nspec:\n  service: reviews.default\n  split:\n    - {cluster: c1, version: v1, weigth: 100}\n";
        let err = parse("p.yaml", text).expect_err("typo");
        assert_eq!((err.line, err.file.as_str()), (7, "p.yaml"));
        assert!(err.message.contains("did you mean `weight`?"), "{}", err.message);
    }

    #[test]
    fn positions_are_kept_for_values() {
        let text = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: x}\nspec:\n  service: reviews.default\n  split:\n    - cluster: c1\n      version: v1\n      weight: ten\n";
        let docs = parse("p.yaml", text).expect("parses");
        let split = docs[0].spec.value.split.as_ref().expect("split");
        let w = &split.value[0].value.weight;
        assert_eq!((w.referenced.line(), w.referenced.column()), (9, 15));
    }
}
