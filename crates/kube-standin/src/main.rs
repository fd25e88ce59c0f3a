//! `kube-standin`: a local Kubernetes API stand-in for the TGSearch stack. HTTPS with a CA it
//! generates, EKS-token authentication mapped to users and groups, RBAC from YAML files,
//! discovery, Namespaces, Secrets, PersistentVolumeClaims, Deployments and StorageClasses
//! with the API server's server-side apply, validation, field validation, dry runs and
//! errors. See README.md for what it serves and what it simplifies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

mod auth;
mod defaults;
mod fieldpath;
mod handlers;
mod kinds;
mod lifecycle;
mod managed;
mod options;
mod patch;
mod rbac;
mod request;
mod schema;
mod seed;
mod selector;
mod server;
mod status;
mod store;
mod strict;
mod tables;
mod tls;
mod typed;
mod validation;

#[derive(Parser)]
#[command(
    name = "kube-standin",
    about = "A local Kubernetes API that authenticates EKS tokens and authorizes with RBAC"
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
    /// The default identity's credential pair (the stack's, which the Lambdas and the CLI use).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    /// The Kubernetes user of the default identity, shaped like an EKS access entry's.
    #[arg(
        long,
        default_value = "arn:aws:sts::123456789012:assumed-role/tgsearch-provisioner/tgsearch-provisioner"
    )]
    default_username: String,
    /// The groups of the default identity.
    #[arg(long, value_delimiter = ',', default_value = "tgsearch-provisioner")]
    default_groups: Vec<String>,
    /// More identities, `ACCESS_KEY_ID:SECRET_ACCESS_KEY:USERNAME|GROUP,GROUP` (repeatable;
    /// `;`-separated in the environment variable).
    #[arg(
        long = "identity",
        env = "KUBE_STANDIN_IDENTITIES",
        value_delimiter = ';',
        hide_env_values = true
    )]
    identities: Vec<String>,
    /// YAML files of Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (repeatable).
    #[arg(long = "rbac")]
    rbac: Vec<PathBuf>,
    /// Namespaces that exist from the start.
    #[arg(long, value_delimiter = ',', default_value = "default,kube-system,tgsearch")]
    namespaces: Vec<String>,
    /// The StorageClass given to claims that name none (EKS 1.30+ has no default).
    #[arg(long)]
    default_storage_class: Option<String>,
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
    let mut identities = vec![auth::Identity::new(
        &args.access_key_id,
        &args.secret_access_key,
        &args.default_username,
        &args.default_groups,
    )];
    for spec in args.identities.iter().filter(|s| !s.trim().is_empty()) {
        identities.push(auth::Identity::parse(spec.trim()).context("--identity")?);
    }
    let policy = rbac::Policy::load(&args.rbac)?;
    if args.rbac.is_empty() {
        tracing::warn!("no --rbac files: only system:masters identities are allowed anything");
    }
    let tls = tls::generate()?;
    std::fs::create_dir_all(&args.dir)?;
    std::fs::write(args.dir.join("ca.pem"), &tls.ca_pem).context("writing ca.pem")?;
    let store = store::Store::open(args.state_file.clone())?;
    seed::seed(&store, &args.namespaces);
    for identity in &identities {
        tracing::info!(user = %identity.user.name, groups = ?identity.user.groups, "identity");
    }
    let app = Arc::new(server::App {
        store,
        auth: auth::Authenticator {
            cluster: args.cluster_name.clone(),
            identities,
        },
        policy,
        default_storage_class: args.default_storage_class,
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
            let service = hyper::service::service_fn(move |req| server::handle(app.clone(), req));
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
