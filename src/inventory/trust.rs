//! The root of trust per cluster (`meshdeck trust status`): the root certificate
//! istiod distributes (`istio-ca-root-cert`), whether istiod signs with a plugged-in
//! CA (`cacerts` in istio-system) or its own self-signed one, the intermediate's
//! subject and expiry, and which clusters share a root. Only certificates are kept:
//! of `cacerts`, `ca-cert.pem` is parsed and everything else (the key) is dropped
//! unread.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde::Serialize;

/// Certificates expiring sooner than this are warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    /// RFC 3339.
    pub not_after: String,
    pub days_left: i64,
    /// `sha256:<hex>` of the DER bytes.
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustStatus {
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<CertFacts>,
    /// `plugged-in` (a `cacerts` Secret), `self-signed`, or `unknown: why`.
    pub ca: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<CertFacts>,
    /// Whether the intermediate's signature verifies with the root's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chains_to_root: Option<bool>,
    /// Other clusters whose root is the same certificate.
    pub shares_root_with: Vec<String>,
    /// Roots istiod distributes: more than one while a rotation runs (a root bundle).
    pub roots_distributed: usize,
    /// Where a rotation stands in this cluster (`meshdeck trust rotate`), while one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
    pub warnings: Vec<String>,
    /// Why the root could not be read, when it could not: unknown, not absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

/// Every PEM block of a text (a root bundle holds several), each as its own text.
pub fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(c) = current.as_mut() {
            c.push_str(line.trim_end());
            c.push('\n');
        }
        if line.starts_with("-----END ") {
            out.extend(current.take());
        }
    }
    out
}

impl TrustStatus {
    /// A cluster of which nothing is known yet: `ca` says why.
    pub fn unknown(cluster: &str, ca: String) -> TrustStatus {
        TrustStatus {
            cluster: cluster.to_string(),
            trust_domain: None,
            root: None,
            ca,
            intermediate: None,
            chains_to_root: None,
            shares_root_with: vec![],
            roots_distributed: 0,
            rotation: None,
            warnings: vec![],
            unread: None,
        }
    }
}

/// The first certificate of a PEM text.
fn first_der(pem: &str) -> Option<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(p.contents)
}

pub fn cert_facts(pem: &str, now: DateTime<Utc>) -> Option<CertFacts> {
    let der = first_der(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = DateTime::<Utc>::from_timestamp(cert.validity().not_after.timestamp(), 0)?;
    Some(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        days_left: (not_after - now).num_days(),
        fingerprint: super::facts::pem_fingerprint(pem)?,
    })
}

/// Does `child`'s signature verify with `parent`'s public key?
pub fn chains_to(child_pem: &str, parent_pem: &str) -> Option<bool> {
    let (child_der, parent_der) = (first_der(child_pem)?, first_der(parent_pem)?);
    let (_, child) = x509_parser::parse_x509_certificate(&child_der).ok()?;
    let (_, parent) = x509_parser::parse_x509_certificate(&parent_der).ok()?;
    Some(child.verify_signature(Some(parent.public_key())).is_ok())
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Read one cluster's trust domain (the default revision's mesh config), root and
/// CA: three reads, each within `timeout`.
pub async fn read(name: &str, client: &kube::Client, now: DateTime<Utc>, timeout: std::time::Duration) -> TrustStatus {
    let mut status = TrustStatus::unknown(name, "unknown".into());
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "istio-system");
    let secs = timeout.as_secs();
    if let Ok(Ok(Some(cm))) = tokio::time::timeout(timeout, maps.get_opt("istio")).await {
        status.trust_domain = cm.data.as_ref().and_then(|d| d.get("mesh")).and_then(|m| super::facts::trust_domain(m));
    }
    let root_pem = match tokio::time::timeout(timeout, maps.get_opt("istio-ca-root-cert")).await {
        Ok(Ok(Some(cm))) => cm.data.and_then(|d| d.get("root-cert.pem").cloned()),
        Ok(Ok(None)) => {
            status.warnings.push("no istio-ca-root-cert in istio-system: istiod has not distributed a root".into());
            None
        }
        Ok(Err(e)) => {
            let why = format!("reading istio-ca-root-cert: {}", crate::registry::ClusterError::from_kube(&e).message());
            status.warnings.push(why.clone());
            status.unread = Some(why);
            None
        }
        Err(_) => {
            let why = format!("reading istio-ca-root-cert: no answer within {secs} s");
            status.warnings.push(why.clone());
            status.unread = Some(why);
            None
        }
    };
    status.root = root_pem.as_deref().and_then(|p| cert_facts(p, now));
    status.roots_distributed = root_pem.as_deref().map_or(0, |p| pem_blocks(p).len());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "istio-system");
    match tokio::time::timeout(timeout, secrets.get_opt("cacerts")).await {
        Ok(Ok(Some(secret))) => {
            status.ca = "plugged-in".into();
            // Only the CA certificate is read; the key and the rest are dropped with the Secret.
            let cert = secret.data.as_ref().and_then(|d| d.get("ca-cert.pem")).map(|b| String::from_utf8_lossy(&b.0).into_owned());
            status.intermediate = cert.as_deref().and_then(|p| cert_facts(p, now));
            // During a rotation the root is a bundle: the intermediate chains to one of them.
            status.chains_to_root = match (&cert, &root_pem) {
                (Some(c), Some(r)) => {
                    let verdicts: Vec<Option<bool>> = pem_blocks(r).iter().map(|r| chains_to(c, r)).collect();
                    if verdicts.contains(&Some(true)) {
                        Some(true)
                    } else if verdicts.contains(&Some(false)) {
                        Some(false)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            // A rotation appends the new root to the bundle: an intermediate under a later
            // root has been re-issued (step 2), one under the first only trusts both (step 1).
            if let (Some(c), Some(r)) = (&cert, &root_pem)
                && status.roots_distributed > 1
            {
                let reissued = pem_blocks(r).iter().skip(1).any(|r| chains_to(c, r) == Some(true));
                status.rotation = Some(if reissued { "2/3 re-issued under the new root" } else { "1/3 trusts both roots" }.to_string());
            }
            if status.chains_to_root == Some(false) {
                status.warnings.push("the plugged-in CA does not chain to the root istiod distributes".into());
            }
        }
        Ok(Ok(None)) => status.ca = "self-signed".into(),
        Ok(Err(e)) if status_code(&e) == Some(403) => status.ca = "unknown: 403 Forbidden reading secrets in istio-system".into(),
        Ok(Err(e)) => status.ca = format!("unknown: {}", crate::registry::ClusterError::from_kube(&e).message()),
        Err(_) => status.ca = format!("unknown: no answer within {secs} s"),
    }
    for (what, c) in [("root", &status.root), ("intermediate", &status.intermediate)] {
        if let Some(c) = c
            && c.days_left < EXPIRY_WARNING_DAYS
        {
            status.warnings.push(format!("the {what} expires in {} days ({})", c.days_left, c.not_after));
        }
    }
    status
}

/// Every cluster's trust status, all at once (three reads a cluster, each within
/// `timeout`), with which clusters share a root. A cluster without a client is unknown.
pub async fn read_fleet(clusters: &[crate::registry::Cluster], timeout: std::time::Duration) -> Vec<TrustStatus> {
    let now = Utc::now();
    let reads = clusters.iter().map(|c| async move {
        match &c.client {
            Ok(client) => read(&c.name, client, now, timeout).await,
            Err(e) => TrustStatus { unread: Some(e.clone()), ..TrustStatus::unknown(&c.name, format!("unknown: {e}")) },
        }
    });
    let mut statuses = futures::future::join_all(reads).await;
    link_roots(&mut statuses);
    statuses
}

/// Fill in which clusters share each root.
pub fn link_roots(statuses: &mut [TrustStatus]) {
    let roots: Vec<(String, Option<String>)> =
        statuses.iter().map(|s| (s.cluster.clone(), s.root.as_ref().map(|r| r.fingerprint.clone()))).collect();
    for s in statuses.iter_mut() {
        let Some(mine) = s.root.as_ref().map(|r| r.fingerprint.clone()) else { continue };
        s.shares_root_with =
            roots.iter().filter(|(c, fp)| *c != s.cluster && fp.as_deref() == Some(mine.as_str())).map(|(c, _)| c.clone()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intermediate_chains_to_its_root_and_not_to_another() {
        let fleet = crate::render::trust::Root::generate("fleet root", Utc::now()).expect("ca");
        let other = crate::render::trust::Root::generate("other root", Utc::now()).expect("ca");
        let ca = fleet.issue("cluster1", Utc::now(), 365).expect("intermediate");
        assert_eq!(chains_to(&ca.cert_pem, &fleet.cert_pem), Some(true));
        assert_eq!(chains_to(&ca.cert_pem, &other.cert_pem), Some(false));
        let facts = cert_facts(&ca.cert_pem, Utc::now()).expect("facts");
        assert!(facts.subject.contains("Intermediate CA cluster1"), "{}", facts.subject);
        assert!(facts.issuer.contains("fleet root"), "{}", facts.issuer);
        assert!(facts.days_left > EXPIRY_WARNING_DAYS);
        assert_eq!(cert_facts("not a certificate", Utc::now()), None);
    }
}
