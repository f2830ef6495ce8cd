//! `meshdeck trust`: per cluster, the root istiod distributes, its CA
//! (plugged-in or self-signed), the intermediate and which clusters share a root
//! (`status`); one root for the fleet (`plan`); a rotation to a new root in three
//! recorded steps (`rotate trust-both`, `reissue`, `drop-old`); and the istiod
//! restart that makes a cluster read its new `cacerts` (`restart`). Every change
//! goes through the apply pipeline: persona, RBAC preflight, server dry run, a diff
//! in which keys are never shown, confirmation, all-or-nothing write, history.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::front::{announce_interrupted, cacerts_changed, conclude, confirm, err, persona, pipeline, restart_hint, show};
use super::output::{Format, table};
use super::{CliError, GlobalArgs, fleet};
use crate::apply::{Desired, Intent, ObjRef, secret, target};
use crate::inventory::trust::{self, TrustStatus, pem_blocks};
use crate::registry::Cluster;
use crate::render::trust::{INTERMEDIATE_DAYS, Root, issue_checked};

#[derive(Args, Debug)]
pub struct TrustArgs {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Each cluster's root of trust and CA; which clusters share a root; expiry.
    Status(StatusArgs),
    /// One root for the fleet: an intermediate CA per cluster under it, as Istio's `cacerts`.
    Plan(PlanArgs),
    /// Move to a new root without breaking traffic, one recorded step at a time.
    Rotate(RotateArgs),
    /// Restart istiod (`rollout restart`) so it reads its `cacerts`.
    Restart(RestartArgs),
}

/// What every trust change takes: where, as whom, and how it is confirmed.
#[derive(Args, Debug, Clone)]
pub struct ChangeArgs {
    /// Clusters to change (default: every registered cluster).
    #[arg(long, value_delimiter = ',')]
    pub clusters: Vec<String>,
    #[arg(long)]
    pub as_persona: Option<String>,
    /// Stop after the server dry run and the diff.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply without asking.
    #[arg(short, long)]
    pub yes: bool,
    /// With --yes: restart istiod afterwards without asking.
    #[arg(long)]
    pub restart_istiod: bool,
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("root_source").required(true).args(["generate_root", "root"])))]
pub struct PlanArgs {
    /// Generate a new root: its key is written to KEYFILE (mode 0600, never
    /// overwritten) and its certificate beside it (`.crt`).
    #[arg(long, value_name = "KEYFILE")]
    pub generate_root: Option<PathBuf>,
    /// The root certificate (PEM) to issue under.
    #[arg(long, value_name = "CERT", requires = "root_key")]
    pub root: Option<PathBuf>,
    /// The root's private key (PKCS#8 PEM).
    #[arg(long, value_name = "KEYFILE", requires = "root")]
    pub root_key: Option<PathBuf>,
    /// Lifetime of each intermediate, never past the root's.
    #[arg(long, default_value_t = INTERMEDIATE_DAYS, value_name = "DAYS")]
    pub days: u32,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(subcommand)]
    pub step: RotateStep,
}

#[derive(Subcommand, Debug)]
pub enum RotateStep {
    /// Step 1: every cluster trusts the old and the new root (a root bundle).
    TrustBoth(RotateRootArgs),
    /// Step 2: one cluster's intermediate re-issued under the new root.
    Reissue(ReissueArgs),
    /// Step 3: the old root dropped; refused until every cluster is on the new root.
    DropOld(RotateRootArgs),
}

#[derive(Args, Debug)]
pub struct RotateRootArgs {
    /// The new root certificate (PEM).
    #[arg(long, value_name = "CERT")]
    pub root: PathBuf,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Args, Debug)]
pub struct ReissueArgs {
    /// The new root certificate (PEM).
    #[arg(long, value_name = "CERT")]
    pub root: PathBuf,
    /// The new root's private key (PKCS#8 PEM).
    #[arg(long, value_name = "KEYFILE")]
    pub root_key: PathBuf,
    #[arg(long, default_value_t = INTERMEDIATE_DAYS, value_name = "DAYS")]
    pub days: u32,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How long each read may take on a slow cluster.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

fn days(c: &Option<trust::CertFacts>) -> String {
    c.as_ref().map_or("-".into(), |c| {
        let warn = if c.days_left < trust::EXPIRY_WARNING_DAYS { "⚠ " } else { "" };
        format!("{warn}{}d", c.days_left)
    })
}

pub fn render_table(statuses: &[TrustStatus]) -> String {
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                s.cluster.clone(),
                s.trust_domain.clone().unwrap_or_else(|| "-".into()),
                s.root.as_ref().map_or("-".into(), |r| {
                    let fp: String = r.fingerprint.chars().take(19).collect();
                    if s.roots_distributed > 1 { format!("{fp} +{}", s.roots_distributed - 1) } else { fp }
                }),
                s.root.as_ref().map_or("-".into(), |r| r.subject.clone()),
                days(&s.root),
                s.ca.clone(),
                s.intermediate.as_ref().map_or("-".into(), |i| i.subject.clone()),
                days(&s.intermediate),
                match s.chains_to_root {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
                if s.shares_root_with.is_empty() { "-".into() } else { s.shares_root_with.join(",") },
                s.rotation.clone().unwrap_or_else(|| "-".into()),
                s.warnings.join("; "),
            ]
        })
        .collect();
    table(
        &[
            "CLUSTER",
            "TRUST-DOMAIN",
            "ROOT",
            "ROOT-SUBJECT",
            "ROOT-EXPIRES",
            "CA",
            "INTERMEDIATE",
            "INT-EXPIRES",
            "CHAINS",
            "SHARES-ROOT-WITH",
            "ROTATION",
            "WARNINGS",
        ],
        &rows,
    )
}

pub async fn run(global: &GlobalArgs, args: TrustArgs) -> Result<(), CliError> {
    match args.command {
        TrustCommand::Status(a) => status(global, a).await,
        TrustCommand::Plan(a) => plan(global, a).await,
        TrustCommand::Rotate(a) => match a.step {
            RotateStep::TrustBoth(a) => trust_both(global, a).await,
            RotateStep::Reissue(a) => reissue(global, a).await,
            RotateStep::DropOld(a) => drop_old(global, a).await,
        },
        TrustCommand::Restart(a) => restart(global, a).await,
    }
}

async fn status(global: &GlobalArgs, args: StatusArgs) -> Result<(), CliError> {
    // Three reads a cluster, all clusters at once; no inventory (pods) is needed.
    let (clusters, _) = fleet::registry(global).await?;
    let statuses = trust::read_fleet(&clusters, Duration::from_secs(args.timeout)).await;
    let roots: std::collections::BTreeSet<&str> = statuses.iter().filter_map(|s| s.root.as_ref().map(|r| r.fingerprint.as_str())).collect();
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"clusters": statuses, "roots": roots.len()}))
                .map_err(|e| CliError::failed(e.to_string()))?
        ),
        Format::Table => {
            print!("{}", render_table(&statuses));
            let unread: Vec<&str> = statuses.iter().filter(|s| s.unread.is_some()).map(|s| s.cluster.as_str()).collect();
            match (roots.len(), unread.is_empty()) {
                (0, _) => println!("no root seen"),
                (1, true) => println!("one root: every cluster trusts the same root"),
                (1, false) => println!("one root among the clusters read; {} not read: unknown", unread.join(", ")),
                (n, _) => println!("{n} roots: cross-cluster mTLS fails between clusters of different roots (ROOT_MISMATCH)"),
            }
        }
    }
    // A cluster whose root could not be read is unknown, not agreeing.
    let unread: Vec<&str> = statuses.iter().filter(|s| s.unread.is_some()).map(|s| s.cluster.as_str()).collect();
    if !unread.is_empty() {
        return Err(CliError::failed(format!("the root of {} could not be read", unread.join(", "))));
    }
    Ok(())
}

/// A file the operator named, read whole; a missing or unreadable one is bad input.
fn read_file(path: &Path, what: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::bad_input(format!("{}: reading the {what}: {e}", path.display())))
}

/// A root certificate file: its first certificate, checked to be a CA.
fn read_root_cert(path: &Path) -> Result<String, CliError> {
    let text = read_file(path, "root certificate")?;
    let first = pem_blocks(&text).into_iter().find(|b| b.starts_with("-----BEGIN CERTIFICATE"));
    let pem = first.ok_or_else(|| CliError::bad_input(format!("{}: no PEM certificate in it", path.display())))?;
    let facts = trust::cert_facts(&pem, chrono::Utc::now())
        .ok_or_else(|| CliError::bad_input(format!("{}: not an X.509 certificate", path.display())))?;
    if facts.days_left < 0 {
        return Err(CliError::bad_input(format!("{}: the root expired {}", path.display(), facts.not_after)));
    }
    Ok(pem)
}

fn fingerprint(pem: &str) -> String {
    crate::inventory::facts::pem_fingerprint(pem).unwrap_or_default()
}

fn short(fp: &str) -> String {
    fp.chars().take(19).collect()
}

/// One cluster's CA as it is live: the `cacerts` Secret (in memory only) and its trust domain.
struct LiveCa {
    cluster: String,
    trust_domain: String,
    secret: Option<Value>,
}

impl LiveCa {
    fn entry(&self, key: &str) -> Option<String> {
        use base64::Engine;
        let b64 = self.secret.as_ref()?.pointer(&format!("/data/{key}"))?.as_str()?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The roots this cluster's `cacerts` says to trust.
    fn roots(&self) -> Vec<String> {
        self.entry("root-cert.pem").map(|r| pem_blocks(&r)).unwrap_or_default()
    }

    fn trusts(&self, root_pem: &str) -> bool {
        let fp = fingerprint(root_pem);
        self.roots().iter().any(|r| fingerprint(r) == fp)
    }

    /// Its intermediate was issued by `root_pem` (the signature verifies).
    fn issued_by(&self, root_pem: &str) -> bool {
        self.entry("ca-cert.pem").and_then(|c| trust::chains_to(&c, root_pem)).unwrap_or(false)
    }

    /// The same `cacerts`, trusting `roots` instead: the intermediate and its key stay.
    fn with_roots(&self, roots: &[String]) -> Option<Value> {
        use base64::Engine;
        let mut data = self.secret.as_ref()?.get("data")?.as_object()?.clone();
        data.insert("root-cert.pem".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(roots.concat())));
        Some(crate::render::trust::cacerts_with_data(data))
    }
}

fn cacerts_ref(cluster: &str) -> ObjRef {
    ObjRef { cluster: cluster.into(), kind: "Secret".into(), namespace: "istio-system".into(), name: "cacerts".into() }
}

/// The clusters a change names (default: every registered one), each known.
fn chosen<'a>(clusters: &'a [Cluster], names: &[String]) -> Result<Vec<&'a Cluster>, CliError> {
    if names.is_empty() {
        return Ok(clusters.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            clusters
                .iter()
                .find(|c| &c.name == n)
                .ok_or_else(|| CliError::bad_input(format!("--clusters: {n} is not a registered cluster")))
        })
        .collect()
}

/// Every named cluster's `cacerts` and trust domain, read live (a cluster that
/// cannot be read stops the change: its CA is unknown).
async fn read_live(cs: &[&Cluster], timeout: Duration) -> Result<Vec<LiveCa>, CliError> {
    let now = chrono::Utc::now();
    let reads = cs.iter().map(|c| async move {
        let client = c.client.clone().map_err(|e| CliError::failed(format!("{}: {e} (nothing was written)", c.name)))?;
        let status = trust::read(&c.name, &client, now, timeout).await;
        let secret = match tokio::time::timeout(timeout, target::get(c, &cacerts_ref(&c.name))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(CliError::failed(format!("{}: reading istio-system/cacerts: {e} (nothing was written)", c.name))),
            Err(_) => return Err(CliError::failed(format!("{}: no answer within {} s (nothing was written)", c.name, timeout.as_secs()))),
        };
        let trust_domain = status.trust_domain.unwrap_or_else(|| "cluster.local".into());
        Ok(LiveCa { cluster: c.name.clone(), trust_domain, secret })
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// Replacing a cluster's `cacerts`: a kept copy of what is live (for rollback) and of
/// what is new (for a rollback of that rollback), then the Secret itself.
fn replacing(live: &LiveCa, new: Value) -> Vec<(ObjRef, Desired)> {
    let mut out = Vec::new();
    for copy in [live.secret.as_ref().and_then(secret::kept_copy), secret::kept_copy(&new)].into_iter().flatten() {
        out.push((ObjRef::of(&live.cluster, &copy), Desired::Apply(copy)));
    }
    out.push((cacerts_ref(&live.cluster), Desired::Apply(new)));
    out
}

/// Refuse a trust change up front, before any key is made or written: a read-only
/// cluster (unless only a dry run), or a persona without the trust right.
fn refuse_early(clusters: &[&Cluster], args: &ChangeArgs, persona: &crate::policy::Persona, what: &str) -> Result<(), CliError> {
    if !args.dry_run
        && let Some(c) = clusters.iter().find(|c| c.options.read_only)
    {
        return Err(CliError::failed(format!("read-only: refusing to change the root of trust of {} ({what})", c.name)));
    }
    if !persona.trust {
        return Err(CliError::failed(format!(
            "persona {} refuses {what}: may not change the root of trust (`trust: true` in policy.yaml) (nothing was written)",
            persona.name
        )));
    }
    Ok(())
}

/// A trust change through the pipeline: dry run and diff (keys never shown), confirm,
/// write all or nothing, record. `on_yes` runs once the operator said yes and the
/// lock is held, before anything is written (a generated root's key is saved there:
/// never on a dry run or a no). Returns the clusters whose `cacerts` changed.
async fn run_change(
    clusters: &[Cluster],
    persona: crate::policy::Persona,
    args: &ChangeArgs,
    intent: Intent,
    desired: Vec<(ObjRef, Desired)>,
    on_yes: impl FnOnce() -> Result<(), CliError>,
) -> Result<Vec<String>, CliError> {
    // meshdeck takes the `cacerts` fields whoever wrote them: the diff shows what changes.
    let pipeline = pipeline(clusters, persona, true, args.timeout)?;
    announce_interrupted(pipeline.history());
    let what = intent.what.clone();
    let prepared = pipeline.change(intent, desired).await.map_err(err)?;
    show(&prepared);
    if args.dry_run {
        eprintln!("(server dry run: nothing was written)");
        return Ok(Vec::new());
    }
    if prepared.changes.is_noop() {
        eprintln!("nothing to change");
        return Ok(Vec::new());
    }
    let question = format!("{what}: apply to {}?", prepared.changes.clusters().join(", "));
    let yes = confirm(clusters, &prepared, args.yes, &question, "not applied")?;
    let changed = cacerts_changed(&prepared);
    let mut refusal = None;
    let saved = |r: &mut Option<CliError>| {
        on_yes().map_err(|e| {
            let message = e.message.clone();
            *r = Some(e);
            message
        })
    };
    let written = match pipeline.write(prepared, yes, || saved(&mut refusal)).await {
        Ok(w) => w,
        Err(e) => return Err(refusal.unwrap_or_else(|| err(e))),
    };
    conclude(&written)?;
    Ok(changed)
}

/// istiod reads `cacerts` when it starts: say so, and restart it when asked.
async fn offer_restart(global: &GlobalArgs, args: &ChangeArgs, changed: Vec<String>) -> Result<(), CliError> {
    if changed.is_empty() {
        return Ok(());
    }
    restart_hint(&changed);
    let interactive = !args.yes && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if !(interactive || args.restart_istiod) {
        return Ok(());
    }
    let restart_args = ChangeArgs { clusters: changed, dry_run: false, restart_istiod: false, ..args.clone() };
    restart(global, RestartArgs { change: restart_args }).await
}

/// Where a generated root's certificate goes: beside its key, `.key` → `.crt`.
fn cert_path_for(key: &Path) -> PathBuf {
    if key.extension().is_some_and(|e| e == "key") { key.with_extension("crt") } else { PathBuf::from(format!("{}.crt", key.display())) }
}

/// Write a new file only (never over one), readable by the user only when `private`.
fn write_new(path: &Path, text: &str, private: bool) -> Result<(), CliError> {
    use std::io::Write;
    let opened = if private {
        crate::config::private_file(path, crate::config::Open::New)
    } else {
        // A certificate is public: readable by all, as openssl writes one.
        std::fs::OpenOptions::new().write(true).create_new(true).open(path)
    };
    let mut f = opened.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CliError::bad_input(format!("{}: already exists; refusing to overwrite it", path.display())),
        _ => CliError::bad_input(format!("{}: {e}", path.display())),
    })?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| CliError::failed(format!("{}: {e}", path.display())))
}

async fn plan(global: &GlobalArgs, args: PlanArgs) -> Result<(), CliError> {
    // Bad input first, before any cluster is asked or any file written.
    let given = match (&args.root, &args.root_key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_root_cert(cert)?;
            let key_pem = read_file(key, "root key")?;
            Some(Root::from_pem(&cert_pem, &key_pem).map_err(|e| CliError::bad_input(format!("{}: {e}", key.display())))?)
        }
        _ => None,
    };
    if let Some(key) = &args.generate_root {
        for p in [key.clone(), cert_path_for(key)] {
            if p.exists() {
                return Err(CliError::bad_input(format!("{}: already exists; refusing to overwrite it", p.display())));
            }
        }
    }
    let (clusters, _) = fleet::registry(global).await?;
    let targets = chosen(&clusters, &args.change.clusters)?;
    let persona = persona(&clusters, args.change.as_persona.as_deref())?;
    refuse_early(&targets, &args.change, &persona, "trust plan")?;
    let live = read_live(&targets, Duration::from_secs(args.change.timeout)).await?;
    let root = match (given, &args.generate_root) {
        (Some(root), _) => root,
        (None, Some(_)) => Root::generate("meshdeck root CA", chrono::Utc::now()).map_err(CliError::failed)?,
        (None, None) => return Err(CliError::bad_input("--generate-root KEYFILE or --root CERT --root-key KEYFILE")),
    };
    // A generated root is written once the change is known to be allowed (see `run_change`).
    let save_root = || match &args.generate_root {
        Some(key_path) => {
            write_new(key_path, &root.key_pem(), true)?;
            let cert_path = cert_path_for(key_path);
            write_new(&cert_path, &root.cert_pem, false)?;
            let fp = short(&fingerprint(&root.cert_pem));
            eprintln!("new root {fp}: key in {} (0600), certificate in {}", key_path.display(), cert_path.display());
            Ok(())
        }
        None => Ok(()),
    };
    let mut desired = Vec::new();
    for l in &live {
        // A plan converges: a cluster already on this root (and trusting only it) keeps its
        // intermediate and key. Renewing one is `trust rotate reissue --clusters C`.
        if l.issued_by(&root.cert_pem) && l.roots().iter().map(|r| fingerprint(r)).eq([fingerprint(&root.cert_pem)]) {
            eprintln!(
                "{}: already on this root (renew its intermediate: meshdeck trust rotate reissue --clusters {})",
                l.cluster, l.cluster
            );
            continue;
        }
        let ca = issue_checked(&root, &l.cluster, &l.trust_domain, &root.cert_pem, args.days).map_err(CliError::failed)?;
        desired.extend(replacing(l, ca.cacerts(&root.cert_pem, &root.cert_pem)));
    }
    let description =
        format!("trust plan: root {} ({}) for {}", short(&fingerprint(&root.cert_pem)), subject(&root.cert_pem), names(&live));
    let changed = run_change(&clusters, persona, &args.change, Intent::trust("trust-plan", description), desired, save_root).await?;
    offer_restart(global, &args.change, changed).await
}

fn subject(pem: &str) -> String {
    trust::cert_facts(pem, chrono::Utc::now()).map(|c| c.subject).unwrap_or_default()
}

fn names(live: &[LiveCa]) -> String {
    live.iter().map(|l| l.cluster.as_str()).collect::<Vec<_>>().join(",")
}

/// Clusters without a plugged-in CA cannot rotate: there is no `cacerts` to change.
fn require_plugged_in(live: &[LiveCa]) -> Result<(), CliError> {
    let missing: Vec<&str> = live.iter().filter(|l| l.secret.is_none()).map(|l| l.cluster.as_str()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{} on istiod's self-signed CA (no cacerts): `meshdeck trust plan` gives them one root first (nothing was written)",
            missing.join(", ")
        )))
    }
}

/// A rotation step's start: the fleet, the persona (with `refuse_early`), and the live CA
/// of the clusters named (none: every one), each on a plugged-in CA.
async fn rotation_start(
    global: &GlobalArgs,
    change: &ChangeArgs,
    names: &[String],
    what: &str,
) -> Result<(Vec<Cluster>, crate::policy::Persona, Vec<LiveCa>), CliError> {
    let (clusters, _) = fleet::registry(global).await?;
    let targets = chosen(&clusters, names)?;
    let persona = persona(&clusters, change.as_persona.as_deref())?;
    refuse_early(&targets, change, &persona, what)?;
    let live = read_live(&targets, Duration::from_secs(change.timeout)).await?;
    require_plugged_in(&live)?;
    Ok((clusters, persona, live))
}

async fn trust_both(global: &GlobalArgs, args: RotateRootArgs) -> Result<(), CliError> {
    let new_root = read_root_cert(&args.root)?;
    let (clusters, persona, live) = rotation_start(global, &args.change, &args.change.clusters, "trust rotate trust-both").await?;
    let mut desired = Vec::new();
    for l in &live {
        let mut roots = l.roots();
        if !l.trusts(&new_root) {
            roots.push(new_root.clone());
        }
        desired.extend(replacing(l, l.with_roots(&roots).unwrap_or_default()));
    }
    let description = format!("trust rotate step 1 of 3: {} trust the new root {} too", names(&live), short(&fingerprint(&new_root)));
    let changed = run_change(&clusters, persona, &args.change, Intent::trust("trust-rotate-1", description), desired, || Ok(())).await?;
    offer_restart(global, &args.change, changed).await
}

async fn reissue(global: &GlobalArgs, args: ReissueArgs) -> Result<(), CliError> {
    let cert_pem = read_root_cert(&args.root)?;
    let key_pem = read_file(&args.root_key, "root key")?;
    let root = Root::from_pem(&cert_pem, &key_pem).map_err(|e| CliError::bad_input(format!("{}: {e}", args.root_key.display())))?;
    // Every cluster is read: which are re-issued, and whether all trust the new root.
    let (clusters, persona, live) = rotation_start(global, &args.change, &[], "trust rotate reissue").await?;
    // Every cluster must trust the new root before any workload holds a certificate under it.
    let untrusting: Vec<&str> = live.iter().filter(|l| !l.trusts(&root.cert_pem)).map(|l| l.cluster.as_str()).collect();
    if !untrusting.is_empty() {
        return Err(CliError::failed(format!(
            "{} do not trust the new root yet: `meshdeck trust rotate trust-both` first (nothing was written)",
            untrusting.join(", ")
        )));
    }
    // One cluster at a time: the one named, else the first not yet on the new root.
    let target = match args.change.clusters.as_slice() {
        [] => live.iter().find(|l| !l.issued_by(&root.cert_pem)).ok_or_else(|| {
            CliError::failed("every cluster's intermediate is under the new root already: next is `meshdeck trust rotate drop-old`")
        })?,
        [one] => live
            .iter()
            .find(|l| &l.cluster == one)
            .ok_or_else(|| CliError::bad_input(format!("--clusters: {one} is not a registered cluster")))?,
        more => return Err(CliError::bad_input(format!("--clusters: one cluster at a time (named {})", more.join(", ")))),
    };
    let bundle = target.roots().concat();
    let ca = issue_checked(&root, &target.cluster, &target.trust_domain, &bundle, args.days).map_err(CliError::failed)?;
    let desired = replacing(target, ca.cacerts(&root.cert_pem, &bundle));
    let left = live.iter().filter(|l| l.cluster != target.cluster && !l.issued_by(&root.cert_pem)).count();
    let description = format!(
        "trust rotate step 2 of 3: {} re-issued under {} ({left} clusters left)",
        target.cluster,
        short(&fingerprint(&root.cert_pem))
    );
    let change = ChangeArgs { clusters: vec![target.cluster.clone()], ..args.change.clone() };
    let changed = run_change(&clusters, persona, &change, Intent::trust("trust-rotate-2", description), desired, || Ok(())).await?;
    offer_restart(global, &change, changed).await
}

async fn drop_old(global: &GlobalArgs, args: RotateRootArgs) -> Result<(), CliError> {
    let new_root = read_root_cert(&args.root)?;
    if !args.change.clusters.is_empty() {
        return Err(CliError::bad_input("--clusters: drop-old is the whole fleet's step (every cluster stops trusting the old root)"));
    }
    let (clusters, persona, live) = rotation_start(global, &args.change, &[], "trust rotate drop-old").await?;
    // Dropping the old root while an intermediate is still under it breaks that cluster's mTLS.
    let behind: Vec<&str> = live.iter().filter(|l| !l.issued_by(&new_root)).map(|l| l.cluster.as_str()).collect();
    if !behind.is_empty() {
        return Err(CliError::failed(format!(
            "refusing to drop the old root: {} still on an intermediate of another root (`meshdeck trust rotate reissue --clusters {}` first; nothing was written)",
            behind.join(", "),
            behind[0]
        )));
    }
    let desired: Vec<(ObjRef, Desired)> =
        live.iter().flat_map(|l| replacing(l, l.with_roots(std::slice::from_ref(&new_root)).unwrap_or_default())).collect();
    let description = format!("trust rotate step 3 of 3: {} trust only {}", names(&live), short(&fingerprint(&new_root)));
    let changed = run_change(&clusters, persona, &args.change, Intent::trust("trust-rotate-3", description), desired, || Ok(())).await?;
    offer_restart(global, &args.change, changed).await
}

/// `kubectl rollout restart deployment/istiod -n istio-system`, through the pipeline.
async fn restart(global: &GlobalArgs, args: RestartArgs) -> Result<(), CliError> {
    let (clusters, _) = fleet::registry(global).await?;
    let targets = chosen(&clusters, &args.change.clusters)?;
    let persona = persona(&clusters, args.change.as_persona.as_deref())?;
    refuse_early(&targets, &args.change, &persona, "trust restart")?;
    // To the nanosecond: two restarts within a second (kubectl's precision) are two restarts.
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let desired = targets
        .iter()
        .map(|c| {
            let d = serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "istiod", "namespace": "istio-system"},
                "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}},
            });
            (ObjRef::of(&c.name, &d), Desired::Apply(d))
        })
        .collect();
    let names: Vec<&str> = targets.iter().map(|c| c.name.as_str()).collect();
    let description = format!("trust restart: istiod in {}", names.join(","));
    let change = ChangeArgs { restart_istiod: false, ..args.change.clone() };
    run_change(&clusters, persona, &change, Intent::trust("trust-restart", description), desired, || Ok(())).await?;
    Ok(())
}
