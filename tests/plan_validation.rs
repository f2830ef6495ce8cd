//! Bad plans: every problem is reported at file:line:col with a clear message.

mod common;

fn errors(text: &str) -> Vec<String> {
    let inv = common::inventory_fixture("federation");
    match meshdeck::plan::load("plan.yaml", text, &inv) {
        Ok(p) => panic!("expected errors, got a valid plan: {p:?}"),
        Err(es) => es.iter().map(ToString::to_string).collect(),
    }
}

const HEAD: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: r\nspec:\n  service: reviews.default\n  from:\n    clusters: [cluster1]\n";

#[test]
fn weights_must_sum_to_100_and_be_whole_numbers() {
    let es = errors(&format!(
        "{HEAD}  split:\n    - {{cluster: cluster1, version: v1, weight: 80}}\n    - {{cluster: cluster1, version: v2, weight: 15}}\n"
    ));
    assert_eq!(es, ["plan.yaml:10:5: weights sum to 95; they must sum to 100"]);
    let es = errors(&format!("{HEAD}  split:\n    - cluster: cluster1\n      version: v1\n      weight: ten\n"));
    assert_eq!(es, ["plan.yaml:12:15: weight must be a whole number from 0 to 100, not \"ten\""]);
    let es = errors(&format!("{HEAD}  split:\n    - {{cluster: cluster1, version: v1, weight: 101}}\n"));
    assert!(es[0].contains("weight must be a whole number from 0 to 100, not 101"), "{es:?}");
}

#[test]
fn clusters_services_and_versions_must_exist() {
    let es = errors(&format!(
        "{HEAD}  split:\n    - {{cluster: clustr2, version: v3, weight: 50}}\n    - {{cluster: cluster1, version: v3, weight: 50}}\n"
    ));
    assert_eq!(es.len(), 2, "{es:?}");
    assert!(es[0].starts_with("plan.yaml:10:17: unknown cluster \"clustr2\"") && es[0].ends_with("did you mean cluster2?"), "{es:?}");
    assert_eq!(es[1], "plan.yaml:11:36: version \"v3\" of reviews.default does not run in cluster1 (running: v1, v2)");
    let bad_service = HEAD.replace("reviews.default", "reviwes.default");
    let es = errors(&format!("{bad_service}  split:\n    - {{cluster: cluster1, version: v1, weight: 100}}\n"));
    assert!(
        es[0].starts_with("plan.yaml:6:12: service reviwes.default is not in any registered cluster; did you mean reviews.default?"),
        "{es:?}"
    );
}

#[test]
fn trust_accepted_by_names_registered_clusters() {
    let es = errors(&format!("{HEAD}  split:\n    - {{cluster: cluster1, version: v1, weight: 100}}\n  trustAcceptedBy: [clustr2]\n"));
    assert_eq!(es.len(), 1, "{es:?}");
    assert!(es[0].starts_with("plan.yaml:11:21: unknown cluster \"clustr2\"") && es[0].ends_with("did you mean cluster2?"), "{es:?}");
}

/// `coexist: delegate` is how Istio lets two VirtualServices route one host, and only
/// from a gateway-bound one; meshdeck's routes are for sidecars, so it is refused
/// with why and the ways out, at its line, instead of as an unknown field.
#[test]
fn coexist_delegate_is_refused_for_sidecar_routes_with_why() {
    let es = errors(&format!("{HEAD}  split:\n    - {{cluster: cluster1, version: v1, weight: 100}}\n  coexist: delegate\n"));
    assert_eq!(es.len(), 1, "{es:?}");
    assert!(
        es[0].starts_with("plan.yaml:11:12: coexist: delegate cannot apply here: Istio delegates only from a gateway-bound VirtualService"),
        "{es:?}"
    );
    assert!(es[0].contains("IST0109") && es[0].contains("take the existing routing over"), "{es:?}");
    let es = errors(&format!("{HEAD}  split:\n    - {{cluster: cluster1, version: v1, weight: 100}}\n  coexist: merge\n"));
    assert!(
        es[0].starts_with("plan.yaml:11:12: coexist: \"merge\" is not a way to coexist; the only one Istio has is `delegate`"),
        "{es:?}"
    );
}

#[test]
fn unknown_fields_and_kinds_are_rejected_with_a_suggestion() {
    let es = errors(&format!("{HEAD}  split:\n    - {{cluster: cluster1, version: v1, wieght: 100}}\n"));
    assert_eq!(es.len(), 1);
    assert!(
        es[0].starts_with("plan.yaml:10:") && es[0].contains("unknown field `wieght`") && es[0].contains("did you mean `weight`?"),
        "{es:?}"
    );
    let es = errors(&HEAD.replace("TrafficRoute", "TraficRoute"));
    assert!(es[0].starts_with("plan.yaml:2:7: unknown kind \"TraficRoute\"") && es[0].contains("did you mean TrafficRoute?"), "{es:?}");
}

#[test]
fn failover_needs_two_targets_and_outlier_detection() {
    let es = errors(&format!("{HEAD}  failover:\n    - {{cluster: cluster1}}\n"));
    assert_eq!(
        es,
        [
            "plan.yaml:10:5: failover needs at least two targets: a primary and where to go when it fails",
            "plan.yaml:10:5: failover needs outlierDetection: Istio only fails over from endpoints it has ejected"
        ]
    );
}

#[test]
fn kinds_keep_their_own_fields() {
    let es = errors(
        "apiVersion: meshdeck.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: a}\nspec:\n  service: reviews.default\n  split: []\n  allowFrom: []\n",
    );
    assert!(es.iter().any(|e| e.contains("split belongs in a TrafficRoute")), "{es:?}");
    assert!(es.iter().any(|e| e.contains("allowFrom must name at least one caller")), "{es:?}");
}

#[test]
fn a_syntax_error_has_a_position() {
    let es = errors("apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: r\n spec: {}\n");
    assert_eq!(es.len(), 1);
    assert!(es[0].starts_with("plan.yaml:5:"), "{es:?}");
}

const SPLIT: &str = "  split:\n    - {cluster: cluster2, version: v3, weight: 75}\n    - {cluster: cluster1, version: v1, weight: 15}\n    - {cluster: cluster1, version: v2, weight: 10}\n";

/// A canary section: its destination in the split, rising steps that end at its
/// weight, gates that can fail, durations and enums spelled right; each at its line.
#[test]
fn a_canary_names_a_destination_of_the_split_and_rising_steps_to_its_weight() {
    let es = errors(&format!(
        "{HEAD}{SPLIT}  canary:\n    destination: {{cluster: cluster3, version: v3}}\n    steps: [5, 50]\n    gates: {{successRate: 99}}\n"
    ));
    assert_eq!(es, ["plan.yaml:14:18: v3@cluster3 is not a destination of the split (v3@cluster2, v1@cluster1, v2@cluster1)"]);
    let es = errors(&format!(
        "{HEAD}{SPLIT}  canary:\n    destination: {{cluster: cluster2, version: v3}}\n    steps: [5, 50, 25, 80]\n    interval: 2s\n    gates: {{p99: fast, per: everyone}}\n    rollbackTo: yesterday\n"
    ));
    assert_eq!(
        es,
        [
            "plan.yaml:15:20: steps must rise: 25 comes after 50",
            "plan.yaml:15:24: step 80 is above v3@cluster2's weight in the split (75)",
            "plan.yaml:15:24: the last step must be v3@cluster2's weight in the split (75): where the canary ends",
            "plan.yaml:16:15: interval must be at least 5s: a step is judged on what its interval counted",
            "plan.yaml:17:18: p99 \"fast\" is not a duration like 250ms, 10s or 1m",
            "plan.yaml:17:29: gates.per \"everyone\" must be callingCluster or all",
            "plan.yaml:17:12: gates need successRate or p99: a canary nothing can fail is promoted blind",
            "plan.yaml:18:17: rollbackTo \"yesterday\" must be start or lastGoodStep",
        ],
        "{es:#?}"
    );
    let es = errors(&format!(
        "{HEAD}  failover:\n    - {{cluster: cluster1}}\n    - {{cluster: cluster2}}\n  outlierDetection: {{consecutive5xxErrors: 1}}\n  canary:\n    steps: [50]\n"
    ));
    assert_eq!(es, ["plan.yaml:14:5: a canary steps a split in; a failover has no weights to step"]);
}

/// Step weights keep the other destinations' proportions and sum to 100.
#[test]
fn a_canary_plan_round_trips_and_its_steps_keep_the_rest_in_proportion() {
    let text = format!(
        "{HEAD}{SPLIT}  canary:\n    destination: {{cluster: cluster2, version: v3}}\n    steps: [5, 25, 50, 75]\n    gates: {{successRate: 99.5, p99: 250ms}}\n"
    );
    let inv = common::inventory_fixture("federation");
    let plan = meshdeck::plan::load("plan.yaml", &text, &inv).expect("valid");
    let route = &plan.routes[0];
    let canary = route.canary.as_ref().expect("canary");
    assert_eq!((canary.interval, canary.decide_within, canary.gates.min_requests, canary.rollback_after), (60, 180, 50, 1));
    assert_eq!(canary.gates.p99_ms, Some(250.0));
    assert_eq!(meshdeck::plan::load("plan.yaml", &plan.to_yaml(), &inv).expect("round trip"), plan);
    let meshdeck::plan::RouteAction::Split(split) = &route.action else { panic!("split") };
    let weights = |step| canary.split_at(split, step).iter().map(|d| d.weight).collect::<Vec<_>>();
    assert_eq!(weights(1), [5, 57, 38]);
    assert_eq!(weights(2), [25, 45, 30]);
    assert_eq!(weights(4), [75, 15, 10]);
    assert_eq!(weights(0), [0, 60, 40]);
}
