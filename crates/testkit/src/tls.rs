//! A throwaway certificate for local HTTPS test servers (kubectl sends exec-plugin tokens only
//! over TLS).

use std::sync::Arc;

use anyhow::Result;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate for `127.0.0.1` and `localhost`: its PEM is the CA clients trust.
pub struct SelfSigned {
    pub ca_pem: String,
    pub server: Arc<ServerConfig>,
}

pub fn self_signed() -> Result<SelfSigned> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    Ok(SelfSigned {
        ca_pem: certified.cert.pem(),
        server: Arc::new(server),
    })
}
