//! The context every entry point builds once per process (per Lambda container): typed config,
//! one AWS config, one HTTP client, and the clients made from them.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::adapters::kubernetes::KubeBackend;
use crate::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use crate::adapters::secrets_manager::{SecretsError, SecretsManager};
use crate::backend::TemplateError;
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
}

/// The expected shape of the admin secret, for error messages.
pub const ADMIN_SECRET_SHAPE: &str = r#"{"username","password"}"#;

/// Loads the AWS configuration from the standard chain (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// credentials...). Call once per process.
pub async fn load_aws_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

/// The one HTTP client of a process. Connections are kept warm between invocations.
pub fn http_client() -> Result<reqwest::Client, StartupError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("tgsearch-provisioner/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(StartupError::Http)
}

/// The provisioner as the Lambdas and the CLI use it.
pub type LiveProvisioner = Provisioner<SecretsManager, ManagementClient, KubeBackend>;

/// Everything provisioning needs, built once.
pub struct AppContext {
    pub config: ProvisionerConfig,
    /// The process' one AWS configuration: build further SDK clients from it.
    pub aws: SdkConfig,
    pub provisioner: LiveProvisioner,
}

impl AppContext {
    /// Builds the clients, reads the RabbitMQ admin credentials and parses the backend template
    /// (once per container, not per invocation).
    pub async fn new(
        config: ProvisionerConfig,
        aws: &SdkConfig,
        http: reqwest::Client,
    ) -> Result<Self, StartupError> {
        let secrets = SecretsManager::from_aws(aws, config.user_secret_prefix.clone());
        let admin: AdminCredentials = secrets
            .read_json(&config.rabbitmq_admin_secret_id, ADMIN_SECRET_SHAPE)
            .await
            .map_err(StartupError::AdminSecret)?
            .ok_or_else(|| StartupError::AdminSecretMissing(config.rabbitmq_admin_secret_id.clone()))?;
        let broker = ManagementClient::new(http, config.rabbitmq_management_url.clone(), admin);
        let kube = crate::cluster::connect(&config.kube, aws).await?;
        let backend = KubeBackend::new(kube, config.backend.clone(), crate::backend::template()?);
        Ok(Self {
            provisioner: Provisioner {
                store: secrets,
                broker,
                backend,
                amqp_url: config.rabbitmq_amqp_url.clone(),
            },
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

/// Whether an event may be logged at all: TRACE only from this workspace's crates. Other crates
/// dump raw payloads at TRACE (`lambda_runtime` logs every incoming event, `Authorization`
/// header included), and no log level may show a token or a password.
pub fn may_log(target: &str, level: &tracing::Level) -> bool {
    *level < tracing::Level::TRACE || target == "tgsearch" || target.starts_with("tgsearch::")
}

/// The Lambda runtime's default subscriber (level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`,
/// else INFO; JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`), minus what [`may_log`] refuses, whatever
/// the level asked for.
pub fn init_lambda_tracing() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::{LevelFilter, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let guard = filter_fn(|meta| may_log(meta.target(), meta.level()));
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        fmt.json().finish().with(guard).init();
    } else {
        fmt.finish().with(guard).init();
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::may_log;

    #[test]
    fn other_crates_never_log_at_trace() {
        assert!(!may_log("lambda_runtime::layers::api_response", &Level::TRACE));
        assert!(!may_log("aws_smithy_runtime::client::http", &Level::TRACE));
        assert!(!may_log("tgsearchx", &Level::TRACE));
        assert!(may_log("lambda_runtime::layers::api_response", &Level::DEBUG));
        assert!(may_log("tgsearch::cognito_jwt::jwks", &Level::TRACE));
        assert!(may_log("hyper", &Level::ERROR));
    }
}
