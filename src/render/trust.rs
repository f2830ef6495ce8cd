//! Certificates for one root of trust (`meshdeck trust`): a root (generated, or
//! the operator's), an intermediate CA per cluster under it, and the `cacerts`
//! Secret Istio's "plug in CA certificates" setup reads. The one render that is
//! not deterministic: a key is random by nature. Every intermediate is checked
//! before it leaves this module by a real path validator (webpki): a workload
//! certificate it signs must verify against the roots the cluster will trust.
//!
//! Keys live in memory here and go to a cluster (or the file the operator named
//! for a generated root) only; `Debug` never shows them.

use chrono::{DateTime, Datelike, Utc};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use serde_json::{Value, json};

/// How long an intermediate lives unless told (Istio's samples use one year too).
pub const INTERMEDIATE_DAYS: u32 = 365;

/// How long a generated root lives.
pub const ROOT_YEARS: i32 = 10;

/// The label every Secret meshdeck writes for trust carries.
pub const TRUST_LABEL: &str = "meshdeck.io/trust";

/// A root CA: its certificate and, to issue intermediates, its key.
pub struct Root {
    pub cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").field("cert_pem", &self.cert_pem).field("key", &"(not shown)").finish()
    }
}

/// An intermediate CA as issued: what goes into `cacerts`.
pub struct IssuedCa {
    pub cluster: String,
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for IssuedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCa").field("cluster", &self.cluster).field("cert_pem", &self.cert_pem).field("key", &"(not shown)").finish()
    }
}

/// Midnight UTC of a date, as rcgen takes it (its time type is not ours to name).
macro_rules! ymd {
    ($d:expr) => {{
        let d: chrono::NaiveDate = $d;
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    }};
}

impl Root {
    /// A new root: `CN=<name>`, CA with room for one intermediate, ten years from today.
    pub fn generate(name: &str, now: DateTime<Utc>) -> Result<Root, String> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        p.distinguished_name.push(DnType::OrganizationName, "meshdeck");
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let today = now.date_naive();
        p.not_before = ymd!(today);
        p.not_after = ymd!(today.with_year(today.year() + ROOT_YEARS).unwrap_or(today));
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = p.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(Root { cert_pem: cert.pem(), key })
    }

    /// The operator's root: a CA certificate and the key it was made with.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Root, String> {
        let blocks = crate::inventory::trust::pem_blocks(cert_pem);
        let first = blocks.first().ok_or("no PEM certificate")?;
        let der = pem_der(first).ok_or("not a PEM certificate")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        if !cert.is_ca() {
            return Err("not a CA certificate (basic constraints CA:FALSE or missing)".into());
        }
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| "not a PKCS#8 private key PEM (convert with `openssl pkcs8 -topk8 -nocrypt -in KEY`)".to_string())?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err("the key is not the certificate's key".into());
        }
        Ok(Root { cert_pem: first.clone(), key })
    }

    /// The key as PEM (PKCS#8), for the file the operator named: nowhere else.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn not_after(&self) -> Option<chrono::NaiveDate> {
        let der = pem_der(&self.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        DateTime::<Utc>::from_timestamp(cert.validity().not_after.timestamp(), 0).map(|d| d.date_naive())
    }

    /// An intermediate CA for `cluster`: `CN=Intermediate CA <cluster>, L=<cluster>`,
    /// pathlen 0, certSign and crlSign, `days` from today but never past the root.
    pub fn issue(&self, cluster: &str, now: DateTime<Utc>, days: u32) -> Result<IssuedCa, String> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(|e| format!("reading the root: {e}"))?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        p.distinguished_name.push(DnType::OrganizationName, "meshdeck");
        p.distinguished_name.push(DnType::LocalityName, cluster);
        p.distinguished_name.push(DnType::CommonName, format!("Intermediate CA {cluster}"));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        let today = now.date_naive();
        let wanted = today + chrono::Days::new(u64::from(days));
        let end = self.not_after().map_or(wanted, |root_end| wanted.min(root_end));
        if end <= today {
            return Err(format!("the root expires {end}: no intermediate can be issued under it"));
        }
        p.not_before = ymd!(today);
        p.not_after = ymd!(end);
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = p.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        Ok(IssuedCa { cluster: cluster.into(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok().map(|(_, p)| p.contents)
}

impl IssuedCa {
    /// An intermediate as a cluster holds it (`cacerts`' `ca-cert.pem` and `ca-key.pem`).
    pub fn from_pem(cluster: &str, cert_pem: &str, key_pem: &str) -> IssuedCa {
        IssuedCa { cluster: cluster.into(), cert_pem: cert_pem.into(), key_pem: key_pem.into() }
    }

    /// A workload certificate this CA signs, as istiod would (SPIFFE URI, client and
    /// server auth), to check the path. Returned as DER; its key is dropped.
    pub fn sign_workload(&self, trust_domain: &str) -> Result<Vec<u8>, String> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| e.to_string())?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &key).map_err(|e| e.to_string())?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        let uri = format!("spiffe://{trust_domain}/ns/default/sa/meshdeck-check");
        p.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(|e: rcgen::Error| e.to_string())?)];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.use_authority_key_identifier_extension = true;
        let today = chrono::Utc::now().date_naive();
        p.not_before = ymd!(today - chrono::Days::new(1));
        p.not_after = ymd!(today + chrono::Days::new(1));
        let leaf_key = KeyPair::generate().map_err(|e| e.to_string())?;
        Ok(p.signed_by(&leaf_key, &issuer).map_err(|e| e.to_string())?.der().to_vec())
    }

    /// The `cacerts` Secret: this CA, its key, the roots the cluster trusts (one, or
    /// two while a rotation runs) and the chain to the root that issued it.
    pub fn cacerts(&self, issuing_root_pem: &str, trusted_roots_pem: &str) -> Value {
        cacerts_secret(&[
            ("ca-cert.pem", &self.cert_pem),
            ("ca-key.pem", &self.key_pem),
            ("root-cert.pem", trusted_roots_pem),
            ("cert-chain.pem", &format!("{}{}", self.cert_pem, issuing_root_pem)),
        ])
    }
}

/// A `cacerts` Secret in istio-system with these entries (text, base64-encoded here).
fn cacerts_secret(entries: &[(&str, &str)]) -> Value {
    use base64::Engine;
    let data: serde_json::Map<String, Value> =
        entries.iter().map(|(k, v)| (k.to_string(), json!(base64::engine::general_purpose::STANDARD.encode(v.as_bytes())))).collect();
    cacerts_with_data(data)
}

/// A `cacerts` Secret in istio-system, as meshdeck applies it, holding `data` (base64 values).
pub fn cacerts_with_data(data: serde_json::Map<String, Value>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "cacerts", "namespace": "istio-system",
                     "labels": {super::MANAGED_BY: "meshdeck", TRUST_LABEL: "cacerts"}},
        "data": data,
    })
}

/// Does a workload certificate (DER) chain through `intermediate_pem` to one of the
/// roots in `roots_pem`, for both client and server auth, now? webpki decides.
pub fn verify_workload(leaf: &[u8], intermediate_pem: &str, roots_pem: &str) -> Result<(), String> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    let roots: Vec<Vec<u8>> = crate::inventory::trust::pem_blocks(roots_pem).iter().filter_map(|p| pem_der(p)).collect();
    if roots.is_empty() {
        return Err("no root certificate".into());
    }
    let root_ders: Vec<CertificateDer<'_>> = roots.iter().map(|d| CertificateDer::from(d.as_slice())).collect();
    let anchors = root_ders
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a root is not a usable trust anchor: {e}"))?;
    let inter = pem_der(intermediate_pem).ok_or("the intermediate is not PEM")?;
    let intermediates = [CertificateDer::from(inter)];
    let leaf = CertificateDer::from(leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("the workload certificate: {e}"))?;
    let now = UnixTime::now();
    for usage in [webpki::KeyUsage::server_auth(), webpki::KeyUsage::client_auth()] {
        ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &intermediates, now, usage, None, None)
            .map_err(|e| format!("the path does not verify: {e}"))?;
    }
    Ok(())
}

/// Issue a cluster's intermediate and check it: a workload certificate it signs
/// must verify against `trusted_roots_pem`.
pub fn issue_checked(root: &Root, cluster: &str, trust_domain: &str, trusted_roots_pem: &str, days: u32) -> Result<IssuedCa, String> {
    let ca = root.issue(cluster, Utc::now(), days)?;
    let leaf = ca.sign_workload(trust_domain)?;
    verify_workload(&leaf, &ca.cert_pem, trusted_roots_pem).map_err(|e| format!("{cluster}: the new intermediate fails its check: {e}"))?;
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_certificate_verifies_against_its_root_and_not_another() {
        let now = Utc::now();
        let root = Root::generate("test root", now).expect("root");
        let other = Root::generate("other root", now).expect("root");
        let ca = root.issue("cluster1", now, INTERMEDIATE_DAYS).expect("issued");
        let leaf = ca.sign_workload("cluster.local").expect("leaf");
        assert_eq!(verify_workload(&leaf, &ca.cert_pem, &root.cert_pem), Ok(()));
        let refused = verify_workload(&leaf, &ca.cert_pem, &other.cert_pem).expect_err("another root");
        assert!(refused.contains("does not verify"), "{refused}");
        // A bundle of both roots (rotation step 1) trusts it.
        assert_eq!(verify_workload(&leaf, &ca.cert_pem, &format!("{}{}", other.cert_pem, root.cert_pem)), Ok(()));
        // The intermediate: pathlen 0, the cluster in its subject, a year (not past the root).
        let facts = crate::inventory::trust::cert_facts(&ca.cert_pem, now).expect("facts");
        assert!(facts.subject.contains("CN=Intermediate CA cluster1") && facts.subject.contains("L=cluster1"), "{}", facts.subject);
        assert!((364..=365).contains(&facts.days_left), "{}", facts.days_left);
        let der = pem_der(&ca.cert_pem).expect("der");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let bc = cert.basic_constraints().expect("ok").expect("present").value;
        assert!(bc.ca && bc.path_len_constraint == Some(0), "{bc:?}");
        let ku = cert.key_usage().expect("ok").expect("present").value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature(), "{ku:?}");
        // Debug never shows a key.
        let shown = format!("{root:?}{ca:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn an_intermediate_never_outlives_its_root_and_a_foreign_key_is_refused() {
        let now = Utc::now();
        let root = Root::generate("test root", now).expect("root");
        let long = root.issue("cluster1", now, 365 * 20).expect("issued");
        let ends = |pem: &str| crate::inventory::trust::cert_facts(pem, now).expect("facts").not_after;
        assert!(ends(&long.cert_pem) <= ends(&root.cert_pem), "{} after {}", ends(&long.cert_pem), ends(&root.cert_pem));
        let other = Root::generate("other", now).expect("root");
        let again = Root::from_pem(&root.cert_pem, &root.key_pem()).expect("its own key");
        assert_eq!(again.cert_pem, root.cert_pem);
        let refused = Root::from_pem(&root.cert_pem, &other.key_pem()).expect_err("foreign key");
        assert!(refused.contains("not the certificate's key"), "{refused}");
        let leafish = Root::from_pem("garbage", &root.key_pem()).expect_err("no pem");
        assert!(leafish.contains("no PEM"), "{leafish}");
    }
}
