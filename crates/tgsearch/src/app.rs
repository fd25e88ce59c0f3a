//! The context every entry point builds once per process (per Lambda container): typed config,
//! one AWS config, one HTTP client, and the clients made from them.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::adapters::cell_registry::DynamoCells;
use crate::adapters::kubernetes::KubeBackend;
use crate::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use crate::adapters::secrets_manager::{SecretsError, SecretsManager};
use crate::adapters::tenant_guard::TenantGuard;
use crate::backend::TemplateError;
use crate::cells::live::LiveCells;
use crate::cluster::ClusterError;
use crate::config::{ConfigError, ProvisionerConfig};
use crate::provision::Provisioner;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the RabbitMQ admin credentials (RABBITMQ_ADMIN_SECRET_ID): {0}")]
    AdminSecret(#[source] SecretsError),
    #[error(
        "the RabbitMQ admin secret `{0}` (RABBITMQ_ADMIN_SECRET_ID) does not exist; create it with `tgsearch bootstrap-rabbitmq`"
    )]
    AdminSecretMissing(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("cannot reach Kubernetes: {0}")]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("cold start did not finish within {limit_ms} ms: {stage} did not answer")]
    TimedOut { stage: &'static str, limit_ms: u64 },
}

/// The expected shape of the admin secret, for error messages.
pub const ADMIN_SECRET_SHAPE: &str = r#"{"username","password"}"#;

/// The most a cold start (configuration, admin secret, cluster endpoint) may take: Cognito's 5 s
/// count it, and the first signup needs what is left.
pub const COLD_START_LIMIT: Duration = Duration::from_millis(3000);

/// How long Cognito waits for a trigger, cold start included.
pub const COGNITO_LIMIT: Duration = Duration::from_secs(5);

/// Every AWS call has a deadline: 1 s to connect, 2 s for each attempt, 3 attempts (jittered
/// backoff from 50 ms, for throttling and 5xx) within 5 s. The SDK's defaults have no read,
/// attempt or operation timeout at all.
pub fn aws_timeouts() -> (aws_config::timeout::TimeoutConfig, aws_config::retry::RetryConfig) {
    (
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .build(),
        aws_config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(1)),
    )
}

/// Loads the AWS configuration from the standard chain (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// credentials...), with the deadlines of [`aws_timeouts`]. Call once per process.
pub async fn load_aws_config() -> SdkConfig {
    let (timeouts, retries) = aws_timeouts();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(retries)
        .load()
        .await
}

/// How long the process took to start (its INIT phase), and whether it has answered its first
/// invocation: on an on-demand cold start Cognito's 5 s began when that invocation started the
/// process, so the first answer has what is left after the init. (An init done ahead of time,
/// as Lambda sometimes does, is not counted twice: only the init's own duration is.)
#[derive(Debug)]
pub struct ColdStart {
    started: std::time::Instant,
    init: std::sync::OnceLock<Duration>,
    answered: std::sync::atomic::AtomicBool,
}

impl ColdStart {
    /// Call first thing in `main`.
    pub fn now() -> Self {
        Self {
            started: std::time::Instant::now(),
            init: std::sync::OnceLock::new(),
            answered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Call when the init is done, right before the runtime loop starts.
    pub fn initialized(&self) {
        let _ = self.init.set(self.started.elapsed());
    }

    /// The budget of an invocation: `configured`, and for the first one of the process no more
    /// than what its init left of Cognito's 5 s.
    pub fn budget(&self, configured: Duration) -> Duration {
        use std::sync::atomic::Ordering;
        if self.answered.swap(true, Ordering::AcqRel) {
            return configured;
        }
        let init = self.init.get().copied().unwrap_or_else(|| self.started.elapsed());
        let left = COGNITO_LIMIT
            .saturating_sub(crate::deadline::RESPONSE_MARGIN)
            .saturating_sub(init);
        configured.min(left)
    }
}

/// Runs one cold-start stage under the cold start's deadline, naming it when it runs out.
async fn stage<T>(
    at: tokio::time::Instant,
    name: &'static str,
    work: impl std::future::Future<Output = T>,
) -> Result<T, StartupError> {
    tokio::time::timeout_at(at, work)
        .await
        .map_err(|_| StartupError::TimedOut {
            stage: name,
            limit_ms: COLD_START_LIMIT.as_millis() as u64,
        })
}

/// The one HTTP client of a process. Connections are kept warm between invocations.
pub fn http_client() -> Result<reqwest::Client, StartupError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        // Below the servers' own idle limit, so a pooled connection is never reused as the server
        // closes it (`IncompleteMessage`): RabbitMQ 4.3's management listener closes an idle
        // keep-alive connection after 5 s (measured here; 3.10 kept it far longer).
        .pool_idle_timeout(Duration::from_secs(4))
        .user_agent(concat!("tgsearch-provisioner/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(StartupError::Http)
}

/// The provisioner as the Lambdas and the CLI use it.
pub type LiveProvisioner = Provisioner<SecretsManager, ManagementClient, KubeBackend, TenantGuard>;

/// Everything provisioning needs, built once.
pub struct AppContext {
    pub config: ProvisionerConfig,
    /// The process' one AWS configuration: build further SDK clients from it.
    pub aws: SdkConfig,
    /// The deployment's own broker and cluster (its environment).
    pub provisioner: Arc<LiveProvisioner>,
    /// Every tenant's cell: the registry's cells, or the provisioner above when there is none.
    pub cells: LiveCells,
}

impl AppContext {
    /// Builds the clients, reads the RabbitMQ admin credentials and parses the backend template
    /// (once per container, not per invocation).
    pub async fn new(
        config: ProvisionerConfig,
        aws: &SdkConfig,
        http: reqwest::Client,
    ) -> Result<Self, StartupError> {
        let at = tokio::time::Instant::now() + COLD_START_LIMIT;
        let secrets = SecretsManager::from_aws(aws, config.user_secret_prefix.clone());
        // Both at once: the admin secret and the cluster (DescribeCluster unless given).
        let (admin, kube) = tokio::join!(
            stage(
                at,
                "Secrets Manager (reading RABBITMQ_ADMIN_SECRET_ID)",
                secrets.read_json::<AdminCredentials>(&config.rabbitmq_admin_secret_id, ADMIN_SECRET_SHAPE),
            ),
            stage(
                at,
                "the Kubernetes cluster (EKS DescribeCluster or kubeconfig)",
                crate::cluster::connect(&config.kube, aws),
            ),
        );
        let admin = admin?
            .map_err(StartupError::AdminSecret)?
            .ok_or_else(|| StartupError::AdminSecretMissing(config.rabbitmq_admin_secret_id.clone()))?;
        let kube = kube??;
        let broker = ManagementClient::new(http.clone(), config.rabbitmq_management_url.clone(), admin);
        let template = crate::backend::template()?;
        let backend = KubeBackend::new(kube, config.backend.clone(), template.clone());
        let provisioner = Arc::new(Provisioner {
            store: secrets,
            broker,
            backend,
            locks: TenantGuard::new(aws, config.tenant_guard_table.clone()),
            amqp_url: config.rabbitmq_amqp_url.clone(),
            limits: config.broker_limits,
        });
        let registry = config
            .cell_tables
            .as_ref()
            .map(|t| DynamoCells::new(aws, &t.cells, &t.map));
        let cells = LiveCells::new(
            registry,
            provisioner.clone(),
            Some(config.as_cell()),
            aws,
            http,
            config.backend.clone(),
            template,
        );
        Ok(Self {
            provisioner,
            cells,
            config,
            aws: aws.clone(),
        })
    }

    /// Reads the configuration from the environment and builds everything: the usual start of
    /// a Lambda or a CLI command.
    pub async fn from_env() -> Result<Self, StartupError> {
        let config = ProvisionerConfig::from_env()?;
        let aws = load_aws_config().await;
        Self::new(config, &aws, http_client()?).await
    }
}
