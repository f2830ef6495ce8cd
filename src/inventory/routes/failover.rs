//! Failover tiers as Istio computes them: an endpoint's priority from the
//! DestinationRule's `failoverPriority` labels, and tiers without gaps.

use std::collections::BTreeMap;

use super::*;

/// What an endpoint offers failover's prefix match: its labels, network and cluster id.
pub(super) struct Endpoint {
    pub(super) labels: BTreeMap<String, String>,
    pub(super) network: Option<String>,
    pub(super) cluster_id: Option<String>,
}

/// An endpoint's failover priority for a caller (lower first), as Istio computes it
/// (`applyFailoverPriorityPerLocality`): at the first entry of `failoverPriority`
/// whose value differs from the caller's (or from the value the entry gives), the
/// priority is the number of entries left. When the list starts with the bare
/// network label, another network only pushes the endpoint after every one on the
/// caller's network, and the entries that follow still order it.
pub(super) fn failover_priority(priority: &[String], e: &Endpoint, caller: &Endpoint) -> usize {
    let value = |ep: &'_ Endpoint, label: &str| -> String {
        match label {
            NETWORK_LABEL => ep.network.clone().unwrap_or_default(),
            CLUSTER_LABEL => ep.cluster_id.clone().unwrap_or_default(),
            _ => ep.labels.get(label).cloned().unwrap_or_default(),
        }
    };
    let lowest = priority.len();
    let network_first = priority.first().is_some_and(|p| p == NETWORK_LABEL);
    let mut adjust = 0;
    for (j, entry) in priority.iter().enumerate() {
        let (label, wanted) = match entry.split_once('=') {
            Some((l, v)) => (l, v.to_string()),
            None => (entry.as_str(), value(caller, entry)),
        };
        if value(e, label) != wanted {
            if j == 0 && network_first {
                adjust = lowest;
                continue;
            }
            return lowest - j + adjust;
        }
    }
    adjust
}

/// Turn failover priorities into tiers 0, 1, ... without gaps.
pub(super) fn assign_tiers(targets: &mut [Target], scores: &[usize]) {
    let mut distinct: Vec<usize> = scores.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    for (t, s) in targets.iter_mut().zip(scores) {
        t.tier = distinct.iter().position(|d| d == s);
    }
    targets.sort_by(|a, b| (a.tier, &a.cluster, &a.version).cmp(&(b.tier, &b.cluster, &b.version)));
}
