//! A certificate authority per simulated fleet, one serving certificate for
//! 127.0.0.1, and an intermediate CA per cluster for Istio's `cacerts` (the
//! "plug in CA certificates" setup: every cluster's istiod chains to one root).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

pub struct FleetTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// One cluster's intermediate CA, as Istio's `cacerts` Secret holds it.
#[derive(Clone, Debug)]
pub struct IntermediateCa {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Valid from yesterday for `days` days, as an operator's CA is (the cockpit shows days to expiry).
fn lifetime(params: &mut CertificateParams, days: u64) {
    use chrono::Datelike;
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let today = chrono::Utc::now().date_naive();
    params.not_before = ymd(today - chrono::Days::new(1));
    params.not_after = ymd(today + chrono::Days::new(days));
}

impl FleetTls {
    pub fn generate() -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "meshdeck-sim-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        lifetime(&mut ca_params, 3650);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
        leaf.distinguished_name.push(DnType::CommonName, "meshdeck-sim-apiserver");
        leaf.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));
        lifetime(&mut leaf, 3650);
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &ca)?;
        Ok(Self { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem(), ca })
    }

    /// An intermediate CA for `cluster`, signed by the fleet's root.
    pub fn intermediate(&self, cluster: &str) -> Result<IntermediateCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::OrganizationName, "meshdeck");
        params.distinguished_name.push(DnType::CommonName, format!("Intermediate CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        lifetime(&mut params, 365);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        Ok(IntermediateCa { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}
