//! Where a cluster's Prometheus and istiod answer, and one GET to them.
//!
//! config.yaml may name either per cluster (`prometheus: URL`, `istiod: URL`).
//! Otherwise they are looked for in the cluster and reached through the API
//! server's service proxy with the cluster's own credentials: a Service named
//! `prometheus` in `istio-system` or `monitoring`, and `istiod` in `istio-system`
//! on its monitoring port (15014). Every call has a deadline: a slow or dark
//! endpoint is an answer ("unreachable"), never a stall.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

use crate::registry::{Cluster, Endpoint};

/// How long one call to Prometheus or istiod may take.
pub const DEADLINE: Duration = Duration::from_secs(3);

/// Where one cluster's endpoint answers.
#[derive(Clone)]
pub enum Source {
    /// A URL from config.yaml.
    Direct(Endpoint),
    /// A Service in the cluster, through the API server (`namespace/name:port`).
    ServiceProxy { client: kube::Client, namespace: String, name: String, port: String },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client: its config holds credentials.
        write!(f, "{}", self.describe())
    }
}

/// Why there is no source, or why it did not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Nothing configured and nothing found: unknown, not zero.
    NotFound(String),
    /// Configured or found, and it failed (timeout, refused, 401, 500…).
    Unreachable(String),
}

impl Unavailable {
    pub fn message(&self) -> &str {
        match self {
            Unavailable::NotFound(m) | Unavailable::Unreachable(m) => m,
        }
    }
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Direct(e) => e.url.clone(),
            Source::ServiceProxy { namespace, name, port, .. } => format!("service {namespace}/{name}:{port} (through the API server)"),
        }
    }

    /// GET `path_and_query` (it starts with `/`); the body on a 2xx answer.
    pub async fn get(&self, path_and_query: &str) -> Result<Vec<u8>, Unavailable> {
        let call = async {
            match self {
                Source::Direct(e) => direct_get(e, path_and_query).await,
                Source::ServiceProxy { client, namespace, name, port } => {
                    let path = format!("/api/v1/namespaces/{namespace}/services/{name}:{port}/proxy{path_and_query}");
                    let req = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
                    client.request_text(req).await.map(String::into_bytes).map_err(|e| short_kube_error(&e))
                }
            }
        };
        match tokio::time::timeout(DEADLINE, call).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => Err(Unavailable::Unreachable(format!("{}: {e}", self.describe()))),
            Err(_) => Err(Unavailable::Unreachable(format!("{}: no answer within {}s", self.describe(), DEADLINE.as_secs()))),
        }
    }
}

fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    }
}

async fn direct_get(e: &Endpoint, path_and_query: &str) -> Result<Vec<u8>, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("system CA roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: HttpClient<_, Full<bytes::Bytes>> = HttpClient::builder(TokioExecutor::new()).build(https);
    let mut req = http::Request::get(format!("{}{path_and_query}", e.url));
    if let Some(file) = &e.token_file {
        let token = std::fs::read_to_string(file).map_err(|err| format!("token file {}: {err}", file.display()))?;
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {}", token.trim()));
    }
    let req = req.body(Full::new(bytes::Bytes::new())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| connect_error(&e))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!("HTTP {status}: {}", text.trim().chars().take(200).collect::<String>()));
    }
    Ok(body)
}

/// hyper's "client error (Connect)" names nothing; its source does ("Connection refused").
fn connect_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// The cluster's Prometheus: config.yaml's, else a Service found in the cluster.
pub async fn prometheus(cluster: &Cluster) -> Result<Source, Unavailable> {
    if let Some(e) = &cluster.options.prometheus {
        return Ok(Source::Direct(e.clone()));
    }
    let client = cluster.client.clone().map_err(Unavailable::Unreachable)?;
    for namespace in ["istio-system", "monitoring"] {
        if let Some(port) = service_port(&client, namespace, "prometheus", &["http", "web", "http-web"]).await? {
            return Ok(Source::ServiceProxy { client, namespace: namespace.into(), name: "prometheus".into(), port });
        }
    }
    Err(Unavailable::NotFound("no prometheus in config.yaml, and no Service prometheus in istio-system or monitoring".into()))
}

/// The cluster's istiod debug endpoint: config.yaml's, else Service istiod's monitoring port.
pub async fn istiod(cluster: &Cluster) -> Result<Source, Unavailable> {
    if let Some(e) = &cluster.options.istiod {
        return Ok(Source::Direct(e.clone()));
    }
    let client = cluster.client.clone().map_err(Unavailable::Unreachable)?;
    match service_port(&client, "istio-system", "istiod", &["http-monitoring"]).await? {
        Some(port) if port == "15014" => Ok(Source::ServiceProxy { client, namespace: "istio-system".into(), name: "istiod".into(), port }),
        Some(_) => {
            Err(Unavailable::NotFound("Service istio-system/istiod has no monitoring port (15014), and config.yaml names no istiod".into()))
        }
        None => Err(Unavailable::NotFound("no istiod: none in config.yaml, and no Service istiod in istio-system".into())),
    }
}

/// The Service's port named one of `names` (else its first); none when there is no such Service.
async fn service_port(client: &kube::Client, namespace: &str, name: &str, names: &[&str]) -> Result<Option<String>, Unavailable> {
    let api: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::namespaced(client.clone(), namespace);
    let found = tokio::time::timeout(DEADLINE, api.get_opt(name)).await;
    let svc = match found {
        Ok(Ok(Some(svc))) => svc,
        Ok(Ok(None)) => return Ok(None),
        Ok(Err(e)) => return Err(Unavailable::Unreachable(format!("service {namespace}/{name}: {}", short_kube_error(&e)))),
        Err(_) => return Err(Unavailable::Unreachable(format!("service {namespace}/{name}: no answer within {}s", DEADLINE.as_secs()))),
    };
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    let chosen = ports.iter().find(|p| p.name.as_deref().is_some_and(|n| names.contains(&n))).or(ports.first());
    Ok(chosen.map(|p| p.port.to_string()))
}
