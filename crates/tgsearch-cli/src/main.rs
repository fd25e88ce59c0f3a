//! `tgsearch`: the operator CLI. Every command reads the same environment as the Lambdas
//! (see the README), so `eval "$(cargo xtask stack env)"` points it at the local stack.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tgsearch::TenantId;
use tgsearch::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use tgsearch::adapters::secrets_manager::SecretsManager;
use tgsearch::app::{AppContext, http_client, load_aws_config};
use tgsearch::bootstrap::{BootstrapRequest, bootstrap_rabbitmq};
use tgsearch::config::{Env, ProvisionerConfig};
use tgsearch::credentials::Password;
use tgsearch::deadline::Deadline;
use tgsearch::status::tenant_status;

mod output;

#[derive(Parser)]
#[command(
    name = "tgsearch",
    version,
    about = "Operate TGSearch tenants: provision, inspect, tear down"
)]
struct Cli {
    /// Print machine-readable JSON instead of the human summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision one tenant, as the post-confirmation Lambda does (idempotent).
    Provision {
        /// The tenant's Cognito `sub` (a lowercase UUID).
        #[arg(long)]
        sub: TenantId,
    },
    /// Remove everything one tenant owns (idempotent).
    Teardown {
        #[arg(long)]
        sub: TenantId,
    },
    /// Show what exists of one tenant in every system (never its password).
    Status {
        #[arg(long)]
        sub: TenantId,
    },
    /// Print an ExecCredential with an EKS token, like `aws eks get-token`: use it as the
    /// kubeconfig exec credential plugin.
    EksToken {
        /// The EKS cluster the token is for.
        #[arg(long)]
        cluster_name: String,
        /// Region of the cluster (default: the AWS SDK's, e.g. AWS_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Sign with credentials of this role (sts:AssumeRole) instead of the caller's.
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// Replace RabbitMQ's default administrator with a generated one stored in Secrets Manager
    /// under RABBITMQ_ADMIN_SECRET_ID (idempotent).
    BootstrapRabbitmq {
        /// Name of the administrator to create.
        #[arg(long, default_value = "tgsearch-admin")]
        admin_user: String,
        /// The existing administrator used to create it (removed afterwards).
        #[arg(long, default_value = "guest")]
        bootstrap_user: String,
        /// Its password; defaults to RabbitMQ's default `guest`.
        #[arg(
            long,
            env = "RABBITMQ_BOOTSTRAP_PASSWORD",
            default_value = "guest",
            hide_env_values = true
        )]
        bootstrap_password: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn tracing_init() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Provision { sub } => {
            let app = AppContext::from_env().await?;
            let deadline = Deadline::new(app.config.provision_budget, None);
            let started = std::time::Instant::now();
            let done = app.provisioner.provision(&sub, &deadline).await?;
            output::provisioned(cli.json, &done, &app, started.elapsed());
            Ok(ExitCode::SUCCESS)
        }
        Command::Teardown { sub } => {
            let app = AppContext::from_env().await?;
            let deadline = Deadline::new(app.config.provision_budget, None);
            let done = app.provisioner.teardown(&sub, &deadline).await?;
            output::torn_down(cli.json, &done);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { sub } => {
            let app = AppContext::from_env().await?;
            let status = tenant_status(&app.provisioner.store, &app.provisioner.broker, &sub).await?;
            output::status(cli.json, &status);
            // Scripts can test completeness through the exit code.
            Ok(if status.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::EksToken {
            cluster_name,
            region,
            role_arn,
        } => {
            eks_token(&cluster_name, region, role_arn.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BootstrapRabbitmq {
            admin_user,
            bootstrap_user,
            bootstrap_password,
        } => {
            let config = ProvisionerConfig::from(&Env::process())?;
            let aws = load_aws_config().await;
            let secrets = SecretsManager::from_aws(&aws, config.user_secret_prefix.clone());
            let bootstrap = ManagementClient::new(
                http_client()?,
                config.rabbitmq_management_url.clone(),
                AdminCredentials {
                    username: bootstrap_user,
                    password: Password::new(bootstrap_password),
                },
            );
            let done = bootstrap_rabbitmq(BootstrapRequest {
                bootstrap: &bootstrap,
                secrets: &secrets,
                admin_secret_id: &config.rabbitmq_admin_secret_id,
                admin_user: &admin_user,
            })
            .await
            .context("bootstrap-rabbitmq")?;
            output::bootstrapped(cli.json, &done);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tgsearch eks-token`: stdout gets the ExecCredential and nothing else, so a failure leaves it
/// empty for kubectl; warnings and errors go to stderr.
async fn eks_token(cluster: &str, region: Option<String>, role_arn: Option<&str>) -> Result<()> {
    use tgsearch::eks::{TokenSource, exec_credential};
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = &region {
        // An explicit region also spares the region provider chain (and its IMDS lookup).
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    let aws = loader.load().await;
    let source = match role_arn {
        Some(arn) => TokenSource::assuming_role(cluster, region, arn, &aws).await?,
        None => TokenSource::from_sdk_config(cluster, region, &aws)?,
    };
    let token = source.sign().await?;
    let (api_version, warning) =
        exec_credential::api_version(std::env::var("KUBERNETES_EXEC_INFO").ok().as_deref());
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    println!("{}", exec_credential::exec_credential(&token, api_version));
    Ok(())
}
