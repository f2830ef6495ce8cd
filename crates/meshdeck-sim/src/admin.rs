//! The sim's admin endpoint (plain HTTP on loopback, no auth: it only exists on
//! 127.0.0.1): `GET /` lists clusters and faults; `POST /clusters/<name>/fault/<fault>`
//! sets one (`down`, `slow:300ms`, `500`, `401`, `writes-fail-after:2`, `healthy`); `POST /clusters/<name>/compact`
//! expires watch history so watches from older versions get 410 Gone;
//! `GET /clusters/<name>/prometheus/api/v1/query` is that cluster's Prometheus
//! stand-in (`metrics`), when the fleet runs traffic.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use super::cluster::SimCluster;
use super::faults::Fault;
use super::server::Body;

pub async fn serve(clusters: Vec<Arc<SimCluster>>, listener: TcpListener) {
    let clusters = Arc::new(clusters);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let clusters = clusters.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let clusters = clusters.clone();
                async move { Ok::<_, Infallible>(handle(&clusters, req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn reply(code: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(bytes::Bytes::from(v.to_string() + "\n")).boxed());
    *r.status_mut() = code;
    r
}

fn handle(clusters: &[Arc<SimCluster>], req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method(), segs.as_slice()) {
        (&Method::GET, []) => {
            let list: Vec<_> =
                clusters.iter().map(|c| json!({"name": c.name, "server": c.server_url(), "fault": c.fault().describe()})).collect();
            reply(StatusCode::OK, json!({"clusters": list}))
        }
        (&Method::POST, ["clusters", name, "fault", fault]) => {
            let Some(c) = clusters.iter().find(|c| c.name == *name) else {
                return reply(StatusCode::NOT_FOUND, json!({"error": format!("no cluster {name}")}));
            };
            match Fault::parse(fault) {
                Ok(f) => {
                    c.set_fault(f.clone());
                    reply(StatusCode::OK, json!({"name": name, "fault": f.describe()}))
                }
                Err(e) => reply(StatusCode::BAD_REQUEST, json!({"error": e})),
            }
        }
        // The cluster's Prometheus stand-in (`metrics`): what meshdeck traffic asks.
        (&Method::GET, ["clusters", name, "prometheus", "api", "v1", "query"]) => {
            let Some(c) = clusters.iter().find(|c| c.name == *name) else {
                return reply(StatusCode::NOT_FOUND, json!({"error": format!("no cluster {name}")}));
            };
            let q = super::server::Query::parse(req.uri().query());
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            let time = q.get("time").and_then(|t| t.parse::<f64>().ok());
            let (code, body) = super::metrics::query(c, q.get("query").unwrap_or_default(), time, now);
            reply(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), body)
        }
        (&Method::POST, ["clusters", name, "compact"]) => {
            let Some(c) = clusters.iter().find(|c| c.name == *name) else {
                return reply(StatusCode::NOT_FOUND, json!({"error": format!("no cluster {name}")}));
            };
            c.store().compact();
            reply(StatusCode::OK, json!({"name": name, "compacted": true}))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": "see GET / ; POST /clusters/<name>/fault/<down|slow:300ms|500|401|healthy> ; POST /clusters/<name>/compact ; GET /clusters/<name>/prometheus/api/v1/query?query=METRIC{...}[60s]"}),
        ),
    }
}
