//! The cockpit's behaviour through `update`, driven by key strings and the real
//! default keymap: no terminal, no tasks, no clusters.

mod common;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use meshdeck::plan::{Destination, RouteAction};
use meshdeck::tui::app::{AppState, DiffPhase, View, update};
use meshdeck::tui::keymap::Key;
use meshdeck::tui::msg::{Effect, Msg};

/// Press space-separated keys ("down r 1 5 enter ctrl-s"); returns every effect.
fn press(app: &mut AppState, keys: &str) -> Vec<Effect> {
    let mut effects = Vec::new();
    for k in keys.split_whitespace() {
        let key = Key::parse(k).unwrap_or_else(|| panic!("bad key {k}"));
        let mut mods = KeyModifiers::empty();
        if key.ctrl {
            mods |= KeyModifiers::CONTROL;
        }
        if let KeyCode::Char(c) = key.code
            && c.is_ascii_uppercase()
        {
            mods |= KeyModifiers::SHIFT;
        }
        effects.extend(update(app, Msg::Key(KeyEvent::new(key.code, mods))));
    }
    effects
}

fn app() -> AppState {
    AppState::for_test(common::inventory_fixture("federation"))
}

#[test]
fn the_talks_canary_is_composed_with_keys_only_and_nothing_applies_until_asked() {
    let mut app = app();
    let effects = press(&mut app, "down down down r 1 5 enter down 1 0 enter down down down 7 5 enter");
    assert!(effects.is_empty(), "composing never applies: {effects:?}");
    assert_eq!(app.view, View::Composer);
    let c = app.composer.as_ref().expect("composer");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let plan = c.to_plan();
    assert_eq!(plan.routes[0].from_clusters, ["cluster1"]);
    let RouteAction::Split(split) = &plan.routes[0].action else { panic!("split") };
    let d = |c: &str, v: &str, w| Destination { cluster: c.into(), version: v.into(), weight: w };
    assert_eq!(*split, [d("cluster1", "v1", 15), d("cluster1", "v2", 10), d("cluster2", "v3", 75)]);

    let effects = press(&mut app, "A");
    assert_eq!(app.view, View::Diff);
    match effects.as_slice() {
        [Effect::Prepare { plan: p, .. }] => assert_eq!(*p, plan),
        other => panic!("apply first prepares (dry run + diff): {other:?}"),
    }
}

#[test]
fn weights_keys_balance_and_live_validation() {
    let mut app = app();
    press(&mut app, "down down down r down ] ] + +");
    let c = app.composer.as_ref().expect("composer");
    assert_eq!(c.rows[1].weight, 22);
    assert_eq!(c.errors[0], "weights sum to 122; they must sum to 100", "validation in place: {:?}", c.errors);
    press(&mut app, "up - - [ =");
    let c = app.composer.as_ref().expect("composer");
    assert_eq!((c.rows[0].weight, c.rows[1].weight), (78, 22), "= gives the selected destination the rest of 100");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
}

#[test]
fn failover_targets_are_ordered_with_keys() {
    let mut app = app();
    press(&mut app, "down down down f down J");
    let c = app.composer.as_ref().expect("composer");
    let RouteAction::Failover(targets) = &c.to_plan().routes[0].action else { panic!("failover") };
    let order: Vec<&str> = targets.iter().map(|t| t.cluster.as_str()).collect();
    assert_eq!(order, ["cluster1", "cluster3", "cluster2"]);
    assert!(c.to_plan().routes[0].outlier_detection.is_some(), "failover carries outlier detection");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
}

#[test]
fn read_only_refuses_to_apply() {
    let mut app = app();
    app.read_only = true;
    let effects = press(&mut app, "down down down r A");
    assert!(effects.is_empty());
    assert_eq!(app.view, View::Composer);
    assert!(app.status.as_deref().is_some_and(|s| s.contains("read-only")));
}

#[test]
fn stale_results_are_dropped_and_confirm_executes_the_shown_diff() {
    let mut app = app();
    press(&mut app, "down down down r A");
    let generation = app.diff.as_ref().expect("diff").generation;
    update(&mut app, Msg::Prepared { generation: generation + 7, result: Err("old".into()) });
    assert_eq!(app.diff.as_ref().map(|d| &d.phase), Some(&DiffPhase::Preparing), "a stale result never lands");
    let set = meshdeck::apply::ChangeSet {
        steps: vec![meshdeck::apply::Step {
            target: meshdeck::apply::ObjRef {
                cluster: "cluster1".into(),
                kind: "VirtualService".into(),
                namespace: "default".into(),
                name: "x".into(),
            },
            desired: meshdeck::apply::Desired::Absent,
            change: meshdeck::apply::ChangeKind::Delete,
            previous: None,
            expected: None,
            diff: String::new(),
        }],
    };
    let prepared = meshdeck::apply::Prepared {
        intent: meshdeck::apply::Intent::apply(vec!["reviews-route".into()], String::new()),
        changes: set.clone(),
        unpruned: Vec::new(),
        swept: Vec::new(),
        persona: "unrestricted".into(),
    };
    update(&mut app, Msg::Prepared { generation, result: Ok(Box::new(prepared)) });
    let effects = press(&mut app, "y");
    match effects.as_slice() {
        [Effect::Execute { prepared, .. }] => {
            assert_eq!(prepared.changes, set);
            assert_eq!(prepared.intent.action, "apply");
        }
        other => panic!("confirm writes exactly what was shown: {other:?}"),
    }
    // Quit while it writes: refused now, and done once the report is recorded.
    let effects = press(&mut app, "q");
    assert!(effects.is_empty() && !app.quit, "{effects:?}");
    assert!(app.status.as_deref().is_some_and(|s| s.contains("quits once it has finished")), "{:?}", app.status);
    let report = meshdeck::apply::write::ApplyReport { outcome: meshdeck::apply::write::Outcome::Applied, clusters: Default::default() };
    let effects = update(&mut app, Msg::Applied { generation, result: Ok((report, "20261204-120000-abcd".into())) });
    assert!(app.quit && effects.contains(&Effect::Quit), "it quits as it said it would: {effects:?}");
}

#[test]
fn filter_command_mode_chords_and_stable_selection() {
    let mut app = app();
    press(&mut app, "/ r e v enter");
    assert_eq!(app.rows.len(), 1);
    assert_eq!(app.selected_service().map(|s| s.name.as_str()), Some("reviews"));
    press(&mut app, "esc");
    assert_eq!(app.rows.len(), 6, "esc clears the filter");
    assert_eq!(app.selected_service().map(|s| s.name.as_str()), Some("reviews"), "the selection follows the service");
    update(&mut app, Msg::Fleet(std::sync::Arc::new(common::inventory_fixture("federation"))));
    assert_eq!(app.selected_service().map(|s| s.name.as_str()), Some("reviews"), "live updates keep the selection");
    press(&mut app, ": n s space i s t i o - s y s t e m enter");
    assert_eq!(app.rows.len(), 2);
    press(&mut app, "g c");
    assert_eq!(app.view, View::Clusters);
    press(&mut app, "space esc");
    assert_eq!(app.view, View::Fleet);
    assert!(app.hidden.contains("cluster1"), "the clusters view hides a column");
    let effects = press(&mut app, "q");
    assert_eq!(effects, [Effect::Quit]);
}

#[test]
fn the_editor_shows_the_plan_and_each_clusters_objects_and_errors_at_their_line() {
    let mut app = app();
    press(&mut app, "down down down r down down down down 1 0 0 enter up up up up 0 enter p");
    assert_eq!(app.view, View::Editor);
    let ed = app.editor.as_ref().expect("editor");
    let tabs: Vec<&str> = ed.tabs.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tabs, ["plan", "cluster1", "cluster2"]);
    assert!(ed.text().contains("weight: 100"), "{}", ed.text());
    // Break the plan: the service name becomes unknown.
    press(&mut app, "ctrl-s");
    assert!(app.editor.as_ref().expect("editor").errors.is_empty());
    let ed = app.editor.as_mut().expect("editor");
    let broken = ed.text().replace("reviews.default", "reviewz.default");
    *ed = meshdeck::tui::app::EditorState::new(&broken);
    press(&mut app, "ctrl-s");
    let errs = &app.editor.as_ref().expect("editor").errors;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 7, "the line of `service:` in the editor text");
    assert!(errs[0].message.contains("did you mean reviews.default?"));
    let effects = press(&mut app, "ctrl-a");
    assert!(effects.is_empty(), "an invalid plan is not applied");
}

#[test]
fn the_clusters_view_registers_a_kubeconfig_context() {
    let mut app = app();
    app.available = vec!["cluster1-restricted".into()];
    let effects = press(&mut app, "g c down down down space");
    assert_eq!(effects, [Effect::Register("cluster1-restricted".into())]);
    assert!(app.available.is_empty(), "it is no longer offered");
    let effects = press(&mut app, "up space");
    assert!(effects.is_empty() && app.hidden.contains("cluster3"), "a registered cluster's column is hidden instead");
}

#[test]
fn the_focused_editor_takes_typing_before_global_keys() {
    let mut app = app();
    press(&mut app, "down down down r p");
    let before = app.editor.as_ref().expect("editor").text();
    let row = app.editor.as_ref().expect("editor").textarea.cursor().0;
    let effects = press(&mut app, "down down q / : ?");
    assert!(effects.is_empty() && !app.quit, "q is a letter in the editor, not quit: {effects:?}");
    assert_eq!(app.view, View::Editor);
    let ed = app.editor.as_ref().expect("editor");
    assert_eq!(ed.textarea.cursor().0, row + 2, "arrows move the editor's cursor");
    assert_eq!(ed.text().len(), before.len() + 4, "q / : ? were typed");
    press(&mut app, "tab");
    assert_eq!(app.editor.as_ref().expect("editor").tab, 1, "the editor's own bindings still apply");
    press(&mut app, "esc");
    assert_eq!(app.view, View::Composer, "and Esc leaves");
}

#[test]
fn the_log_view_tells_a_clusters_outage_and_how_long_it_lasted() {
    use meshdeck::inventory::ClusterState;
    let base = common::inventory_fixture("federation");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").expect("time").with_timezone(&chrono::Utc);
    let at = |state: ClusterState, secs: i64, error: Option<&str>| {
        let mut s = base.clone();
        s.clusters[1].state = state;
        s.clusters[1].state_since = Some(t0 + chrono::Duration::seconds(secs));
        s.clusters[1].error = error.map(|e| meshdeck::registry::ClusterError::Unreachable(e.into()));
        std::sync::Arc::new(s)
    };
    let mut app = AppState::for_test(base.clone());
    update(&mut app, Msg::Fleet(at(ClusterState::Live, 0, None)));
    update(&mut app, Msg::Fleet(at(ClusterState::Unreachable, 10, Some("tls handshake eof"))));
    update(&mut app, Msg::Fleet(at(ClusterState::Live, 16, None)));
    let log: Vec<&String> = app.log.iter().collect();
    assert!(log.iter().any(|l| l.ends_with("cluster2 live -> unreachable (tls handshake eof); it was live for 10s")), "{log:#?}");
    assert!(log.iter().any(|l| l.ends_with("cluster2 unreachable -> live; it was unreachable for 6s")), "{log:#?}");
}

/// Editing the plan that owns a route keeps what the composer does not show: its
/// port, retries, timeout, matches, outlier detection and trustAcceptedBy (weights come from its record).
#[test]
fn composing_over_the_owning_plan_keeps_its_other_settings() {
    use meshdeck::tui::composer::{Composer, Mode};
    let mut snap = common::inventory_fixture("federation");
    snap.istio_objects.push(meshdeck::inventory::IstioObject {
        cluster: "cluster1".into(),
        kind: "VirtualService".into(),
        namespace: "default".into(),
        name: "reviews-canary".into(),
        hosts: vec!["reviews.default.svc.cluster.local".into()],
        managed: true,
        plan: Some("reviews-canary".into()),
        ..Default::default()
    });
    let mut c = Composer::new(&snap, "reviews.default", Mode::Split).expect("composer");
    assert_eq!(c.owner.as_deref(), Some("reviews-canary"));
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-canary.yaml"))
        .expect("example")
        .replace("    - { cluster: cluster1, version: v2, weight: 10 }\n", "    - { cluster: cluster1, version: v2, weight: 10 }\n  port: 9080\n  retries: { attempts: 3, perTryTimeout: 2s }\n  timeout: 10s\n  trustAcceptedBy: [cluster2]\n");
    let recorded = meshdeck::plan::load("recorded.yaml", &text, &snap).expect("the recorded plan");
    assert_eq!(recorded.routes[0].port, Some(9080), "the recorded plan carries a port:\n{text}");
    c.load_weights(&recorded);
    let plan = c.to_plan();
    let route = &plan.routes[0];
    assert_eq!((route.port, route.timeout.as_deref()), (Some(9080), Some("10s")));
    assert!(route.retries.is_some(), "{route:?}");
    assert_eq!(route.trust_accepted_by, ["cluster2"], "what the plan says of trust is kept");
    let weights = |a: &meshdeck::plan::RouteAction| -> Vec<(String, String, u32)> {
        let meshdeck::plan::RouteAction::Split(ds) = a else { return vec![] };
        let mut w: Vec<_> = ds.iter().map(|d| (d.cluster.clone(), d.version.clone(), d.weight)).collect();
        w.sort();
        w
    };
    assert_eq!(weights(&route.action), weights(&recorded.routes[0].action), "the weights are the recorded ones");
}

/// A plan composed while cluster1 was seen, applied after another identity began
/// acting for it (its watchers restart and re-read the mesh facts): the diff waits
/// for them, says so, and starts once they are read; still unread after FACTS_WAIT,
/// it is refused with that reason (never a render error about a missing trust
/// domain). Esc cancels the wait, and a cluster that went dark refuses at once.
#[test]
fn a_plan_is_checked_again_against_the_fleet_as_it_is_when_applied() {
    use meshdeck::inventory::ClusterState;
    use std::sync::Arc;
    let mut app = app();
    press(&mut app, "down down down r 1 5 enter down 1 0 enter down down down 7 5 enter");
    assert!(app.composer.as_ref().is_some_and(|c| c.errors.is_empty()));
    let fresh = (*app.snapshot).clone();
    let mut reading = fresh.clone();
    let c1 = reading.clusters.iter_mut().find(|c| c.name == "cluster1").expect("cluster1");
    c1.facts_pending = true;
    c1.mesh = Default::default();
    let reading = Arc::new(reading);

    update(&mut app, Msg::Fleet(reading.clone()));
    let effects = press(&mut app, "A");
    assert!(effects.is_empty(), "nothing is prepared while cluster1's facts are read: {effects:?}");
    assert_eq!(app.view, View::Diff);
    match app.diff.as_ref().map(|d| &d.phase) {
        Some(DiffPhase::Waiting { why, .. }) => {
            assert!(why.starts_with("could not see cluster1 (live, but its mesh facts are still being read)"), "{why}")
        }
        other => panic!("waiting: {other:?}"),
    }
    let effects = update(&mut app, Msg::Fleet(Arc::new(fresh.clone())));
    assert!(matches!(effects.as_slice(), [Effect::Prepare { .. }]), "once read, the diff starts by itself: {effects:?}");
    assert_eq!(app.diff.as_ref().map(|d| &d.phase), Some(&DiffPhase::Preparing));

    // Never read: refused after the wait, with the reason.
    update(&mut app, Msg::Fleet(reading.clone()));
    press(&mut app, "esc");
    press(&mut app, "A");
    let later = app.now + chrono::Duration::seconds(meshdeck::tui::app::FACTS_WAIT.as_secs() as i64 + 1);
    assert!(update(&mut app, Msg::Tick(later)).is_empty());
    match app.diff.as_ref().map(|d| &d.phase) {
        Some(DiffPhase::Failed(why)) => assert!(why.contains("mesh facts are still being read") && why.contains("gave up after"), "{why}"),
        other => panic!("refused after the wait: {other:?}"),
    }

    // Esc while waiting cancels: facts arriving later start nothing.
    press(&mut app, "esc");
    press(&mut app, "A");
    assert!(matches!(app.diff.as_ref().map(|d| &d.phase), Some(DiffPhase::Waiting { .. })));
    press(&mut app, "esc");
    assert!(app.diff.is_none());
    assert!(update(&mut app, Msg::Fleet(Arc::new(fresh.clone()))).is_empty(), "a cancelled wait starts nothing");

    // A cluster gone dark is not worth waiting for: refused at once.
    let mut dark = fresh.clone();
    dark.clusters.iter_mut().find(|c| c.name == "cluster2").expect("cluster2").state = ClusterState::Unreachable;
    update(&mut app, Msg::Fleet(Arc::new(dark)));
    let effects = press(&mut app, "A");
    assert!(effects.is_empty());
    match app.diff.as_ref().map(|d| &d.phase) {
        Some(DiffPhase::Failed(why)) => assert!(why.starts_with("could not see cluster2 (unreachable"), "{why}"),
        other => panic!("refused: {other:?}"),
    }
}

/// `/` starts a new filter, as in k9s: it is not typed onto the last one.
#[test]
fn slash_starts_a_new_filter() {
    let mut app = app();
    press(&mut app, "/ r e v enter");
    assert_eq!(app.filter, "rev");
    press(&mut app, "/ r a t");
    assert_eq!(app.filter, "rat", "a new filter, not revrat");
    assert_eq!(app.selected_service().map(|s| s.name.as_str()), Some("ratings"));
}
