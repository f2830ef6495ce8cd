//! meshdeck's own configuration file (`config.yaml` in the config directory):
//! which contexts are registered, their display names and per-cluster options.
//!
//! ```yaml
//! readOnly: false             # true refuses every write, as --read-only does
//! versionLabel: version       # the pod label that names a version
//! clusters:                   # omit to register every kubeconfig context
//!   - context: kind-east      # kubeconfig context
//!     name: east              # registry name used in plans (default: the context name)
//!     namespaces: [default]   # watch only these (default: all)
//!     versionLabel: version
//!     accent: "#82aaff"
//!     readOnly: true
//!     prometheus: http://prometheus.example:9090   # the cluster's Prometheus (else found in the cluster)
//!     prometheusTokenFile: ~/.config/meshdeck/prom-token  # a bearer token for it, read when used
//!     istiod: http://istiod.example:15014          # istiod's debug port (else reached through the API server)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshdeckConfig {
    #[serde(default)]
    pub read_only: bool,
    pub version_label: Option<String>,
    pub clusters: Option<Vec<ClusterEntry>>,
    /// Read by the cockpit (keymap and theme names); accepted here so one file holds both.
    pub keymap: Option<String>,
    pub theme: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterEntry {
    pub context: String,
    pub name: Option<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    pub version_label: Option<String>,
    pub accent: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    /// The cluster's Prometheus; none: looked for in the cluster (`observe::source`).
    pub prometheus: Option<HttpUrl>,
    /// A file holding a bearer token for that Prometheus (read when used, never logged).
    pub prometheus_token_file: Option<PathBuf>,
    /// istiod's debug endpoint (its monitoring port); none: through the API server.
    pub istiod: Option<HttpUrl>,
}

/// An `http://` or `https://` URL, checked where the file says it (so the error has its line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl(pub String);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(HttpUrl(s.trim_end_matches('/').to_string())),
            _ => Err(serde::de::Error::custom(format!("{s:?}: want an http:// or https:// URL with a host"))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// `$MESHDECK_CONFIG_DIR`, else the XDG config dir (`~/.config/meshdeck`).
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MESHDECK_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    directories::ProjectDirs::from("dev", "meshdeck", "meshdeck").map(|p| p.config_dir().to_path_buf())
}

/// Create `p` (and its parents) readable by the user only.
pub fn private_dir(p: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(p)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub use meshdeck_files::{Open, private_file, write_private};

/// `$MESHDECK_STATE_DIR`, else the XDG state dir (the cockpit's log, panic reports).
pub fn state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MESHDECK_STATE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    directories::ProjectDirs::from("dev", "meshdeck", "meshdeck")
        .map(|p| p.state_dir().map(|d| d.to_path_buf()).unwrap_or_else(|| p.data_dir().join("state")))
}

/// `$MESHDECK_DATA_DIR`, else the XDG data dir (history and audit).
pub fn data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MESHDECK_DATA_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    directories::ProjectDirs::from("dev", "meshdeck", "meshdeck").map(|p| p.data_dir().to_path_buf())
}

impl MeshdeckConfig {
    /// Load `config.yaml` from `dir`; a missing file is the empty config.
    pub fn load(dir: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = dir.map(|d| d.join("config.yaml")) else {
            return Ok(Self::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ConfigError { path: path.display().to_string(), message: e.to_string() }),
        }
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(text).map_err(|e| {
            let e = crate::yaml::YamlError::from(e);
            ConfigError { path: format!("{path}:{}:{}", e.line, e.column), message: e.message }
        })
    }

    pub fn version_label_for(&self, entry: Option<&ClusterEntry>) -> String {
        entry.and_then(|e| e.version_label.clone()).or_else(|| self.version_label.clone()).unwrap_or_else(|| "version".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_registered_subset_with_options() {
        let cfg = MeshdeckConfig::parse(
            "c.yaml",
            "clusters:\n  - context: kind-east\n    name: east\n    namespaces: [default]\n    readOnly: true\n",
        )
        .expect("parses");
        let e = &cfg.clusters.as_ref().expect("clusters")[0];
        assert_eq!((e.context.as_str(), e.name.as_deref(), e.read_only), ("kind-east", Some("east"), true));
        assert_eq!(cfg.version_label_for(Some(e)), "version");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let err = MeshdeckConfig::parse("c.yaml", "readOnly: true\nclustres: []\n").expect_err("typo");
        assert!(err.path.starts_with("c.yaml:2:"), "{err}");
        assert!(err.message.contains("clustres"), "{err}");
    }
}
