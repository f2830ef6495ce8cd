//! The sim with Istio's real CRDs (`--crds`): their schemas reject a bad
//! VirtualService and accept bookinfo's own routing samples.

mod common;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery};
use meshdeck_sim::SimConfig;

#[tokio::test]
async fn istio_schemas_reject_bad_objects_and_accept_bookinfo_samples() {
    let dir = common::istio_crds_dir();
    println!("using Istio CRDs from {}", dir.display());
    let fleet = common::fleet(SimConfig { clusters: 1, crds_dir: Some(dir), ..Default::default() }).await;
    let client = common::client(&fleet, "cluster1").await;
    let discovery = Discovery::new(client.clone()).run().await.expect("discovery");
    // By kind in Istio's groups: Gateway API serves a `Gateway` too.
    let find = |kind: &str| -> ApiResource {
        discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(ar, _)| ar.kind == kind && ar.group.ends_with("istio.io"))
            .map(|(ar, _)| ar)
            .unwrap_or_else(|| panic!("{kind} served"))
    };
    let samples = common::shared_dir().join("istio/bookinfo/networking");
    let mut files: Vec<_> = std::fs::read_dir(&samples).expect("samples").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut applied = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for doc in meshdeck::yaml::parse_documents(&text).expect("yaml") {
            let kind = doc["kind"].as_str().expect("kind").to_string();
            let ar = find(&kind);
            let obj: DynamicObject = serde_json::from_value(doc).expect("object");
            let name = obj.metadata.name.clone().expect("name");
            let ns = obj.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            let pp = PatchParams { field_validation: Some(kube::api::ValidationDirective::Strict), ..PatchParams::apply("test").force() };
            api.patch(&name, &pp, &Patch::Apply(&obj)).await.unwrap_or_else(|e| panic!("{} ({kind}/{name}) rejected: {e}", f.display()));
            applied += 1;
        }
    }
    assert!(applied >= 20, "all bookinfo samples applied ({applied})");

    let vs_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &find("VirtualService"));
    let bad: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "bad"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}, "weight": "ten"}]}]}
    }))
    .expect("object");
    match vs_api.patch("bad", &PatchParams::apply("test"), &Patch::Apply(&bad)).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{}", s.message),
        other => panic!("a string weight must be a 422, got {other:?}"),
    }
    let dr_api: Api<DynamicObject> = Api::namespaced_with(client, "default", &find("DestinationRule"));
    let both: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "both"},
        "spec": {"host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": true}}}}
    }))
    .expect("object");
    match dr_api.patch("both", &PatchParams::apply("test"), &Patch::Apply(&both)).await {
        Err(kube::Error::Api(s)) => assert!(s.code == 422 && s.message.contains("oneOf"), "{}", s.message),
        other => panic!("simple and consistentHash together break Istio's oneOf, got {other:?}"),
    }
}
