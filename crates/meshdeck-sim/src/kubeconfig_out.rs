//! The kubeconfig a running sim writes: one admin and one restricted context per cluster.

use base64::Engine;
use serde_json::json;

use super::SimFleet;

pub fn render(fleet: &SimFleet) -> String {
    render_users(fleet, &["admin", "restricted"])
}

/// A kubeconfig with one context per cluster for each of `users`.
pub fn render_users(fleet: &SimFleet, wanted: &[&str]) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(fleet.ca_pem.as_bytes());
    let mut clusters = Vec::new();
    let mut users = Vec::new();
    let mut contexts = Vec::new();
    for c in &fleet.clusters {
        let server = c.server_url().unwrap_or_default();
        clusters.push(json!({"name": c.name, "cluster": {"server": server, "certificate-authority-data": ca}}));
        for u in c.users.iter().filter(|u| wanted.contains(&u.name.as_str())) {
            let user_name = format!("{}-{}", c.name, u.name);
            users.push(json!({"name": user_name, "user": {"token": u.token}}));
            let ctx_name = if u.name == "admin" { c.name.clone() } else { format!("{}-{}", c.name, u.name) };
            contexts.push(json!({"name": ctx_name, "context": {"cluster": c.name, "user": user_name, "namespace": "default"}}));
        }
    }
    let first = contexts.first().and_then(|c| c["name"].as_str()).unwrap_or_default().to_string();
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": first,
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "extensions": [{"name": "meshdeck.dev/sim", "extension": {"admin": fleet.admin_url}}],
    });
    meshdeck_files::yaml::to_yaml(&doc)
}

/// Written readable by the owner only: it holds bearer tokens.
pub use meshdeck_files::write_private;
