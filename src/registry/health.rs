//! Reachability: a `/version` probe with its latency, and the classification of
//! a cluster's errors into the states the fleet view shows.

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
    msg
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
