//! Creating the cluster CA and issuing node certificates.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use super::{PkiError, CLUSTER_DNS_NAME};

/// The CA: its certificate (shared with every node) and its key (coordinators only).
#[derive(Clone)]
pub struct ClusterCa {
    pub cert_pem: String,
    key_pem: String,
}

/// A node's key and its certificate chain (leaf, then the CA).
#[derive(Clone)]
pub struct NodeCredentials {
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

impl NodeCredentials {
    /// Leaf followed by the CA, as TLS servers present it (so a joiner can pin the CA).
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.ca_pem)
    }
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    pub fn create(cluster_id: &str) -> Result<ClusterCa, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("Cortex cluster CA {cluster_id}"));
        dn.push(DnType::OrganizationName, "Cortex");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time_now();
        params.not_before = now - std::time::Duration::from_secs(3600);
        params.not_after = now + std::time::Duration::from_secs(10 * 365 * 86400);
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn from_pem(cert_pem: String, key_pem: String) -> Result<ClusterCa, PkiError> {
        // Parse both now so a damaged file fails at start-up, not at the first approval.
        KeyPair::from_pem(&key_pem)?;
        Issuer::from_ca_cert_pem(&cert_pem, KeyPair::from_pem(&key_pem)?)?;
        Ok(ClusterCa { cert_pem, key_pem })
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// SHA-256 of the CA certificate (DER), lower-case hex: what join tokens pin.
    pub fn fingerprint(&self) -> Result<String, PkiError> {
        ca_fingerprint(&self.cert_pem)
    }

    /// Issues a certificate for `node_id` with `role` ("coordinator" or "worker") from the
    /// public key in `csr_pem`.
    pub fn sign_node(&self, csr_pem: &str, node_id: u64, role: &str) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Cert(format!("the certificate request is not valid: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, KeyPair::from_pem(&self.key_pem)?)?;
        let params = node_params(node_id, role)?;
        Ok(params.signed_by(&csr.public_key, &issuer)?.pem())
    }

    /// Key + certificate for a node in one step (the bootstrap coordinator signs itself).
    pub fn issue_node(&self, node_id: u64, role: &str) -> Result<NodeCredentials, PkiError> {
        let (key_pem, csr_pem) = new_key_and_csr(node_id)?;
        let cert_pem = self.sign_node(&csr_pem, node_id, role)?;
        Ok(NodeCredentials {
            key_pem,
            cert_pem,
            ca_pem: self.cert_pem.clone(),
        })
    }
}

/// A fresh node key and a CSR for it (what a joining node sends).
pub fn new_key_and_csr(node_id: u64) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let csr = csr_for_key(node_id, &key.serialize_pem())?;
    Ok((key.serialize_pem(), csr))
}

/// A CSR for an existing key.
pub fn csr_for_key(node_id: u64, key_pem: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem)?;
    let params = node_params(node_id, "worker")?;
    Ok(params.serialize_request(&key)?.pem()?)
}

/// The CA decides every field: CN `node-<id>`, OU = role, SAN = the cluster DNS name.
fn node_params(node_id: u64, role: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("node-{node_id}"));
    dn.push(DnType::OrganizationName, "Cortex");
    dn.push(DnType::OrganizationalUnitName, role);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(
        CLUSTER_DNS_NAME
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Cert(e.to_string()))?,
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time_now();
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(365 * 86400);
    Ok(params)
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// SHA-256 (hex) of the first certificate in `pem`.
pub fn ca_fingerprint(pem: &str) -> Result<String, PkiError> {
    let der = first_der(pem)?;
    Ok(hex::encode(Sha256::digest(&der)))
}

fn first_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    let cert = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::Cert("no certificate in PEM".into()))?
        .map_err(|e| PkiError::Cert(format!("bad PEM: {e}")))?;
    Ok(cert.to_vec())
}

/// Who a (CA-verified) node certificate belongs to: node id from the CN `node-<id>` and the
/// role from the OU.
pub fn node_identity_from_cert_der(der: &[u8]) -> Option<(u64, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    let id = cn.strip_prefix("node-")?.parse().ok()?;
    let role = cert
        .subject()
        .iter_organizational_unit()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some((id, role))
}

/// The public key a (verified) certificate request is for. Two requests for the same key differ
/// in their text (an ECDSA signature is randomised), so "the same machine asking again" is
/// decided on this, not on the PEM.
pub fn csr_public_key(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    use rcgen::PublicKeyData;
    CertificateSigningRequestParams::from_pem(csr_pem)
        .map(|csr| csr.public_key.der_bytes().to_vec())
        .map_err(|e| PkiError::Cert(format!("the certificate request is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_requests_for_one_key_differ_in_text_but_name_the_same_key() {
        let (key, first) = new_key_and_csr(7).unwrap();
        let second = csr_for_key(7, &key).unwrap();
        assert_eq!(csr_public_key(&first).unwrap(), csr_public_key(&second).unwrap());
        let (_, other) = new_key_and_csr(7).unwrap();
        assert_ne!(csr_public_key(&first).unwrap(), csr_public_key(&other).unwrap());
        assert!(csr_public_key(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )
        .is_err());
    }

    #[test]
    fn ca_signs_a_node_and_the_node_id_is_readable() {
        let ca = ClusterCa::create("test").unwrap();
        let creds = ca.issue_node(42, "coordinator").unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(creds.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            node_identity_from_cert_der(&der),
            Some((42, "coordinator".to_string()))
        );
        assert_eq!(ca.fingerprint().unwrap().len(), 64);
        assert_ne!(
            ca_fingerprint(&creds.chain_pem()).unwrap(),
            ca.fingerprint().unwrap(),
            "the leaf comes first"
        );
        let reloaded = ClusterCa::from_pem(ca.cert_pem.clone(), ca.key_pem().to_string()).unwrap();
        assert_eq!(reloaded.fingerprint().unwrap(), ca.fingerprint().unwrap());
    }

    #[test]
    fn garbage_csr_is_refused_with_a_message() {
        let ca = ClusterCa::create("test").unwrap();
        let err = ca.sign_node(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            1,
            "worker",
        );
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("certificate request is not valid"));
    }
}
