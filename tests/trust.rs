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
