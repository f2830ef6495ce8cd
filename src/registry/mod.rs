//! The cluster registry: kubeconfig contexts become registered clusters. The
//! contexts that reach one API server (same URL and CA) are one cluster: the
//! first of them in kubeconfig order acts for it unless `--context` or the config
//! file chooses another; the rest are its aliases. A context whose client cannot
//! be built is still registered, with its error.

pub mod cluster;
pub mod health;
pub mod transport;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use cluster::{Alias, Cluster, ClusterOptions, Endpoint, Served};
pub use health::{ClusterError, Probe};

use crate::config::{ClusterEntry, MeshdeckConfig};
use crate::kubeconfig::{self, ContextSpec, KubeconfigError};

/// The kube client for one context, or why it cannot be built (one line, no secrets).
/// `watched_namespaces`: how many namespaces the cluster is watched in one by one (0: all).
pub async fn client_for(kc: &Kubeconfig, context: &str, watched_namespaces: usize) -> Result<kube::Client, String> {
    // Name what is missing (kube says only "failed to load the cluster of context").
    if let Some(ctx) = kc.contexts.iter().find(|c| c.name == context).and_then(|c| c.context.as_ref()) {
        if !kc.clusters.iter().any(|c| c.name == ctx.cluster) {
            return Err(format!("context {context} names cluster {:?}, which is not in the kubeconfig's clusters", ctx.cluster));
        }
        if let Some(user) = ctx.user.as_ref().filter(|u| !kc.auth_infos.iter().any(|a| &a.name == *u)) {
            return Err(format!("context {context} names user {user:?}, which is not in the kubeconfig's users"));
        }
    }
    let opts = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
    let program = exec_of(kc, context).and_then(|e| e.command.as_deref());
    match kube::Config::from_custom_kubeconfig(kc.clone(), &opts).await {
        Ok(config) => transport::client(config, watched_namespaces).map_err(|e| health::describe_error_for(&e, program)),
        Err(e) => Err(health::describe_error_for(&e, program)),
    }
}

/// The exec plugin a context's user runs for its credentials, if any. Building that
/// context's client runs it (kube runs it then, and again when the token expires).
pub fn exec_of<'k>(kc: &'k Kubeconfig, context: &str) -> Option<&'k kube::config::ExecConfig> {
    let user = kc.contexts.iter().find(|c| c.name == context)?.context.as_ref()?.user.as_ref()?;
    kc.auth_infos.iter().find(|a| &a.name == user)?.auth_info.as_ref()?.exec.as_ref()
}

/// Does building this context's client hand the terminal to a program? kube gives an
/// exec plugin the terminal's stdin and stderr unless its `interactiveMode` is `Never`
/// (a login prompt, a device code), so the cockpit steps aside while it runs.
pub fn needs_terminal(kc: &Kubeconfig, context: &str) -> bool {
    exec_of(kc, context).is_some_and(|e| e.interactive_mode != Some(kube::config::ExecInteractiveMode::Never))
}

/// A registry name for a context: what plans, hosts, object names and folders can
/// carry (a DNS label of at most 40 characters). Cloud CLIs' names give their cluster
/// part: `gke_<project>_<location>_<cluster>`, `arn:aws:eks:<region>:<account>:cluster/<cluster>`;
/// anything else is lower-cased with other characters turned into `-`.
pub fn derived_name(context: &str) -> String {
    let base = if let Some(rest) = context.strip_prefix("gke_") {
        rest.rsplit('_').next().unwrap_or(rest)
    } else if context.starts_with("arn:") {
        context.rsplit('/').next().unwrap_or(context)
    } else {
        context
    };
    let mut out = String::new();
    for c in base.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    out.truncate(40);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "cluster".into() } else { out }
}

/// Is `name` usable as a registry name as it is?
pub fn is_registry_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Build the registry. Bad input (unknown context, a config entry naming a missing
/// context) is an error; a context that fails to build a client is kept with the error.
pub async fn connect(kc: &Kubeconfig, wanted: &[String], cfg: &MeshdeckConfig, read_only: bool) -> Result<Vec<Cluster>, KubeconfigError> {
    let all = kubeconfig::contexts(kc);
    let groups = kubeconfig::by_cluster(&all);
    let group_of = |ctx: &ContextSpec| groups.iter().position(|g| g.iter().any(|c| c.name == ctx.name)).unwrap_or(0);
    // The config entry for a cluster: one naming the acting context, else one naming an alias.
    let entry_for = |group: usize, acting: &str| -> Option<&ClusterEntry> {
        let entries = cfg.clusters.as_ref()?;
        entries.iter().find(|e| e.context == acting).or_else(|| entries.iter().find(|e| groups[group].iter().any(|c| c.name == e.context)))
    };
    // (group, acting context, config entry), one per cluster, in the order chosen.
    let mut chosen: Vec<(usize, ContextSpec, Option<&ClusterEntry>)> = Vec::new();
    fn choose<'e>(
        chosen: &mut Vec<(usize, ContextSpec, Option<&'e ClusterEntry>)>,
        group: usize,
        acting: ContextSpec,
        entry: Option<&'e ClusterEntry>,
    ) {
        // Two names for one cluster: the first chosen acts, the other stays an alias.
        if !chosen.iter().any(|(g, _, _)| *g == group) {
            chosen.push((group, acting, entry));
        }
    }
    match &cfg.clusters {
        // The config file registers a subset (and may rename); --context narrows further.
        Some(entries) if wanted.is_empty() => {
            for e in entries {
                let spec = kubeconfig::select(all.clone(), std::slice::from_ref(&e.context))?.remove(0);
                choose(&mut chosen, group_of(&spec), spec, Some(e));
            }
        }
        _ if !wanted.is_empty() => {
            for spec in kubeconfig::select(all.clone(), wanted)? {
                let g = group_of(&spec);
                choose(&mut chosen, g, spec.clone(), entry_for(g, &spec.name));
            }
        }
        _ => {
            for (g, members) in groups.iter().enumerate() {
                choose(&mut chosen, g, members[0].clone(), entry_for(g, &members[0].name));
            }
        }
    }
    let mut out: Vec<Cluster> = Vec::new();
    for (group, spec, entry) in chosen {
        let options = ClusterOptions {
            namespaces: entry.map(|e| e.namespaces.clone()).unwrap_or_default(),
            version_label: cfg.version_label_for(entry),
            accent: entry.and_then(|e| e.accent.clone()),
            read_only: read_only || cfg.read_only || entry.is_some_and(|e| e.read_only),
            prometheus: entry
                .and_then(|e| e.prometheus.as_ref().map(|u| Endpoint { url: u.0.clone(), token_file: e.prometheus_token_file.clone() })),
            istiod: entry.and_then(|e| e.istiod.as_ref()).map(|u| Endpoint { url: u.0.clone(), token_file: None }),
        };
        // Plans name the cluster, not whichever identity acts for it: the config's
        // name, else its first context in kubeconfig order.
        let name = match entry.and_then(|e| e.name.clone()) {
            Some(n) if is_registry_name(&n) => n,
            Some(n) => {
                return Err(KubeconfigError::BadName {
                    name: n,
                    why: "a registry name must be a DNS label of at most 40 characters (a-z, 0-9, '-')".into(),
                });
            }
            None => {
                // A context name plans cannot carry gets a derived one; a clash gets a suffix.
                let derived = derived_name(&groups[group][0].name);
                let mut name = derived.clone();
                let mut n = 2;
                while out.iter().any(|c| c.name == name) {
                    name = format!("{derived}-{n}");
                    n += 1;
                }
                name
            }
        };
        let client = client_for(kc, &spec.name, options.namespaces.len()).await;
        let mut aliases = Vec::new();
        for other in groups[group].iter().filter(|c| c.name != spec.name) {
            aliases.push(Alias { context: other.clone(), client: client_for(kc, &other.name, options.namespaces.len()).await });
        }
        out.push(Cluster { name, context: spec, client, options, aliases, served: Default::default() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1\nkind: Config\nclusters:\n- {name: a, cluster: {server: 'https://10.0.0.1:443/', certificate-authority-data: 'Q0EK'}}\n- {name: a-again, cluster: {server: 'https://10.0.0.1', certificate-authority-data: 'Q0EK'}}\n- {name: b, cluster: {server: 'https://10.0.0.2', certificate-authority-data: 'Q0EK'}}\n- {name: a-other-ca, cluster: {server: 'https://10.0.0.1', certificate-authority-data: 'T1RIRVIK'}}\nusers:\n- {name: u, user: {token: t}}\ncontexts:\n- {name: admin-a, context: {cluster: a, user: u}}\n- {name: b, context: {cluster: b, user: u}}\n- {name: ro-a, context: {cluster: a-again, user: u, namespace: team}}\n- {name: imposter, context: {cluster: a-other-ca, user: u}}\n";

    fn names(cs: &[Cluster]) -> Vec<(String, String, Vec<String>)> {
        cs.iter().map(|c| (c.name.clone(), c.context.name.clone(), c.aliases.iter().map(|a| a.context.name.clone()).collect())).collect()
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn cloud_cli_context_names_give_dns_label_registry_names() {
        assert_eq!(derived_name("gke_my-project_us-central1-a_prod"), "prod");
        assert_eq!(derived_name("arn:aws:eks:us-east-1:123456789012:cluster/Staging_EU"), "staging-eu");
        assert_eq!(derived_name("kind-east"), "kind-east");
        assert_eq!(derived_name("../../x"), "x");
        assert_eq!(derived_name("::"), "cluster");
        assert!(is_registry_name("cluster1") && !is_registry_name("a/b") && !is_registry_name("-a"));
    }

    #[tokio::test]
    async fn contexts_of_one_server_and_ca_are_one_cluster_and_the_first_acts() {
        let kc = Kubeconfig::from_yaml(KC).expect("kubeconfig");
        let cs = connect(&kc, &[], &MeshdeckConfig::default(), false).await.expect("registry");
        // Same URL (":443" and a trailing slash are spelling), same CA: aliases. Another CA: another cluster.
        assert_eq!(
            names(&cs),
            [(s("admin-a"), s("admin-a"), vec![s("ro-a")]), (s("b"), s("b"), vec![]), (s("imposter"), s("imposter"), vec![])]
        );
    }

    #[tokio::test]
    async fn context_flag_and_config_choose_which_alias_acts() {
        let kc = Kubeconfig::from_yaml(KC).expect("kubeconfig");
        let cs = connect(&kc, &[s("ro-a")], &MeshdeckConfig::default(), false).await.expect("registry");
        assert_eq!(names(&cs), [(s("admin-a"), s("ro-a"), vec![s("admin-a")])]);
        // Naming both: the first named acts; one cluster still.
        let cs = connect(&kc, &[s("ro-a"), s("admin-a"), s("b")], &MeshdeckConfig::default(), false).await.expect("registry");
        assert_eq!(names(&cs), [(s("admin-a"), s("ro-a"), vec![s("admin-a")]), (s("b"), s("b"), vec![])]);
        let cfg = MeshdeckConfig::parse("c.yaml", "clusters:\n  - {context: ro-a, name: east, readOnly: true}\n").expect("config");
        let cs = connect(&kc, &[], &cfg, false).await.expect("registry");
        assert_eq!(names(&cs), [(s("east"), s("ro-a"), vec![s("admin-a")])]);
        assert!(cs[0].options.read_only);
        // --context picks the alias; the config entry for that cluster still names and configures it.
        let cs = connect(&kc, &[s("admin-a")], &cfg, false).await.expect("registry");
        assert_eq!(names(&cs), [(s("east"), s("admin-a"), vec![s("ro-a")])]);
    }
}
