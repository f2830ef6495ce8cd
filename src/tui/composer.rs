//! The route composer's state: destinations from what the inventory shows,
//! weights set with keys, or ordered failover targets; it writes a `Plan`.

use crate::inventory::FleetSnapshot;
use crate::plan::{
    AccessPolicy, Caller, Destination, FailoverTarget, OutlierDetection, Plan, RouteAction, ServiceRef, TopologyChoice, TrafficRoute,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Split,
    Failover,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestRow {
    pub cluster: String,
    /// `None` in failover: every version of the Service in that cluster.
    pub version: Option<String>,
    pub weight: u32,
    pub included: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Composer {
    pub service: ServiceRef,
    pub from: String,
    pub mode: Mode,
    pub rows: Vec<DestRow>,
    pub selected: usize,
    /// Digits typed toward a weight; Enter sets it.
    pub typed: String,
    pub callers: Vec<Caller>,
    pub errors: Vec<String>,
    /// The plan that already routes this service from `from`, if one does: composing
    /// edits that plan instead of adding a second owner.
    pub owner: Option<String>,
    /// The owning plan's route as last recorded: what the composer does not edit
    /// (port, retries, timeout, matches, topology, outlier detection, trustAcceptedBy) is kept from it.
    pub kept: Option<TrafficRoute>,
}

/// The meshdeck plan whose VirtualService routes `svc` in cluster `from`.
pub fn owner_of(snap: &FleetSnapshot, svc: &ServiceRef, from: &str) -> Option<String> {
    snap.istio_objects
        .iter()
        .filter(|o| o.cluster == from && o.kind == "VirtualService" && o.managed)
        .find(|o| o.hosts.iter().any(|h| *h == svc.local_host() || (*h == svc.name && o.namespace == svc.namespace)))
        .and_then(|o| o.plan.clone())
}

impl Composer {
    /// Start from the service's versions in every cluster; all traffic on the caller's first version.
    pub fn new(snap: &FleetSnapshot, key: &str, mode: Mode) -> Option<Composer> {
        let row = snap.service(key)?;
        let from = row.clusters.keys().next()?.clone();
        let mut c = Composer {
            service: ServiceRef { name: row.name.clone(), namespace: row.namespace.clone() },
            from,
            mode,
            rows: vec![],
            selected: 0,
            typed: String::new(),
            callers: vec![],
            errors: vec![],
            owner: None,
            kept: None,
        };
        c.owner = owner_of(snap, &c.service, &c.from);
        c.reset_rows(snap);
        c.revalidate(snap);
        Some(c)
    }

    pub fn reset_rows(&mut self, snap: &FleetSnapshot) {
        let Some(row) = snap.service(&self.service.key()) else { return };
        self.rows = match self.mode {
            Mode::Split => row
                .clusters
                .iter()
                .flat_map(|(c, p)| {
                    p.versions.keys().map(move |v| DestRow { cluster: c.clone(), version: Some(v.clone()), weight: 0, included: true })
                })
                .collect(),
            Mode::Failover => {
                // The caller's own cluster first, then the others in registry order.
                let mut clusters: Vec<&String> = row.clusters.keys().collect();
                clusters.sort_by_key(|c| (**c != self.from, snap.clusters.iter().position(|x| &x.name == *c)));
                clusters.into_iter().map(|c| DestRow { cluster: c.clone(), version: None, weight: 0, included: true }).collect()
            }
        };
        if let Some(first) = self.rows.iter_mut().find(|r| r.cluster == self.from) {
            first.weight = 100;
        }
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
    }

    pub fn total(&self) -> u32 {
        self.rows.iter().filter(|r| r.included).map(|r| r.weight).sum()
    }

    pub fn plan_name(&self) -> String {
        if let Some(owner) = &self.owner {
            return owner.clone();
        }
        match self.mode {
            Mode::Split => format!("{}-route", self.service.name),
            Mode::Failover => format!("{}-failover", self.service.name),
        }
    }

    pub fn to_plan(&self) -> Plan {
        let action = match self.mode {
            Mode::Split => RouteAction::Split(
                self.rows
                    .iter()
                    .filter(|r| r.included && r.weight > 0)
                    .map(|r| Destination { cluster: r.cluster.clone(), version: r.version.clone().unwrap_or_default(), weight: r.weight })
                    .collect(),
            ),
            Mode::Failover => RouteAction::Failover(
                self.rows
                    .iter()
                    .filter(|r| r.included)
                    .map(|r| FailoverTarget { cluster: r.cluster.clone(), version: r.version.clone() })
                    .collect(),
            ),
        };
        // Editing the owning plan keeps what the composer does not show.
        let kept = self.kept.as_ref().filter(|k| Some(&k.name) == self.owner.as_ref() && k.service == self.service);
        let default_outlier = || OutlierDetection {
            consecutive_5xx_errors: 5,
            interval: "10s".into(),
            base_ejection_time: "30s".into(),
            max_ejection_percent: None,
        };
        let outlier = kept.and_then(|k| k.outlier_detection.clone()).or_else(|| (self.mode == Mode::Failover).then(default_outlier));
        let route = TrafficRoute {
            name: self.plan_name(),
            service: self.service.clone(),
            from_clusters: vec![self.from.clone()],
            action,
            outlier_detection: outlier,
            retries: kept.and_then(|k| k.retries.clone()),
            timeout: kept.and_then(|k| k.timeout.clone()),
            matches: kept.map(|k| k.matches.clone()).unwrap_or_default(),
            topology: kept.map(|k| k.topology).unwrap_or(TopologyChoice::Auto),
            routing: kept.map(|k| k.routing).unwrap_or_default(),
            port: kept.and_then(|k| k.port),
            trust_accepted_by: kept.map(|k| k.trust_accepted_by.clone()).unwrap_or_default(),
            canary: None,
        };
        let access = if self.callers.is_empty() {
            vec![]
        } else {
            vec![AccessPolicy {
                name: format!("{}-callers", self.service.name),
                service: self.service.clone(),
                allow_from: self.callers.clone(),
                trust_accepted_by: Vec::new(),
            }]
        };
        Plan { routes: vec![route], access, ..Default::default() }
    }

    /// Validation in place: the same rules as `meshdeck render`, against the live inventory.
    pub fn revalidate(&mut self, snap: &FleetSnapshot) {
        self.errors = match crate::plan::load("composer", &self.to_plan().to_yaml(), snap) {
            Ok(_) => vec![],
            Err(es) => es.into_iter().map(|e| e.message).collect(),
        };
        if self.mode == Mode::Split && self.total() != 100 && !self.errors.iter().any(|e| e.contains("sum to")) {
            self.errors.insert(0, format!("weights sum to {}; they must reach 100", self.total()));
        }
    }

    pub fn adjust(&mut self, delta: i64) {
        if let Some(r) = self.rows.get_mut(self.selected) {
            r.weight = (i64::from(r.weight) + delta).clamp(0, 100) as u32;
            r.included = true;
        }
    }

    /// The selected destination takes whatever the others leave of 100.
    pub fn balance(&mut self) {
        let others: u32 = self.rows.iter().enumerate().filter(|(i, r)| *i != self.selected && r.included).map(|(_, r)| r.weight).sum();
        if let Some(r) = self.rows.get_mut(self.selected) {
            r.weight = 100u32.saturating_sub(others);
            r.included = true;
        }
    }

    pub fn set_typed(&mut self) -> bool {
        let Ok(n) = self.typed.parse::<u32>() else {
            self.typed.clear();
            return false;
        };
        self.typed.clear();
        if let Some(r) = self.rows.get_mut(self.selected) {
            r.weight = n.min(100);
            r.included = true;
        }
        true
    }

    pub fn move_selected(&mut self, up: bool) {
        let i = self.selected;
        let j = if up { i.checked_sub(1) } else { (i + 1 < self.rows.len()).then_some(i + 1) };
        if let Some(j) = j {
            self.rows.swap(i, j);
            self.selected = j;
        }
    }

    pub fn cycle_from(&mut self, snap: &FleetSnapshot) {
        let Some(row) = snap.service(&self.service.key()) else { return };
        let clusters: Vec<&String> = row.clusters.keys().collect();
        let i = clusters.iter().position(|c| **c == self.from).unwrap_or(0);
        self.from = clusters[(i + 1) % clusters.len()].clone();
        self.owner = owner_of(snap, &self.service, &self.from);
        self.reset_rows(snap);
    }

    /// Start from what the owning plan routes now (its last recorded version), so
    /// composing edits the route instead of resetting it.
    pub fn load_weights(&mut self, plan: &Plan) {
        let Some(route) = plan.routes.iter().find(|r| Some(&r.name) == self.owner.as_ref() && r.service == self.service) else { return };
        self.kept = Some(route.clone());
        if let (Mode::Split, RouteAction::Split(ds)) = (self.mode, &route.action) {
            for row in &mut self.rows {
                row.weight =
                    ds.iter().find(|d| d.cluster == row.cluster && Some(&d.version) == row.version.as_ref()).map_or(0, |d| d.weight);
            }
        }
    }

    /// Add the next service account of the calling cluster as an allowed caller.
    pub fn add_caller(&mut self, snap: &FleetSnapshot) {
        let mut candidates: Vec<(String, String)> = snap
            .services
            .iter()
            .filter_map(|s| s.clusters.get(&self.from).map(|p| (s, p)))
            .filter(|(s, _)| s.name != self.service.name)
            .flat_map(|(s, p)| p.service_accounts.iter().map(move |sa| (s.namespace.clone(), sa.clone())))
            .collect();
        candidates.sort();
        candidates.dedup();
        let next = candidates
            .into_iter()
            .find(|(ns, sa)| !self.callers.iter().any(|c| c.cluster == self.from && &c.namespace == ns && &c.service_account == sa));
        if let Some((namespace, service_account)) = next {
            self.callers.push(Caller { cluster: self.from.clone(), namespace, service_account });
        }
    }
}
