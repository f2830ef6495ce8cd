//! One simulated cluster's state: objects by kind (kept as JSON text, see
//! `stored`), a global resourceVersion,
//! an event log for watches (compacted like etcd), and every write path
//! (create, update, merge patch, server-side apply, delete) with validation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::{ResourceRegistry, ResourceType, StorageKey};
use super::selectors::{FieldSelector, LabelSelector};
use super::ssa;
use super::status::ApiError;
pub use super::stored::Stored;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the log and broadcast to live watches.
#[derive(Debug)]
pub struct WatchRecord {
    pub rv: u64,
    pub key: StorageKey,
    pub namespace: String,
    pub event: EventType,
    pub object: Stored,
    pub previous: Option<Stored>,
}

/// How a write is checked and recorded.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub manager: String,
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being pruned.
    pub strict: bool,
    pub force: bool,
}

/// A DELETE's options, from its query and its `DeleteOptions` body (kubectl and
/// kube-rs send `dryRun` in the body).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    /// `preconditions.uid` / `preconditions.resourceVersion`: delete only that object.
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub grace_period_seconds: Option<i64>,
}

/// What a write produced: the object and warnings (pruned unknown fields).
#[derive(Debug)]
pub struct WriteOutcome {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

pub struct ListResult {
    pub items: Vec<Stored>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

type Objects = BTreeMap<(String, String), Stored>;

/// The events a new watch replays, and the receiver for everything after them.
pub type WatchStart = (Vec<Arc<WatchRecord>>, broadcast::Receiver<Arc<WatchRecord>>);

/// How many changes a store keeps for watches to resume from (a real API server's
/// watch cache keeps a window too; older resourceVersions get 410 Gone).
pub const HISTORY: usize = 20_000;

pub struct ClusterStore {
    pub registry: ResourceRegistry,
    rv: u64,
    objects: BTreeMap<StorageKey, Objects>,
    log: VecDeque<Arc<WatchRecord>>,
    log_capacity: usize,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted_below: u64,
    tx: broadcast::Sender<Arc<WatchRecord>>,
    uid_seed: u64,
    cluster_ip_next: u32,
    pub clock: fn() -> String,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl ClusterStore {
    pub fn new(registry: ResourceRegistry, seed: u64) -> Self {
        let (tx, _) = broadcast::channel(8192);
        Self {
            registry,
            rv: 1000,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            log_capacity: HISTORY,
            compacted_below: 0,
            tx,
            uid_seed: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            cluster_ip_next: 1,
            clock: now_rfc3339,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Open watch streams (and other subscribers) on this cluster.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchRecord>> {
        self.tx.subscribe()
    }

    /// Keep at most `n` changes for watches to replay. Zero while the world is
    /// loaded: its history is compacted away before anyone can watch it, and
    /// holding every object's versions until then costs hundreds of MB per cluster.
    pub fn keep_history(&mut self, n: usize) {
        self.log_capacity = n;
        while self.log.len() > n {
            if let Some(old) = self.log.pop_front() {
                self.compacted_below = old.rv;
            }
        }
    }

    /// Forget history below the current version, as etcd compaction does.
    pub fn compact(&mut self) {
        self.compacted_below = self.rv;
        self.log.clear();
    }

    /// One object, parsed.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.stored(rt, ns, name).map(Stored::value).ok_or_else(|| ApiError::not_found(&rt.qualified_plural(), name))
    }

    pub fn contains(&self, rt: &ResourceType, ns: &str, name: &str) -> bool {
        self.stored(rt, ns, name).is_some()
    }

    fn stored(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Stored> {
        self.objects.get(&rt.storage).and_then(|m| m.get(&(ns.to_string(), name.to_string())))
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_after: Option<(String, String)>,
    ) -> ListResult {
        let empty = Objects::new();
        let all = self.objects.get(&rt.storage).unwrap_or(&empty);
        let mut matching = all
            .iter()
            .filter(|((ons, _), _)| ns.is_none_or(|n| n == ons))
            .filter(|(k, _)| continue_after.as_ref().is_none_or(|after| *k > after))
            .filter(|(_, o)| o.matches(labels, fields));
        let mut items = Vec::new();
        let mut last = None;
        for (k, o) in matching.by_ref() {
            if limit.is_some_and(|l| items.len() >= l) {
                // One more exists: hand out a continue token pointing after the last item returned.
                let remaining = 1 + matching.count();
                return ListResult {
                    items,
                    resource_version: self.rv,
                    continue_token: last.map(|(ns, name): (String, String)| encode_continue(&ns, &name, self.rv)),
                    remaining: Some(remaining),
                };
            }
            last = Some(k.clone());
            items.push(o.clone());
        }
        ListResult { items, resource_version: self.rv, continue_token: None, remaining: None }
    }

    /// Events after `from` for one kind (and namespace), plus a receiver for what follows.
    /// `None` for `from` means: the current state as ADDED events.
    pub fn watch_from(&self, rt: &ResourceType, ns: Option<&str>, from: Option<u64>) -> Result<WatchStart, ApiError> {
        let rx = self.tx.subscribe();
        let backlog = match from {
            None => {
                let empty = Objects::new();
                self.objects
                    .get(&rt.storage)
                    .unwrap_or(&empty)
                    .iter()
                    .filter(|((ons, _), _)| ns.is_none_or(|n| n == ons))
                    .map(|((ons, _), o)| {
                        Arc::new(WatchRecord {
                            rv: o.rv(),
                            key: rt.storage.clone(),
                            namespace: ons.clone(),
                            event: EventType::Added,
                            object: o.clone(),
                            previous: None,
                        })
                    })
                    .collect()
            }
            Some(rv) => {
                if rv < self.compacted_below {
                    return Err(ApiError::gone(format!("too old resource version: {rv} ({})", self.compacted_below)));
                }
                self.log
                    .iter()
                    .filter(|r| r.rv > rv && r.key == rt.storage)
                    .filter(|r| ns.is_none_or(|n| n == r.namespace))
                    .cloned()
                    .collect()
            }
        };
        Ok((backlog, rx))
    }

    fn next_uid(&mut self) -> String {
        self.uid_seed = self.uid_seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let a = self.uid_seed;
        let b = a.rotate_left(17) ^ 0x5bd1_e995;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (b & 0xfff) as u16,
            b & 0xffff_ffff_ffff
        )
    }

    fn record(&mut self, key: &StorageKey, ns: &str, event: EventType, object: Stored, previous: Option<Stored>) {
        let rec = Arc::new(WatchRecord { rv: self.rv, key: key.clone(), namespace: ns.to_string(), event, object, previous });
        self.log.push_back(rec.clone());
        while self.log.len() > self.log_capacity {
            if let Some(old) = self.log.pop_front() {
                self.compacted_below = old.rv;
            }
        }
        let _ = self.tx.send(rec);
    }

    fn check_target(&self, rt: &ResourceType, ns: &str, obj: &Value, name_in_path: Option<&str>) -> Result<(), ApiError> {
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({kind}) does not match the resource ({})",
                rt.kind
            )));
        }
        let obj_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|n| !n.is_empty());
        if rt.namespaced {
            if let Some(o) = obj_ns
                && o != ns
            {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            let ns_rt = self.registry.get("", "v1", "namespaces").cloned();
            if let Some(ns_rt) = ns_rt
                && self.get(&ns_rt, "", ns).is_err()
            {
                return Err(ApiError::not_found("namespaces", ns));
            }
        }
        if let (Some(path_name), Some(obj_name)) = (name_in_path, obj.pointer("/metadata/name").and_then(Value::as_str))
            && path_name != obj_name
        {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        Ok(())
    }

    /// Schema validation (CRD kinds), name rules, and pruning of unknown fields.
    fn admit(&self, rt: &ResourceType, obj: &mut Value, opts: &WriteOptions) -> Result<Vec<String>, ApiError> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let kind_group = if rt.group.is_empty() { rt.kind.clone() } else { format!("{}.{}", rt.kind, rt.group) };
        let mut causes = Vec::new();
        if !is_dns_subdomain(&name) {
            causes.push((
                "metadata.name".to_string(),
                format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
            ));
        }
        let mut warnings = Vec::new();
        if rt.builtin() {
            super::defaults::on_write(&rt.kind, obj);
        }
        if let Some(schema) = &rt.schema {
            let unknown = schema.prune_object(obj);
            if !unknown.is_empty() {
                if opts.strict {
                    return Err(strict_error(&unknown));
                }
                warnings.extend(unknown.iter().map(|u| format!("unknown field \"{u}\"")));
            }
            for e in schema.validate_object(obj) {
                causes.push((e.path, e.message));
            }
        }
        if rt.kind == "CustomResourceDefinition"
            && let Err(e) = ResourceRegistry::types_from_crd(obj)
        {
            causes.push(("spec".into(), e));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&kind_group, &name, &causes));
        }
        Ok(warnings)
    }

    fn finish_new(&mut self, rt: &ResourceType, ns: &str, obj: &mut Value) {
        let uid = self.next_uid();
        let now = (self.clock)();
        let meta = ensure_meta(obj);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now));
        if super::defaults::tracks_generation(&rt.kind, rt.builtin()) {
            meta.insert("generation".into(), json!(1));
        }
        if rt.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        if rt.kind == "Pod" {
            super::defaults::on_pod_create(obj, &uid.replace('-', "")[..5]);
        }
        if rt.kind == "Service" {
            let typ = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
            let needs_ip = obj.pointer("/spec/clusterIP").is_none() && typ != "ExternalName";
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("type").or_insert(json!(typ));
                if needs_ip {
                    let n = self.cluster_ip_next;
                    self.cluster_ip_next += 1;
                    let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
                    spec.insert("clusterIP".into(), json!(ip));
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
            }
        }
        if rt.kind == "Namespace" {
            obj["status"] = json!({"phase": "Active"});
        }
    }

    fn store(&mut self, rt: &ResourceType, ns: &str, name: &str, mut obj: Value) -> Value {
        self.rv += 1;
        ensure_meta(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let stored = Stored::new(&obj);
        let previous = self.objects.entry(rt.storage.clone()).or_default().insert((ns.to_string(), name.to_string()), stored.clone());
        let event = if previous.is_some() { EventType::Modified } else { EventType::Added };
        let rolled = rt.kind == "Deployment"
            && previous.as_ref().is_some_and(|p| p.value().pointer("/spec/template") != obj.pointer("/spec/template"));
        self.record(&rt.storage, ns, event, stored, previous);
        if rt.kind == "CustomResourceDefinition" {
            self.install_crd(&obj);
        }
        if rolled {
            self.deployment_rolled(rt, ns, name, &obj);
            if (ns, name) == ("istio-system", "istiod") {
                self.istiod_started();
            }
        }
        obj
    }

    /// The Deployment controller, after a new pod template: a new revision, written as
    /// its own change after the one that caused it (as on a real cluster, where the
    /// writer's answer still carries the old revision).
    fn deployment_rolled(&mut self, rt: &ResourceType, ns: &str, name: &str, written: &Value) {
        const REVISION: &str = "deployment.kubernetes.io/revision";
        let mut obj = written.clone();
        let revision =
            obj.pointer("/metadata/annotations").and_then(|a| a.get(REVISION)).and_then(Value::as_str).and_then(|r| r.parse::<u64>().ok());
        let annotations = ensure_meta(&mut obj).entry("annotations").or_insert_with(|| json!({}));
        annotations[REVISION] = json!((revision.unwrap_or(1) + 1).to_string());
        self.store(rt, ns, name, obj);
    }

    /// What istiod does when it starts, where the API shows it: it reads `cacerts` (else
    /// its self-signed `istio-ca-secret`) and writes the roots it trusts into every
    /// namespace's `istio-ca-root-cert` (kube-* namespaces aside), as its namespace controller does.
    fn istiod_started(&mut self) {
        use base64::Engine;
        let (Some(secrets), Some(maps), Some(namespaces)) = (
            self.registry.get("", "v1", "secrets").cloned(),
            self.registry.get("", "v1", "configmaps").cloned(),
            self.registry.get("", "v1", "namespaces").cloned(),
        ) else {
            return;
        };
        let entry = |s: &Value, k: &str| {
            let b64 = s.pointer(&format!("/data/{k}")).and_then(Value::as_str)?;
            base64::engine::general_purpose::STANDARD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok())
        };
        let root = match self.get(&secrets, "istio-system", "cacerts") {
            Ok(s) => entry(&s, "root-cert.pem"),
            Err(_) => self.get(&secrets, "istio-system", "istio-ca-secret").ok().and_then(|s| entry(&s, "ca-cert.pem")),
        };
        let Some(root) = root else { return };
        let names: Vec<String> = self
            .objects
            .get(&namespaces.storage)
            .map(|m| m.keys().map(|(_, n)| n.clone()).filter(|n| !n.starts_with("kube-")).collect())
            .unwrap_or_default();
        for ns in names {
            let name = "istio-ca-root-cert";
            match self.get(&maps, &ns, name) {
                Ok(mut cm) if cm.pointer("/data/root-cert.pem").and_then(Value::as_str) != Some(root.as_str()) => {
                    cm["data"] = json!({"root-cert.pem": root});
                    self.store(&maps, &ns, name, cm);
                }
                Ok(_) => {}
                Err(_) => {
                    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "labels": {"istio.io/config": "true"}}, "data": {"root-cert.pem": root}});
                    self.finish_new(&maps, &ns, &mut cm);
                    self.store(&maps, &ns, name, cm);
                }
            }
        }
    }

    fn install_crd(&mut self, crd: &Value) {
        let Ok(types) = ResourceRegistry::types_from_crd(crd) else { return };
        // The versions served before are replaced by those served now (maybe none: the
        // kind's objects stay stored, as a real API server keeps them in etcd).
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
        let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
        self.registry.remove_kind(group, plural);
        for t in types {
            self.registry.insert(t);
        }
    }

    pub fn create(&mut self, rt: &ResourceType, ns: &str, mut obj: Value, opts: &WriteOptions) -> Result<WriteOutcome, ApiError> {
        self.check_target(rt, ns, &obj, None)?;
        if obj.pointer("/metadata/name").and_then(Value::as_str).is_none_or(str::is_empty) {
            match obj.pointer("/metadata/generateName").and_then(Value::as_str).map(str::to_string) {
                Some(prefix) => {
                    let suffix: String = self.next_uid().chars().filter(|c| c.is_ascii_alphanumeric()).take(5).collect();
                    ensure_meta(&mut obj).insert("name".into(), json!(format!("{prefix}{suffix}")));
                }
                None => {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        "",
                        &[("metadata.name".into(), "Required value: name or generateName is required".into())],
                    ));
                }
            }
        }
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        if self.contains(rt, ns, &name) {
            return Err(ApiError::already_exists(&rt.qualified_plural(), &name));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let warnings = self.admit(rt, &mut obj, opts)?;
        self.finish_new(rt, ns, &mut obj);
        let now = (self.clock)();
        ssa::record_update(None, &mut obj, &opts.manager, &rt.api_version(), &now);
        let object = if opts.dry_run { obj } else { self.store(rt, ns, &name, obj) };
        Ok(WriteOutcome { object, created: true, warnings })
    }

    /// PUT: replace the object, honouring optimistic concurrency on resourceVersion.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome, ApiError> {
        self.check_target(rt, ns, &obj, Some(name))?;
        let old = self.get(rt, ns, name)?;
        if let Some(rv) = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str)
            && rv != object_rv(&old).to_string()
        {
            return Err(ApiError::new(409, "Conflict", format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified_plural()
            )).with_details(super::status::details(&rt.qualified_plural(), name)));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        ensure_meta(&mut obj).insert("name".into(), json!(name));
        let warnings = self.admit(rt, &mut obj, opts)?;
        let object = self.commit_change(rt, ns, name, old, obj, &opts.manager, opts.dry_run, false)?;
        Ok(WriteOutcome { object, created: false, warnings })
    }

    /// JSON merge patch (RFC 7386); strategic merge patch is treated the same for the kinds served here.
    pub fn merge_patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        patch: &Value,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome, ApiError> {
        let old = self.get(rt, ns, name)?;
        let mut obj = old.clone();
        json_merge_patch(&mut obj, patch);
        let warnings = self.admit(rt, &mut obj, opts)?;
        let object = self.commit_change(rt, ns, name, old, obj, &opts.manager, opts.dry_run, false)?;
        Ok(WriteOutcome { object, created: false, warnings })
    }

    /// Server-side apply (`application/apply-patch+yaml`).
    pub fn apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        applied: &Value,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome, ApiError> {
        if opts.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if applied.get("apiVersion").is_none() || applied.get("kind").is_none() {
            return Err(ApiError::bad_request("apiVersion and kind must be set in an apply configuration"));
        }
        self.check_target(rt, ns, applied, Some(name))?;
        let mut applied = applied.clone();
        let mut warnings = Vec::new();
        if let Some(schema) = &rt.schema {
            let unknown = schema.prune_object(&mut applied);
            if !unknown.is_empty() {
                if opts.strict {
                    return Err(strict_error(&unknown));
                }
                warnings.extend(unknown.iter().map(|u| format!("unknown field \"{u}\"")));
            }
        }
        let live = self.get(rt, ns, name).ok();
        let now = (self.clock)();
        let merged = ssa::apply(live.as_ref(), &applied, &opts.manager, &rt.api_version(), opts.force, &now)
            .map_err(|conflicts| conflict_error(&conflicts))?;
        let mut obj = merged;
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        ensure_meta(&mut obj).insert("name".into(), json!(name));
        warnings.extend(self.admit(rt, &mut obj, opts)?);
        match live {
            None => {
                self.finish_new(rt, ns, &mut obj);
                let object = if opts.dry_run { obj } else { self.store(rt, ns, name, obj) };
                Ok(WriteOutcome { object, created: true, warnings })
            }
            Some(old) => {
                let object = self.commit_change(rt, ns, name, old, obj, &opts.manager, opts.dry_run, true)?;
                Ok(WriteOutcome { object, created: false, warnings })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_change(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Value,
        mut obj: Value,
        manager: &str,
        dry_run: bool,
        managed_already: bool,
    ) -> Result<Value, ApiError> {
        // Server-owned metadata carries over; a write cannot change it.
        let old_meta = old.get("metadata").cloned().unwrap_or_default();
        {
            let meta = ensure_meta(&mut obj);
            for k in ["uid", "creationTimestamp", "generation", "namespace"] {
                match old_meta.get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.remove(k);
                    }
                }
            }
            meta.insert("resourceVersion".into(), old_meta.get("resourceVersion").cloned().unwrap_or(json!("")));
        }
        if !managed_already {
            let now = (self.clock)();
            ssa::record_update(Some(&old), &mut obj, manager, &rt.api_version(), &now);
        }
        if ssa::strip(&old) == ssa::strip(&obj) && old.pointer("/metadata/managedFields") == obj.pointer("/metadata/managedFields") {
            return Ok(old);
        }
        if old.get("spec") != obj.get("spec") && old_meta.get("generation").is_some() {
            let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1) + 1;
            ensure_meta(&mut obj).insert("generation".into(), json!(generation));
        }
        if dry_run {
            return Ok(obj);
        }
        Ok(self.store(rt, ns, name, obj))
    }

    /// Delete one object, or on a dry run answer what the delete would return.
    /// The answer is what a real API server sends: the object, with
    /// `deletionTimestamp` where deletion is not immediate (a namespace is
    /// finalized, a pod is given its grace period).
    pub fn delete(&mut self, rt: &ResourceType, ns: &str, name: &str, opts: &DeleteOptions) -> Result<Value, ApiError> {
        let old = self.get(rt, ns, name)?;
        // NamespaceLifecycle admission: a cluster cannot live without these.
        if rt.kind == "Namespace" && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::new(403, "Forbidden", format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"))
                .with_details(json!({"name": name, "kind": "namespaces"})));
        }
        let precondition_failed = |what: &str, want: &str, have: &str| {
            ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what}: {want}, {what} in object meta: {have}",
                    rt.qualified_plural()
                ),
            )
            .with_details(super::status::details(&rt.qualified_plural(), name))
        };
        let meta_str = |k: &str| old.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(uid) = &opts.uid
            && *uid != meta_str("uid")
        {
            return Err(precondition_failed("UID in precondition", uid, &meta_str("uid")));
        }
        if let Some(rv) = &opts.resource_version
            && *rv != meta_str("resourceVersion")
        {
            return Err(precondition_failed("ResourceVersion in precondition", rv, &meta_str("resourceVersion")));
        }
        let mut answer = old.clone();
        let now = (self.clock)();
        if rt.kind == "Namespace" {
            ensure_meta(&mut answer).insert("deletionTimestamp".into(), json!(now));
            answer["status"] = json!({"phase": "Terminating"});
        } else if rt.kind == "Pod" {
            let grace = opts
                .grace_period_seconds
                .or_else(|| old.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30);
            if grace > 0 {
                let at = chrono::DateTime::parse_from_rfc3339(&now)
                    .map(|t| (t + chrono::Duration::seconds(grace)).to_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or(now);
                let meta = ensure_meta(&mut answer);
                meta.insert("deletionTimestamp".into(), json!(at));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        }
        if !opts.dry_run {
            self.remove(rt, ns, name);
        }
        Ok(answer)
    }

    fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        let Some(old) = self.objects.get_mut(&rt.storage).and_then(|m| m.remove(&key)) else {
            return;
        };
        self.rv += 1;
        let mut gone = old.value();
        ensure_meta(&mut gone).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let removed = Stored::new(&gone);
        self.record(&rt.storage, ns, EventType::Deleted, removed, Some(old));
        if rt.kind == "Namespace" {
            // Everything in the namespace goes with it (finalization is immediate here).
            let doomed: Vec<(ResourceType, String)> = self
                .registry
                .all()
                .filter(|t| t.namespaced && t.preferred)
                .flat_map(|t| {
                    self.objects
                        .get(&t.storage)
                        .map(|m| m.keys().filter(|(o, _)| o == name).map(|(_, n)| (t.clone(), n.clone())).collect::<Vec<_>>())
                        .unwrap_or_default()
                })
                .collect();
            for (t, n) in doomed {
                self.remove(&t, name, &n);
            }
        }
        if rt.kind == "CustomResourceDefinition"
            && let Ok(types) = ResourceRegistry::types_from_crd(&gone)
            && let Some(first) = types.first()
        {
            let storage = first.storage.clone();
            self.registry.remove_storage(&storage);
            self.objects.remove(&storage);
        }
    }

    /// Everything in the store of one kind (for the fleet's own controllers).
    pub fn all_of(&self, rt: &ResourceType) -> Vec<Stored> {
        self.objects.get(&rt.storage).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Replace an object's status without validation or generation bump (controllers only).
    pub fn set_status(&mut self, rt: &ResourceType, ns: &str, name: &str, status: Value) -> Result<(), ApiError> {
        let old = self.get(rt, ns, name)?;
        let mut obj = old.clone();
        obj["status"] = status;
        if old != obj {
            // Recorded as a real server records it: the kubelet writes pod status, the
            // controller manager the rest, each through the status subresource.
            let manager = if rt.kind == "Pod" { "kubelet" } else { "kube-controller-manager" };
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            ssa::record_status(&old, &mut obj, manager, &rt.api_version(), &now);
            self.store(rt, ns, name, obj);
        }
        Ok(())
    }
}

/// `fieldValidation=Strict` (kubectl's default) turns pruned fields into a 400.
fn strict_error(unknown: &[String]) -> ApiError {
    let list: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
    ApiError::bad_request(format!("strict decoding error: {}", list.join(", ")))
}

fn conflict_error(conflicts: &[ssa::Conflict]) -> ApiError {
    let n = conflicts.len();
    let message = if n == 1 {
        let c = &conflicts[0];
        format!("Apply failed with 1 conflict: conflict with {}: {}", c.who(), c.field)
    } else {
        // Grouped by manager, as a real server prints them.
        let mut by_manager: std::collections::BTreeMap<String, Vec<&str>> = std::collections::BTreeMap::new();
        for c in conflicts {
            by_manager.entry(c.who()).or_default().push(&c.field);
        }
        let mut lines = Vec::new();
        for (who, fields) in by_manager {
            lines.push(format!("conflicts with {who}:"));
            lines.extend(fields.iter().map(|f| format!("- {f}")));
        }
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.who()), "field": c.field}))
        .collect();
    ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
}

pub fn json_merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        json_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

pub fn ensure_meta(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn object_rv(o: &Value) -> u64 {
    o.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

pub fn encode_continue(ns: &str, name: &str, rv: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"ns": ns, "name": name, "rv": rv}).to_string())
}

pub fn decode_continue(token: &str) -> Option<(String, String)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some((v.get("ns")?.as_str()?.to_string(), v.get("name")?.as_str()?.to_string()))
}
