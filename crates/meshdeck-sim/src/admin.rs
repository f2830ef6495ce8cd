//! The sim's admin endpoint (plain HTTP on loopback, no auth: it only exists on
//! 127.0.0.1): `GET /` lists clusters and faults; `POST /clusters/<name>/fault/<fault>`
//! sets one (`down`, `slow:300ms`, `500`, `401`, `writes-fail-after:2`, `healthy`); `POST /clusters/<name>/compact`
//! expires watch history so watches from older versions get 410 Gone;
//! `GET /clusters/<name>/prometheus/api/v1/query` is that cluster's Prometheus
//! stand-in (`metrics`), when the fleet runs traffic, and
//! `POST /clusters/<name>/workloads/<workload>/fail/<fraction>` makes one of its
//! workloads (`reviews-v3`) answer that share of requests with 500 (0 heals);
//! `POST /clusters/<name>/prometheus/stop|start` stops and starts its Prometheus.

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
            if c.traffic.lock().unwrap_or_else(|p| p.into_inner()).stopped {
                return reply(StatusCode::SERVICE_UNAVAILABLE, json!({"status": "error", "error": "the stand-in Prometheus is stopped"}));
            }
            let q = super::server::Query::parse(req.uri().query());
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            let time = q.get("time").and_then(|t| t.parse::<f64>().ok());
            let (code, body) = super::metrics::query(c, q.get("query").unwrap_or_default(), time, now);
            reply(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), body)
        }
        // A workload of the stand-in's traffic failing a share of its requests (0 heals it).
        (&Method::POST, ["clusters", name, "workloads", workload, "fail", fraction]) => {
            let Some(c) = clusters.iter().find(|c| c.name == *name) else {
                return reply(StatusCode::NOT_FOUND, json!({"error": format!("no cluster {name}")}));
            };
            match fraction.parse::<f64>().ok().filter(|f| (0.0..=1.0).contains(f)) {
                Some(f) => {
                    c.traffic.lock().unwrap_or_else(|p| p.into_inner()).fail(workload, f);
                    reply(StatusCode::OK, json!({"name": name, "workload": workload, "fail": f}))
                }
                None => reply(StatusCode::BAD_REQUEST, json!({"error": format!("fail: a fraction from 0 to 1, not {fraction:?}")})),
            }
        }
        // The stand-in Prometheus stopped or started again (its counts go on).
        (&Method::POST, ["clusters", name, "prometheus", action @ ("stop" | "start")]) => {
            let Some(c) = clusters.iter().find(|c| c.name == *name) else {
                return reply(StatusCode::NOT_FOUND, json!({"error": format!("no cluster {name}")}));
            };
            c.traffic.lock().unwrap_or_else(|p| p.into_inner()).stopped = *action == "stop";
            reply(StatusCode::OK, json!({"name": name, "prometheus": action}))
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
            json!({"error": "see GET / ; POST /clusters/<name>/fault/<down|slow:300ms|500|401|healthy> ; POST /clusters/<name>/compact ; GET /clusters/<name>/prometheus/api/v1/query?query=METRIC{...}[60s] ; POST /clusters/<name>/workloads/reviews-v3/fail/0.2"}),
        ),
    }
}
