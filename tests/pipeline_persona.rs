//! The persona is the conductor's to check (issue #31), for every action: a plan's
//! apply, its prunes, a rollback, each trust step. Tested once against the conductor,
//! and once through the cockpit's rollback (the CLI's are in rollback_fleet and
//! trust), on the sim and on the real test bed.

mod common;

use common::{MeshdeckCli, TestFleet, istio_objects, text};
use meshdeck::apply::{ApplyError, ApplyOptions, Confirmation, Desired, Intent, ObjRef, Pipeline};
use meshdeck::policy::{Persona, PolicyFile};
use serde_json::json;

const CANARY: &str = "examples/reviews-canary.yaml";
const LOCAL_ONLY: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-canary}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 90}\n    - {cluster: cluster1, version: v2, weight: 10}\n";
const POLICY: &str = "personas:\n  - name: local-team\n    routeFrom: [{clusters: [cluster1], namespaces: [default]}]\n    routeTo: [{clusters: [cluster1], services: ['reviews.default']}]\n  - name: admin\n    match: {users: [cluster1-admin]}\n    routeFrom: [{clusters: ['*']}]\n    routeTo: [{clusters: ['*']}]\n    accessPolicies: true\n";

fn local_team() -> Persona {
    let file: PolicyFile = serde_saphyr::from_str(POLICY).expect("policy");
    file.personas.into_iter().find(|p| p.name == "local-team").expect("local-team")
}

fn refused(r: Result<impl std::fmt::Debug, ApplyError>, says: &str) {
    match r {
        Err(ApplyError::Policy(e)) => assert!(e.to_string().contains(says), "{e}"),
        other => panic!("expected the persona to refuse ({says}): {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conductor_checks_the_persona_on_every_action() {
    let fleet = TestFleet::start().await;
    let clusters = fleet.registry().await;
    let mut inventory = meshdeck::inventory::Inventory::start(&clusters);
    let inv = inventory.settled(std::time::Duration::from_secs(30)).await;
    drop(inventory);
    let dir = tempfile::tempdir().expect("tmp");
    let opts = ApplyOptions { concurrency: 8, ..Default::default() };
    let admin = Pipeline::new(&clusters, dir.path(), Persona::unrestricted(), opts.clone()).expect("pipeline");
    let team = Pipeline::new(&clusters, dir.path(), local_team(), opts).expect("pipeline");
    let load = |text: &str| {
        let plan = meshdeck::plan::load("plan.yaml", text, &inv).expect("plan");
        let rendered = meshdeck::render::render(&plan, &inv).expect("render");
        (plan, rendered)
    };

    // Apply: the plan routes to cluster2, outside the team's routeTo.
    let canary = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CANARY)).expect("plan");
    let (plan, rendered) = load(&canary);
    refused(team.plan(&plan, &rendered, &[]).await, "persona local-team refuses reviews-canary: may not route reviews.default to cluster2");
    let prepared = admin.plan(&plan, &rendered, &[]).await.expect("the admin may");
    let written = admin.write(prepared, Confirmation::YesFlag, || Ok(())).await.expect("written");
    let before = istio_objects(&fleet).await;

    // Prune: routing only inside cluster1 removes the canary's objects in cluster2.
    let (local, rendered) = load(LOCAL_ONLY);
    refused(team.plan(&local, &rendered, &[]).await, "may not delete");
    // Rollback of the admin's apply deletes in cluster2 too.
    refused(
        team.rollback(&written.record.id, false).await.map(|(_, p)| p),
        &format!("refuses rollback of {}: may not delete", written.record.id),
    );
    // Trust: a CA, and istiod's restart.
    let cacerts = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"}, "data": {}});
    let restart = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "istiod", "namespace": "istio-system"},
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-04T00:00:00Z"}}}}});
    for (step, object) in [("trust-plan", cacerts), ("trust-restart", restart)] {
        let desired = vec![(ObjRef::of("cluster1", &object), Desired::Apply(object.clone()))];
        let r = team.change(Intent::trust(step, String::new()), desired).await;
        refused(r, &format!("persona local-team refuses {step}: may not"));
    }
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");
}

/// The cockpit's rollback (`u` in history) is the conductor's: a persona that may not
/// delete in cluster2 is refused there as on the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cockpits_rollback_is_refused_for_a_persona_that_may_not_undo_it() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    std::fs::write(cli.config.path().join("policy.yaml"), POLICY).expect("policy");
    let out = cli.run(&["apply", "-f", CANARY, "--yes", "--as-persona", "admin"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = istio_objects(&fleet).await;
    for (from, to) in [(cli.config.path(), dir.path().join("config")), (cli.data.path(), dir.path().join("data"))] {
        common::copy_dir(from, &to);
    }
    let tmux = common::tmux::start_cockpit(
        "persona-rollback",
        dir.path(),
        &fleet.kubeconfig_path(),
        "--context cluster1 --context cluster2 --context cluster3 --as-persona local-team",
        160,
        45,
    );
    tmux.wait_for(&["reviews"], 30);
    tmux.keys(&["g", "h"]);
    tmux.wait_for(&["reviews-canary"], 10);
    tmux.keys(&["u"]);
    let screen = tmux.wait_for(&["refused; nothing was written", "persona local-team refuses rollback of"], 30);
    assert!(screen.contains("may not delete"), "{screen}");
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");
}
