//! From positioned YAML to a `Plan`, checked against the inventory. Every
//! problem found is reported (not just the first), each at `file:line:col`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::PlanError;
use super::parse::{RawDestination, RawDoc, RawSpec, RawTarget, S, edit_distance};
use super::types::*;
use crate::inventory::FleetSnapshot;

struct Checker<'a> {
    file: &'a str,
    inv: &'a FleetSnapshot,
    /// Plans this one replaces (`--replace`): their objects do not count as other owners.
    replacing: &'a [String],
    errors: Vec<PlanError>,
    /// Clusters named whose inventory is unknown: `cluster -> why`.
    unseen: BTreeMap<String, String>,
    /// The document's `trustAcceptedBy`: its trust check is the plan's word there.
    trust_assumed: BTreeSet<String>,
    notes: Vec<String>,
}

impl<'a> Checker<'a> {
    fn err<T>(&mut self, at: &S<T>, message: impl Into<String>) {
        self.errors.push(PlanError {
            file: self.file.into(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message: message.into(),
        });
    }

    fn known_cluster(&mut self, c: &S<String>) -> bool {
        if self.inv.cluster(&c.value).is_some() && !crate::registry::is_registry_name(&c.value) {
            // An inventory file can carry any name; objects, hosts and folders cannot.
            self.err(
                c,
                format!(
                    "cluster name {} cannot be part of object names and hosts (a DNS label of at most 40 characters)",
                    quoted(&c.value)
                ),
            );
            return false;
        }
        if let Some(view) = self.inv.cluster(&c.value) {
            if let Some(why) = view.unseen() {
                self.unseen.insert(c.value.clone(), why);
            }
            return true;
        }
        let names: Vec<&str> = self.inv.clusters.iter().map(|c| c.name.as_str()).collect();
        let hint = closest(&c.value, &names).map(|n| format!("; did you mean {n}?")).unwrap_or_default();
        self.err(c, format!("unknown cluster {:?} (registered: {}){hint}", c.value, names.join(", ")));
        false
    }

    /// `to`'s sidecars check a federated peer's SPIFFE trust domain before anything
    /// else: one they do not accept resets every request from `from` (and an
    /// AuthorizationPolicy naming it is never evaluated). Unknown facts are not judged.
    fn trust_accepted<T>(&mut self, at: &S<T>, from: &str, to: &str) {
        let (Some(caller), Some(target)) = (self.inv.cluster(from), self.inv.cluster(to)) else { return };
        let Some(td) = caller.mesh.trust_domain.as_deref() else { return };
        if target.mesh.accepts_peer_from(td) != Some(false) {
            return;
        }
        let configmap = match target.mesh.revision.as_deref() {
            None | Some("default") => "istio".to_string(),
            Some(rev) => format!("istio-{rev}"),
        };
        if self.trust_assumed.contains(to) {
            self.notes.push(format!(
                "{}:{}:{}: {to} is taken to accept trust domain {td} ({from}), as trustAcceptedBy says; its mesh config as meshdeck reads it (ConfigMap istio-system/{configmap}) does not",
                self.file,
                at.referenced.line(),
                at.referenced.column()
            ));
            return;
        }
        self.err(
            at,
            format!(
                "{to} does not accept mTLS peers from trust domain {td} ({from}): its sidecars would reset every request from {from}. \
                 Add it to {to}'s mesh config (ConfigMap istio-system/{configmap}, key mesh): `trustDomainAliases: [{td}]`, and restart istiod there"
            ),
        );
    }

    /// `trustAcceptedBy`: registered clusters only; kept for this document's trust checks.
    fn trust_accepted_by(&mut self, spec: &RawSpec) -> Vec<String> {
        let mut out = Vec::new();
        for c in spec.trust_accepted_by.iter().flat_map(|l| l.value.iter()) {
            if self.known_cluster(c) && !out.contains(&c.value) {
                out.push(c.value.clone());
            }
        }
        self.trust_assumed = out.iter().cloned().collect();
        out
    }

    fn service(&mut self, s: &Option<S<String>>, at: &S<RawSpec>) -> Option<ServiceRef> {
        let Some(s) = s else {
            self.err(at, "spec.service is required (`<name>.<namespace>`)");
            return None;
        };
        let Some((name, ns)) = s.value.split_once('.').filter(|(n, ns)| !n.is_empty() && !ns.is_empty() && !ns.contains('.')) else {
            self.err(s, format!("service {:?} must be `<name>.<namespace>`, e.g. reviews.default", s.value));
            return None;
        };
        if self.inv.service(&s.value).is_none() {
            // It may run only where meshdeck cannot see now: not a verdict on the plan.
            let blind: Vec<&crate::inventory::ClusterView> = self.inv.clusters.iter().filter(|c| c.unseen().is_some()).collect();
            if !blind.is_empty() {
                for c in blind {
                    self.unseen.insert(c.name.clone(), c.unseen().unwrap_or_default());
                }
                return Some(ServiceRef { name: name.into(), namespace: ns.into() });
            }
            let keys: Vec<String> = self.inv.services.iter().map(|r| r.key()).collect();
            let hint = closest(&s.value, &keys.iter().map(String::as_str).collect::<Vec<_>>())
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            self.err(s, format!("service {} is not in any registered cluster{hint}", s.value));
            return None;
        }
        Some(ServiceRef { name: name.into(), namespace: ns.into() })
    }

    /// Facts of `cluster` can be judged (its inventory was seen).
    fn seen(&self, cluster: &str) -> bool {
        !self.unseen.contains_key(cluster)
    }

    /// The service must have a Service object in `cluster`; with a version, pods of it there.
    /// In a cluster that could not be seen, neither is known: no verdict.
    fn runs_in(&mut self, svc: &ServiceRef, cluster: &S<String>, version: Option<&S<String>>) -> bool {
        if !self.seen(&cluster.value) {
            return true;
        }
        let presence = self.inv.service(&svc.key()).and_then(|r| r.clusters.get(&cluster.value));
        let Some(p) = presence else {
            self.err(cluster, format!("{} has no Service in {}", svc.key(), cluster.value));
            return false;
        };
        if let Some(v) = version
            && !p.versions.contains_key(&v.value)
        {
            let have: Vec<&str> = p.versions.keys().map(String::as_str).collect();
            self.err(
                v,
                format!(
                    "version {:?} of {} does not run in {} (running: {})",
                    v.value,
                    svc.key(),
                    cluster.value,
                    if have.is_empty() { "none".into() } else { have.join(", ") }
                ),
            );
            return false;
        }
        true
    }

    fn whole(&mut self, v: &S<Value>, what: &str, min: u64, max: u64) -> Option<u32> {
        match v.value.as_u64().filter(|n| *n >= min && *n <= max) {
            Some(n) => u32::try_from(n).ok(),
            None => {
                self.err(v, format!("{what} must be a whole number from {min} to {max}, not {}", v.value));
                None
            }
        }
    }

    fn duration(&mut self, d: &S<String>, what: &str) -> Option<String> {
        let ok = regex::Regex::new(r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$").is_ok_and(|re| re.is_match(&d.value));
        if ok {
            Some(d.value.clone())
        } else {
            self.err(d, format!("{what} {:?} is not a duration like 250ms, 10s or 1m", d.value));
            None
        }
    }
}

/// A value quoted in a message, cut to something a terminal can show.
fn quoted(value: &str) -> String {
    if value.len() <= 64 {
        return format!("{value:?}");
    }
    let mut end = 60;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &value[..end], value.len())
}

pub fn closest<'b>(word: &str, candidates: &[&'b str]) -> Option<&'b str> {
    candidates.iter().map(|c| (edit_distance(word, c), *c)).filter(|(d, _)| *d <= 2.max(word.len() / 3)).min().map(|(_, c)| c)
}

fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A plan may name a cluster by any of its contexts: each alias is resolved to the
/// cluster's registry name here, with a note saying so.
fn resolve_aliases(file: &str, docs: &mut [RawDoc], inv: &FleetSnapshot) -> Vec<String> {
    let mut notes = Vec::new();
    let mut resolve = |c: &mut S<String>| {
        if inv.cluster(&c.value).is_some() {
            return;
        }
        if let Some(view) = inv.clusters.iter().find(|v| v.context == c.value || v.aliases.contains(&c.value)) {
            notes.push(format!(
                "{file}:{}:{}: {} is an alias of {}; the plan names it {}",
                c.referenced.line(),
                c.referenced.column(),
                c.value,
                view.name,
                view.name
            ));
            c.value = view.name.clone();
        }
    };
    for doc in docs.iter_mut() {
        let spec = &mut doc.spec.value;
        if let Some(from) = spec.from.as_mut() {
            from.value.clusters.iter_mut().for_each(&mut resolve);
        }
        if let Some(split) = spec.split.as_mut() {
            split.value.iter_mut().for_each(|d| resolve(&mut d.value.cluster));
        }
        if let Some(failover) = spec.failover.as_mut() {
            failover.value.iter_mut().for_each(|t| resolve(&mut t.value.cluster));
        }
        if let Some(callers) = spec.allow_from.as_mut() {
            callers.value.iter_mut().for_each(|c| resolve(&mut c.value.cluster));
        }
        if let Some(clusters) = spec.trust_accepted_by.as_mut() {
            clusters.value.iter_mut().for_each(&mut resolve);
        }
        if let Some(d) = spec.canary.as_mut().and_then(|c| c.value.destination.as_mut()) {
            resolve(&mut d.value.cluster);
        }
    }
    notes
}

pub fn validate(file: &str, docs: Vec<RawDoc>, inv: &FleetSnapshot) -> Result<Plan, Vec<PlanError>> {
    validate_replacing(file, docs, inv, &[])
}

/// Does a VirtualService host name the service (short, namespaced or fully qualified)?
fn names_service(host: &str, svc: &ServiceRef, vs_namespace: &str) -> bool {
    let (n, ns) = (svc.name.as_str(), svc.namespace.as_str());
    host == svc.local_host() || host == format!("{n}.{ns}") || host == format!("{n}.{ns}.svc") || (host == n && vs_namespace == ns)
}

/// Does the route give `caller` a DestinationRule for the service's own host? (Shared
/// discovery always does; federation when a destination is reached by local subsets.)
fn local_destination_rule(route: &TrafficRoute, inv: &FleetSnapshot, caller: &str) -> bool {
    match &route.action {
        _ if route.uses_shared_discovery(inv) => true,
        RouteAction::Split(ds) => ds.iter().any(|d| d.cluster == caller || route.shared_discovery(inv, caller, &d.cluster)),
        RouteAction::Failover(_) => false,
    }
}

/// Why a route cannot say `coexist`. Istio lets two VirtualServices route one host
/// only by delegation, and only from a VirtualService bound to a Gateway; the routes
/// meshdeck renders are for sidecars (`mesh`), where a second VirtualService for a
/// host is ignored (IST0109), so there is nothing to delegate to.
fn coexist_refusal(value: &str) -> String {
    let why = "Istio delegates only from a gateway-bound VirtualService, and this route is for sidecars (mesh), where Istio neither merges nor delegates the VirtualServices of one host (IST0109)";
    if value == "delegate" {
        format!(
            "coexist: delegate cannot apply here: {why}; take the existing routing over into this plan (name the plan after its VirtualService), or leave that cluster out of `from`"
        )
    } else {
        format!("coexist: {value:?} is not a way to coexist; the only one Istio has is `delegate`, and {why}")
    }
}

/// One owner per route: a (service, calling cluster) pair is routed by at most one
/// plan. Another plan's VirtualService for the host in a caller cluster, or a
/// hand-written one, is a second owner: a sidecar would follow only one of them
/// (istioctl's IST0109). A DestinationRule for the host is the same: Istio merges
/// the rules of one host, and the older one's traffic policy and same-named subsets win.
fn check_owner(ck: &mut Checker, route: &TrafficRoute, at: &S<String>) {
    for from in &route.from_clusters {
        let mut kinds = vec!["VirtualService"];
        if local_destination_rule(route, ck.inv, from) {
            kinds.push("DestinationRule");
        }
        for kind in kinds {
            let others: Vec<String> = ck
                .inv
                .istio_objects
                .iter()
                .filter(|o| o.cluster == *from && o.kind == kind)
                .filter(|o| o.hosts.iter().any(|h| names_service(h, &route.service, &o.namespace)))
                .filter(|o| o.plan.as_deref() != Some(route.name.as_str()) && !o.plan.as_ref().is_some_and(|p| ck.replacing.contains(p)))
                // The object this plan writes (named after it): adopting it, not a second owner.
                .filter(|o| !(o.name == route.name && o.namespace == route.service.namespace && !o.managed))
                .map(|o| match (&o.plan, o.managed) {
                    (Some(p), true) => format!("plan {p} ({kind} {}/{})", o.namespace, o.name),
                    _ => format!("the hand-written {kind} {}/{}", o.namespace, o.name),
                })
                .collect();
            let Some(first) = others.first() else { continue };
            let way_out = match first.strip_prefix("plan ").and_then(|r| r.split_whitespace().next()) {
                Some(p) => format!("edit that plan, or replace it: --replace {p}"),
                None if kind == "DestinationRule" => format!(
                    "Istio merges the DestinationRules of one host and the older one's traffic policy and same-named subsets win; remove it (its policy can move into the plan), or leave {from} out of the plan"
                ),
                None => "remove it, or adopt it by naming the plan after it (apply with --force-conflicts takes it over)".to_string(),
            };
            let said = if kind == "VirtualService" {
                format!("{} from {from} is already routed by {first}", route.service.key())
            } else {
                format!("{} in {from} already has {first}", route.service.key())
            };
            ck.err(at, format!("{said}; one owner per route: {way_out}"));
        }
    }
}

/// Validate, where `replacing` names plans this one replaces (`--replace`).
pub fn validate_replacing(file: &str, mut docs: Vec<RawDoc>, inv: &FleetSnapshot, replacing: &[String]) -> Result<Plan, Vec<PlanError>> {
    let notes = resolve_aliases(file, &mut docs, inv);
    let mut ck =
        Checker { file, inv, replacing, errors: Vec::new(), unseen: BTreeMap::new(), trust_assumed: BTreeSet::new(), notes: Vec::new() };
    let mut plan = Plan { notes, ..Plan::default() };
    let mut names: BTreeSet<(String, String)> = BTreeSet::new();
    let mut routed: BTreeMap<(String, String), String> = BTreeMap::new();
    if docs.is_empty() {
        ck.errors.push(PlanError {
            file: file.into(),
            line: 1,
            column: 1,
            message: "no plan documents (expected TrafficRoute or AccessPolicy)".into(),
        });
    }
    for doc in docs {
        if doc.api_version.value != API_VERSION {
            ck.err(&doc.api_version, format!("apiVersion must be {API_VERSION}, not {:?}", doc.api_version.value));
        }
        let name = doc.metadata.name.value.clone();
        if !dns_label(&name) {
            ck.err(
                &doc.metadata.name,
                format!(
                    "metadata.name {} must be a DNS label of at most 40 characters (lower case, digits, '-'): objects are named after it",
                    quoted(&name)
                ),
            );
        }
        // A plan is its kind and name, but objects are named after the name alone: one name, one plan.
        if let Some((kind, _)) = names.iter().find(|(_, n)| *n == name) {
            ck.err(&doc.metadata.name, format!("a {kind} named {name} is already in this file; give each plan its own name"));
        }
        names.insert((doc.kind.value.clone(), name.clone()));
        match doc.kind.value.as_str() {
            "TrafficRoute" => {
                if let Some(r) = traffic_route(&mut ck, &name, &doc.spec) {
                    check_owner(&mut ck, &r, &doc.metadata.name);
                    for c in &r.from_clusters {
                        if let Some(other) = routed.insert((r.service.key(), c.clone()), r.name.clone()) {
                            ck.err(&doc.metadata.name, format!("{} from {c} is already routed by {other} in this file", r.service.key()));
                        }
                    }
                    plan.routes.push(r);
                }
            }
            "AccessPolicy" => {
                if let Some(a) = access_policy(&mut ck, &name, &doc.spec) {
                    plan.access.push(a);
                }
            }
            other => {
                let hint = closest(other, &["TrafficRoute", "AccessPolicy"]).map(|k| format!("; did you mean {k}?")).unwrap_or_default();
                ck.err(&doc.kind, format!("unknown kind {other:?} (expected TrafficRoute or AccessPolicy){hint}"));
            }
        }
    }
    plan.unseen = ck.unseen;
    plan.notes.append(&mut ck.notes);
    if ck.errors.is_empty() { Ok(plan) } else { Err(ck.errors) }
}

fn traffic_route(ck: &mut Checker, name: &str, spec_at: &S<RawSpec>) -> Option<TrafficRoute> {
    let spec = &spec_at.value;
    if let Some(a) = &spec.allow_from {
        ck.err(a, "allowFrom belongs in an AccessPolicy, not a TrafficRoute");
    }
    if let Some(c) = &spec.coexist {
        ck.err(c, coexist_refusal(&c.value));
    }
    let service = ck.service(&spec.service, spec_at);
    let trust_accepted_by = ck.trust_accepted_by(spec);
    let mut from_clusters = Vec::new();
    match &spec.from {
        None => ck.err(spec_at, "spec.from.clusters is required: where the callers run"),
        Some(f) if f.value.clusters.is_empty() => ck.err(f, "from.clusters must name at least one cluster"),
        Some(f) => {
            for c in &f.value.clusters {
                if ck.known_cluster(c)
                    && let Some(svc) = &service
                {
                    ck.runs_in(svc, c, None);
                }
                if from_clusters.contains(&c.value) {
                    ck.err(c, format!("{} is listed twice", c.value));
                }
                from_clusters.push(c.value.clone());
            }
        }
    }
    let action = match (&spec.split, &spec.failover) {
        (Some(_), Some(f)) => {
            ck.err(f, "a TrafficRoute has either split or failover, not both");
            None
        }
        (None, None) => {
            ck.err(spec_at, "a TrafficRoute needs split (weighted destinations) or failover (ordered targets)");
            None
        }
        (Some(split), None) => split_action(ck, service.as_ref(), split),
        (None, Some(f)) => failover_action(ck, service.as_ref(), f, spec.outlier_detection.is_some()),
    };
    let outlier_detection = spec.outlier_detection.as_ref().map(|o| {
        let o = &o.value;
        OutlierDetection {
            consecutive_5xx_errors: o
                .consecutive_5xx_errors
                .as_ref()
                .and_then(|v| ck.whole(v, "consecutive5xxErrors", 1, 1000))
                .unwrap_or(5),
            interval: o.interval.as_ref().and_then(|d| ck.duration(d, "interval")).unwrap_or_else(|| "10s".into()),
            base_ejection_time: o
                .base_ejection_time
                .as_ref()
                .and_then(|d| ck.duration(d, "baseEjectionTime"))
                .unwrap_or_else(|| "30s".into()),
            max_ejection_percent: o.max_ejection_percent.as_ref().and_then(|v| ck.whole(v, "maxEjectionPercent", 0, 100)),
        }
    });
    let retries = spec.retries.as_ref().map(|r| Retries {
        attempts: ck.whole(&r.value.attempts, "retries.attempts", 0, 100).unwrap_or(0),
        per_try_timeout: r.value.per_try_timeout.as_ref().and_then(|d| ck.duration(d, "perTryTimeout")),
        retry_on: r.value.retry_on.as_ref().map(|s| s.value.clone()),
    });
    let timeout = spec.timeout.as_ref().and_then(|d| ck.duration(d, "timeout"));
    let port = spec.port.as_ref().and_then(|p| {
        let n = u16::try_from(ck.whole(p, "port", 1, 65535)?).ok()?;
        // It must be a port of the Service where the Service is seen.
        let row = service.as_ref().and_then(|s| ck.inv.service(&s.key()));
        let ports: BTreeSet<u16> = row.into_iter().flat_map(|r| r.clusters.values().flat_map(|p| p.ports.iter().copied())).collect();
        if !ports.is_empty() && !ports.contains(&n) {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            ck.err(p, format!("port {n} is not a port of the Service (its ports: {})", list.join(", ")));
        }
        Some(n)
    });
    let mut matches = Vec::new();
    if let Some(ms) = &spec.matches {
        if ms.value.is_empty() {
            ck.err(ms, "match must list at least one condition (or be left out to route every request)");
        }
        for m in &ms.value {
            let mut rm = RouteMatch::default();
            if m.value.headers.is_empty() && m.value.path_prefix.is_none() {
                ck.err(m, "a match needs headers or pathPrefix");
            }
            if let Some(p) = &m.value.path_prefix {
                if !p.value.starts_with('/') {
                    ck.err(p, format!("pathPrefix {:?} must start with /", p.value));
                }
                rm.path_prefix = Some(p.value.clone());
            }
            for (h, sm) in &m.value.headers {
                let v = &sm.value;
                let chosen: Vec<StringMatch> = [
                    v.exact.clone().map(StringMatch::Exact),
                    v.prefix.clone().map(StringMatch::Prefix),
                    v.regex.clone().map(StringMatch::Regex),
                ]
                .into_iter()
                .flatten()
                .collect();
                match <[StringMatch; 1]>::try_from(chosen) {
                    Ok([one]) => {
                        rm.headers.insert(h.to_lowercase(), one);
                    }
                    Err(_) => ck.err(sm, format!("header {h:?} needs exactly one of exact, prefix or regex")),
                }
            }
            matches.push(rm);
        }
    }
    let topology = match spec.topology.as_ref() {
        None => TopologyChoice::Auto,
        Some(t) => match t.value.as_str() {
            "auto" => TopologyChoice::Auto,
            "sharedDiscovery" => TopologyChoice::SharedDiscovery,
            "federation" => TopologyChoice::Federation,
            other => {
                ck.err(t, format!("topology {other:?} must be auto, sharedDiscovery or federation"));
                TopologyChoice::Auto
            }
        },
    };
    let routing = match spec.routing.as_ref() {
        None => Routing::Auto,
        Some(r) => match r.value.as_str() {
            "auto" => Routing::Auto,
            "istio" => Routing::Istio,
            "gateway-api" => Routing::GatewayApi,
            other => {
                ck.err(r, format!("routing {other:?} must be auto, istio or gateway-api"));
                Routing::Auto
            }
        },
    };
    let route = TrafficRoute {
        name: name.into(),
        routing,
        service: service?,
        from_clusters,
        action: action?,
        outlier_detection,
        retries,
        timeout,
        matches,
        topology,
        port,
        trust_accepted_by,
        canary: None,
    };
    check_reachability(ck, &route, spec);
    let canary = spec.canary.as_ref().and_then(|c| canary(ck, &route, c));
    Some(TrafficRoute { canary, ..route })
}

/// Seconds in a duration `duration` accepted (`250ms`, `10s`, `1m`, `1h`).
fn seconds(d: &str) -> f64 {
    let unit_at = d.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(d.len());
    let n: f64 = d[..unit_at].parse().unwrap_or(0.0);
    match &d[unit_at..] {
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => n,
    }
}

/// A canary section: a destination of the split, ascending steps ending at its
/// weight there, and gates that can fail.
fn canary(ck: &mut Checker, route: &TrafficRoute, at: &S<super::parse::RawCanary>) -> Option<Canary> {
    let raw = &at.value;
    let RouteAction::Split(split) = &route.action else {
        ck.err(at, "a canary steps a split in; a failover has no weights to step");
        return None;
    };
    let Some(dest) = &raw.destination else {
        ck.err(at, "canary.destination is required: the split's destination stepped in ({cluster, version})");
        return None;
    };
    let Some(version) = &dest.value.version else {
        ck.err(dest, "canary.destination needs a version: the subset stepped in");
        return None;
    };
    let (cluster, version_name) = (dest.value.cluster.value.clone(), version.value.clone());
    let Some(target) = split.iter().find(|d| d.cluster == cluster && d.version == version_name) else {
        let listed: Vec<String> = split.iter().map(|d| format!("{}@{}", d.version, d.cluster)).collect();
        ck.err(dest, format!("{version_name}@{cluster} is not a destination of the split ({})", listed.join(", ")));
        return None;
    };
    if split.len() < 2 {
        ck.err(dest, "a canary needs another destination in the split to take the rest of the traffic while it steps");
    }
    let mut steps = Vec::new();
    match &raw.steps {
        None => ck.err(at, format!("canary.steps is required: the canary's weight at each step, e.g. [5, 25, 50, {}]", target.weight)),
        Some(list) if list.value.is_empty() => ck.err(list, "canary.steps must list at least one weight"),
        Some(list) => {
            for s in &list.value {
                let Some(w) = ck.whole(s, "a step", 1, 100) else { continue };
                if steps.last().is_some_and(|prev| *prev >= w) {
                    ck.err(s, format!("steps must rise: {w} comes after {}", steps.last().copied().unwrap_or(0)));
                } else if w > target.weight {
                    ck.err(s, format!("step {w} is above {version_name}@{cluster}'s weight in the split ({})", target.weight));
                }
                steps.push(w);
            }
            if steps.last().is_some_and(|last| *last != target.weight)
                && let Some(s) = list.value.last()
            {
                ck.err(
                    s,
                    format!(
                        "the last step must be {version_name}@{cluster}'s weight in the split ({}): where the canary ends",
                        target.weight
                    ),
                );
            }
        }
    }
    let secs = |ck: &mut Checker, d: &Option<S<String>>, what: &str, default: f64| -> f64 {
        d.as_ref().and_then(|d| ck.duration(d, what)).map(|d| seconds(&d)).unwrap_or(default)
    };
    let interval = secs(ck, &raw.interval, "interval", 60.0);
    if interval < 5.0
        && let Some(i) = &raw.interval
    {
        ck.err(i, "interval must be at least 5s: a step is judged on what its interval counted");
    }
    let decide_within = secs(ck, &raw.decide_within, "decideWithin", 3.0 * interval);
    if decide_within < interval
        && let Some(d) = &raw.decide_within
    {
        ck.err(d, format!("decideWithin must be at least the interval ({interval:.0}s)"));
    }
    let gates = raw.gates.as_ref();
    let g = gates.map(|g| &g.value);
    let success_rate = g.and_then(|g| g.success_rate.as_ref()).and_then(|v| match v.value.as_f64().filter(|p| *p > 0.0 && *p <= 100.0) {
        Some(p) => Some(p),
        None => {
            ck.err(v, format!("successRate must be a percent above 0 and at most 100, not {}", v.value));
            None
        }
    });
    let p99_ms = g.and_then(|g| g.p99.as_ref()).and_then(|d| ck.duration(d, "p99")).map(|d| seconds(&d) * 1000.0);
    let min_requests = g.and_then(|g| g.min_requests.as_ref()).and_then(|v| ck.whole(v, "minRequests", 1, 1_000_000)).unwrap_or(50);
    let per = match g.and_then(|g| g.per.as_ref()) {
        None => GatePer::CallingCluster,
        Some(p) if p.value == "callingCluster" => GatePer::CallingCluster,
        Some(p) if p.value == "all" => GatePer::All,
        Some(p) => {
            ck.err(p, format!("gates.per {:?} must be callingCluster or all", p.value));
            GatePer::CallingCluster
        }
    };
    if success_rate.is_none() && p99_ms.is_none() {
        match gates {
            Some(g) => ck.err(g, "gates need successRate or p99: a canary nothing can fail is promoted blind"),
            None => ck.err(at, "canary.gates is required (successRate, p99): a canary nothing can fail is promoted blind"),
        }
    }
    let rollback_after = raw.rollback_after.as_ref().and_then(|v| ck.whole(v, "rollbackAfter", 1, 100)).unwrap_or(1);
    let rollback_to = match raw.rollback_to.as_ref() {
        None => RollbackTo::Start,
        Some(r) if r.value == "start" => RollbackTo::Start,
        Some(r) if r.value == "lastGoodStep" => RollbackTo::LastGoodStep,
        Some(r) => {
            ck.err(r, format!("rollbackTo {:?} must be start or lastGoodStep", r.value));
            RollbackTo::Start
        }
    };
    Some(Canary {
        cluster,
        version: version_name,
        steps,
        interval: interval.round() as u64,
        gates: Gates { success_rate, p99_ms, min_requests: u64::from(min_requests), per },
        rollback_after,
        rollback_to,
        decide_within: decide_within.round() as u64,
    })
}

fn split_action(ck: &mut Checker, svc: Option<&ServiceRef>, split: &S<Vec<S<RawDestination>>>) -> Option<RouteAction> {
    if split.value.is_empty() {
        ck.err(split, "split must list at least one destination");
        return None;
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut sum = 0u32;
    let mut all_weights = true;
    for d in &split.value {
        let d = &d.value;
        let weight = ck.whole(&d.weight, "weight", 0, 100);
        all_weights &= weight.is_some();
        if ck.known_cluster(&d.cluster)
            && let Some(svc) = svc
        {
            ck.runs_in(svc, &d.cluster, Some(&d.version));
        }
        if !seen.insert((d.cluster.value.clone(), d.version.value.clone())) {
            ck.err(&d.cluster, format!("{} in {} is listed twice", d.version.value, d.cluster.value));
        }
        sum += weight.unwrap_or(0);
        out.push(Destination { cluster: d.cluster.value.clone(), version: d.version.value.clone(), weight: weight.unwrap_or(0) });
    }
    if all_weights && sum != 100 {
        ck.err(split, format!("weights sum to {sum}; they must sum to 100"));
    }
    Some(RouteAction::Split(out))
}

fn failover_action(ck: &mut Checker, svc: Option<&ServiceRef>, targets: &S<Vec<S<RawTarget>>>, has_outlier: bool) -> Option<RouteAction> {
    if targets.value.len() < 2 {
        ck.err(targets, "failover needs at least two targets: a primary and where to go when it fails");
    }
    if !has_outlier {
        ck.err(targets, "failover needs outlierDetection: Istio only fails over from endpoints it has ejected");
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for t in &targets.value {
        let t = &t.value;
        if ck.known_cluster(&t.cluster)
            && let Some(svc) = svc
        {
            ck.runs_in(svc, &t.cluster, t.version.as_ref());
        }
        if !seen.insert(t.cluster.value.clone()) {
            ck.err(&t.cluster, format!("{} is listed twice", t.cluster.value));
        }
        out.push(FailoverTarget { cluster: t.cluster.value.clone(), version: t.version.as_ref().map(|v| v.value.clone()) });
    }
    Some(RouteAction::Failover(out))
}

/// Checks that depend on the topology: federation reaches remote clusters through
/// their east-west gateways, so those must have an address.
fn check_reachability(ck: &mut Checker, route: &TrafficRoute, spec: &RawSpec) {
    // A forced shared discovery needs what makes discovery shared: each caller's istiod
    // reading the target cluster's remote secret. Without it the subsets select endpoints
    // the caller cannot see.
    if route.topology == TopologyChoice::SharedDiscovery
        && let Some(at) = &spec.topology
    {
        let targets: Vec<&str> = match &route.action {
            RouteAction::Split(ds) => ds.iter().map(|d| d.cluster.as_str()).collect(),
            RouteAction::Failover(ts) => ts.iter().map(|t| t.cluster.as_str()).collect(),
        };
        for from in &route.from_clusters {
            let blind: Vec<&str> = targets
                .iter()
                .copied()
                .filter(|t| *t != from.as_str() && ck.seen(t) && ck.seen(from) && !ck.inv.shares_discovery(from, t))
                .collect();
            for to in blind {
                {
                    ck.err(
                        at,
                        format!("topology sharedDiscovery, but {from}'s istiod reads no remote secret for {to}: its endpoints are invisible there; use federation, or add the remote secret"),
                    );
                }
            }
        }
    }
    let federated = |to: &str| route.from_clusters.iter().any(|from| from != to && !route.shared_discovery(ck.inv, from, to));
    let mut targets: Vec<&S<String>> = Vec::new();
    if let Some(s) = &spec.split {
        targets.extend(s.value.iter().map(|d| &d.value.cluster));
    }
    if let Some(f) = &spec.failover {
        targets.extend(f.value.iter().map(|t| &t.value.cluster));
    }
    // Shared discovery selects endpoints by the cluster id the caller's istiod gives them.
    for cluster in &targets {
        // Facts it may not read are unknown, not absent: render says so if it needs them.
        let facts_known = ck.inv.cluster(&cluster.value).is_some_and(|c| c.unknown.is_empty());
        for from in &route.from_clusters {
            if route.uses_shared_discovery(ck.inv)
                && facts_known
                && ck.seen(from)
                && ck.seen(&cluster.value)
                && route.shared_discovery(ck.inv, from, &cluster.value)
                && (*from != cluster.value || ck.inv.cluster(from).is_some_and(|c| !c.mesh.remote_secrets.is_empty()))
                && ck.inv.cluster_id_from(from, &cluster.value).is_none()
            {
                ck.err(
                    *cluster,
                    format!(
                        "the Istio cluster id of {} as {from} sees it is not known (no istiod CLUSTER_ID seen there, no remote secret in {from} names it): a subset on a guessed id selects nothing",
                        cluster.value
                    ),
                );
            }
        }
    }
    let mut judged: BTreeSet<(String, String)> = BTreeSet::new();
    for cluster in targets {
        if ck.inv.cluster(&cluster.value).is_none() || !federated(&cluster.value) {
            continue;
        }
        if ck.seen(&cluster.value) && ck.inv.cluster(&cluster.value).and_then(|c| c.mesh.east_west_gateway.as_ref()).is_none() {
            ck.err(cluster, format!("{} has no east-west gateway address: federated callers cannot reach it", cluster.value));
        }
        for from in route.from_clusters.iter().filter(|f| **f != cluster.value && !route.shared_discovery(ck.inv, f, &cluster.value)) {
            if judged.insert((from.clone(), cluster.value.clone())) {
                ck.trust_accepted(cluster, from, &cluster.value);
            }
        }
        if let RouteAction::Failover(_) = route.action
            && route.from_clusters.contains(&cluster.value)
        {
            ck.err(cluster, format!("{} is both a caller and a remote failover target; route it in a separate plan", cluster.value));
        }
    }
    if let RouteAction::Failover(targets) = &route.action
        && route.uses_shared_discovery(ck.inv)
    {
        let versions: BTreeSet<&str> = targets.iter().filter_map(|t| t.version.as_deref()).collect();
        if (versions.len() > 1 || (versions.len() == 1 && targets.iter().any(|t| t.version.is_none())))
            && let Some(f) = &spec.failover
        {
            ck.err(
                f,
                "with shared discovery every failover target takes the same version (or none): one DestinationRule subset selects them all",
            );
        }
    }
    if let RouteAction::Failover(targets) = &route.action {
        for t in targets.iter().filter(|t| route.from_clusters.contains(&t.cluster) && t.version.is_some()) {
            if !route.uses_shared_discovery(ck.inv) {
                let at = spec
                    .failover
                    .as_ref()
                    .and_then(|f| f.value.iter().find(|x| x.value.cluster.value == t.cluster))
                    .map(|x| &x.value.cluster);
                if let Some(at) = at {
                    ck.err(
                        at,
                        format!(
                            "in a federated failover the local target {} takes every version of the Service; drop its version",
                            t.cluster
                        ),
                    );
                }
            }
        }
    }
}

fn access_policy(ck: &mut Checker, name: &str, spec_at: &S<RawSpec>) -> Option<AccessPolicy> {
    let spec = &spec_at.value;
    for (present, field) in [
        (spec.from.is_some(), "from"),
        (spec.split.is_some(), "split"),
        (spec.failover.is_some(), "failover"),
        (spec.matches.is_some(), "match"),
        (spec.retries.is_some(), "retries"),
        (spec.coexist.is_some(), "coexist"),
        (spec.routing.is_some(), "routing"),
    ] {
        if present {
            ck.err(spec_at, format!("{field} belongs in a TrafficRoute, not an AccessPolicy"));
        }
    }
    let service = ck.service(&spec.service, spec_at);
    let trust_accepted_by = ck.trust_accepted_by(spec);
    let mut allow_from = Vec::new();
    match &spec.allow_from {
        None => ck.err(spec_at, "spec.allowFrom is required: who may call the service"),
        Some(list) if list.value.is_empty() => ck.err(list, "allowFrom must name at least one caller (an empty list would deny everyone)"),
        Some(list) => {
            for c in &list.value {
                let c = &c.value;
                if ck.known_cluster(&c.cluster)
                    && ck.seen(&c.cluster.value)
                    && ck.inv.cluster(&c.cluster.value).and_then(|v| v.mesh.trust_domain.as_ref()).is_none()
                {
                    ck.err(&c.cluster, format!("the trust domain of {} is unknown (no istio mesh config seen)", c.cluster.value));
                }
                for (v, what) in [(&c.namespace, "namespace"), (&c.service_account, "serviceAccount")] {
                    if v.value.is_empty() || v.value.contains('/') {
                        ck.err(v, format!("{what} {:?} is not a valid name", v.value));
                    }
                }
                allow_from.push(Caller {
                    cluster: c.cluster.value.clone(),
                    namespace: c.namespace.value.clone(),
                    service_account: c.service_account.value.clone(),
                });
            }
        }
    }
    // Each caller's identity must be one the service's clusters accept (where the caller
    // is not in the same mesh: same cluster, or shared discovery with it).
    if let (Some(svc), Some(list)) = (&service, &spec.allow_from)
        && let Some(row) = ck.inv.service(&svc.key())
    {
        let serving: Vec<String> = row.clusters.keys().cloned().collect();
        let mut judged: BTreeSet<(String, String)> = BTreeSet::new();
        for c in &list.value {
            let from = &c.value.cluster.value;
            for to in serving.iter().filter(|to| *to != from && !ck.inv.shares_discovery(from, to)) {
                if judged.insert((from.clone(), to.clone())) {
                    ck.trust_accepted(&c.value.cluster, from, to);
                }
            }
        }
    }
    Some(AccessPolicy { name: name.into(), service: service?, allow_from, trust_accepted_by })
}
