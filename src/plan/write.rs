//! Plans back to YAML (what the composer shows in the editor and saves).
//! `load(write(plan)) == plan` for every valid plan.

use serde_json::{Map, Value, json};

use super::types::*;

fn route_doc(r: &TrafficRoute) -> Value {
    let mut spec = Map::new();
    spec.insert("service".into(), json!(r.service.key()));
    spec.insert("from".into(), json!({"clusters": r.from_clusters}));
    match &r.action {
        RouteAction::Split(ds) => {
            spec.insert(
                "split".into(),
                Value::Array(ds.iter().map(|d| json!({"cluster": d.cluster, "version": d.version, "weight": d.weight})).collect()),
            );
        }
        RouteAction::Failover(ts) => {
            let targets = ts
                .iter()
                .map(|t| match &t.version {
                    Some(v) => json!({"cluster": t.cluster, "version": v}),
                    None => json!({"cluster": t.cluster}),
                })
                .collect();
            spec.insert("failover".into(), Value::Array(targets));
        }
    }
    if let Some(o) = &r.outlier_detection {
        spec.insert("outlierDetection".into(), o.to_value());
    }
    if let Some(rt) = &r.retries {
        spec.insert("retries".into(), rt.to_value());
    }
    if let Some(p) = r.port {
        spec.insert("port".into(), json!(p));
    }
    if let Some(t) = &r.timeout {
        spec.insert("timeout".into(), json!(t));
    }
    if !r.matches.is_empty() {
        let ms = r
            .matches
            .iter()
            .map(|m| {
                let mut o = Map::new();
                if !m.headers.is_empty() {
                    let hs: Map<String, Value> = m.headers.iter().map(|(h, sm)| (h.clone(), sm.to_value())).collect();
                    o.insert("headers".into(), Value::Object(hs));
                }
                if let Some(p) = &m.path_prefix {
                    o.insert("pathPrefix".into(), json!(p));
                }
                Value::Object(o)
            })
            .collect();
        spec.insert("match".into(), Value::Array(ms));
    }
    match r.topology {
        TopologyChoice::Auto => {}
        TopologyChoice::SharedDiscovery => {
            spec.insert("topology".into(), json!("sharedDiscovery"));
        }
        TopologyChoice::Federation => {
            spec.insert("topology".into(), json!("federation"));
        }
    }
    if r.routing != Routing::Auto {
        spec.insert("routing".into(), json!(r.routing.as_str()));
    }
    if !r.trust_accepted_by.is_empty() {
        spec.insert("trustAcceptedBy".into(), json!(r.trust_accepted_by));
    }
    if let Some(c) = &r.canary {
        spec.insert("canary".into(), canary_doc(c));
    }
    json!({"apiVersion": API_VERSION, "kind": "TrafficRoute", "metadata": {"name": r.name}, "spec": spec})
}

fn canary_doc(c: &Canary) -> Value {
    let mut gates = Map::new();
    if let Some(s) = c.gates.success_rate {
        gates.insert("successRate".into(), json!(s));
    }
    if let Some(p) = c.gates.p99_ms {
        gates.insert("p99".into(), json!(format!("{p}ms")));
    }
    gates.insert("minRequests".into(), json!(c.gates.min_requests));
    gates.insert("per".into(), json!(if c.gates.per == GatePer::All { "all" } else { "callingCluster" }));
    json!({
        "destination": {"cluster": c.cluster, "version": c.version},
        "steps": c.steps,
        "interval": format!("{}s", c.interval),
        "gates": gates,
        "rollbackAfter": c.rollback_after,
        "rollbackTo": if c.rollback_to == RollbackTo::LastGoodStep { "lastGoodStep" } else { "start" },
        "decideWithin": format!("{}s", c.decide_within),
    })
}

fn access_doc(a: &AccessPolicy) -> Value {
    let callers: Vec<Value> =
        a.allow_from.iter().map(|c| json!({"cluster": c.cluster, "namespace": c.namespace, "serviceAccount": c.service_account})).collect();
    let mut spec = json!({"service": a.service.key(), "allowFrom": callers});
    if !a.trust_accepted_by.is_empty() {
        spec["trustAcceptedBy"] = json!(a.trust_accepted_by);
    }
    json!({"apiVersion": API_VERSION, "kind": "AccessPolicy", "metadata": {"name": a.name}, "spec": spec})
}

impl Plan {
    pub fn to_yaml(&self) -> String {
        let docs: Vec<Value> = self.routes.iter().map(route_doc).chain(self.access.iter().map(access_doc)).collect();
        docs.iter().map(|d| format!("---\n{}", crate::yaml::to_yaml(d))).collect()
    }
}
