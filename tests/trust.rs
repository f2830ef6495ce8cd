//! `meshdeck trust status` (issue #16), on the sim and on the real test bed: the
//! seeded fleet shares one root through plugged-in intermediates; a cluster moved
//! to another root (its own `cacerts` and `istio-ca-root-cert`, with an
//! intermediate expiring in 9 days) makes two roots, a warning, and shares with
//! nobody; the key in `cacerts` never reaches the output.

mod common;

use common::{MeshdeckCli, TestFleet, text};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

async fn status(cli: &std::sync::Arc<MeshdeckCli>) -> (Value, std::process::Output) {
    let out = cli.run(&["trust", "status", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (serde_json::from_slice(&out.stdout).expect("json"), out)
}

fn cluster<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["clusters"].as_array().expect("clusters").iter().find(|c| c["cluster"] == name).expect("cluster")
}

/// A new root, and an intermediate for `cluster` under it that expires in `days`.
fn other_root(cluster: &str, days: i64) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut root = CertificateParams::new(Vec::<String>::new()).expect("params");
    root.distinguished_name.push(DnType::CommonName, "another root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = CertifiedIssuer::self_signed(root, KeyPair::generate().expect("key")).expect("root");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name.push(DnType::CommonName, format!("Intermediate CA {cluster} (another root)"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Midnight `days + 1` days from today: between `days` and `days + 1` days away.
    use chrono::Datelike;
    let end = chrono::Utc::now().date_naive() + chrono::Days::new(days as u64 + 1);
    ca.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    let key = KeyPair::generate().expect("key");
    let cert = ca.signed_by(&key, &root).expect("intermediate");
    (root.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_status_shows_one_root_then_two_with_expiry_and_never_the_key() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let (v, _) = status(&cli).await;
    assert_eq!(v["roots"], 1, "{v:#}");
    for name in ["cluster1", "cluster2", "cluster3"] {
        let c = cluster(&v, name);
        assert_eq!(c["ca"], "plugged-in", "{c:#}");
        assert_eq!(c["chainsToRoot"], true, "{c:#}");
        assert!(c["intermediate"]["subject"].as_str().expect("subject").contains(&format!("Intermediate CA {name}")), "{c:#}");
        assert_eq!(c["sharesRootWith"].as_array().expect("shares").len(), 2);
        assert_eq!(c["root"]["fingerprint"], cluster(&v, "cluster1")["root"]["fingerprint"]);
    }

    // cluster3 moves to another root, with an intermediate about to expire.
    let (root, cert, key) = other_root("cluster3", 9);
    let client = fleet.client("cluster3").await;
    let apply = PatchParams::apply("meshdeck-test").force();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "istio-system");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-ca-root-cert"}, "data": {"root-cert.pem": root}});
    maps.patch("istio-ca-root-cert", &apply, &Patch::Apply(&cm)).await.expect("root");
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let secrets: Api<Secret> = Api::namespaced(client, "istio-system");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts"},
        "data": {"ca-cert.pem": b64(&cert), "ca-key.pem": b64(&key), "root-cert.pem": b64(&root), "cert-chain.pem": b64(&format!("{cert}{root}"))}});
    secrets.patch("cacerts", &apply, &Patch::Apply(&secret)).await.expect("cacerts");

    let (v, out) = status(&cli).await;
    assert_eq!(v["roots"], 2, "{v:#}");
    let c3 = cluster(&v, "cluster3");
    assert_eq!(c3["sharesRootWith"], json!([]));
    assert_eq!(c3["chainsToRoot"], true, "its intermediate chains to its own new root: {c3:#}");
    assert_eq!(c3["intermediate"]["daysLeft"], 9, "{c3:#}");
    assert!(
        c3["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.starts_with("the intermediate expires in 9 days"))),
        "{c3:#}"
    );
    assert_eq!(cluster(&v, "cluster1")["sharesRootWith"], json!(["cluster2"]));
    let table = cli.run(&["trust", "status"]).await;
    let t = text(&table);
    assert!(t.contains("⚠ 9d") && t.contains("2 roots: cross-cluster mTLS fails"), "{t}");
    // Not a line of the key, in either output.
    let key_lines: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!key_lines.is_empty());
    for output in [text(&out), t] {
        for line in &key_lines {
            assert!(!output.contains(line), "key material in the output");
        }
        assert!(!output.contains(&b64(&key)[..40]), "the key's base64 in the output");
    }

    // An intermediate that does not chain to the root istiod distributes is named.
    let (_, stray, stray_key) = other_root("cluster3", 400);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts"},
        "data": {"ca-cert.pem": b64(&stray), "ca-key.pem": b64(&stray_key), "root-cert.pem": b64(&root), "cert-chain.pem": b64(&stray)}});
    let secrets: Api<Secret> = Api::namespaced(fleet.client("cluster3").await, "istio-system");
    secrets.patch("cacerts", &apply, &Patch::Apply(&secret)).await.expect("cacerts");
    let (v, _) = status(&cli).await;
    let c3 = cluster(&v, "cluster3");
    assert_eq!(c3["chainsToRoot"], false, "{c3:#}");
    assert!(c3["warnings"].to_string().contains("does not chain to the root istiod distributes"), "{c3:#}");

    // The next test starts from the seeded root (the real test bed puts it back).
    drop(fleet);
    let fleet = TestFleet::start().await;
    let (v, _) = status(&MeshdeckCli::new(fleet.kubeconfig_path())).await;
    assert_eq!(v["roots"], 1, "{v:#}");
    assert_eq!(cluster(&v, "cluster3")["chainsToRoot"], true);
}

/// Run `meshdeck` with logging at trace into `state` (the log file is checked for keys).
async fn run_logged(cli: &std::sync::Arc<MeshdeckCli>, state: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = cli.command(args);
    cmd.env("MESHDECK_LOG", "trace").env("MESHDECK_STATE_DIR", state);
    tokio::task::spawn_blocking(move || cmd.output().expect("runs")).await.expect("joined")
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn decode(b: &k8s_openapi::ByteString) -> String {
    String::from_utf8_lossy(&b.0).into_owned()
}

/// Every cluster's `cacerts` data, as the admin sees it.
async fn cacerts(fleet: &TestFleet) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for c in ["cluster1", "cluster2", "cluster3"] {
        let secrets: Api<Secret> = Api::namespaced(fleet.client(c).await, "istio-system");
        let s = secrets.get("cacerts").await.expect("cacerts");
        out.insert(c.to_string(), s.data.unwrap_or_default().iter().map(|(k, v)| (k.clone(), decode(v))).collect());
    }
    out
}

/// Every private key in istio-system's Secrets (cacerts and the copies kept of it),
/// as the lines of its PEM and its base64: none may appear in any output.
async fn keys_in_clusters(fleet: &TestFleet) -> Vec<String> {
    let mut out = Vec::new();
    for c in ["cluster1", "cluster2", "cluster3"] {
        let secrets: Api<Secret> = Api::namespaced(fleet.client(c).await, "istio-system");
        for s in secrets.list(&Default::default()).await.expect("secrets").items {
            if let Some(k) = s.data.as_ref().and_then(|d| d.get("ca-key.pem")) {
                let pem = decode(k);
                out.push(b64(&pem)[..40].to_string());
                out.extend(pem.lines().filter(|l| !l.starts_with("-----")).map(String::from));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The roots `istio-ca-root-cert` holds in istio-system of `cluster`, as fingerprints.
async fn distributed_roots(fleet: &TestFleet, cluster: &str) -> Vec<String> {
    let maps: Api<ConfigMap> = Api::namespaced(fleet.client(cluster).await, "istio-system");
    let Ok(cm) = maps.get("istio-ca-root-cert").await else { return vec![] };
    let pem = cm.data.and_then(|d| d.get("root-cert.pem").cloned()).unwrap_or_default();
    meshdeck::inventory::trust::pem_blocks(&pem).iter().filter_map(|p| meshdeck::inventory::facts::pem_fingerprint(p)).collect()
}

/// Wait until istiod (restarted) distributes exactly `roots` in every cluster.
async fn until_distributed(fleet: &TestFleet, roots: &[String]) {
    common::eventually(60, || async {
        for c in ["cluster1", "cluster2", "cluster3"] {
            if distributed_roots(fleet, c).await != roots {
                return None;
            }
        }
        Some(())
    })
    .await
}

fn fp(pem: &str) -> String {
    meshdeck::inventory::facts::pem_fingerprint(pem).expect("a certificate")
}

fn record_of(cli: &MeshdeckCli, plan: &str) -> String {
    let out = cli.command(&["history", "-o", "json"]).output().expect("history");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> =
        v.as_array().expect("records").iter().filter(|r| r["plans"] == json!([plan])).filter_map(|r| r["id"].as_str()).collect();
    ids.last().expect("a record").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_plan_makes_one_root_and_rollback_restores_every_secret_exactly_never_showing_a_key() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let state = tempfile::tempdir().expect("tmp");
    let files = tempfile::tempdir().expect("tmp");
    // A mixed fleet: cluster3 on another root.
    let (root3, cert3, key3) = other_root("cluster3", 200);
    let client = fleet.client("cluster3").await;
    let apply = PatchParams::apply("meshdeck-test").force();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts"},
        "data": {"ca-cert.pem": b64(&cert3), "ca-key.pem": b64(&key3), "root-cert.pem": b64(&root3), "cert-chain.pem": b64(&format!("{cert3}{root3}"))}});
    Api::<Secret>::namespaced(client.clone(), "istio-system").patch("cacerts", &apply, &Patch::Apply(&secret)).await.expect("cacerts");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-ca-root-cert"}, "data": {"root-cert.pem": root3}});
    Api::<ConfigMap>::namespaced(client, "istio-system").patch("istio-ca-root-cert", &apply, &Patch::Apply(&cm)).await.expect("root");
    let before = cacerts(&fleet).await;
    let (v, _) = status(&cli).await;
    assert_eq!(v["roots"], 2, "{v:#}");
    // The inventory watches the distributed roots: ROOT_MISMATCH now, gone once istiod restarts.
    let mut inv = meshdeck::inventory::Inventory::start(&fleet.registry().await);
    let mismatch = |s: &meshdeck::inventory::FleetSnapshot| s.warnings.iter().any(|w| w.code == "ROOT_MISMATCH");
    common::snapshot_where(&mut inv, 30, "ROOT_MISMATCH on a mixed fleet", mismatch).await;

    let key = files.path().join("root.key");
    let key_arg = key.to_str().expect("utf-8");
    let mut outputs = Vec::new();
    // The dry run writes nothing: no key file, nothing on any cluster.
    let dry = run_logged(&cli, state.path(), &["trust", "plan", "--generate-root", key_arg, "--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert_eq!(cacerts(&fleet).await, before, "a dry run wrote");
    assert!(!key.exists() && !files.path().join("root.crt").exists(), "a dry run wrote the root's files");
    let shown = text(&dry);
    assert!(shown.contains("~ cluster3: Secret/istio-system/cacerts update") && shown.contains("private key ("), "{shown}");
    assert!(shown.contains("CN=Intermediate CA cluster3, O=meshdeck, L=cluster3"), "{shown}");
    outputs.push(shown);
    // Declined (no terminal to ask, no --yes): no key either, nothing written.
    let declined = run_logged(&cli, state.path(), &["trust", "plan", "--generate-root", key_arg]).await;
    assert_eq!(declined.status.code(), Some(1), "{}", text(&declined));
    assert!(!key.exists(), "a declined run wrote the root's key");
    assert_eq!(cacerts(&fleet).await, before, "a declined run wrote");

    let out = run_logged(&cli, state.path(), &["trust", "plan", "--generate-root", key_arg, "--yes", "--restart-istiod"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("istiod reads cacerts only when it starts"), "{}", text(&out));
    outputs.push(text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).expect("key file").permissions().mode() & 0o777, 0o600);
    }
    // Never over an existing key.
    let again = run_logged(&cli, state.path(), &["trust", "plan", "--generate-root", key_arg, "--dry-run"]).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already exists; refusing to overwrite it"), "{}", text(&again));
    let root_key = std::fs::read_to_string(&key).expect("key");
    let root_cert = std::fs::read_to_string(files.path().join("root.crt")).expect("cert");
    let cert_arg = files.path().join("root.crt");
    let cert_arg = cert_arg.to_str().expect("utf-8");
    let plan = ["trust", "plan", "--root", cert_arg, "--root-key", key_arg, "--yes", "--restart-istiod"];
    // istiod restarted: every cluster distributes the one new root.
    until_distributed(&fleet, &[fp(&root_cert)]).await;
    let new_root = fp(&root_cert);
    common::snapshot_where(&mut inv, 30, "one root, live", |s| {
        !mismatch(s) && s.clusters.iter().all(|c| c.mesh.root_cert_fingerprint.as_deref() == Some(new_root.as_str()))
    })
    .await;
    drop(inv);
    let (v, out) = status(&cli).await;
    outputs.push(text(&out));
    assert_eq!(v["roots"], 1, "{v:#}");
    for c in ["cluster1", "cluster2", "cluster3"] {
        let s = cluster(&v, c);
        assert_eq!(s["chainsToRoot"], true, "{s:#}");
        assert_eq!(s["root"]["fingerprint"], fp(&root_cert), "{s:#}");
        assert!(s["intermediate"]["subject"].as_str().expect("subject").contains(&format!("L={c}")), "{s:#}");
        assert!((364..=365).contains(&s["intermediate"]["daysLeft"].as_i64().expect("days")), "{s:#}");
    }
    // webpki: a workload certificate each cluster's new intermediate signs verifies
    // against the root istiod now distributes, and not against cluster3's old root.
    let live = cacerts(&fleet).await;
    for c in ["cluster1", "cluster2", "cluster3"] {
        let ca = meshdeck::render::trust::IssuedCa::from_pem(c, &live[c]["ca-cert.pem"], &live[c]["ca-key.pem"]);
        let leaf = ca.sign_workload(&format!("{c}.local")).expect("a workload certificate");
        let maps: Api<ConfigMap> = Api::namespaced(fleet.client(c).await, "istio-system");
        let distributed = maps.get("istio-ca-root-cert").await.expect("root").data.expect("data")["root-cert.pem"].clone();
        assert_eq!(meshdeck::render::trust::verify_workload(&leaf, &live[c]["ca-cert.pem"], &distributed), Ok(()), "{c}");
        assert!(
            meshdeck::render::trust::verify_workload(&leaf, &live[c]["ca-cert.pem"], &root3).is_err(),
            "{c} verified against another root"
        );
    }
    // The same plan again converges: no cluster is re-issued, nothing is written.
    let same = run_logged(&cli, state.path(), &plan).await;
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(text(&same).contains("cluster3: already on this root") && text(&same).contains("nothing to change"), "{}", text(&same));
    assert_eq!(cacerts(&fleet).await, live, "a second plan with the same root changed a CA");
    outputs.push(text(&same));
    let keys = keys_in_clusters(&fleet).await;

    // Rollback: every cacerts exactly as before, key and all.
    let id = record_of(&cli, "trust-plan");
    let out = run_logged(&cli, state.path(), &["rollback", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    outputs.push(text(&out));
    assert_eq!(cacerts(&fleet).await, before, "rollback did not restore the Secrets exactly");
    let out = run_logged(&cli, state.path(), &["trust", "restart", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    outputs.push(text(&out));
    common::eventually(60, || async { (distributed_roots(&fleet, "cluster3").await == [fp(&root3)]).then_some(()) }).await;
    let out = run_logged(&cli, state.path(), &["history"]).await;
    outputs.push(text(&out));
    let out = run_logged(&cli, state.path(), &["history", "-o", "json"]).await;
    outputs.push(text(&out));

    // No key (the root's, any intermediate's, old or new) in any output or file meshdeck wrote.
    let mut needles: Vec<String> = keys;
    needles.extend(root_key.lines().filter(|l| !l.starts_with("-----")).map(String::from));
    needles.push(b64(&root_key)[..40].to_string());
    needles.extend(key3.lines().filter(|l| !l.starts_with("-----")).map(String::from));
    assert!(needles.len() > 10, "{needles:?}");
    let log = state.path().join("meshdeck.log");
    assert!(std::fs::metadata(&log).expect("a log at trace").len() > 10_000, "the log at trace is too short to prove anything");
    let mut files_written = common::files_under(state.path());
    files_written.extend(common::files_under(cli.data.path()));
    files_written.extend(common::files_under(cli.config.path()));
    for f in &files_written {
        outputs.push(String::from_utf8_lossy(&std::fs::read(f).expect("readable")).into_owned());
    }
    assert!(files_written.iter().any(|f| f.to_string_lossy().contains("history")), "{files_written:?}");
    for (i, o) in outputs.iter().enumerate() {
        for n in &needles {
            assert!(!o.contains(n.as_str()), "key material in output {i} ({} bytes)", o.len());
        }
    }
}

/// A root and its key written as files, as an operator would hold them.
fn root_files(dir: &std::path::Path, name: &str) -> (String, String, String) {
    let root = meshdeck::render::trust::Root::generate(name, chrono::Utc::now()).expect("root");
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, &root.cert_pem).expect("cert");
    std::fs::write(&key, root.key_pem()).expect("key");
    (root.cert_pem.clone(), cert.display().to_string(), key.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_in_three_recorded_steps_refuses_to_drop_the_old_root_early() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let files = tempfile::tempdir().expect("tmp");
    let old_root = distributed_roots(&fleet, "cluster1").await;
    assert_eq!(old_root.len(), 1);
    let (new_pem, new_cert, new_key) = root_files(files.path(), "new-root");
    let new_fp = fp(&new_pem);

    // Out of order: step 3 and step 2 are refused, and nothing is written.
    let before = cacerts(&fleet).await;
    let out = cli.run(&["trust", "rotate", "drop-old", "--root", &new_cert, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to drop the old root: cluster1, cluster2, cluster3 still on an intermediate of another root"),
        "{}",
        text(&out)
    );
    let out = cli.run(&["trust", "rotate", "reissue", "--root", &new_cert, "--root-key", &new_key, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("do not trust the new root yet"), "{}", text(&out));
    assert_eq!(cacerts(&fleet).await, before);

    // Step 1: every cluster trusts both roots; the intermediates stay.
    let out = cli.run(&["trust", "rotate", "trust-both", "--root", &new_cert, "--yes", "--restart-istiod"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let both = [old_root.clone(), vec![new_fp.clone()]].concat();
    until_distributed(&fleet, &both).await;
    let after_one = cacerts(&fleet).await;
    let (v, _) = status(&cli).await;
    for c in ["cluster1", "cluster2", "cluster3"] {
        assert_eq!(cluster(&v, c)["rotation"], "1/3 trusts both roots", "{v:#}");
        assert_eq!(cluster(&v, c)["rootsDistributed"], 2, "{v:#}");
    }
    for c in ["cluster1", "cluster2", "cluster3"] {
        assert_eq!(after_one[c]["ca-key.pem"], before[c]["ca-key.pem"], "{c}: step 1 changed the intermediate");
    }

    // Step 2, one cluster at a time; step 3 is refused while one is left.
    for (i, c) in ["cluster1", "cluster2", "cluster3"].iter().enumerate() {
        if i == 2 {
            let out = cli.run(&["trust", "rotate", "drop-old", "--root", &new_cert, "--yes"]).await;
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(text(&out).contains("cluster3 still on an intermediate of another root"), "{}", text(&out));
        }
        let out = cli.run(&["trust", "rotate", "reissue", "--root", &new_cert, "--root-key", &new_key, "--yes", "--restart-istiod"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let now = cacerts(&fleet).await;
        assert_ne!(now[*c]["ca-key.pem"], after_one[*c]["ca-key.pem"], "{c} not re-issued");
        let (v, _) = status(&cli).await;
        assert_eq!(cluster(&v, c)["rotation"], "2/3 re-issued under the new root", "{v:#}");
        assert_eq!(now[*c]["root-cert.pem"], after_one[*c]["root-cert.pem"], "{c}: still trusts both roots");
        assert!(meshdeck::inventory::trust::chains_to(&now[*c]["ca-cert.pem"], &new_pem) == Some(true));
        for other in ["cluster1", "cluster2", "cluster3"].iter().skip(i + 1) {
            assert_eq!(now[*other], after_one[*other], "{other} changed with {c}");
        }
    }
    let out = cli.run(&["trust", "rotate", "reissue", "--root", &new_cert, "--root-key", &new_key, "--yes"]).await;
    assert!(text(&out).contains("next is `meshdeck trust rotate drop-old`"), "{}", text(&out));

    // Step 3: only the new root.
    let out = cli.run(&["trust", "rotate", "drop-old", "--root", &new_cert, "--yes", "--restart-istiod"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    until_distributed(&fleet, std::slice::from_ref(&new_fp)).await;
    let (v, _) = status(&cli).await;
    assert_eq!(v["roots"], 1, "{v:#}");
    for c in ["cluster1", "cluster2", "cluster3"] {
        assert_eq!(cluster(&v, c)["chainsToRoot"], true, "{v:#}");
    }
    // Each step is its own record, and its own rollback: step 3 undone trusts both again.
    let out = cli.run(&["history", "-o", "json"]).await;
    let records: Value = serde_json::from_slice(&out.stdout).expect("json");
    let plans: Vec<String> =
        records.as_array().expect("records").iter().map(|r| r["plans"][0].as_str().unwrap_or("").to_string()).collect();
    for step in ["trust-rotate-1", "trust-rotate-2", "trust-rotate-3", "trust-restart"] {
        assert!(plans.iter().any(|p| p == step), "{plans:?}");
    }
    assert_eq!(plans.iter().filter(|p| *p == "trust-rotate-2").count(), 3, "{plans:?}");
    let id = record_of(&cli, "trust-rotate-3");
    let out = cli.run(&["rollback", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let undone = cacerts(&fleet).await;
    for c in ["cluster1", "cluster2", "cluster3"] {
        assert_eq!(undone[c]["root-cert.pem"], after_one[c]["root-cert.pem"], "{c}: rollback of step 3");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persona_without_the_trust_right_and_read_only_are_refused_before_any_key_is_made() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let files = tempfile::tempdir().expect("tmp");
    let before = cacerts(&fleet).await;
    std::fs::write(
        cli.config.path().join("policy.yaml"),
        "personas:\n  - name: team\n    match: {contexts: [cluster1]}\n    routeFrom: [{clusters: ['*']}]\n    routeTo: [{clusters: ['*']}]\n    accessPolicies: true\n",
    )
    .expect("policy");
    let key = files.path().join("root.key");
    let key_arg = key.to_str().expect("utf-8");
    let out = cli.run(&["trust", "plan", "--generate-root", key_arg, "--as-persona", "team", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("persona team refuses trust plan: may not change the root of trust"), "{}", text(&out));
    assert!(!key.exists(), "a refused change made a key");
    let out = cli.run(&["trust", "restart", "--as-persona", "team", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A persona with the right may.
    std::fs::write(cli.config.path().join("policy.yaml"), "personas:\n  - name: pki\n    trust: true\n").expect("policy");
    let out = cli.run(&["trust", "plan", "--generate-root", key_arg, "--as-persona", "pki", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::remove_file(cli.config.path().join("policy.yaml")).expect("rm");

    // --read-only refuses every trust change before anything is made.
    let other = files.path().join("other.key");
    let other_arg = other.to_str().expect("utf-8");
    for args in [
        vec!["--read-only", "trust", "plan", "--generate-root", other_arg, "--yes"],
        vec!["--read-only", "trust", "rotate", "trust-both", "--root", "/dev/null", "--yes"],
        vec!["--read-only", "trust", "restart", "--yes"],
    ] {
        let out = cli.run(&args).await;
        assert_ne!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    }
    assert!(!other.exists(), "read-only made a key");
    let out = cli.run(&["--read-only", "trust", "restart", "--yes"]).await;
    assert!(text(&out).contains("read-only: refusing to change the root of trust"), "{}", text(&out));
    // A team whose rights stop short of istio-system's Secrets is refused, before any key.
    let out = cli.run(&["--context", "cluster1-restricted", "trust", "plan", "--generate-root", other_arg, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cluster1: cannot create secrets in namespace istio-system"), "{}", text(&out));
    assert!(!other.exists(), "a refused change made a key");
    // A cluster down: its CA is unknown, so nothing is made or written anywhere.
    fleet.take_down("cluster2").await;
    let out = cli.run(&["trust", "plan", "--generate-root", other_arg, "--yes", "--timeout", "3"]).await;
    fleet.bring_up("cluster2").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cluster2:") && text(&out).contains("(nothing was written)"), "{}", text(&out));
    assert!(!other.exists(), "a refused change made a key");
    // Bad input: exit 2, naming the file.
    let out = cli.run(&["trust", "plan", "--root", "/nonexistent/root.crt", "--root-key", key_arg, "--yes"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/root.crt"), "{}", text(&out));
    assert_eq!(cacerts(&fleet).await, before, "a refused change wrote");
}
