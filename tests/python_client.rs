//! The official Python client (`kubernetes` on PyPI) reads the fleet: its
//! models are strict about what a real API server always sends (a pod list
//! without `containerStatuses[].imageID` fails to deserialize), so it checks
//! that the sim's objects have the shape of real ones. On both fleets. Needs a
//! Python with the client: `MESHDECK_PYTHON`, else `target/pyclient/bin/python`
//! (.ci/run makes that venv); under CI a missing client fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = r#"
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1], context=sys.argv[2])
core, apps = client.CoreV1Api(), client.AppsV1Api()
pods = core.list_pod_for_all_namespaces().items
ready = [p for p in pods if p.metadata.labels and p.metadata.labels.get("app") == "reviews"
         and all(s.ready and s.image_id for s in (p.status.container_statuses or []))]
deps = apps.list_deployment_for_all_namespaces().items
svcs = core.list_service_for_all_namespaces().items
vs = client.CustomObjectsApi().list_namespaced_custom_object("networking.istio.io", "v1", "default", "virtualservices")
print(f"pods={len(pods)} reviews_ready={len(ready)} deployments={len(deps)} services={len(svcs)} virtualservices={len(vs['items'])}")
"#;

fn python() -> Option<PathBuf> {
    let candidate = std::env::var("MESHDECK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyclient/bin/python"));
    let has_client = Command::new(&candidate).args(["-c", "import kubernetes"]).output().is_ok_and(|o| o.status.success());
    if !has_client {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} with the kubernetes package is missing and CI=true: .ci/run makes it",
            candidate.display()
        );
        eprintln!("{} with the kubernetes package is missing: this test did not run", candidate.display());
        return None;
    }
    Some(candidate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_reads_pods_deployments_services_and_istio_objects() {
    let Some(python) = python() else { return };
    let fleet = common::TestFleet::start().await;
    let kc = fleet.kubeconfig_path();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python).args(["-c", SCRIPT]).arg(&kc).arg("cluster2").output().expect("python runs")
    })
    .await
    .expect("joined");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python client failed on the {} fleet:\n{text}", fleet.kind());
    assert!(text.contains("reviews_ready=3"), "cluster2 runs reviews v1, v2 and v3, every container ready with an imageID: {text}");
}
