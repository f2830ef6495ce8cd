//! Keymaps and themes are both named YAML files: a file in `<config>/<kind>/`
//! overrides a built-in of the same name. One loader, with `file:line:col` errors.

use std::path::Path;

use serde::de::DeserializeOwned;

/// Load `<kind>/<name>.yaml`: the user's file (when `user_first`) or the built-in.
/// Returns a label naming where it came from, and the parsed file.
pub fn load<T: DeserializeOwned>(
    kind: &str,
    name: &str,
    builtins: &[(&str, &str)],
    config_dir: Option<&Path>,
    user_first: bool,
) -> Result<(String, T), String> {
    let user = config_dir.map(|d| d.join(kind).join(format!("{name}.yaml"))).filter(|p| user_first && p.is_file());
    let (file, text) = match &user {
        Some(p) => (p.display().to_string(), std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => match builtins.iter().find(|(n, _)| *n == name) {
            Some((n, t)) => (format!("{kind}/{n}.yaml (built in)"), t.to_string()),
            None => {
                let names: Vec<&str> = builtins.iter().map(|(n, _)| *n).collect();
                return Err(format!("no {} named {name:?} (built in: {})", kind.trim_end_matches('s'), names.join(", ")));
            }
        },
    };
    let parsed = serde_saphyr::from_str(&text).map_err(|e| {
        let e = crate::yaml::YamlError::from(e);
        format!("{file}:{}:{}: {}", e.line, e.column, e.message)
    })?;
    Ok((file, parsed))
}
