//! `tgsearch`: the operator CLI. Every command reads the same environment as the Lambdas
//! (see the README), so `eval "$(cargo xtask stack env)"` points it at the local stack.

use std::process::ExitCode;

use anyhow::{Context, Result};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use clap::{Parser, Subcommand};
use tgsearch::TenantId;
use tgsearch::adapters::cognito::CognitoDirectory;
use tgsearch::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use tgsearch::adapters::secrets_manager::SecretsManager;
use tgsearch::app::{AppContext, http_client, load_aws_config};
use tgsearch::bootstrap::{BootstrapRequest, bootstrap_rabbitmq};
use tgsearch::cells::TenantCells;
use tgsearch::cells::reconcile::reconcile_cells;
use tgsearch::config::{Env, ProvisionerConfig, ReconcileConfig};
use tgsearch::credentials::Password;
use tgsearch::deadline::Deadline;
use tgsearch::ports::UserDirectory;
use tgsearch::reconcile::Options;
use tgsearch::status::tenant_status;

mod cells;
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
    /// Remove everything one tenant owns (idempotent), once its Cognito user (USER_POOL_ID) is
    /// gone or disabled. What is named like the tenant's but not provably ours is left alone.
    Teardown {
        #[arg(long)]
        sub: TenantId,
        /// Remove even while the user exists and is enabled (deletes an active user's data).
        #[arg(long)]
        force: bool,
    },
    /// Show what exists of one tenant in every system (never its password); with --all, the
    /// whole fleet by state from the listings (needs USER_POOL_ID).
    Status {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        sub: Option<TenantId>,
        /// Every tenant, counted by state: ready, provisioning, missing, drift, needs a person,
        /// orphaned, inactive; and foreign resources. Exit code 3 unless all is well.
        #[arg(long)]
        all: bool,
    },
    /// What the tenant-credentials function would answer the tenant's user (`GET /tenant`):
    /// ready with its connection, provisioning, or absent. Same check, no token. The password is
    /// shown only with --show-password (masked in `amqp_uri` otherwise). Exit code 3 when not ready.
    Credentials {
        #[arg(long)]
        sub: TenantId,
        /// Print the password and the full amqp_uri (mind your terminal's scrollback).
        #[arg(long)]
        show_password: bool,
        /// How long the readiness check may take, in milliseconds (the function allows 1000).
        #[arg(long, default_value_t = tgsearch::readiness::READINESS_DEADLINE.as_millis() as u64)]
        deadline_ms: u64,
    },
    /// Give a ready tenant a new password (what `POST /tenant/rotate` does for its user): stored
    /// first, the RabbitMQ user re-created (its open connections close), the Kubernetes Secret
    /// updated, the backend restarted. Safe to repeat. Exit code 3 when the tenant is not ready.
    Rotate {
        #[arg(long)]
        sub: TenantId,
        /// Print the new password and the full amqp_uri.
        #[arg(long)]
        show_password: bool,
    },
    /// Repair drift: provision confirmed users of USER_POOL_ID that lack resources, remove the
    /// resources of users that no longer exist.
    Reconcile {
        /// Show the plan, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Refuse to remove more tenants than this in one run.
        #[arg(long, env = "RECONCILE_MAX_REMOVALS", default_value_t = tgsearch::reconcile::DEFAULT_MAX_REMOVALS)]
        max_removals: usize,
        /// Act on these tenants only (repeatable).
        #[arg(long = "sub")]
        subs: Vec<TenantId>,
    },
    /// The cells: list them with their fill and health, add one, open, drain or close one, set
    /// its capacity, or adopt the deployment's own broker and its tenants as a first cell.
    Cells {
        #[command(subcommand)]
        command: cells::CellsCommand,
    },
    /// Print the Kubernetes objects provisioning would apply for a tenant (Secret with a
    /// placeholder URI, PersistentVolumeClaim, Deployment), as YAML documents, for review and
    /// validation. Reads only BACKEND_IMAGE, KUBE_NAMESPACE and BACKEND_STORAGE_*.
    Render {
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

// One thread is plenty for a CLI, and `eks-token` runs before every kubectl request.
#[tokio::main(flavor = "current_thread")]
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
            let at = app.cells.place(&sub).await?;
            let done = at.provisioner.provision(&sub, &deadline).await?;
            output::provisioned(cli.json, &done, &at, started.elapsed());
            Ok(ExitCode::SUCCESS)
        }
        Command::Teardown { sub, force } => {
            let app = AppContext::from_env().await?;
            let deadline = Deadline::new(app.config.provision_budget, None);
            // The guard needs the user pool; only a forced teardown may go without it.
            match tgsearch::config::user_pool_id(&Env::process()) {
                Ok(pool) => {
                    let directory = CognitoDirectory::new(&app.aws, pool);
                    let user = tokio::time::timeout(deadline.remaining(), directory.user(sub.as_str()))
                        .await
                        .context("the user directory did not answer in time")?
                        .map_err(|e| anyhow::anyhow!(e))?;
                    tgsearch::teardown::guard(sub.as_str(), user.as_ref(), force)?;
                }
                Err(e) if !force => return Err(e.into()),
                Err(_) => eprintln!("warning: USER_POOL_ID is not set; --force skips the user check"),
            }
            let at = app.cells.locate(&sub).await?;
            let done = at.provisioner.teardown(&sub, &deadline).await?;
            if let Some(cell) = &at.cell {
                app.cells.forget(&sub, cell).await?;
            }
            output::torn_down(cli.json, at.cell_name(), &done);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { sub: None, .. } => {
            let app = AppContext::from_env().await?;
            let pool = ReconcileConfig::from(&Env::process())?.user_pool_id;
            let directory = CognitoDirectory::new(&app.aws, pool);
            let started = std::time::Instant::now();
            let (fleet, cells) = tgsearch::fleet::survey(&app.cells, &directory).await?;
            output::fleet(cli.json, &fleet, &cells, started.elapsed());
            Ok(if fleet.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Status { sub: Some(sub), .. } => {
            let app = AppContext::from_env().await?;
            let at = app.cells.locate(&sub).await?;
            let status = tenant_status(&at.provisioner, &sub).await?;
            output::status(cli.json, at.cell_name(), &status);
            // Scripts can test completeness through the exit code.
            Ok(if status.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Credentials {
            sub,
            show_password,
            deadline_ms,
        } => {
            use tgsearch::readiness::{Readiness, TenantReadiness};
            let app = AppContext::from_env().await?;
            let within = std::time::Duration::from_millis(deadline_ms);
            let readiness = app.cells.readiness(&sub, within).await?;
            output::credentials(cli.json, show_password, &sub, &readiness);
            Ok(if matches!(readiness, Readiness::Ready(_)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Rotate { sub, show_password } => {
            use tgsearch::readiness::{ROTATION_DEADLINE, Readiness, TenantReadiness};
            let app = AppContext::from_env().await?;
            let outcome = TenantReadiness::rotate(&app.cells, &sub, ROTATION_DEADLINE).await?;
            output::credentials(cli.json, show_password, &sub, &outcome);
            Ok(if matches!(outcome, Readiness::Ready(_)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Reconcile {
            dry_run,
            max_removals,
            subs,
        } => {
            let app = AppContext::from_env().await?;
            let pool = ReconcileConfig::from(&Env::process())?.user_pool_id;
            let directory = CognitoDirectory::new(&app.aws, pool);
            let options = Options {
                dry_run,
                max_removals,
                only: (!subs.is_empty()).then(|| subs.iter().map(|s| s.to_string()).collect()),
                ..Options::default()
            };
            let report = reconcile_cells(&app.cells, &directory, &options).await?;
            output::reconciled(cli.json, &report);
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Command::Cells { command } => cells::run(cli.json, command).await,
        Command::Render { sub } => {
            render(&sub)?;
            Ok(ExitCode::SUCCESS)
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
    use aws_config::default_provider::{credentials::DefaultCredentialsChain, region::DefaultRegionChain};
    use tgsearch::eks::{SourceError, TokenSource, exec_credential};
    // Only what signing needs: a region and the default credentials chain (environment,
    // profile, web identity, container, IMDS), both lazy. A full `aws_config::load` would also
    // build an HTTP client and resolve settings a presigned URL never uses: this command is a
    // kubectl plugin, run before every request, and its start-up time is the point.
    let region = match region {
        Some(r) => aws_config::Region::new(r),
        None => DefaultRegionChain::builder()
            .build()
            .region()
            .await
            .ok_or(SourceError::NoRegion)?,
    };
    // The chain's first link, environment variables, is tried on its own first: building the
    // whole chain loads the system's root certificates for its HTTP clients (IMDS, SSO), which
    // is most of this command's run time when the credentials are in the environment anyway.
    let env_credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
    let chain = match env_credentials.provide_credentials().await {
        Ok(_) => SharedCredentialsProvider::new(env_credentials),
        Err(_) => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .region(region.clone())
                .build()
                .await,
        ),
    };
    let source = match role_arn {
        None => TokenSource::new(cluster, region.to_string(), chain),
        Some(arn) => {
            // AssumeRole is a network call anyway: the full configuration, so that endpoint
            // settings (AWS_ENDPOINT_URL_STS, FIPS, ...) apply to it.
            let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(region.clone())
                .credentials_provider(chain)
                .load()
                .await;
            TokenSource::assuming_role(cluster, Some(region.to_string()), arn, &aws).await?
        }
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

/// `tgsearch render`: JSON documents are YAML documents, so a `---` separated JSON stream is
/// what `kubectl apply -f -`, kubernetes-validate and checkov all read.
fn render(sub: &TenantId) -> Result<()> {
    use tgsearch::backend;
    use tgsearch::cluster::KubeConfig;
    use tgsearch::credentials::{Password, amqp_uri};
    let env = Env::process();
    let namespace = KubeConfig::from(&env)?.namespace;
    let settings = backend::BackendSettings::from(&env, &namespace)?;
    let template = backend::template()?;
    let placeholder = tgsearch::config::Url::parse("amqp://rabbitmq:5672")?;
    let uri = amqp_uri(
        &placeholder,
        sub.as_str(),
        &Password::new("REDACTED"),
        sub.vhost(),
    );
    let documents = [
        serde_json::to_string_pretty(&backend::render_secret(sub, &settings, &uri))?,
        serde_json::to_string_pretty(&backend::render_volume(sub, &settings))?,
        serde_json::to_string_pretty(&backend::render_deployment(sub, &settings, &template))?,
    ];
    println!("{}", documents.join("\n---\n"));
    Ok(())
}
