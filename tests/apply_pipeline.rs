//! The apply engine on a 3-cluster fleet, through kube-rs over HTTPS: the sim,
//! or the real test bed with MESHDECK_TEST_FLEET=real. `sim_only` tests drive
//! the sim's fault hooks; `real_only` tests use what only a real API server has.

mod common;

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use meshdeck::apply::history::{History, HistoryRecord};
use meshdeck::apply::target::{normalized, resource};
use meshdeck::apply::write::Outcome;
use meshdeck::apply::{ApplyError, ApplyOptions, ChangeKind, PruneScope, desired_for_plan, desired_for_rollback, prepare};
use meshdeck::inventory::{FleetSnapshot, Inventory};
use meshdeck::plan::Plan;
use meshdeck::registry::Cluster;
use meshdeck::render::{RenderedObjects, render};
use meshdeck_sim::Fault;
use serde_json::Value;

const CANARY: &str = include_str!("../examples/reviews-canary.yaml");
const LOCAL_ONLY: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-canary}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 90}\n    - {cluster: cluster1, version: v2, weight: 10}\n";

struct Env {
    fleet: common::TestFleet,
    clusters: Vec<Cluster>,
    inv: std::sync::Arc<FleetSnapshot>,
    _inventory: Inventory,
}

async fn env() -> Env {
    env_on(common::TestFleet::start().await).await
}

async fn env_on(fleet: common::TestFleet) -> Env {
    let clusters = fleet.registry().await;
    let mut inventory = Inventory::start(&clusters);
    let inv = inventory.settled(std::time::Duration::from_secs(20)).await;
    Env { fleet, clusters, inv, _inventory: inventory }
}

fn opts(force: bool) -> ApplyOptions {
    ApplyOptions { force_conflicts: force, concurrency: 8, progress: None, ..Default::default() }
}

fn plan(env: &Env, text: &str) -> (Plan, RenderedObjects) {
    let p = meshdeck::plan::load("plan.yaml", text, &env.inv).expect("valid plan");
    let r = render(&p, &env.inv).expect("renders");
    (p, r)
}

/// Every Istio object in every cluster, normalized, with its resourceVersion.
async fn fleet_state(env: &Env) -> BTreeMap<String, (Value, String)> {
    let mut out = BTreeMap::new();
    for c in &env.clusters {
        let client = c.client.clone().expect("client");
        for (_, kind, _) in meshdeck::inventory::watch::ISTIO_KINDS {
            let (ar, _) = resource(kind).expect("kind");
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            for o in api.list(&ListParams::default()).await.expect("list").items {
                let mut v = serde_json::to_value(&o).expect("json");
                v["kind"] = serde_json::json!(kind);
                let key = format!(
                    "{}/{kind}/{}/{}",
                    c.name,
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default()
                );
                out.insert(key, (normalized(&v), o.metadata.resource_version.clone().unwrap_or_default()));
            }
        }
    }
    out
}

fn without_versions(state: &BTreeMap<String, (Value, String)>) -> BTreeMap<String, Value> {
    state.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
}

/// `execute` as after the operator's `--yes`.
async fn execute_confirmed(
    clusters: &[meshdeck::registry::Cluster],
    set: &meshdeck::apply::ChangeSet,
    opts: &ApplyOptions,
) -> Result<meshdeck::apply::write::ApplyReport, ApplyError> {
    common::write_confirmed(clusters, set, opts).await
}

async fn apply_text(env: &Env, text: &str, force: bool) -> Result<meshdeck::apply::write::ApplyReport, ApplyError> {
    apply_after(env, text, force, &PruneScope::default()).await.map(|(report, _)| report)
}

/// Apply a plan whose earlier applies wrote where `before` says (as history tells the CLI).
async fn apply_after(
    env: &Env,
    text: &str,
    force: bool,
    before: &PruneScope,
) -> Result<(meshdeck::apply::write::ApplyReport, meshdeck::apply::ChangeSet), ApplyError> {
    let (p, r) = plan(env, text);
    let desired = desired_for_plan(&env.clusters, &p, &r, before).await?;
    let set = prepare(&env.clusters, desired, &opts(force)).await?;
    execute_confirmed(&env.clusters, &set, &opts(force)).await.map(|report| (report, set))
}

#[tokio::test]
async fn the_canary_goes_live_as_rendered_and_reapplying_changes_nothing() {
    let env = env().await;
    let (p, rendered) = plan(&env, CANARY);
    let desired = desired_for_plan(&env.clusters, &p, &rendered, &PruneScope::default()).await.expect("desired");
    let set = prepare(&env.clusters, desired.clone(), &opts(false)).await.expect("prepared");
    assert!(set.steps.iter().all(|s| s.change == ChangeKind::Create), "{}", set.render_diff());
    assert!(fleet_state(&env).await.is_empty(), "preparing (dry run) stores nothing");

    let report = execute_confirmed(&env.clusters, &set, &opts(false)).await.expect("applied");
    assert_eq!(report.outcome, Outcome::Applied);
    let live = fleet_state(&env).await;
    let expected: BTreeMap<String, Value> = rendered
        .iter()
        .map(|(c, o)| {
            (
                format!(
                    "{c}/{}/{}/{}",
                    o["kind"].as_str().expect("kind"),
                    o["metadata"]["namespace"].as_str().expect("ns"),
                    o["metadata"]["name"].as_str().expect("name")
                ),
                normalized(o),
            )
        })
        .collect();
    assert_eq!(without_versions(&live), expected, "live objects equal the render, object by object");

    let again = prepare(&env.clusters, desired, &opts(false)).await.expect("prepared");
    assert!(again.is_noop(), "{}", again.render_diff());
    let report = execute_confirmed(&env.clusters, &again, &opts(false)).await.expect("no-op");
    assert_eq!(report.outcome, Outcome::NoChanges);
    assert_eq!(fleet_state(&env).await, live, "no resourceVersion moved");
}

#[tokio::test]
async fn another_managers_field_stops_the_apply_until_forced() {
    let env = env().await;
    let (_, rendered) = plan(&env, CANARY);
    let vs = rendered.clusters["cluster1"].iter().find(|o| o["kind"] == "VirtualService").expect("vs").clone();
    let mut theirs = vs.clone();
    theirs["spec"]["http"][0]["route"][0]["weight"] = serde_json::json!(50);
    theirs["spec"]["http"][0]["route"][1]["weight"] = serde_json::json!(40);
    let obj: DynamicObject = serde_json::from_value(theirs).expect("object");
    let (ar, _) = resource("VirtualService").expect("kind");
    let api: Api<DynamicObject> = Api::namespaced_with(env.clusters[0].client.clone().expect("client"), "default", &ar);
    api.patch("reviews-canary", &PatchParams::apply("alice"), &Patch::Apply(&obj)).await.expect("alice applies");
    let before = fleet_state(&env).await;

    let err = apply_text(&env, CANARY, false).await.expect_err("conflict");
    let text = err.to_string();
    assert!(matches!(err, ApplyError::DryRun(_)), "{text}");
    assert!(text.contains("conflict with \"alice\"") && text.contains(".spec.http"), "{text}");
    assert_eq!(fleet_state(&env).await, before, "nothing was written");

    let report = apply_text(&env, CANARY, true).await.expect("forced");
    assert_eq!(report.outcome, Outcome::Applied);
    let live = api.get("reviews-canary").await.expect("get");
    assert_eq!(live.data["spec"]["http"][0]["route"][0]["weight"], 75);
}

#[tokio::test]
async fn a_persona_and_rbac_refuse_before_anything_is_written() {
    let env = env().await;
    let (p, _) = plan(&env, CANARY);
    let policy: meshdeck::policy::PolicyFile = serde_saphyr::from_str("personas:\n  - name: team\n    routeFrom: [{clusters: [cluster1]}]\n    routeTo: [{clusters: [cluster1], services: ['reviews.default']}]\n").expect("policy");
    let err = policy.persona(Some("team"), &[], &[]).expect("persona").check(&p).expect_err("refused");
    assert!(err.to_string().contains("may not route reviews.default to cluster2 (routeTo[0] allows clusters [cluster1]"), "{err}");

    // The restricted users may route but not write AuthorizationPolicies: preflight says so.
    let kc = kube::config::Kubeconfig::from_yaml(&env.fleet.kubeconfig_yaml()).expect("kubeconfig");
    let contexts: Vec<String> = ["cluster1-restricted", "cluster2-restricted", "cluster3-restricted"].map(String::from).to_vec();
    let restricted = meshdeck::registry::connect(&kc, &contexts, &Default::default(), false).await.expect("registry");
    let access =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-callers.yaml")).expect("example");
    let (ap, rendered) = plan(&env, &access);
    // The restricted contexts are aliases: the registry names the clusters as before, acting as the restricted identity.
    assert_eq!(
        restricted.iter().map(|c| (c.name.as_str(), c.context.name.as_str())).collect::<Vec<_>>(),
        [("cluster1", "cluster1-restricted"), ("cluster2", "cluster2-restricted"), ("cluster3", "cluster3-restricted")]
    );
    let retargeted = desired_for_plan(&env.clusters, &ap, &rendered, &PruneScope::default()).await.expect("desired");
    let err = prepare(&restricted, retargeted, &opts(false)).await.expect_err("forbidden");
    let text = err.to_string();
    assert!(matches!(err, ApplyError::Forbidden(_)), "{text}");
    assert!(text.contains("cluster1: cannot create authorizationpolicies.security.istio.io in namespace default"), "{text}");
    assert!(fleet_state(&env).await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn sim_only_a_cluster_failing_mid_apply_leaves_every_cluster_as_before() {
    let env = env().await;
    apply_text(&env, LOCAL_ONLY, false).await.expect("first plan");
    let before = fleet_state(&env).await;
    assert_eq!(before.len(), 2);
    // cluster2 accepts one write of the canary, then fails its writes until it recovers
    // (once the failure has happened): the rollback's retries reach it again.
    let c2 = env.fleet.sim().cluster("cluster2").expect("cluster2").clone();
    c2.set_fault(Fault::WritesFailAfter(1));
    let mut failures = c2.injected_write_failures.subscribe();
    let recover = tokio::spawn(async move {
        let _ = failures.wait_for(|n| *n >= 1).await;
        c2.set_fault(Fault::Healthy);
    });
    let (p, r) = plan(&env, CANARY);
    let set = prepare(&env.clusters, desired_for_plan(&env.clusters, &p, &r, &PruneScope::default()).await.expect("desired"), &opts(false))
        .await
        .expect("prepared");
    let report = execute_confirmed(&env.clusters, &set, &opts(false)).await.expect("executed");
    recover.await.expect("recovered");
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.describe());
    assert!(report.clusters["cluster2"].errors.iter().any(|e| e.contains("injected write failure")), "{}", report.describe());
    assert_eq!(without_versions(&fleet_state(&env).await), without_versions(&before), "every object is as it was before");

    let dir = tempfile::tempdir().expect("tmp");
    let history = History::open(dir.path()).expect("history");
    let rec = HistoryRecord {
        id: History::new_id(),
        time: "t".into(),
        action: "apply".into(),
        persona: "unrestricted".into(),
        plans: vec!["reviews-canary".into()],
        plan_yaml: String::new(),
        clusters: set.clusters(),
        report,
        changes: set,
        rollback_of: None,
        fleet: Default::default(),
        after: Default::default(),
        unpruned: Vec::new(),
        swept: Vec::new(),
        canary: None,
    };
    history.record(&rec).expect("recorded");
    let back = history.get(&rec.id).expect("read back");
    assert_eq!(back.report.outcome, Outcome::RolledBack, "history says so");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("history").join(format!("{}.json", rec.id))).expect("file").permissions().mode();
        assert_eq!(mode & 0o077, 0, "history is readable by the user only");
    }
}

#[tokio::test]
async fn rollback_restores_and_prune_touches_only_this_plan() {
    let env = env().await;
    apply_text(&env, LOCAL_ONLY, false).await.expect("v1");
    let after_v1 = fleet_state(&env).await;
    // Someone else's object and another plan's object must survive pruning.
    let (ar, _) = resource("VirtualService").expect("kind");
    let api: Api<DynamicObject> = Api::namespaced_with(env.clusters[0].client.clone().expect("client"), "default", &ar);
    for (name, labels) in [
        ("hand-made", serde_json::json!({})),
        ("other-plan", serde_json::json!({"app.kubernetes.io/managed-by": "meshdeck", "meshdeck.dev/plan": "other"})),
    ] {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": name, "labels": labels}, "spec": {"hosts": ["ratings"]}})).expect("object");
        api.patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(&o)).await.expect("create");
    }
    let baseline = fleet_state(&env).await;

    // v2 (the canary) then back to v1: prune drops the canary's remote objects only.
    let (p2, r2) = plan(&env, CANARY);
    let set2 =
        prepare(&env.clusters, desired_for_plan(&env.clusters, &p2, &r2, &PruneScope::default()).await.expect("desired"), &opts(false))
            .await
            .expect("prepared");
    let report2 = execute_confirmed(&env.clusters, &set2, &opts(false)).await.expect("v2");
    assert_eq!(report2.outcome, Outcome::Applied);
    let record = HistoryRecord {
        id: "x".into(),
        time: "t".into(),
        action: "apply".into(),
        persona: "p".into(),
        plans: vec![],
        plan_yaml: String::new(),
        clusters: vec![],
        report: report2,
        changes: set2,
        rollback_of: None,
        fleet: Default::default(),
        after: Default::default(),
        unpruned: Vec::new(),
        swept: Vec::new(),
        canary: None,
    };
    let undo = prepare(&env.clusters, desired_for_rollback(&record), &opts(true)).await.expect("rollback prepared");
    let report = execute_confirmed(&env.clusters, &undo, &opts(true)).await.expect("rolled back");
    assert_eq!(report.outcome, Outcome::Applied);
    assert_eq!(without_versions(&fleet_state(&env).await), without_versions(&baseline), "rollback restores the state before the apply");

    let (_, canary) = apply_after(&env, CANARY, false, &PruneScope::default()).await.expect("canary again");
    // Without history, prune looks only where the plan writes now: cluster2 is not looked at.
    let (p, r) = plan(&env, LOCAL_ONLY);
    let blind = desired_for_plan(&env.clusters, &p, &r, &PruneScope::default()).await.expect("desired");
    assert!(blind.iter().all(|(t, _)| t.cluster == "cluster1"), "{blind:?}");
    let (report, _) = apply_after(&env, LOCAL_ONLY, false, &PruneScope::of_changes([&canary])).await.expect("shrink");
    assert_eq!(report.outcome, Outcome::Applied);
    let state = fleet_state(&env).await;
    assert!(state.contains_key("cluster1/VirtualService/default/hand-made"), "objects not managed by meshdeck are never touched");
    assert!(state.contains_key("cluster1/VirtualService/default/other-plan"), "another plan's objects are never pruned");
    assert!(!state.keys().any(|k| k.starts_with("cluster2/")), "the canary's cluster2 objects were pruned: {:?}", state.keys());
    assert_eq!(without_versions(&state).len(), after_v1.len() + 2);
}

#[tokio::test]
async fn read_only_refuses_every_write() {
    let mut env = env().await;
    for c in &mut env.clusters {
        c.options.read_only = true;
    }
    let err = apply_text(&env, CANARY, false).await.expect_err("read-only");
    assert!(matches!(err, ApplyError::ReadOnly(..)), "{err}");
    assert!(fleet_state(&env).await.is_empty());
}

/// A real API server's own admission refuses meshdeck's writes on cluster2
/// after the dry run passed (a ValidatingAdmissionPolicy: CEL, no webhook):
/// a change freeze armed mid-apply. Every cluster ends as before.
#[tokio::test]
async fn real_only_admission_refusing_cluster2_mid_apply_leaves_every_cluster_as_before() {
    let Some(fleet) = common::real_fleet_only("ValidatingAdmissionPolicy").await else { return };
    let env = env_on(fleet).await;
    apply_text(&env, LOCAL_ONLY, false).await.expect("first plan");
    let before = fleet_state(&env).await;
    assert_eq!(before.len(), 2);
    let (p, r) = plan(&env, CANARY);
    let set = prepare(&env.clusters, desired_for_plan(&env.clusters, &p, &r, &PruneScope::default()).await.expect("desired"), &opts(false))
        .await
        .expect("prepared");

    let c2 = env.fleet.client("cluster2").await;
    let policy = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "change-freeze", "labels": {common::TEST_LABEL: "freeze"}},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["networking.istio.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["*"]}]},
                 "validations": [{"expression": "!has(object.metadata.labels) || !('meshdeck.dev/plan' in object.metadata.labels)", "message": "change freeze on cluster2"}]}
    });
    let binding = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "change-freeze", "labels": {common::TEST_LABEL: "freeze"}},
        "spec": {"policyName": "change-freeze", "validationActions": ["Deny"]}
    });
    for (obj, plural) in [(policy, "validatingadmissionpolicies"), (binding, "validatingadmissionpolicybindings")] {
        let kind = obj["kind"].as_str().expect("kind").to_string();
        let ar = kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", &kind),
            plural,
        );
        let api: Api<DynamicObject> = Api::all_with(c2.clone(), &ar);
        let o: DynamicObject = serde_json::from_value(obj).expect("object");
        api.patch("change-freeze", &PatchParams::apply("test"), &Patch::Apply(&o)).await.expect("armed");
    }
    // The policy takes effect within seconds: wait until a dry run of a plan's object is refused.
    let (ar, _) = resource("Gateway").expect("kind");
    let probe_api: Api<DynamicObject> = Api::namespaced_with(c2.clone(), "default", &ar);
    let probe: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "freeze-probe", "labels": {"meshdeck.dev/plan": "probe"}}, "spec": {"servers": []}
    }))
    .expect("probe");
    common::eventually(30, || {
        let (api, probe) = (probe_api.clone(), probe.clone());
        async move {
            let mut params = PatchParams::apply("test");
            params.dry_run = true;
            match api.patch("freeze-probe", &params, &Patch::Apply(&probe)).await {
                Err(kube::Error::Api(s)) if s.message.contains("change freeze") => Some(()),
                _ => None,
            }
        }
    })
    .await;

    let report = execute_confirmed(&env.clusters, &set, &opts(false)).await.expect("executed");
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.describe());
    assert!(report.clusters["cluster2"].errors.iter().any(|e| e.contains("change freeze on cluster2")), "{}", report.describe());
    assert_eq!(without_versions(&fleet_state(&env).await), without_versions(&before), "every object is as it was before");
}
