//! Kubeconfig as kubectl reads it: `--kubeconfig PATH`, else every file in
//! `KUBECONFIG` (merged, first wins; missing files skipped), else `~/.kube/config`.
//! Parsing is pure over file contents; errors name the file, line and column.

use std::ffi::OsString;
use std::path::PathBuf;

use kube::config::Kubeconfig;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax { path: String, line: u64, column: u64, message: String },
    #[error("{path}: not a valid kubeconfig: {message}")]
    Invalid { path: String, message: String },
    #[error("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config (or try `meshdeck demo`)")]
    Missing,
    #[error("no kubeconfig: KUBECONFIG names {0}, and none of them exists")]
    MissingFiles(String),
    #[error("context {name:?} is not in the kubeconfig (contexts: {available})")]
    UnknownContext { name: String, available: String },
    #[error("config.yaml: cluster name {name:?}: {why}")]
    BadName { name: String, why: String },
}

/// Where kubeconfig files come from, as kubectl decides it.
#[derive(Clone, Debug, Default)]
pub struct KubeconfigSource {
    pub explicit: Option<PathBuf>,
    pub env: Option<OsString>,
    pub home: Option<PathBuf>,
}

impl KubeconfigSource {
    pub fn from_environment(explicit: Option<PathBuf>) -> Self {
        Self { explicit, env: std::env::var_os("KUBECONFIG"), home: directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()) }
    }

    /// The files to read, in precedence order; `explicit` is required to exist.
    pub fn files(&self) -> Vec<(PathBuf, bool)> {
        if let Some(p) = &self.explicit {
            return vec![(p.clone(), true)];
        }
        if let Some(env) = self.env.as_ref().filter(|e| !e.is_empty()) {
            return std::env::split_paths(env).filter(|p| !p.as_os_str().is_empty()).map(|p| (p, false)).collect();
        }
        self.home.iter().map(|h| (h.join(".kube").join("config"), false)).collect()
    }

    pub fn load(&self) -> Result<Kubeconfig, KubeconfigError> {
        let mut texts = Vec::new();
        for (path, required) in self.files() {
            match std::fs::read_to_string(&path) {
                Ok(t) => texts.push((path.display().to_string(), t)),
                Err(e) if required || e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(KubeconfigError::Read { path: path.display().to_string(), message: e.to_string() });
                }
                Err(_) => {}
            }
        }
        if texts.is_empty() {
            if self.explicit.is_none() && self.env.as_ref().is_some_and(|e| !e.is_empty()) {
                let files: Vec<String> = self.files().into_iter().map(|(p, _)| p.display().to_string()).collect();
                return Err(KubeconfigError::MissingFiles(files.join(", ")));
            }
            return Err(KubeconfigError::Missing);
        }
        merge_texts(&texts)
    }
}

/// Parse and merge kubeconfig texts (name, contents), first wins, as kubectl merges.
pub fn merge_texts(files: &[(String, String)]) -> Result<Kubeconfig, KubeconfigError> {
    let mut merged: Option<Kubeconfig> = None;
    for (path, text) in files {
        let mut kc = parse(path, text)?;
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            resolve_relative_paths(&mut kc, dir);
        }
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc).map_err(|e| KubeconfigError::Invalid { path: path.clone(), message: e.to_string() })?,
        });
    }
    merged.ok_or(KubeconfigError::Missing)
}

/// kubectl resolves a file's relative paths (CA, client certificate and key, token
/// file, an exec command with a separator) against that file's directory, not the
/// working directory; so does meshdeck, before files are merged.
fn resolve_relative_paths(kc: &mut Kubeconfig, dir: &std::path::Path) {
    let fix = |p: &mut Option<String>| {
        if let Some(v) = p.as_ref().filter(|v| !v.is_empty() && std::path::Path::new(v.as_str()).is_relative()) {
            *p = Some(dir.join(v).display().to_string());
        }
    };
    for c in kc.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
        fix(&mut c.certificate_authority);
    }
    for a in kc.auth_infos.iter_mut().filter_map(|a| a.auth_info.as_mut()) {
        fix(&mut a.client_certificate);
        fix(&mut a.client_key);
        fix(&mut a.token_file);
        if let Some(exec) = a.exec.as_mut()
            && exec.command.as_ref().is_some_and(|c| c.contains(std::path::MAIN_SEPARATOR))
        {
            fix(&mut exec.command);
        }
    }
}

pub fn parse(path: &str, text: &str) -> Result<Kubeconfig, KubeconfigError> {
    // Syntax first, with a position; then the structure, through kube's own types.
    crate::yaml::parse_documents(text).map_err(|e| KubeconfigError::Syntax {
        path: path.into(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    Kubeconfig::from_yaml(text).map_err(|e| KubeconfigError::Invalid { path: path.into(), message: source_chain(&e) })
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// One context, as meshdeck shows it (no credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextSpec {
    pub name: String,
    pub cluster: String,
    pub user: String,
    pub namespace: Option<String>,
    pub server: Option<String>,
    /// The cluster entry skips TLS verification (`insecure-skip-tls-verify`): shown as such.
    pub insecure: bool,
    /// The API server this context reaches: its URL and the CA it trusts (a digest, no
    /// key material). Contexts with one identity are aliases of one cluster.
    pub identity: String,
}

pub fn contexts(kc: &Kubeconfig) -> Vec<ContextSpec> {
    kc.contexts
        .iter()
        .map(|c| {
            let ctx = c.context.clone().unwrap_or_default();
            let entry = kc.clusters.iter().find(|cl| cl.name == ctx.cluster).and_then(|cl| cl.cluster.as_ref());
            let server = entry.and_then(|cl| cl.server.clone());
            let insecure = entry.is_some_and(|cl| cl.insecure_skip_tls_verify == Some(true));
            let identity = match entry {
                Some(cl) if server.is_some() => identity(cl),
                // No server: nothing to share; the context is its own cluster (and fails to connect).
                _ => format!("context:{}", c.name),
            };
            ContextSpec {
                name: c.name.clone(),
                cluster: ctx.cluster,
                user: ctx.user.unwrap_or_default(),
                namespace: ctx.namespace,
                server,
                insecure,
                identity,
            }
        })
        .collect()
}

/// `https://host:port` (normalized) and how its certificate is trusted.
fn identity(cl: &kube::config::Cluster) -> String {
    use sha2::Digest;
    let server = cl.server.as_deref().unwrap_or_default().trim_end_matches('/').to_ascii_lowercase();
    let server = server.strip_suffix(":443").filter(|s| s.starts_with("https://")).map(str::to_string).unwrap_or(server);
    let trust = if cl.insecure_skip_tls_verify == Some(true) {
        "insecure".to_string()
    } else if let Some(data) = &cl.certificate_authority_data {
        // Base64 of a PEM bundle; compare what it decodes to, not how it was wrapped.
        use base64::Engine;
        let compact: String = data.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).unwrap_or_else(|_| data.as_bytes().to_vec());
        let digest = sha2::Sha256::digest(String::from_utf8_lossy(&bytes).trim().as_bytes());
        format!("ca:{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
    } else if let Some(file) = &cl.certificate_authority {
        format!("ca-file:{file}")
    } else {
        "system".to_string()
    };
    format!("{server} {trust}")
}

/// The contexts grouped by the cluster they reach, each group in kubeconfig order,
/// groups in the order of their first context.
pub fn by_cluster(all: &[ContextSpec]) -> Vec<Vec<ContextSpec>> {
    let mut groups: Vec<Vec<ContextSpec>> = Vec::new();
    for c in all {
        match groups.iter_mut().find(|g| g[0].identity == c.identity) {
            Some(g) => g.push(c.clone()),
            None => groups.push(vec![c.clone()]),
        }
    }
    groups
}

/// Narrow to `--context` names (in the order given); unknown names are bad input.
pub fn select(all: Vec<ContextSpec>, wanted: &[String]) -> Result<Vec<ContextSpec>, KubeconfigError> {
    if wanted.is_empty() {
        return Ok(all);
    }
    wanted
        .iter()
        .map(|w| {
            all.iter().find(|c| &c.name == w).cloned().ok_or_else(|| KubeconfigError::UnknownContext {
                name: w.clone(),
                available: all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: a\n  cluster: {server: 'https://127.0.0.1:1'}\n- name: shared\n  cluster: {server: 'https://first'}\nusers:\n- name: ua\n  user: {token: secret-a}\ncontexts:\n- name: a\n  context: {cluster: a, user: ua, namespace: team}\n";
    const B: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: shared\n  cluster: {server: 'https://second'}\n- name: b\n  cluster: {server: 'https://127.0.0.1:2'}\nusers:\n- name: ub\n  user: {token: secret-b}\ncontexts:\n- name: b\n  context: {cluster: b, user: ub}\n";

    #[test]
    fn merge_keeps_the_first_definition_like_kubectl() {
        let kc = merge_texts(&[("a".into(), A.into()), ("b".into(), B.into())]).expect("merges");
        let names: Vec<String> = contexts(&kc).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["a", "b"]);
        let shared = kc.clusters.iter().find(|c| c.name == "shared").and_then(|c| c.cluster.as_ref()).and_then(|c| c.server.clone());
        assert_eq!(shared.as_deref(), Some("https://first"));
        assert_eq!(kc.current_context.as_deref(), Some("a"));
        assert_eq!(contexts(&kc)[0].namespace.as_deref(), Some("team"));
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let broken = "apiVersion: v1\nclusters:\n  - name: a\n   cluster: {server: x}\n";
        let err = parse("/tmp/kc", broken).expect_err("broken");
        let text = err.to_string();
        assert!(text.starts_with("/tmp/kc:4:"), "{text}");
    }

    #[test]
    fn unknown_context_lists_the_known_ones() {
        let kc = merge_texts(&[("a".into(), A.into())]).expect("parses");
        let err = select(contexts(&kc), &["nope".into()]).expect_err("unknown");
        assert_eq!(err.to_string(), "context \"nope\" is not in the kubeconfig (contexts: a)");
    }

    #[test]
    fn kubeconfig_env_lists_files_in_order_and_explicit_wins() {
        let src = KubeconfigSource {
            explicit: None,
            env: Some(std::env::join_paths(["/x/1", "/x/2"]).expect("join")),
            home: Some("/home/u".into()),
        };
        assert_eq!(src.files(), [(PathBuf::from("/x/1"), false), (PathBuf::from("/x/2"), false)]);
        let src = KubeconfigSource { explicit: Some("/k".into()), ..src };
        assert_eq!(src.files(), [(PathBuf::from("/k"), true)]);
        let src = KubeconfigSource { explicit: None, env: None, home: Some("/home/u".into()) };
        assert_eq!(src.files(), [(PathBuf::from("/home/u/.kube/config"), false)]);
    }
}
