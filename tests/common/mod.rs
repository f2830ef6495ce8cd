//! Shared test setup: a simulated fleet in-process on 127.0.0.1 and kube clients for it.
#![allow(dead_code)]

pub mod mesh;
pub mod tmux;

use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use meshdeck_sim::{SimConfig, SimFleet};

pub async fn fleet(cfg: SimConfig) -> SimFleet {
    SimFleet::start(cfg).await.expect("sim fleet starts")
}

/// The fleet a test runs on: `meshdeck sim` in-process (the default), or the
/// real test bed (`MESHDECK_TEST_FLEET=real`, its kubeconfig in
/// `MESHDECK_TEST_KUBECONFIG`, default `target/realfleet/kubeconfig`; see
/// tests/realfleet). Both give the same contexts: cluster1..3 and
/// clusterN-restricted. On the real fleet, tests of one binary take turns and
/// each starts from the seeded world (every Istio object and test object removed).
pub enum TestFleet {
    Sim { fleet: SimFleet, dir: tempfile::TempDir },
    Real { kubeconfig: std::path::PathBuf, _turn: tokio::sync::OwnedMutexGuard<()> },
}

/// Objects tests create carry this label, so a real fleet can be reset.
pub const TEST_LABEL: &str = "meshdeck.dev/test";

/// For a test that only a real API server can answer (its name says
/// `real_only`): the real fleet, or None on the sim run, where it says so. The
/// real pass of .ci/run (tests/realfleet/test.sh) runs every `real_only` test.
pub async fn real_fleet_only(what: &str) -> Option<TestFleet> {
    if !real_fleet_requested() {
        eprintln!("needs a real API server ({what}): runs with MESHDECK_TEST_FLEET=real (tests/realfleet/test.sh)");
        return None;
    }
    Some(TestFleet::start().await)
}

pub fn real_fleet_requested() -> bool {
    std::env::var("MESHDECK_TEST_FLEET").as_deref() == Ok("real")
}

static REAL_TURN: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> = std::sync::OnceLock::new();

impl TestFleet {
    pub async fn start() -> TestFleet {
        if !real_fleet_requested() {
            let fleet = fleet(SimConfig::default()).await;
            let dir = tempfile::tempdir().expect("tempdir");
            fleet.write_kubeconfig(&dir.path().join("kubeconfig")).expect("kubeconfig");
            return TestFleet::Sim { fleet, dir };
        }
        let kubeconfig = std::env::var("MESHDECK_TEST_KUBECONFIG")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/realfleet/kubeconfig"));
        assert!(kubeconfig.is_file(), "MESHDECK_TEST_FLEET=real but {} is missing: start tests/realfleet first", kubeconfig.display());
        let turn = REAL_TURN.get_or_init(Default::default).clone().lock_owned().await;
        let f = TestFleet::Real { kubeconfig, _turn: turn };
        // A test that stopped an API server and failed before starting it again.
        for c in ["cluster1", "cluster2", "cluster3"] {
            f.control("POST", &format!("/clusters/{c}/apiserver/start")).await;
        }
        f.reset().await;
        f
    }

    pub fn is_real(&self) -> bool {
        matches!(self, TestFleet::Real { .. })
    }

    pub fn kind(&self) -> &'static str {
        if self.is_real() { "real" } else { "sim" }
    }

    /// The sim, for tests that drive its fault hooks (their names say `sim_only`).
    pub fn sim(&self) -> &SimFleet {
        match self {
            TestFleet::Sim { fleet, .. } => fleet,
            TestFleet::Real { .. } => panic!("this test needs the sim's fault hooks: run it on the sim fleet"),
        }
    }

    pub fn kubeconfig_path(&self) -> std::path::PathBuf {
        match self {
            TestFleet::Sim { dir, .. } => dir.path().join("kubeconfig"),
            TestFleet::Real { kubeconfig, .. } => kubeconfig.clone(),
        }
    }

    pub fn kubeconfig_yaml(&self) -> String {
        std::fs::read_to_string(self.kubeconfig_path()).expect("kubeconfig is readable")
    }

    pub async fn client(&self, context: &str) -> Client {
        let kc = Kubeconfig::from_yaml(&self.kubeconfig_yaml()).expect("kubeconfig parses");
        let opts = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("context loads");
        Client::try_from(config).expect("client builds")
    }

    /// The registry for the admin contexts cluster1..3, as the CLI builds it.
    pub async fn registry(&self) -> Vec<meshdeck::registry::Cluster> {
        self.registry_of(&["cluster1", "cluster2", "cluster3"]).await
    }

    pub async fn registry_of(&self, contexts: &[&str]) -> Vec<meshdeck::registry::Cluster> {
        let kc = Kubeconfig::from_yaml(&self.kubeconfig_yaml()).expect("kubeconfig");
        let names: Vec<String> = contexts.iter().map(|c| c.to_string()).collect();
        meshdeck::registry::connect(&kc, &names, &meshdeck::config::MeshdeckConfig::default(), false).await.expect("registry")
    }

    /// The cluster's API server stops answering: the real one is stopped, the sim's
    /// drops every connection.
    pub async fn take_down(&self, cluster: &str) {
        if self.is_real() {
            self.control("POST", &format!("/clusters/{cluster}/apiserver/stop")).await;
        } else {
            self.sim().cluster(cluster).expect("cluster").set_fault(meshdeck_sim::Fault::Down);
        }
    }

    pub async fn bring_up(&self, cluster: &str) {
        if self.is_real() {
            self.control("POST", &format!("/clusters/{cluster}/apiserver/start")).await;
        } else {
            self.sim().cluster(cluster).expect("cluster").set_fault(meshdeck_sim::Fault::Healthy);
        }
    }

    /// A hook of the real test bed's control endpoint (tests/realfleet/control.go),
    /// e.g. `POST /clusters/cluster2/apiserver/stop`; returns its answer.
    pub async fn control(&self, method: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let kc: serde_json::Value = serde_saphyr::from_str(&self.kubeconfig_yaml()).expect("kubeconfig");
        let url = kc["extensions"]
            .as_array()
            .and_then(|e| e.iter().find(|x| x["name"] == "meshdeck.dev/realfleet"))
            .and_then(|x| x["extension"]["control"].as_str())
            .expect("the real test bed's kubeconfig names its control endpoint")
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("control endpoint");
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{method} {path}: {answer}");
        answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
    }

    /// Back to the seeded world: no Istio objects anywhere, no test objects.
    async fn reset(&self) {
        use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
        use kube::core::{ApiResource, GroupVersionKind};
        for context in ["cluster1", "cluster2", "cluster3"] {
            let client = self.client(context).await;
            // A test that stopped serving a CRD version and failed before serving it again.
            {
                use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
                let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
                if let Ok(mut crd) = crds.get("destinationrules.networking.istio.io").await
                    && crd.spec.versions.iter().any(|v| !v.served)
                {
                    crd.spec.versions.iter_mut().for_each(|v| v.served = true);
                    crds.replace("destinationrules.networking.istio.io", &Default::default(), &crd).await.expect("CRD served again");
                }
            }
            let mut kinds: Vec<(ApiResource, bool)> = meshdeck::inventory::watch::watched_kinds()
                .map(|(g, k, p)| (ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, "v1", k), p), false))
                .collect();
            for (g, v, k, p) in [
                ("", "v1", "ConfigMap", "configmaps"),
                ("", "v1", "Secret", "secrets"),
                ("", "v1", "Pod", "pods"),
                ("", "v1", "Service", "services"),
                ("gateway.networking.k8s.io", "v1", "Gateway", "gateways"),
                ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings"),
                ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
            ] {
                kinds.push((ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), p), true));
            }
            let mut policies_removed = false;
            for (ar, labelled_only) in kinds {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                let lp = if labelled_only { ListParams::default().labels(TEST_LABEL) } else { ListParams::default() };
                let listed = api.list(&lp).await.unwrap_or_else(|e| panic!("{context}: listing {}: {e}", ar.plural));
                for o in listed.items {
                    let ns = o.metadata.namespace.clone();
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let api: Api<DynamicObject> = match &ns {
                        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                        None => Api::all_with(client.clone(), &ar),
                    };
                    policies_removed |= ar.kind == "ValidatingAdmissionPolicy";
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => panic!("{context}: resetting {} {name}: {e}", ar.plural),
                    }
                }
            }
            if policies_removed {
                admission_open(&client).await;
            }
            forget_mesh_mode(&client, context).await;
            restore_trust(&client, context).await;
        }
    }
}

/// Labels a test gave: ambient mode and waypoints on namespaces and Services, and
/// the per-version Services and waypoints meshdeck rendered for Gateway API routes.
async fn forget_mesh_mode(client: &Client, context: &str) {
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    const LABELS: [&str; 3] = ["istio.io/dataplane-mode", "istio.io/use-waypoint", "istio.io/global"];
    let services: Api<Service> = Api::all(client.clone());
    let ours = ListParams::default().labels("app.kubernetes.io/managed-by=meshdeck");
    let gateway = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"), "gateways");
    let waypoints: Api<DynamicObject> = Api::all_with(client.clone(), &gateway);
    for w in waypoints.list(&ours).await.unwrap_or_else(|e| panic!("{context}: listing gateways: {e}")).items {
        let ns = w.metadata.namespace.clone().unwrap_or_default();
        let name = w.metadata.name.clone().unwrap_or_default();
        match Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &gateway).delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("{context}: deleting gateway {ns}/{name}: {e}"),
        }
    }
    for s in services.list(&ours).await.unwrap_or_else(|e| panic!("{context}: listing services: {e}")).items {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        match Api::<Service>::namespaced(client.clone(), &ns).delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("{context}: deleting service {ns}/{name}: {e}"),
        }
    }
    let unlabel = serde_json::json!({"metadata": {"labels": LABELS.iter().map(|l| (l.to_string(), serde_json::Value::Null)).collect::<serde_json::Map<_, _>>()}});
    let labelled = |l: Option<&std::collections::BTreeMap<String, String>>| l.is_some_and(|l| LABELS.iter().any(|k| l.contains_key(*k)));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in namespaces.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{context}: listing namespaces: {e}")).items {
        if labelled(n.metadata.labels.as_ref()) {
            let name = n.metadata.name.clone().unwrap_or_default();
            namespaces
                .patch(&name, &PatchParams::default(), &Patch::Merge(&unlabel))
                .await
                .unwrap_or_else(|e| panic!("{context}: {name}: {e}"));
        }
    }
    // The world's own namespace labels (sidecar injection) back as seeded.
    let world = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/realfleet/world/{context}.yaml"));
    let text = std::fs::read_to_string(&world).unwrap_or_else(|e| panic!("{}: {e}", world.display()));
    for doc in meshdeck::yaml::parse_documents(&text).expect("world YAML") {
        if doc["kind"] == "Namespace" && doc.pointer("/metadata/labels").is_some() {
            let name = doc["metadata"]["name"].as_str().unwrap_or("");
            let labels = serde_json::json!({"metadata": {"labels": doc["metadata"]["labels"]}});
            namespaces
                .patch(name, &PatchParams::default(), &Patch::Merge(&labels))
                .await
                .unwrap_or_else(|e| panic!("{context}: {name}: {e}"));
        }
    }
    for s in services.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{context}: listing services: {e}")).items {
        if labelled(s.metadata.labels.as_ref()) {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let name = s.metadata.name.clone().unwrap_or_default();
            Api::<Service>::namespaced(client.clone(), &ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&unlabel))
                .await
                .unwrap_or_else(|e| panic!("{context}: service {ns}/{name}: {e}"));
        }
    }
}

/// The seeded world's root of trust in `context` (its `istio-ca-root-cert` ConfigMaps
/// and `cacerts` Secret, from the world the real test bed was started with), put
/// back as it was: a trust test that failed midway leaves no other root behind.
async fn restore_trust(client: &Client, context: &str) {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    let world = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/realfleet/world/{context}.yaml"));
    let text = std::fs::read_to_string(&world).unwrap_or_else(|e| panic!("{}: {e}", world.display()));
    for doc in meshdeck::yaml::parse_documents(&text).expect("world YAML") {
        let name = doc["metadata"]["name"].as_str().unwrap_or("");
        let (kind, plural) = match (doc["kind"].as_str(), name) {
            (Some("ConfigMap"), "istio-ca-root-cert") => ("ConfigMap", "configmaps"),
            (Some("Secret"), "cacerts") => ("Secret", "secrets"),
            _ => continue,
        };
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let mut object = doc.clone();
        object["metadata"] = serde_json::json!({"name": name, "namespace": ns});
        api.patch(name, &PatchParams::apply("meshdeck-test-reset").force(), &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("{context}: restoring {kind} {ns}/{name}: {e}"));
    }
    // Copies `meshdeck trust` kept for rollback belong to the test that made them.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "istio-system");
    let kept = kube::api::ListParams::default().labels("meshdeck.io/kept-copy=true");
    secrets.delete_collection(&Default::default(), &kept).await.unwrap_or_else(|e| panic!("{context}: removing kept copies: {e}"));
}

/// Wait until a removed admission policy no longer refuses a plan's object
/// (the API server's policy cache follows deletes within seconds).
pub async fn admission_open(client: &Client) {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("networking.istio.io", "v1", "Gateway"), "gateways");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let probe: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "admission-probe", "labels": {"meshdeck.dev/plan": "probe"}}, "spec": {"servers": []}
    }))
    .expect("probe");
    eventually(30, || {
        let (api, probe) = (api.clone(), probe.clone());
        async move {
            let mut params = PatchParams::apply("test");
            params.dry_run = true;
            api.patch("admission-probe", &params, &Patch::Apply(&probe)).await.ok().map(|_| ())
        }
    })
    .await;
}

pub async fn client(fleet: &SimFleet, context: &str) -> Client {
    let kc = Kubeconfig::from_yaml(&fleet.kubeconfig_yaml()).expect("sim kubeconfig parses");
    let opts = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts).await.expect("context loads");
    Client::try_from(config).expect("client builds")
}

/// Poll `check` until it returns Some, failing after `secs` seconds: a condition, not a sleep.
pub async fn eventually<T, F, Fut>(secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {secs}s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Istio's real CRDs: `$MESHDECK_ISTIO_CRDS`, else `../shared/istio/crds` beside the checkout.
pub fn istio_crds_dir() -> std::path::PathBuf {
    match std::env::var("MESHDECK_ISTIO_CRDS") {
        Ok(dir) => {
            let p = std::path::PathBuf::from(&dir);
            let p = if p.is_relative() { std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p) } else { p };
            assert!(
                p.join("crd-all.gen.yaml").is_file(),
                "MESHDECK_ISTIO_CRDS={dir} is set but {}/crd-all.gen.yaml is missing",
                p.display()
            );
            p
        }
        Err(_) => {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/istio/crds");
            assert!(
                p.join("crd-all.gen.yaml").is_file(),
                "Istio CRDs not found: set MESHDECK_ISTIO_CRDS or keep shared/ beside the checkout"
            );
            p
        }
    }
}

pub fn shared_dir() -> std::path::PathBuf {
    istio_crds_dir().join("../..")
}

/// The registry for a sim fleet's admin contexts (`cluster1`..), as the CLI builds it.
pub async fn registry(fleet: &SimFleet) -> Vec<meshdeck::registry::Cluster> {
    let kc = Kubeconfig::from_yaml(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let names: Vec<String> = fleet.clusters.iter().map(|c| c.name.clone()).collect();
    meshdeck::registry::connect(&kc, &names, &meshdeck::config::MeshdeckConfig::default(), false).await.expect("registry")
}

/// Wait for a snapshot that satisfies `pred`, failing after `secs`.
pub async fn snapshot_where(
    inv: &mut meshdeck::inventory::Inventory,
    secs: u64,
    what: &str,
    pred: impl Fn(&meshdeck::inventory::FleetSnapshot) -> bool,
) -> std::sync::Arc<meshdeck::inventory::FleetSnapshot> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let snap = inv.snapshots.borrow_and_update().clone();
        if pred(&snap) {
            return snap;
        }
        match tokio::time::timeout_at(deadline, inv.snapshots.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                let states: Vec<String> = snap.clusters.iter().map(|c| format!("{}={}", c.name, c.state.as_str())).collect();
                panic!("no snapshot within {secs}s where {what} (last: {})", states.join(" "));
            }
        }
    }
}

/// An inventory fixture captured from the sim (`tests/fixtures/inventory-*.json`).
pub fn inventory_fixture(name: &str) -> meshdeck::inventory::FleetSnapshot {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("inventory-{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture parses")
}

/// Istio's real CRD schemas, compiled by the sim's validator, keyed by kind.
pub fn istio_schemas() -> std::collections::BTreeMap<String, std::sync::Arc<meshdeck_sim::schema::Schema>> {
    let crds = meshdeck_sim::load_crds(&istio_crds_dir()).expect("CRDs load");
    let mut out = std::collections::BTreeMap::new();
    for crd in &crds {
        for t in meshdeck_sim::resources::ResourceRegistry::types_from_crd(crd).expect("CRD compiles") {
            if t.version == "v1"
                && let Some(s) = t.schema
            {
                out.insert(format!("{}/{}", t.group, t.kind), s);
            }
        }
    }
    out
}

/// Validate an object as the API server would with Istio's CRDs: no unknown fields, no schema errors.
pub fn assert_valid_istio(
    schemas: &std::collections::BTreeMap<String, std::sync::Arc<meshdeck_sim::schema::Schema>>,
    obj: &serde_json::Value,
) {
    let api = obj["apiVersion"].as_str().expect("apiVersion");
    let group = api.split('/').next().expect("group");
    let key = format!("{group}/{}", obj["kind"].as_str().expect("kind"));
    let schema = schemas.get(&key).unwrap_or_else(|| panic!("no Istio CRD for {key}"));
    let mut pruned = obj.clone();
    let unknown = schema.prune_object(&mut pruned);
    assert!(unknown.is_empty(), "{key} {}: fields Istio's schema does not know: {unknown:?}", obj["metadata"]["name"]);
    let errors = schema.validate_object(obj);
    assert!(errors.is_empty(), "{key} {}: {errors:?}", obj["metadata"]["name"]);
}

/// Whether an external tool the test drives is on PATH. Under CI (`CI=true`) a
/// missing tool fails the test instead of letting it pass without running.
pub fn tool_available(tool: &str, version_args: &[&str]) -> bool {
    let found = std::process::Command::new(tool).args(version_args).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is not on PATH and CI=true: this test must run in CI");
        eprintln!("{tool} is not on PATH: this test did not run");
    }
    found
}

/// The kinds whose objects a fingerprint covers: what meshdeck reads or writes.
const FINGERPRINT_KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Namespace", "namespaces"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "Service", "services"),
    ("", "v1", "ServiceAccount", "serviceaccounts"),
    ("", "v1", "Pod", "pods"),
    ("apps", "v1", "Deployment", "deployments"),
    ("networking.istio.io", "v1", "VirtualService", "virtualservices"),
    ("networking.istio.io", "v1", "DestinationRule", "destinationrules"),
    ("networking.istio.io", "v1", "ServiceEntry", "serviceentries"),
    ("networking.istio.io", "v1", "Gateway", "gateways"),
    ("security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies"),
];

/// Every object of the fingerprinted kinds with its resourceVersion, read through
/// the API: equal fingerprints mean nothing was written, created or deleted.
pub async fn fingerprint(client: &Client) -> std::collections::BTreeMap<String, String> {
    use kube::api::{Api, DynamicObject, ListParams};
    use kube::core::{ApiResource, GroupVersionKind};
    let mut out = std::collections::BTreeMap::new();
    for &(group, version, kind, plural) in FINGERPRINT_KINDS {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = api.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("listing {plural}: {e}"));
        for o in list.items {
            let key = format!("{kind}/{}/{}", o.metadata.namespace.unwrap_or_default(), o.metadata.name.unwrap_or_default());
            out.insert(key, o.metadata.resource_version.unwrap_or_default());
        }
    }
    out
}

/// What differs between two fingerprints, one line per object.
pub fn fingerprint_changes(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push(format!("{k} disappeared")),
            Some(w) if w != v => out.push(format!("{k} changed (resourceVersion {v} -> {w})")),
            _ => {}
        }
    }
    out.extend(after.keys().filter(|k| !before.contains_key(*k)).map(|k| format!("{k} appeared")));
    out
}

/// The real kubectl with this kubeconfig (and a HOME of its own, so no cache is shared).
pub fn kubectl(kubeconfig: &std::path::Path, home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

/// kubectl's stdout, after asserting it succeeded.
pub fn kubectl_ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "kubectl failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The versions a snapshot shows for a service in one cluster.
pub fn versions(snap: &meshdeck::inventory::FleetSnapshot, service: &str, cluster: &str) -> Vec<String> {
    snap.service(service).and_then(|r| r.clusters.get(cluster)).map(|p| p.versions.keys().cloned().collect()).unwrap_or_default()
}

/// `meshdeck` as a user runs it: this kubeconfig in `KUBECONFIG`, its own config and
/// data directories, no terminal.
pub struct MeshdeckCli {
    pub kubeconfig: std::path::PathBuf,
    pub config: tempfile::TempDir,
    pub data: tempfile::TempDir,
}

impl MeshdeckCli {
    pub fn new(kubeconfig: std::path::PathBuf) -> std::sync::Arc<MeshdeckCli> {
        std::sync::Arc::new(MeshdeckCli { kubeconfig, config: tempfile::tempdir().expect("tmp"), data: tempfile::tempdir().expect("tmp") })
    }

    /// The command, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_meshdeck"));
        c.args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("MESHDECK_CONFIG_DIR", self.config.path())
            .env("MESHDECK_DATA_DIR", self.data.path())
            .stdin(std::process::Stdio::null());
        c
    }

    /// Run to the end off the async runtime.
    pub async fn run(self: &std::sync::Arc<Self>, args: &[&str]) -> std::process::Output {
        let cli = self.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || cli.command(&args.iter().map(String::as_str).collect::<Vec<_>>()).output().expect("runs"))
            .await
            .expect("joined")
    }
}

/// stdout and stderr, for messages.
pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every Istio object of the three clusters with its resourceVersion (admin contexts).
pub async fn istio_objects(fleet: &TestFleet) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for c in ["cluster1", "cluster2", "cluster3"] {
        for (k, v) in fingerprint(&fleet.client(c).await).await {
            if meshdeck::inventory::watch::ISTIO_KINDS.iter().any(|(_, kind, _)| k.starts_with(&format!("{kind}/"))) {
                out.insert(format!("{c}/{k}"), v);
            }
        }
    }
    out
}

/// A TCP proxy in front of an API server that the test controls: every chunk the
/// client sends waits `delay` first (a slow link), and `stall` stops forwarding
/// altogether (a server that accepts a request and never answers). TLS passes
/// through untouched, so the client still verifies the real server.
pub struct SlowProxy {
    pub addr: std::net::SocketAddr,
    pub stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowProxy {
    pub async fn start(upstream: std::net::SocketAddr, delay: Duration) -> SlowProxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stall = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stall.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            tokio::time::sleep(delay).await;
                            while flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut sr, &mut cw);
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        SlowProxy { addr, stall, task }
    }
}

impl TestFleet {
    /// The API server address of `cluster` (from the kubeconfig).
    pub fn server_addr(&self, cluster: &str) -> std::net::SocketAddr {
        let kc: serde_json::Value = serde_saphyr::from_str(&self.kubeconfig_yaml()).expect("kubeconfig");
        let server =
            kc["clusters"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == cluster)).expect("cluster")["cluster"]["server"]
                .as_str()
                .expect("server")
                .to_string();
        server.trim_start_matches("https://").trim_end_matches('/').parse().expect("host:port")
    }

    /// The fleet's kubeconfig with `cluster` reached through `addr` instead, in `dir`.
    pub fn kubeconfig_via(&self, cluster: &str, addr: std::net::SocketAddr, dir: &std::path::Path) -> std::path::PathBuf {
        let mut kc: serde_json::Value = serde_saphyr::from_str(&self.kubeconfig_yaml()).expect("kubeconfig");
        for c in kc["clusters"].as_array_mut().expect("clusters") {
            if c["name"] == cluster {
                c["cluster"]["server"] = serde_json::json!(format!("https://{addr}"));
            }
        }
        let path = dir.join("kubeconfig-via-proxy");
        std::fs::write(&path, serde_json::to_string(&kc).expect("json")).expect("write");
        path
    }
}

/// Every file under `d`, at any depth.
pub fn files_under(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Write a plan file into the CLI's data directory; its path.
pub fn write_plan(cli: &MeshdeckCli, name: &str, text: &str) -> String {
    let path = cli.data.path().join(name);
    std::fs::write(&path, text).expect("plan");
    path.display().to_string()
}

/// The fleet as the inventory would see it once `plan` is applied: its rendered
/// objects among the Istio objects (the same summaries the watchers make).
pub fn applied(
    inv: &meshdeck::inventory::FleetSnapshot,
    plan: &meshdeck::plan::Plan,
) -> Result<meshdeck::inventory::FleetSnapshot, String> {
    let out = meshdeck::render::render(plan, inv).map_err(|e| format!("{e}\nplan: {plan:?}"))?;
    let mut snap = inv.clone();
    for (cluster, o) in out.iter() {
        let object: kube::api::DynamicObject = serde_json::from_value(o.clone()).map_err(|e| e.to_string())?;
        snap.istio_objects.push(meshdeck::inventory::facts::istio_object(cluster, o["kind"].as_str().unwrap_or(""), &object));
    }
    Ok(snap)
}

/// Write a prepared change set as after the operator's `--yes`, through the conductor
/// (a history of its own in a temporary directory): the report, or why nothing was written.
pub async fn write_confirmed(
    clusters: &[meshdeck::registry::Cluster],
    set: &meshdeck::apply::ChangeSet,
    opts: &meshdeck::apply::ApplyOptions,
) -> Result<meshdeck::apply::write::ApplyReport, meshdeck::apply::ApplyError> {
    let dir = tempfile::tempdir().expect("tmp");
    let pipeline =
        meshdeck::apply::Pipeline::new(clusters, dir.path(), meshdeck::policy::Persona::unrestricted(), opts.clone()).expect("pipeline");
    let prepared = meshdeck::apply::Prepared {
        intent: meshdeck::apply::Intent::apply(vec!["test".into()], String::new()),
        changes: set.clone(),
        unpruned: Vec::new(),
        swept: Vec::new(),
        persona: "unrestricted".into(),
    };
    pipeline.write(prepared, meshdeck::apply::Confirmation::YesFlag, || Ok(())).await.map(|w| w.record.report)
}

/// A directory copied whole (a data directory handed to another run).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// Wait until the canary's VirtualService is live in cluster1: the apply is writing.
pub async fn cluster1_written(fleet: &TestFleet) {
    use kube::api::{Api, DynamicObject};
    let (ar, _) = meshdeck::apply::target::resource("VirtualService").expect("kind");
    let api: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster1").await, "default", &ar);
    eventually(120, || {
        let api = api.clone();
        async move { api.get_opt("reviews-canary").await.ok().flatten().map(|_| ()) }
    })
    .await;
}

/// What runs where in the seeded world (reviews): cluster2 has v3 too.
pub const RUNNING: [(&str, &[&str]); 3] = [("cluster1", &["v1", "v2"]), ("cluster2", &["v1", "v2", "v3"]), ("cluster3", &["v1", "v2"])];

/// A deterministic draw for plan corpora (a fixed seed, so a failure names a plan that can be run again).
pub struct Draw(pub u64);

impl Draw {
    pub fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Wait (at most a minute) until `cluster`'s API server answers again.
pub async fn answers(fleet: &TestFleet, cluster: &str) {
    let client = fleet.client(cluster).await;
    eventually(60, || {
        let client = client.clone();
        async move { client.apiserver_version().await.ok().map(|_| ()) }
    })
    .await;
}
