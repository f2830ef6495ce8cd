//! Reachability: a `/version` probe with its latency, and the classification of
//! a cluster's errors into the states the fleet view shows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Why a cluster is not live, in words an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "camelCase")]
pub enum ClusterError {
    /// 401: the token or certificate was refused (expired?).
    Unauthorized(String),
    /// 403: RBAC forbids what meshdeck needs to read.
    Forbidden(String),
    /// Connection refused, TLS failure, timeout.
    Unreachable(String),
    /// The server answered, but with an error (500, 404 on a kind, ...).
    Degraded(String),
    /// The kubeconfig entry could not become a client.
    Config(String),
}

impl ClusterError {
    pub fn from_kube(e: &kube::Error) -> Self {
        // A credential source's failure says which, never its env, args or output.
        Self::from_kube_for(e, None)
    }

    /// As `from_kube`, naming an exec plugin by the program its kubeconfig gives.
    pub fn from_kube_for(e: &kube::Error, exec_program: Option<&str>) -> Self {
        if let Some(auth) = auth_error(e) {
            return ClusterError::Unauthorized(describe_auth(auth, exec_program));
        }
        match e {
            kube::Error::Api(s) if s.code == 401 => ClusterError::Unauthorized(format!("401 Unauthorized: {}", s.message)),
            kube::Error::Api(s) if s.code == 403 => ClusterError::Forbidden(format!("403 Forbidden: {}", s.message)),
            kube::Error::Api(s) => ClusterError::Degraded(format!("{} {}: {}", s.code, s.reason, s.message)),
            other => ClusterError::Unreachable(short(other)),
        }
    }

    /// One line of words for a failed call, as shown per object and per cluster.
    pub fn describe(e: &kube::Error) -> String {
        Self::from_kube(e).message().to_string()
    }

    pub fn message(&self) -> &str {
        match self {
            ClusterError::Unauthorized(m)
            | ClusterError::Forbidden(m)
            | ClusterError::Unreachable(m)
            | ClusterError::Degraded(m)
            | ClusterError::Config(m) => m,
        }
    }
}

/// The innermost cause is usually the useful one ("connection refused").
fn short(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        msg = inner.to_string();
        cur = inner.source();
    }
    redact(&msg)
}

/// An authentication error anywhere in the chain (the auth layer wraps it).
fn auth_error(e: &kube::Error) -> Option<&kube::client::AuthError> {
    if let kube::Error::Auth(a) = e {
        return Some(a);
    }
    auth_in_chain(e)
}

fn auth_in_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a kube::client::AuthError> {
    if let Some(a) = e.downcast_ref::<kube::client::AuthError>() {
        return Some(a);
    }
    let mut cur: Option<&dyn std::error::Error> = e.source();
    while let Some(inner) = cur {
        if let Some(a) = inner.downcast_ref::<kube::client::AuthError>() {
            return Some(a);
        }
        cur = inner.source();
    }
    None
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `--verbose`: failures also carry what an exec plugin wrote to stderr (its own
/// words, which the user asked to see; never its env, args or stdout).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// kube formats a failed exec plugin with the command's Debug text: on Unix its
/// overridden environment (AWS keys, VAULT_TOKEN), every argument
/// (`--client-secret=...`) and its raw output. Only the program (as the kubeconfig
/// names it when known) and the exit status are shown.
fn describe_auth(a: &kube::client::AuthError, exec_program: Option<&str>) -> String {
    use kube::client::AuthError as A;
    match a {
        A::AuthExecRun { cmd, out } => {
            let name = exec_program.map(base_name).unwrap_or_else(|| program(cmd));
            let mut msg = format!("exec plugin {name} failed ({})", out.status);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            if VERBOSE.load(Ordering::Relaxed) && !said.is_empty() {
                let mut words = said.join(" / ");
                if words.len() > 500 {
                    let cut = (0..=500).rev().find(|i| words.is_char_boundary(*i)).unwrap_or(0);
                    words.truncate(cut);
                    words.push('…');
                }
                msg.push_str(&format!(": {}", redact(&words)));
            }
            msg
        }
        A::AuthExecStart(e) => format!("exec plugin could not start: {}", e.kind()),
        A::AuthExecParse(_) => "exec plugin printed something that is not an ExecCredential".into(),
        A::AuthExec(_) | A::ExecPluginFailed => "exec plugin failed".into(),
        other => redact(&other.to_string()),
    }
}

/// The program of a Debug-formatted command (`KEY="v" "aws" "eks" ...` → `aws`), by
/// its base name only.
fn program(cmd: &str) -> String {
    // Env overrides come first as KEY="value": the program is the first token that starts
    // quoted. Nothing else is a fallback: the first quoted text could be an env value.
    let prog = cmd.split_whitespace().find(|t| t.starts_with('"')).map(|t| t.trim_matches('"')).unwrap_or("?");
    base_name(prog)
}

/// A program's base name (`/usr/local/bin/aws` → `aws`): how a plugin is named to a person.
pub fn base_name(program: &str) -> String {
    std::path::Path::new(program).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "?".into())
}

/// Words for any error from building a client or loading credentials: the credential
/// source's failure without its secrets, anything else with URLs' userinfo removed.
pub fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    describe_error_for(e, None)
}

/// As `describe_error`, naming an exec plugin by the program its kubeconfig gives.
pub fn describe_error_for(e: &(dyn std::error::Error + 'static), exec_program: Option<&str>) -> String {
    if let Some(k) = e.downcast_ref::<kube::Error>() {
        return ClusterError::from_kube_for(k, exec_program).message().to_string();
    }
    match auth_in_chain(e) {
        Some(a) => describe_auth(a, exec_program),
        None => redact(&e.to_string()),
    }
}

/// Credentials out of a message meant for a person: userinfo in URLs
/// (`http://user:pass@proxy` → `http://***@proxy`) and bearer tokens.
pub fn redact(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    match out.find("Bearer ") {
        Some(i) => format!("{}Bearer ***", &out[..i]),
        None => out,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub kubernetes_version: Option<String>,
    pub latency_ms: u64,
    pub error: Option<ClusterError>,
}

pub async fn probe(client: &kube::Client, timeout: Duration) -> Probe {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, client.apiserver_version()).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Ok(info)) => Probe { kubernetes_version: Some(info.git_version), latency_ms, error: None },
        Ok(Err(e)) => Probe { kubernetes_version: None, latency_ms, error: Some(ClusterError::from_kube(&e)) },
        Err(_) => Probe {
            kubernetes_version: None,
            latency_ms,
            error: Some(ClusterError::Unreachable(format!("no answer within {}s", timeout.as_secs()))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn credentials_never_reach_a_message() {
        assert_eq!(redact("tunnel via http://user:s3cret@10.0.0.1:3128 failed"), "tunnel via http://***@10.0.0.1:3128 failed");
        assert_eq!(redact("Authorization: Bearer abc.def"), "Authorization: Bearer ***");
        assert_eq!(program(r#"AWS_SECRET_ACCESS_KEY="k3y" "/usr/local/bin/aws" "eks" "--client-secret=x""#), "aws");
        let out = std::process::Output { status: exit(3), stdout: b"tok3n".to_vec(), stderr: b"s3cret".to_vec() };
        let e =
            kube::client::AuthError::AuthExecRun { cmd: r#"VAULT_TOKEN="v4ult" "vault-plugin" "--secret=x""#.into(), out: Box::new(out) };
        let text = describe_auth(&e, None);
        assert!(text.starts_with("exec plugin vault-plugin failed (exit status: 3)"), "{text}");
        for marker in ["v4ult", "--secret", "tok3n", "s3cret"] {
            assert!(!text.contains(marker), "{text}");
        }
        // The kubeconfig's own name for the program wins over kube's Debug text.
        assert!(describe_auth(&e, Some("/opt/my tools/vault-login")).starts_with("exec plugin vault-login failed"));
    }

    #[cfg(unix)]
    fn exit(code: i32) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        std::process::ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn answers_map_to_states_an_operator_can_act_on() {
        let forbidden =
            ClusterError::from_kube(&api_error(403, "Forbidden", "pods is forbidden: User \"x\" cannot list resource \"pods\""));
        assert!(matches!(&forbidden, ClusterError::Forbidden(m) if m.starts_with("403 Forbidden: pods is forbidden")), "{forbidden:?}");
        assert!(matches!(ClusterError::from_kube(&api_error(401, "Unauthorized", "Unauthorized")), ClusterError::Unauthorized(_)));
        assert!(
            matches!(ClusterError::from_kube(&api_error(500, "InternalError", "boom")), ClusterError::Degraded(ref m) if m == "500 InternalError: boom")
        );
    }
}
