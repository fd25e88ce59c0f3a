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
