//! Every screen drawn on ratatui's TestBackend at 80x24 and 160x45, snapshotted.
//! The clock and the inventory are fixed, so the bytes are stable.

mod common;

use crossterm::event::{KeyEvent, KeyModifiers};
use meshdeck::apply::history::HistoryRecord;
use meshdeck::apply::write::{ApplyReport, ClusterReport, Outcome};
use meshdeck::apply::{ChangeKind, ChangeSet, Desired, ObjRef, Step};
use meshdeck::tui::app::{AppState, update};
use meshdeck::tui::keymap::Key;
use meshdeck::tui::msg::Msg;
use meshdeck::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn press(app: &mut AppState, keys: &str) {
    for k in keys.split_whitespace() {
        let key = Key::parse(k).expect("key");
        let mods = if key.ctrl { KeyModifiers::CONTROL } else { KeyModifiers::empty() };
        update(app, Msg::Key(KeyEvent::new(key.code, mods)));
    }
}

fn screen(app: &mut AppState, w: u16, h: u16) -> String {
    let body = ratatui::layout::Rect::new(0, 0, w, h - 2);
    let rows = meshdeck::tui::views::table_geometry(app, body).table_rows;
    update(app, Msg::Layout { rows });
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    let theme = Theme::builtin("dark");
    term.draw(|f| meshdeck::tui::views::draw(f, app, &theme)).expect("draw");
    format!("{}", term.backend())
}

fn app() -> AppState {
    AppState::for_test(common::inventory_fixture("federation"))
}

fn canary(app: &mut AppState) {
    press(app, "down down down r 1 5 enter down 1 0 enter down down down 7 5 enter");
}

fn changes(app: &AppState) -> ChangeSet {
    let plan = app.composer.as_ref().expect("composer").to_plan();
    let out = meshdeck::render::render(&plan, &app.snapshot).expect("renders");
    let steps = out
        .iter()
        .map(|(c, o)| Step {
            target: ObjRef::of(c, o),
            desired: Desired::Apply(o.clone()),
            change: ChangeKind::Create,
            previous: None,
            expected: Some(o.clone()),
            diff: meshdeck::apply::diff::object_diff(None, Some(o)),
        })
        .collect();
    ChangeSet { steps }
}

macro_rules! both_sizes {
    ($name:ident, $setup:expr) => {
        #[test]
        fn $name() {
            for (w, h) in [(80u16, 24u16), (160, 45)] {
                let mut a = app();
                let setup: fn(&mut AppState) = $setup;
                setup(&mut a);
                insta::assert_snapshot!(format!("{}_{w}x{h}", stringify!($name)), screen(&mut a, w, h));
            }
        }
    };
}

/// The canary composed in the cockpit, rendered, and seen back by the inventory as
/// live objects: what the fleet looks like once it is applied.
fn canary_applied(a: &mut AppState) {
    composed_and_applied(a, canary);
}

fn composed_and_applied(a: &mut AppState, compose: fn(&mut AppState)) {
    let mut composing = app();
    compose(&mut composing);
    let plan = composing.composer.as_ref().expect("composer").to_plan();
    let snap = common::applied(&a.snapshot, &plan).expect("renders");
    update(a, Msg::Fleet(std::sync::Arc::new(snap)));
}

both_sizes!(fleet, |_| {});
both_sizes!(fleet_routed, canary_applied);
both_sizes!(route_picture, |a| {
    canary_applied(a);
    press(a, "down down down m");
});
both_sizes!(route_picture_default, |a| press(a, "down down down m"));
both_sizes!(route_picture_failover, |a| {
    composed_and_applied(a, |c| press(c, "down down down f down J"));
    press(a, "down down down m");
});
both_sizes!(route_picture_broken, |a| {
    canary_applied(a);
    // cluster2's side of the canary is gone and its reviews v3 pod is not ready.
    let mut snap = (*a.snapshot).clone();
    snap.istio_objects.retain(|o| !(o.cluster == "cluster2" && o.kind == "Gateway"));
    let reviews = snap.services.iter_mut().find(|s| s.name == "reviews").expect("reviews");
    let row = std::sync::Arc::make_mut(reviews);
    if let Some(v3) = row.clusters.get_mut("cluster2").and_then(|p| p.versions.get_mut("v3")) {
        v3.ready = 0;
    }
    update(a, Msg::Fleet(std::sync::Arc::new(snap)));
    press(a, "down down down m");
});
both_sizes!(service_routed, |a| {
    canary_applied(a);
    press(a, "down down down enter");
});
both_sizes!(service_detail, |a| press(a, "down down down enter"));
both_sizes!(service_ambient, |a| {
    // reviews ambient behind a waypoint in cluster1 and cluster2 (global in cluster2), sidecars in cluster3.
    let mut snap = (*a.snapshot).clone();
    let reviews = snap.services.iter_mut().find(|s| s.name == "reviews").expect("reviews");
    for (cluster, p) in std::sync::Arc::make_mut(reviews).clusters.iter_mut() {
        let ambient = cluster != "cluster3";
        p.dataplane_mode = Some(if ambient { "ambient" } else { "sidecar" }.into());
        p.waypoint = ambient.then(|| "waypoint".into());
        p.global = cluster == "cluster2";
    }
    update(a, Msg::Fleet(std::sync::Arc::new(snap)));
    press(a, "down down down enter");
});
both_sizes!(composer_split, canary);
both_sizes!(composer_failover, |a| press(a, "down down down f down J"));
both_sizes!(editor_plan, |a| {
    canary(a);
    press(a, "p");
});
both_sizes!(editor_rendered_cluster2, |a| {
    canary(a);
    press(a, "p tab tab");
});
/// A change set as the conductor hands it to the cockpit.
fn prepared(changes: meshdeck::apply::ChangeSet) -> Box<meshdeck::apply::Prepared> {
    Box::new(meshdeck::apply::Prepared {
        intent: meshdeck::apply::Intent::apply(vec!["reviews-route".into()], String::new()),
        changes,
        unpruned: Vec::new(),
        swept: Vec::new(),
        persona: "unrestricted".into(),
    })
}

both_sizes!(diff_ready, |a| {
    canary(a);
    let set = changes(a);
    press(a, "A");
    let generation = a.diff.as_ref().expect("diff").generation;
    update(a, Msg::Prepared { generation, result: Ok(prepared(set)) });
});
both_sizes!(diff_ready_with_a_dark_cluster, |a| {
    canary(a);
    let set = changes(a);
    press(a, "A");
    let generation = a.diff.as_ref().expect("diff").generation;
    let mut p = prepared(set);
    p.unpruned = vec![meshdeck::apply::history::Unpruned {
        cluster: "cluster2".into(),
        plans: vec!["reviews-route".into()],
        objects: vec![
            ObjRef {
                cluster: "cluster2".into(),
                kind: "Gateway".into(),
                namespace: "default".into(),
                name: "reviews-route-eastwest".into(),
            },
            ObjRef {
                cluster: "cluster2".into(),
                kind: "ServiceEntry".into(),
                namespace: "default".into(),
                name: "reviews-route-v3-global".into(),
            },
        ],
        why: "unreachable at 13:05:10: tls handshake eof".into(),
    }];
    update(a, Msg::Prepared { generation, result: Ok(p) });
});
both_sizes!(diff_refused, |a| {
    canary(a);
    press(a, "A");
    let generation = a.diff.as_ref().expect("diff").generation;
    update(
        a,
        Msg::Prepared {
            generation,
            result: Err(
                "missing permissions (nothing was written):\n  cluster2: cannot patch gateways.networking.istio.io in namespace default"
                    .into(),
            ),
        },
    );
});
both_sizes!(apply_done, |a| {
    canary(a);
    let set = changes(a);
    press(a, "A");
    let generation = a.diff.as_ref().expect("diff").generation;
    update(a, Msg::Prepared { generation, result: Ok(prepared(set)) });
    press(a, "y");
    update(a, Msg::Progress { generation, line: "cluster1: wrote VirtualService/default/reviews-route".into() });
    let report = ApplyReport {
        outcome: Outcome::Applied,
        clusters: [
            ("cluster1".to_string(), ClusterReport { written: vec!["a".into(); 4], ..Default::default() }),
            ("cluster2".to_string(), ClusterReport { written: vec!["b".into(); 3], ..Default::default() }),
        ]
        .into(),
    };
    update(a, Msg::Applied { generation, result: Ok((report, "20261124-120000-abcd".into())) });
});
both_sizes!(history, |a| {
    canary(a);
    let set = changes(a);
    let rec = HistoryRecord {
        id: "20261124-120000-abcd".into(),
        time: "2026-11-24T12:00:00Z".into(),
        action: "apply".into(),
        persona: "unrestricted".into(),
        plans: vec!["reviews-route".into()],
        plan_yaml: String::new(),
        clusters: vec!["cluster1".into(), "cluster2".into()],
        report: ApplyReport { outcome: Outcome::Applied, clusters: Default::default() },
        changes: set,
        rollback_of: None,
        fleet: Default::default(),
        after: Default::default(),
        unpruned: Vec::new(),
        swept: Vec::new(),
        canary: None,
    };
    update(a, Msg::History(vec![rec]));
    press(a, "esc esc g h");
});
both_sizes!(clusters, |a| press(a, "g c"));

/// The clusters view's trust columns: cluster1 mid-rotation (two roots distributed),
/// cluster2's intermediate expiring in 9 days and not chaining, cluster3 self-signed.
fn with_trust(a: &mut AppState) {
    use meshdeck::inventory::trust::{CertFacts, TrustStatus};
    let facts = |subject: &str, days: i64| CertFacts {
        subject: subject.into(),
        issuer: "CN=meshdeck root CA, O=meshdeck".into(),
        not_after: "2027-11-26T00:00:00Z".into(),
        days_left: days,
        fingerprint: "sha256:7162aa27dca11f11".into(),
    };
    let status = |cluster: &str, ca: &str, intermediate: Option<CertFacts>, chains: Option<bool>, roots: usize| TrustStatus {
        cluster: cluster.into(),
        trust_domain: Some(format!("{cluster}.local")),
        root: Some(facts("CN=meshdeck root CA, O=meshdeck", 3652)),
        ca: ca.into(),
        intermediate,
        chains_to_root: chains,
        shares_root_with: vec![],
        roots_distributed: roots,
        rotation: (roots > 1).then(|| "1/3 trusts both roots".to_string()),
        warnings: vec![],
        unread: None,
    };
    let statuses = vec![
        status("cluster1", "plugged-in", Some(facts("CN=Intermediate CA cluster1, O=meshdeck, L=cluster1", 364)), Some(true), 2),
        status("cluster2", "plugged-in", Some(facts("CN=Intermediate CA cluster2, O=meshdeck, L=cluster2", 9)), Some(false), 1),
        status("cluster3", "self-signed", None, None, 1),
    ];
    update(a, Msg::Trust(statuses));
    press(a, "g c");
}

both_sizes!(clusters_trust, with_trust);

/// The clusters view at full width: Gateway API's versions where it is served
/// (cluster1), "yes" while they are not known yet (cluster2), "-" where it is not.
#[test]
fn clusters_wide_show_the_gateway_api_versions_served() {
    let mut a = app();
    let mut snap = (*a.snapshot).clone();
    for c in &mut snap.clusters {
        c.mesh.gateway_api = c.name != "cluster3";
        if c.name == "cluster1" {
            c.mesh.gateway_api_versions = vec!["v1".into(), "v1beta1".into()];
        }
    }
    update(&mut a, Msg::Fleet(std::sync::Arc::new(snap)));
    press(&mut a, "g c");
    let shown = screen(&mut a, 200, 12);
    insta::assert_snapshot!("clusters_wide_gateway_api", shown);
}
both_sizes!(help, |a| press(a, "?"));
both_sizes!(log, |a| {
    a.log("watching 3 clusters");
    a.log("prepare reviews-route");
    press(a, "g l");
});

#[test]
fn read_only_hides_dangerous_hints() {
    let mut a = app();
    a.read_only = true;
    canary(&mut a);
    let s = screen(&mut a, 120, 24);
    assert!(s.contains("READ-ONLY"));
    assert!(!s.contains("A apply"), "{s}");
}

#[test]
fn a_down_cluster_shows_its_error_and_stale_rows() {
    let mut inv = common::inventory_fixture("federation");
    inv.clusters[1].state = meshdeck::inventory::ClusterState::Unreachable;
    inv.clusters[1].error = Some(meshdeck::registry::ClusterError::Unreachable("connection refused".into()));
    let mut a = AppState::for_test(inv);
    let s = screen(&mut a, 160, 45);
    assert!(s.contains("unreachable") && s.contains("connection refused"), "{s}");
    assert!(s.contains("v3 1/1"), "stale rows stay visible: {s}");
}

#[test]
fn the_composer_shows_an_unseen_clusters_versions_as_unknown() {
    // cluster2 was never seen: no rows of it, and it must not read as "no versions".
    let mut inv = common::inventory_fixture("federation");
    inv.clusters[1].state = meshdeck::inventory::ClusterState::Unreachable;
    inv.clusters[1].error = Some(meshdeck::registry::ClusterError::Unreachable("tls handshake eof".into()));
    for row in &mut inv.services {
        std::sync::Arc::make_mut(row).clusters.remove("cluster2");
    }
    let mut a = AppState::for_test(inv);
    canary_keys_start(&mut a);
    let s = screen(&mut a, 160, 45);
    assert!(s.contains("cluster2   versions unknown: cluster2 is unreachable, last seen") && s.contains("tls handshake eof"), "{s}");

    // Seen before, unreachable now: its rows stay, marked stale.
    let mut inv = common::inventory_fixture("federation");
    inv.clusters[1].state = meshdeck::inventory::ClusterState::Unreachable;
    let mut a = AppState::for_test(inv);
    canary_keys_start(&mut a);
    let s = screen(&mut a, 160, 45);
    assert!(s.contains("stale: cluster2 is unreachable"), "{s}");
}

/// Open the composer on reviews (the fourth row of the fixture).
fn canary_keys_start(app: &mut AppState) {
    press(app, "down down down r");
    assert!(app.composer.as_ref().is_some_and(|c| c.service.name == "reviews"), "the composer is open on reviews");
}

#[test]
fn wide_fleets_scroll_their_cluster_columns() {
    let inv = meshdeck_bench_inventory(12);
    let mut a = AppState::for_test(inv);
    let s = screen(&mut a, 80, 24);
    assert!(s.contains("CLUSTER1") && !s.contains("CLUSTER12"), "{s}");
    press(&mut a, "right right right right right right right right right right right");
    let s = screen(&mut a, 80, 24);
    assert!(s.contains("CLUSTER12"), "{s}");
    assert!(s.contains("… 10 more clusters"), "{s}");
}

fn meshdeck_bench_inventory(n: usize) -> meshdeck::inventory::FleetSnapshot {
    let mut inv = common::inventory_fixture("federation");
    let template = inv.clusters[0].clone();
    inv.clusters = (1..=n)
        .map(|i| meshdeck::inventory::ClusterView { name: format!("cluster{i}"), context: format!("cluster{i}"), ..template.clone() })
        .collect();
    for row in inv.services.iter_mut() {
        let p = row.clusters.values().next().cloned().expect("presence");
        std::sync::Arc::make_mut(row).clusters = (1..=n).map(|i| (format!("cluster{i}"), p.clone())).collect();
    }
    inv
}

/// A fleet with problems: cluster3 down, two owners of reviews' route in cluster1, and
/// ratings declared differently in two clusters.
fn troubled() -> AppState {
    let mut inv = common::inventory_fixture("federation");
    inv.clusters[2].state = meshdeck::inventory::ClusterState::Unreachable;
    inv.clusters[2].error = Some(meshdeck::registry::ClusterError::Unreachable("connection refused".into()));
    let warn = |code: &str, message: &str, clusters: &[&str], service: &str| meshdeck::inventory::FleetWarning {
        code: code.into(),
        message: message.into(),
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        service: Some(service.into()),
    };
    inv.warnings = vec![
        warn(
            "MULTI_OWNER",
            "reviews.default from cluster1 is routed by VirtualService default/reviews-by-hand and plan reviews-canary: a sidecar follows only one",
            &["cluster1"],
            "reviews.default",
        ),
        warn(
            "INCONSISTENT_SERVICE",
            "ratings.default: ports (number/name/protocol) differ: 9080/http/HTTP in cluster1; 9080/tcp/TCP in cluster2",
            &["cluster1", "cluster2"],
            "ratings.default",
        ),
    ];
    AppState::for_test(inv)
}

#[test]
fn problems_are_counted_in_the_title_listed_errors_first_and_enter_opens_the_service() {
    for (w, h) in [(80u16, 24u16), (160, 45)] {
        let mut a = troubled();
        let fleet = screen(&mut a, w, h);
        assert!(fleet.contains("✗ 3 problems"), "{fleet}");
        press(&mut a, "g p");
        insta::assert_snapshot!(format!("problems_{w}x{h}"), screen(&mut a, w, h));
    }
    let mut a = troubled();
    press(&mut a, "g p");
    let s = screen(&mut a, 160, 45);
    let order: Vec<usize> = ["MULTI_OWNER", "UNREACHABLE", "INCONSISTENT_SERVICE"].iter().map(|c| s.find(c).expect(c)).collect();
    assert!(order.windows(2).all(|p| p[0] < p[1]), "errors first, then by code: {s}");
    // The second finding is about a cluster: Enter says so and stays.
    press(&mut a, "down enter");
    assert_eq!(a.view, meshdeck::tui::app::View::Problems);
    assert_eq!(a.status.as_deref(), Some("this finding is about clusters, not one service"));
    // The third is about ratings, even when a filter hides it from the fleet table.
    a.filter = "reviews".into();
    press(&mut a, "down enter");
    assert_eq!(a.view, meshdeck::tui::app::View::Service);
    assert_eq!(a.selected_service().map(|s| s.key()), Some("ratings.default".to_string()));
}

/// The service view puts what each calling cluster's Prometheus counted under its
/// route: shares beside the weights, drift marked, and "no metrics" when unknown.
#[test]
fn the_service_view_shows_the_observed_split_under_each_route() {
    use meshdeck::observe::traffic::{self, Metrics, Sample};
    let mut a = app();
    canary_applied(&mut a);
    let routes = meshdeck::inventory::routes::effective_routes(&a.snapshot, Some("reviews.default"), None);
    let from1 = routes.iter().find(|r| r.from == "cluster1").expect("cluster1's route");
    let counted = |cluster: &str, version: &str, n: f64| Sample {
        labels: [
            ("reporter", "source"),
            ("source_cluster", "cluster1"),
            ("destination_service", "reviews.default.svc.cluster.local"),
            ("destination_cluster", cluster),
            ("destination_version", version),
            ("response_code", "200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        value: n,
    };
    // 60/30/10 where 75/15/10 was meant: far outside the bound over 10,000 requests.
    let seen = traffic::observe(
        from1,
        60,
        60.0,
        &[counted("cluster2", "v3", 6000.0), counted("cluster1", "v1", 3000.0), counted("cluster1", "v2", 1000.0)],
        &[],
    );
    let mut others: Vec<_> = routes
        .iter()
        .filter(|r| r.from != "cluster1")
        .map(|r| traffic::without_metrics(r, 60, Metrics::None, "no prometheus in config.yaml".into()))
        .collect();
    others.push(seen);
    update(&mut a, Msg::Traffic(others));
    press(&mut a, "down down down enter");
    let shown = screen(&mut a, 160, 45);
    assert!(
        shown.contains("observed (60s, 166.7/s, 100.0% ok): cluster1 v1 30.0% ✗drift · cluster1 v2 10.0% · cluster2 v3 60.0% ✗drift"),
        "{shown}"
    );
    assert!(shown.contains("observed (60s): no metrics: no prometheus in config.yaml"), "{shown}");
    // At 80 columns the shares wrap whole onto the next lines, none cut.
    let narrow = screen(&mut a, 80, 45);
    for share in ["cluster1 v1 30.0% ✗drift", "cluster1 v2 10.0%", "cluster2 v3 60.0% ✗drift"] {
        assert!(narrow.contains(share), "{share} whole at 80 columns:\n{narrow}");
    }
    // The route picture says the same under its arrows.
    press(&mut a, "m");
    let picture = screen(&mut a, 160, 45);
    assert!(picture.contains("observed (60s, 166.7/s, 100.0% ok): cluster1 v1 30.0% ✗drift"), "{picture}");
}

/// A canary at step 2 of 4 on a fixed clock: the last check's gate values per
/// calling cluster (one passing, one not yet decided), the time to the next check.
fn canary_at_step_2() -> meshdeck::tui::app::CanaryRow {
    let gate = |gate: &str, value: f64, threshold: f64, verdict: &str, why: &str| serde_json::json!({"gate": gate, "value": value, "threshold": threshold, "verdict": verdict, "why": why});
    let state = serde_json::json!({
        "name": "reviews-canary", "run": "20261124-115900-0001", "planYaml": "", "file": "examples/reviews-canary-steps.yaml",
        "persona": "unrestricted", "started": "2026-11-24T11:59:00Z", "service": "reviews.default", "from": ["cluster1", "cluster3"],
        "destination": "v3@cluster2", "steps": [5, 25, 50, 75], "intervalSeconds": 10, "status": "running", "step": 2,
        "stepWritten": 1_795_521_595.0, "lastGood": 1, "failedChecks": 0, "nextCheck": 1_795_521_612.0,
        "countingFrom": 1_795_521_595.0, "waiting": "not yet: successRate: 12 of the 20 requests to v3@cluster2 a check needs from cluster3",
        "checks": [{"time": "2026-11-24T12:00:02Z", "step": 2, "windowSeconds": 10, "verdict": "notYet", "callers": [
            {"from": "cluster1", "requests": 120, "observed": 24.6, "intended": 25.0, "countedSeconds": 8, "verdict": "passed",
             "gates": [gate("successRate", 100.0, 99.0, "passed", "100.0% ≥ 99%"), gate("p99", 24.9, 500.0, "passed", "24.9ms ≤ 500ms"),
                       gate("split", 24.6, 25.0, "passed", "every destination within its 99.9% bound")]},
            {"from": "cluster3", "requests": 12, "observed": 26.1, "intended": 25.0, "countedSeconds": 8, "verdict": "notYet",
             "gates": [gate("successRate", 100.0, 99.0, "notYet", "12 of the 20 requests to v3@cluster2 a check needs"),
                       gate("p99", 12.0, 500.0, "notYet", "12 of the 20 requests to v3@cluster2 a check needs"),
                       gate("split", 26.1, 25.0, "notYet", "46 of the 20 requests a check needs")]}]}],
        "events": [{"time": "2026-11-24T11:59:00Z", "text": "started by unrestricted: v3@cluster2 in 4 steps"},
                   {"time": "2026-11-24T11:59:00Z", "text": "step 1/4: v3@cluster2 5%, v1@cluster1 57%, v2@cluster1 38% (recorded as 20261124-115900-aaaa)"},
                   {"time": "2026-11-24T11:59:50Z", "text": "step 1 passed: every gate passed on cluster1, cluster3"},
                   {"time": "2026-11-24T11:59:50Z", "text": "step 2/4: v3@cluster2 25%, v1@cluster1 45%, v2@cluster1 30% (recorded as 20261124-115950-bbbb)"}],
        "records": ["20261124-115900-aaaa", "20261124-115950-bbbb"]
    });
    meshdeck::tui::app::CanaryRow {
        state: serde_json::from_value(state).expect("a canary's state"),
        driver: Some("pid 4242 (ops) since 11:59:00".into()),
    }
}

both_sizes!(canary_view, |a| {
    update(a, Msg::Canaries(vec![canary_at_step_2()]));
    press(a, "g k");
});

both_sizes!(canary_abort_asks_first, |a| {
    update(a, Msg::Canaries(vec![canary_at_step_2()]));
    press(a, "g k A");
});
