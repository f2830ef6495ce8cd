//! A registered cluster: its registry name, its context, its client and options.

use crate::kubeconfig::ContextSpec;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterOptions {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// The pod label that names a version (default `version`).
    pub version_label: String,
    pub accent: Option<String>,
    pub read_only: bool,
}

#[derive(Clone)]
pub struct Cluster {
    /// The registry name plans use (the context name unless the config renames it).
    pub name: String,
    pub context: ContextSpec,
    /// The kube client, or why it could not be built (bad credentials, exec plugin failure).
    pub client: Result<kube::Client, String>,
    pub options: ClusterOptions,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the client: its config holds credentials.
        f.debug_struct("Cluster").field("name", &self.name).field("context", &self.context.name).field("options", &self.options).finish()
    }
}

impl Cluster {
    pub fn new(name: String, context: ContextSpec, client: Result<kube::Client, String>, options: ClusterOptions) -> Self {
        Self { name, context, client, options }
    }
}
