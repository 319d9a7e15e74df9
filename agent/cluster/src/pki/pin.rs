//! Trust on a pinned hash: a joining node learns the cluster CA from the coordinator's TLS
//! handshake and accepts it only if its SHA-256 equals the hash in the join token. The check
//! runs inside the handshake, so on a mismatch not one byte of application data is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::{PkiError, CLUSTER_DNS_NAME};

#[derive(Debug)]
struct PinVerifier {
    expected: String,
    provider: Arc<CryptoProvider>,
    /// The CA certificate found in the chain, or the fingerprint that was presented instead.
    seen: Mutex<Result<CertificateDer<'static>, String>>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = intermediates
            .iter()
            .find(|c| hex::encode(Sha256::digest(c.as_ref())) == self.expected);
        let Some(ca) = found else {
            let actual = intermediates
                .last()
                .map(|c| hex::encode(Sha256::digest(c.as_ref())))
                .unwrap_or_else(|| "none (no CA in the chain)".into());
            if let Ok(mut seen) = self.seen.lock() {
                *seen = Err(actual);
            }
            return Err(rustls::Error::General(
                "CA fingerprint does not match the pin".into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Ok(ca.clone().into_owned());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Handshakes with `addr`, checks the CA against `expected` (hex SHA-256), and returns the CA
/// certificate as PEM. Sends no application data.
pub async fn fetch_pinned_ca(addr: &str, expected: &str) -> Result<String, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinVerifier {
        expected: expected.to_ascii_lowercase(),
        provider: provider.clone(),
        seen: Mutex::new(Err("none".into())),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Cert(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let hs = |detail: String| PkiError::Handshake {
        addr: addr.to_string(),
        detail,
    };
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| hs("timed out".into()))?
        .map_err(|e| hs(e.to_string()))?;
    let name = ServerName::try_from(CLUSTER_DNS_NAME).map_err(|e| hs(e.to_string()))?;
    let result = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await;
    let seen = verifier
        .seen
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|_| Err("unknown".into()));
    match (result, seen) {
        (Ok(Ok(_stream)), Ok(ca)) => Ok(pem_encode(&ca)),
        (_, Err(actual)) if actual != "none" => Err(PkiError::PinMismatch {
            addr: addr.to_string(),
            expected: expected.to_string(),
            actual,
        }),
        (Ok(Err(e)), _) => Err(hs(e.to_string())),
        (Err(_), _) => Err(hs("TLS handshake timed out".into())),
        (Ok(Ok(_)), Err(_)) => Err(hs("no CA certificate was presented".into())),
    }
}

fn pem_encode(der: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.as_ref().to_vec()))
}
