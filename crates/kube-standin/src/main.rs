//! `kube-standin`: a local Kubernetes API stand-in for the TGSearch stack. HTTPS with a CA it
//! generates, EKS-token authentication, discovery, namespaces, Secrets, PersistentVolumeClaims
//! and Deployments, enough for `kubectl get|describe|delete|apply --server-side` and kube-rs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

mod api;
mod auth;
mod status;
mod store;
mod tls;

#[derive(Parser)]
#[command(
    name = "kube-standin",
    about = "A local Kubernetes API that authenticates EKS tokens"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where `ca.pem` is written.
    #[arg(long)]
    dir: PathBuf,
    /// The cluster name tokens must be signed for (`x-k8s-aws-id`).
    #[arg(long, default_value = "tgsearch-local")]
    cluster_name: String,
    /// Credentials the SigV4 signatures are checked against (the stack's).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    /// Namespaces that exist from the start.
    #[arg(long, value_delimiter = ',', default_value = "default,kube-system,tgsearch")]
    namespaces: Vec<String>,
    /// Save the objects to this file after each write, and load them at start.
    #[arg(long)]
    state_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let tls = tls::generate()?;
    std::fs::create_dir_all(&args.dir)?;
    std::fs::write(args.dir.join("ca.pem"), &tls.ca_pem).context("writing ca.pem")?;
    let namespaces: Vec<&str> = args.namespaces.iter().map(String::as_str).collect();
    let app = Arc::new(api::App {
        store: store::Store::new(args.state_file.clone(), &namespaces)?,
        auth: auth::Authenticator {
            cluster: args.cluster_name.clone(),
            access_key: args.access_key_id,
            secret_key: args.secret_access_key,
        },
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server);
    tracing::info!(listen = %args.listen, cluster = %args.cluster_name, "serving");
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| api::handle(app.clone(), req));
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
