//! TLS for the agent: TLS 1.3 only, a fresh self-signed certificate per agent, and a client
//! that takes any certificate, because the runner knows the agent by the address ECS gave
//! the task, not by a name a CA could vouch for. What TLS buys here is that no one on the
//! path reads the script or the job's variables; who may run stages is decided by the job's
//! secret, which travels only inside the encrypted session.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

use super::AgentError;

/// The name the agent's certificate carries and the client asks for.
pub(super) const SERVER_NAME: &str = "gitlab-ecs-agent";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The agent's side, with a certificate made now.
pub(super) fn server_config() -> Result<Arc<ServerConfig>, AgentError> {
    let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .map_err(|e| AgentError::Certificate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AgentError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| AgentError::Certificate(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The runner's side.
pub(super) fn client_config() -> Result<Arc<ClientConfig>, AgentError> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AgentError::Certificate(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(KnownByAddress(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name to ask for.
pub(super) fn server_name() -> Result<ServerName<'static>, AgentError> {
    ServerName::try_from(SERVER_NAME.to_string())
        .map_err(|e| AgentError::Certificate(e.to_string()))
}

/// Takes the agent's certificate as it comes, still checking that the handshake is signed
/// by the key in it.
#[derive(Debug)]
struct KnownByAddress(Arc<CryptoProvider>);

impl ServerCertVerifier for KnownByAddress {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
