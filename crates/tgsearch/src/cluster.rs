//! Access to the Kubernetes API: EKS with an in-process token, or any cluster via kubeconfig.
//!
//! - `EKS_CLUSTER_NAME` set: the endpoint and CA come from `EKS_CLUSTER_ENDPOINT` +
//!   `EKS_CLUSTER_CA` (base64 PEM, as `DescribeCluster` returns it) or from `DescribeCluster`;
//!   every request carries a bearer token from a [`TokenSource`], re-signed before it expires.
//!   The server is verified against that CA, never skipped.
//! - otherwise: `KUBECONFIG` (or in-cluster config), as kubectl would, e.g. kind or the local
//!   stand-in.
//!
//! Either way one `kube::Client` is built per process.

use std::sync::Arc;
use std::task::{Context, Poll};

use aws_config::SdkConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use http::header::{AUTHORIZATION, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tower::{BoxError, Layer, Service};

use crate::env::{ConfigError, Env};

/// Default Kubernetes namespace of the tenants' backends.
pub const DEFAULT_KUBE_NAMESPACE: &str = "tgsearch";
use crate::eks::{SourceError, TokenSource};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("EKS DescribeCluster `{cluster}` failed: {message}")]
    Describe { cluster: String, message: String },
    #[error("EKS cluster `{0}` has no endpoint or certificate authority yet (is it still being created?)")]
    NotReady(String),
    #[error("the cluster CA ({origin}) is not base64-encoded PEM certificates")]
    BadCa { origin: &'static str },
    #[error(transparent)]
    Token(#[from] SourceError),
    #[error("cannot configure the Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot find a kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::InferConfigError),
    #[error("cannot read the kubeconfig: {0}")]
    KubeconfigFile(#[source] kube::config::KubeconfigError),
}

/// How to reach the cluster, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTarget {
    Eks {
        name: String,
        /// Both or neither: together they spare the DescribeCluster call at cold start.
        endpoint_and_ca: Option<(String, String)>,
    },
    Kubeconfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    pub target: ClusterTarget,
    pub namespace: String,
}

impl KubeConfig {
    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let namespace = env
            .optional("KUBE_NAMESPACE")
            .unwrap_or_else(|| DEFAULT_KUBE_NAMESPACE.to_owned());
        let target = match env.optional("EKS_CLUSTER_NAME") {
            None => ClusterTarget::Kubeconfig,
            Some(name) => {
                let endpoint = env.optional("EKS_CLUSTER_ENDPOINT");
                let ca = env.optional("EKS_CLUSTER_CA");
                let endpoint_and_ca = match (endpoint, ca) {
                    (Some(e), Some(c)) => {
                        crate::env::parse_url("EKS_CLUSTER_ENDPOINT", &e, &["https"])?;
                        Some((e, c))
                    }
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(ConfigError::Invalid {
                            name: "EKS_CLUSTER_CA",
                            reason: "must be set together with EKS_CLUSTER_ENDPOINT".into(),
                        });
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::Invalid {
                            name: "EKS_CLUSTER_ENDPOINT",
                            reason: "must be set together with EKS_CLUSTER_CA".into(),
                        });
                    }
                };
                ClusterTarget::Eks {
                    name,
                    endpoint_and_ca,
                }
            }
        };
        Ok(Self { target, namespace })
    }
}

/// Decodes `certificateAuthority.data`: base64 of one or more PEM certificates.
pub fn decode_ca(b64_pem: &str, origin: &'static str) -> Result<Vec<Vec<u8>>, ClusterError> {
    let pem = STANDARD
        .decode(b64_pem.trim())
        .map_err(|_| ClusterError::BadCa { origin })?;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|_| ClusterError::BadCa { origin })?;
    if certs.is_empty() {
        return Err(ClusterError::BadCa { origin });
    }
    Ok(certs)
}

/// Builds the process' one Kubernetes client.
pub async fn connect(config: &KubeConfig, aws: &SdkConfig) -> Result<kube::Client, ClusterError> {
    match &config.target {
        ClusterTarget::Kubeconfig => kubeconfig_client(None, &config.namespace).await,
        ClusterTarget::Eks {
            name,
            endpoint_and_ca,
        } => {
            let (endpoint, ca, origin) = match endpoint_and_ca {
                Some((e, c)) => (e.clone(), c.clone(), "EKS_CLUSTER_CA"),
                None => {
                    let (e, c) = describe_cluster(aws, name).await?;
                    (e, c, "DescribeCluster")
                }
            };
            let source = Arc::new(TokenSource::from_sdk_config(name, None, aws)?);
            eks_client(&endpoint, decode_ca(&ca, origin)?, &config.namespace, source)
        }
    }
}

/// A client from a kubeconfig file (`None`: `KUBECONFIG`, `~/.kube/config`, or in-cluster).
pub async fn kubeconfig_client(
    path: Option<&std::path::Path>,
    namespace: &str,
) -> Result<kube::Client, ClusterError> {
    let mut kube_config = match path {
        None => kube::Config::infer().await?,
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(ClusterError::KubeconfigFile)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(ClusterError::KubeconfigFile)?
        }
    };
    kube_config.default_namespace = namespace.to_owned();
    with_timeouts(&mut kube_config);
    Ok(kube::Client::try_from(kube_config)?)
}

async fn describe_cluster(aws: &SdkConfig, name: &str) -> Result<(String, String), ClusterError> {
    let out = aws_sdk_eks::Client::new(aws)
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(|e| ClusterError::Describe {
            cluster: name.to_owned(),
            message: aws_sdk_eks::error::DisplayErrorContext(&e).to_string(),
        })?;
    let cluster = out
        .cluster()
        .ok_or_else(|| ClusterError::NotReady(name.to_owned()))?;
    match (
        cluster.endpoint(),
        cluster.certificate_authority().and_then(|c| c.data()),
    ) {
        (Some(e), Some(c)) => Ok((e.to_owned(), c.to_owned())),
        _ => Err(ClusterError::NotReady(name.to_owned())),
    }
}

/// A client for an EKS-style API server: TLS verified against `ca`, tokens from `source`.
pub fn eks_client(
    endpoint: &str,
    ca: Vec<Vec<u8>>,
    namespace: &str,
    source: Arc<TokenSource>,
) -> Result<kube::Client, ClusterError> {
    let uri: http::Uri = endpoint.parse().map_err(|_| {
        ClusterError::Config(ConfigError::Invalid {
            name: "EKS_CLUSTER_ENDPOINT",
            reason: format!("`{endpoint}` is not a URI"),
        })
    })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(ca);
    config.default_namespace = namespace.to_owned();
    config.accept_invalid_certs = false;
    with_timeouts(&mut config);
    // kube's own stack (TLS against the CA, connect/read/write timeouts, tracing) with the EKS
    // bearer token added to every request; the buffer makes the stack cloneable for it.
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::buffer::BufferLayer::new(256))
        .with_layer(&BearerLayer(source))
        .build();
    Ok(client)
}

/// Every Kubernetes request has a deadline of its own, on both paths (EKS and kubeconfig): a
/// black-holed API server fails fast instead of hanging until the Lambda is killed. Retries are
/// the caller's (within its budget), not the client's.
pub fn with_timeouts(config: &mut kube::Config) {
    config.connect_timeout = Some(std::time::Duration::from_secs(2));
    config.read_timeout = Some(std::time::Duration::from_secs(10));
    config.write_timeout = Some(std::time::Duration::from_secs(10));
    config.default_retry = false;
}

/// Adds `Authorization: Bearer <EKS token>` to every request, from a cached, self-renewing
/// token source.
#[derive(Clone)]
pub struct BearerLayer(pub Arc<TokenSource>);

impl<S> Layer<S> for BearerLayer {
    type Service = Bearer<S>;
    fn layer(&self, inner: S) -> Bearer<S> {
        Bearer {
            inner,
            source: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Bearer<S> {
    inner: S,
    source: Arc<TokenSource>,
}

impl<S, B> Service<http::Request<B>> for Bearer<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The ready inner service goes into the future; a fresh clone waits for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        Box::pin(async move {
            let token = source.token().await?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.token))?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
            inner.call(request).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_lookup(move |n| map.get(n).cloned())
    }

    #[test]
    fn without_an_eks_cluster_the_kubeconfig_is_used() {
        let c = KubeConfig::from(&env(&[])).unwrap();
        assert_eq!(c.target, ClusterTarget::Kubeconfig);
        assert_eq!(c.namespace, "tgsearch");
    }

    #[test]
    fn endpoint_and_ca_go_together() {
        let err = KubeConfig::from(&env(&[
            ("EKS_CLUSTER_NAME", "c"),
            ("EKS_CLUSTER_ENDPOINT", "https://x"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("EKS_CLUSTER_CA"), "{err}");
        let err = KubeConfig::from(&env(&[
            ("EKS_CLUSTER_NAME", "c"),
            ("EKS_CLUSTER_ENDPOINT", "http://x"),
            ("EKS_CLUSTER_CA", "Zm9v"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("EKS_CLUSTER_ENDPOINT"), "{err}");
    }

    #[test]
    fn a_ca_that_is_not_base64_pem_is_named() {
        for bad in ["not base64!", "Zm9vYmFy"] {
            let err = decode_ca(bad, "EKS_CLUSTER_CA").unwrap_err();
            assert!(err.to_string().contains("EKS_CLUSTER_CA"), "{err}");
        }
    }
}
