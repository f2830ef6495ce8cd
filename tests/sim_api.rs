//! The simulated API server through kube-rs, unchanged: discovery, list,
//! pagination, watch (with 410 recovery), server-side apply, errors, RBAC, faults.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::runtime::watcher;
use meshdeck_sim::{Fault, SimConfig};
use serde_json::json;

fn vs(name: &str, weights: (i64, i64)) -> serde_json::Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": weights.0},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": weights.1}]}]}
    })
}

async fn vs_api(client: kube::Client) -> Api<DynamicObject> {
    let discovery = Discovery::new(client.clone()).run().await.expect("discovery");
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "VirtualService")
        .expect("VirtualService is discovered");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert_eq!(ar.api_version, "networking.istio.io/v1");
    Api::namespaced_with(client, "default", &ar)
}

#[tokio::test]
async fn bookinfo_is_listed_with_selectors_and_pages() {
    let fleet = common::fleet(SimConfig::default()).await;
    let c2 = common::client(&fleet, "cluster2").await;
    let pods: Api<Pod> = Api::namespaced(c2.clone(), "default");
    let reviews = pods.list(&ListParams::default().labels("app=reviews")).await.expect("list");
    let mut versions: Vec<String> = reviews.items.iter().filter_map(|p| p.metadata.labels.as_ref()?.get("version").cloned()).collect();
    versions.sort();
    assert_eq!(versions, ["v1", "v2", "v3"], "cluster2 runs reviews v1, v2 and v3");

    let all: Api<Pod> = Api::all(c2.clone());
    let total = all.list(&ListParams::default()).await.expect("list").items.len();
    let mut paged = 0;
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = all.list(&lp).await.expect("page");
        assert!(page.items.len() <= 2);
        paged += page.items.len();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(paged, total, "pagination returns every pod exactly once");

    let by_name = pods.list(&ListParams::default().fields("metadata.name=nonexistent")).await.expect("list");
    assert!(by_name.items.is_empty());
    let c1: Api<Pod> = Api::namespaced(common::client(&fleet, "cluster1").await, "default");
    let c1_reviews = c1.list(&ListParams::default().labels("app=reviews,version notin (v1)")).await.expect("list");
    assert_eq!(c1_reviews.items.len(), 1, "cluster1 runs reviews v2 besides v1, no v3");
}

#[tokio::test]
async fn server_side_apply_owns_fields_conflicts_and_forces() {
    let fleet = common::fleet(SimConfig::default()).await;
    let api = vs_api(common::client(&fleet, "cluster1").await).await;
    let obj: DynamicObject = serde_json::from_value(vs("reviews", (80, 20))).expect("object");
    let mine = PatchParams::apply("meshdeck");
    let created = api.patch("reviews", &mine, &Patch::Apply(&obj)).await.expect("apply creates");
    let rv = created.metadata.resource_version.clone();
    let again = api.patch("reviews", &mine, &Patch::Apply(&obj)).await.expect("re-apply");
    assert_eq!(again.metadata.resource_version, rv, "an unchanged apply does not move resourceVersion");
    let managers: Vec<String> = again.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert_eq!(managers, ["meshdeck"]);

    let theirs: DynamicObject = serde_json::from_value(vs("reviews", (50, 50))).expect("object");
    let err = api.patch("reviews", &PatchParams::apply("alice"), &Patch::Apply(&theirs)).await.expect_err("conflict");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains("conflict with \"meshdeck\"") && s.message.contains(".spec.http"), "{}", s.message);
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    let dry = api.patch("reviews", &PatchParams::apply("alice").force().dry_run(), &Patch::Apply(&theirs)).await.expect("dry run");
    assert_eq!(dry.data["spec"]["http"][0]["route"][0]["weight"], 50);
    let live = api.get("reviews").await.expect("get");
    assert_eq!(live.data["spec"]["http"][0]["route"][0]["weight"], 80, "dry-run stores nothing");
    assert_eq!(live.metadata.resource_version, rv);

    let forced = api.patch("reviews", &PatchParams::apply("alice").force(), &Patch::Apply(&theirs)).await.expect("force");
    assert_eq!(forced.data["spec"]["http"][0]["route"][0]["weight"], 50);
    assert_ne!(forced.metadata.resource_version, rv);
}

#[tokio::test]
async fn writes_are_validated_against_the_schema() {
    let fleet = common::fleet(SimConfig::default()).await;
    let api = vs_api(common::client(&fleet, "cluster1").await).await;
    let mut bad = vs("bad", (80, 20));
    bad["spec"]["http"][0]["route"][0]["weight"] = json!("ten");
    let obj: DynamicObject = serde_json::from_value(bad).expect("object");
    match api.create(&PostParams::default(), &obj).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(s.message.contains("spec.http[0].route[0].weight"), "{}", s.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let missing = api.get("nope").await.expect_err("404");
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.message == "virtualservices.networking.istio.io \"nope\" not found"),
        "{missing:?}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(common::client(&fleet, "cluster1").await, "no-such-ns");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm");
    let err = cms.create(&PostParams::default(), &cm).await.expect_err("namespace missing");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");
}

#[tokio::test]
async fn watch_streams_changes_and_recovers_from_410() {
    let fleet = common::fleet(SimConfig::default()).await;
    let client = common::client(&fleet, "cluster1").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(cms.clone(), watcher::Config::default().labels("test=watch")).boxed();
    // Initial list (empty), then the create arrives as an Apply event.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.expect("event").expect("ok");
    assert!(matches!(first, Some(watcher::Event::Init)));
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w1", "labels": {"test": "watch"}}})).expect("cm");
    let ignored: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "other"}})).expect("cm");
    cms.create(&PostParams::default(), &ignored).await.expect("create");
    cms.create(&PostParams::default(), &cm).await.expect("create");
    let mut name = None;
    while name.is_none() {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.expect("an event within 10s") {
            Ok(Some(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => name = cm.metadata.name,
            Ok(Some(_)) => {}
            other => panic!("watch ended: {other:?}"),
        }
    }
    let name = name.expect("named");
    assert_eq!(name, "w1", "only the selected object is seen");

    // Compaction makes the watcher's resourceVersion too old: it must re-list and carry on.
    fleet.cluster("cluster1").expect("cluster1").store().compact();
    let cm2: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w2", "labels": {"test": "watch"}}})).expect("cm");
    cms.create(&PostParams::default(), &cm2).await.expect("create");
    cms.delete("w1", &DeleteParams::default()).await.expect("delete");
    let mut saw_w2 = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !saw_w2 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            saw_w2 = match ev {
                watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => cm.metadata.name.as_deref() == Some("w2"),
                _ => false,
            };
        }
    }
    assert!(saw_w2, "the watcher resumes after a 410 and sees new objects");
}

#[tokio::test]
async fn rbac_and_faults_answer_like_a_cluster() {
    let fleet = common::fleet(SimConfig::default()).await;
    let restricted = common::client(&fleet, "cluster1-restricted").await;
    let svcs: Api<Service> = Api::namespaced(restricted.clone(), "default");
    assert!(svcs.list(&ListParams::default()).await.is_ok(), "the restricted user may read");
    let err = svcs.delete("reviews", &DeleteParams::default()).await.expect_err("403");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert!(s.message.contains("User \"restricted\" cannot delete resource \"services\""), "{}", s.message);
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(restricted.clone());
    let ask = |verb: &str, group: &str, resource: &str, ns: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let yes =
        reviews.create(&PostParams::default(), &ask("patch", "networking.istio.io", "virtualservices", "default")).await.expect("review");
    assert!(yes.status.expect("status").allowed);
    let no =
        reviews.create(&PostParams::default(), &ask("patch", "networking.istio.io", "gateways", "istio-system")).await.expect("review");
    assert!(!no.status.expect("status").allowed);

    let cluster2 = fleet.cluster("cluster2").expect("cluster2");
    let pods: Api<Pod> = Api::namespaced(common::client(&fleet, "cluster2").await, "default");
    cluster2.set_fault(Fault::TokensExpired);
    assert!(matches!(pods.list(&ListParams::default()).await, Err(kube::Error::Api(ref s)) if s.code == 401));
    cluster2.set_fault(Fault::ServerErrors);
    assert!(matches!(pods.list(&ListParams::default()).await, Err(kube::Error::Api(ref s)) if s.code == 500));
    cluster2.set_fault(Fault::Down);
    let fresh: Api<Pod> = Api::namespaced(common::client(&fleet, "cluster2").await, "default");
    assert!(fresh.list(&ListParams::default()).await.is_err(), "a down cluster refuses");
    cluster2.set_fault(Fault::Healthy);
    assert!(fresh.list(&ListParams::default()).await.is_ok(), "and comes back when restored");
}

#[tokio::test]
async fn a_live_fleet_replaces_deleted_pods_like_a_replicaset() {
    let fleet = common::fleet(SimConfig { live: true, ..Default::default() }).await;
    let pods: Api<Pod> = Api::namespaced(common::client(&fleet, "cluster1").await, "default");
    let before = pods.list(&ListParams::default().labels("app=ratings")).await.expect("list").items;
    assert_eq!(before.len(), 1);
    let old = before[0].metadata.name.clone().expect("name");
    pods.delete(&old, &DeleteParams::default()).await.expect("delete");
    let replaced = common::eventually(10, || {
        let pods = pods.clone();
        let old = old.clone();
        async move {
            let items = pods.list(&ListParams::default().labels("app=ratings")).await.ok()?.items;
            let names: Vec<String> = items.iter().filter_map(|p| p.metadata.name.clone()).collect();
            (names.len() == 1 && names[0] != old).then(|| names[0].clone())
        }
    })
    .await;
    assert!(replaced.starts_with("ratings-v1-"), "{replaced}");
}

#[tokio::test]
async fn a_rollout_restart_replaces_a_deployments_pods() {
    use rand::SeedableRng;
    let fleet = common::fleet(SimConfig { clusters: 1, live: true, ..Default::default() }).await;
    let pods: Api<Pod> = Api::namespaced(common::client(&fleet, "cluster1").await, "default");
    let names = |items: Vec<Pod>| -> std::collections::BTreeSet<String> { items.into_iter().filter_map(|p| p.metadata.name).collect() };
    let before = names(pods.list(&ListParams::default()).await.expect("list").items);
    meshdeck_sim::fleet::rollout_step(&fleet.clusters, &mut rand::rngs::StdRng::seed_from_u64(1));
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(common::client(&fleet, "cluster1").await, "default");
    let rolled: Vec<_> = deployments
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/restartedAt"))
        })
        .collect();
    assert_eq!(rolled.len(), 1, "one Deployment was restarted");
    let after = common::eventually(10, || {
        let pods = pods.clone();
        let before = before.clone();
        async move {
            let now = names(pods.list(&ListParams::default()).await.ok()?.items);
            (now.len() == before.len() && now != before).then_some(now)
        }
    })
    .await;
    assert_eq!(after.difference(&before).count(), before.difference(&after).count(), "each replaced pod has a successor");
}

#[tokio::test]
async fn a_watch_the_client_drops_ends_on_the_server() {
    use kube::api::WatchParams;
    let fleet = common::fleet(SimConfig::default()).await;
    let c1 = fleet.cluster("cluster1").expect("cluster1").clone();
    assert_eq!(c1.store().watchers(), 0);
    let cms: Api<ConfigMap> = Api::namespaced(common::client(&fleet, "cluster1").await, "default");
    // No bookmarks: nothing but the hang-up can end the server side early.
    let stream = cms.watch(&WatchParams::default().disable_bookmarks(), "0").await.expect("watch");
    let open = {
        let c1 = c1.clone();
        common::eventually(10, move || {
            let n = c1.store().watchers();
            async move { (n == 1).then_some(n) }
        })
        .await
    };
    assert_eq!(open, 1);
    drop(stream);
    drop(cms);
    common::eventually(10, move || {
        let n = c1.store().watchers();
        async move { (n == 0).then_some(()) }
    })
    .await;
}
