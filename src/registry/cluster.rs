//! A registered cluster: its registry name, the context acting for it, its
//! aliases (other contexts reaching the same API server), its client and options.

use crate::kubeconfig::ContextSpec;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterOptions {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// The pod label that names a version (default `version`).
    pub version_label: String,
    pub accent: Option<String>,
    pub read_only: bool,
    /// The cluster's Prometheus and istiod, as config.yaml names them (none: found in the cluster).
    pub prometheus: Option<Endpoint>,
    pub istiod: Option<Endpoint>,
}

/// An HTTP endpoint beside the API server, with the bearer token file its owner named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub token_file: Option<std::path::PathBuf>,
}

/// Another context for the same cluster (another identity, or another name for it).
#[derive(Clone)]
pub struct Alias {
    pub context: ContextSpec,
    pub client: Result<kube::Client, String>,
}

#[derive(Clone)]
pub struct Cluster {
    /// The registry name plans use (the config's name, else the cluster's first context).
    pub name: String,
    /// The context acting for the cluster: its credentials read and write.
    pub context: ContextSpec,
    /// The kube client, or why it could not be built (bad credentials, exec plugin failure).
    pub client: Result<kube::Client, String>,
    pub options: ClusterOptions,
    pub aliases: Vec<Alias>,
    /// The version each Istio kind is served at, once discovered (see `apply::target::served`).
    pub served: std::sync::Arc<std::sync::Mutex<Option<Served>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the client: its config holds credentials.
        let aliases: Vec<&str> = self.aliases.iter().map(|a| a.context.name.as_str()).collect();
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("context", &self.context.name)
            .field("aliases", &aliases)
            .field("options", &self.options)
            .finish()
    }
}

impl Cluster {
    pub fn new(name: String, context: ContextSpec, client: Result<kube::Client, String>, options: ClusterOptions) -> Self {
        Self { name, context, client, options, aliases: Vec::new(), served: Default::default() }
    }

    /// Does `name` refer to this cluster (its registry name, acting context or an alias)?
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.context.name == name || self.aliases.iter().any(|a| a.context.name == name)
    }

    /// Let `context` (an alias) act for the cluster; the acting one becomes an alias.
    /// Returns false, changing nothing, when `context` is not an alias.
    pub fn act_as(&mut self, context: &str, client: Result<kube::Client, String>) -> bool {
        let Some(i) = self.aliases.iter().position(|a| a.context.name == context) else { return false };
        let alias = self.aliases.remove(i);
        let previous =
            Alias { context: std::mem::replace(&mut self.context, alias.context), client: std::mem::replace(&mut self.client, client) };
        // To the back: switching again moves on to the next alias, then back here.
        self.aliases.push(previous);
        true
    }
}

/// The version at which one cluster serves each Istio kind: `v1` since Istio 1.22,
/// `v1beta1` before. Objects are read and written at that version. Kept with the
/// cluster; discovered and read by `apply::target` (its methods are there).
#[derive(Clone, Debug)]
pub struct Served {
    pub(crate) by_kind: std::collections::BTreeMap<&'static str, &'static str>,
    /// How long the discovery round took: the cluster's round trip, near enough.
    pub round_trip: std::time::Duration,
    pub(crate) found_at: std::time::Instant,
}
