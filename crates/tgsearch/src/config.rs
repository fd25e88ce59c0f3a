//! Typed configuration, read once at cold start from the environment.
//!
//! Every setting is validated up front so that a missing or malformed one fails the cold start
//! with a message naming it, instead of failing a user's signup later.

use std::time::Duration;

pub use crate::cluster::DEFAULT_KUBE_NAMESPACE;
use crate::env::require_tls;
pub use crate::env::{ConfigError, Env, Url, parse_url};

/// Default name prefix of tenant secrets in Secrets Manager.
pub const DEFAULT_USER_SECRET_PREFIX: &str = "tgsearch/users/";
/// Cognito waits 5 s for a trigger; 4.5 s leaves room for the response to travel back.
pub const DEFAULT_PROVISION_BUDGET_MS: u64 = 4500;

/// Where the provisioner finds RabbitMQ, Secrets Manager names and its time budget.
/// Shared by post-confirmation, teardown, reconcile and the CLI.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Base URL of the RabbitMQ management API, e.g. `http://rabbitmq:15672`.
    pub rabbitmq_management_url: Url,
    /// Broker address put into each tenant's `amqp_uri`, e.g. `amqps://mq.example.com:5671`.
    pub rabbitmq_amqp_url: Url,
    /// Secrets Manager id of the RabbitMQ admin credentials (`{"username","password"}`).
    pub rabbitmq_admin_secret_id: String,
    /// Prefix of the tenant secrets' names.
    pub user_secret_prefix: String,
    /// The most one provisioning may take, Lambda deadline permitting.
    pub provision_budget: Duration,
    /// How to reach the cluster (EKS or kubeconfig) and in which namespace.
    pub kube: crate::cluster::KubeConfig,
    /// Image and storage of the tenants' backends.
    pub backend: crate::backend::BackendSettings,
    /// `TENANT_GUARD_TABLE`: the DynamoDB table of per-tenant locks and request counters (key
    /// `pk`, TTL `expires_at`).
    pub tenant_guard_table: String,
    /// Each tenant's limits on the broker (`RABBITMQ_TENANT_MAX_CONNECTIONS`, `..._MAX_QUEUES`,
    /// `..._MAX_CHANNELS`).
    pub broker_limits: crate::ports::BrokerLimits,
    /// `CELLS_TABLE` and `TENANT_CELLS_TABLE`: the cell registry and the tenant→cell map
    /// (both or neither; neither: one broker and one cluster, this configuration's).
    pub cell_tables: Option<CellTables>,
}

impl ProvisionerConfig {
    /// This deployment's own broker and cluster, as a cell's settings name them (what
    /// `tgsearch cells adopt` registers).
    pub fn as_cell(&self) -> crate::cells::CellSpec {
        crate::cells::CellSpec {
            broker: crate::cells::BrokerKind::Rabbitmq,
            management_url: self.rabbitmq_management_url.clone(),
            amqp_url: self.rabbitmq_amqp_url.clone(),
            admin_secret_id: self.rabbitmq_admin_secret_id.clone(),
            kube: self.kube.clone(),
            storage_class: self.backend.storage_class.clone(),
            allow_plaintext: false,
        }
    }
}

/// The DynamoDB tables of cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellTables {
    /// `CELLS_TABLE`: one item per cell (partition key `cell`).
    pub cells: String,
    /// `TENANT_CELLS_TABLE`: one item per tenant (partition key `sub`).
    pub map: String,
}

impl CellTables {
    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Option<Self>, ConfigError> {
        match (env.optional("CELLS_TABLE"), env.optional("TENANT_CELLS_TABLE")) {
            (Some(cells), Some(map)) => Ok(Some(Self { cells, map })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::Missing {
                name: "TENANT_CELLS_TABLE",
                hint: "the tenant-to-cell map, required with CELLS_TABLE",
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                name: "CELLS_TABLE",
                hint: "the cell registry, required with TENANT_CELLS_TABLE",
            }),
        }
    }
}

impl ProvisionerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }

    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        // In the order the README lists them, so the first missing one is named first.
        let rabbitmq_management_url = env.url(
            "RABBITMQ_MANAGEMENT_URL",
            "base URL of the RabbitMQ management API, e.g. https://rabbitmq.internal:15671",
            &["http", "https"],
        )?;
        let rabbitmq_amqp_url = env.url(
            "RABBITMQ_AMQP_URL",
            "the broker address put into tenant URIs, e.g. amqps://rabbitmq.internal:5671",
            &["amqp", "amqps"],
        )?;
        let allow_plaintext = env.flag_or("RABBITMQ_ALLOW_PLAINTEXT", false)?;
        require_tls(
            "RABBITMQ_MANAGEMENT_URL",
            &rabbitmq_management_url,
            "https",
            "the RabbitMQ admin password",
            (allow_plaintext, "RABBITMQ_ALLOW_PLAINTEXT"),
        )?;
        require_tls(
            "RABBITMQ_AMQP_URL",
            &rabbitmq_amqp_url,
            "amqps",
            "tenants' passwords",
            (allow_plaintext, "RABBITMQ_ALLOW_PLAINTEXT"),
        )?;
        let rabbitmq_admin_secret_id = env.required(
            "RABBITMQ_ADMIN_SECRET_ID",
            "Secrets Manager id of the RabbitMQ admin credentials",
        )?;
        let user_secret_prefix = env
            .optional("USER_SECRET_PREFIX")
            .unwrap_or_else(|| DEFAULT_USER_SECRET_PREFIX.to_owned());
        let provision_budget = env.millis_or("PROVISION_BUDGET_MS", DEFAULT_PROVISION_BUDGET_MS)?;
        let kube = crate::cluster::KubeConfig::from(env)?;
        let backend = crate::backend::BackendSettings::from(env, &kube.namespace)?;
        let tenant_guard_table = tenant_guard_table(env)?;
        let defaults = crate::ports::BrokerLimits::default();
        let connections = env.count_or(
            "RABBITMQ_TENANT_MAX_CONNECTIONS",
            defaults.user_connections,
            10_000,
        )?;
        let broker_limits = crate::ports::BrokerLimits {
            vhost_connections: connections,
            user_connections: connections,
            vhost_queues: env.count_or("RABBITMQ_TENANT_MAX_QUEUES", defaults.vhost_queues, 100_000)?,
            user_channels: env.count_or("RABBITMQ_TENANT_MAX_CHANNELS", defaults.user_channels, 2_047)?,
        };
        let cell_tables = CellTables::from(env)?;
        Ok(Self {
            cell_tables,
            rabbitmq_management_url,
            rabbitmq_amqp_url,
            rabbitmq_admin_secret_id,
            user_secret_prefix,
            provision_budget,
            kube,
            backend,
            tenant_guard_table,
            broker_limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_lookup(move |name| map.get(name).cloned())
    }

    const COMPLETE: &[(&str, &str)] = &[
        ("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672"),
        ("RABBITMQ_AMQP_URL", "amqp://127.0.0.1:5672"),
        ("RABBITMQ_ADMIN_SECRET_ID", "tgsearch/rabbitmq-admin"),
        ("BACKEND_IMAGE", "ghcr.io/tgsearch/core:1.4"),
        ("TENANT_GUARD_TABLE", "tgsearch-tenant-guard"),
    ];

    #[test]
    fn defaults_apply_when_optional_settings_are_unset() {
        let config = ProvisionerConfig::from(&env(COMPLETE)).unwrap();
        assert_eq!(config.user_secret_prefix, "tgsearch/users/");
        assert_eq!(config.provision_budget, Duration::from_millis(4500));
    }

    #[test]
    fn plaintext_to_another_machine_is_refused_unless_allowed() {
        for (name, value) in [
            ("RABBITMQ_MANAGEMENT_URL", "http://rabbitmq.internal:15672"),
            ("RABBITMQ_AMQP_URL", "amqp://10.0.1.7:5672"),
        ] {
            let mut vars = COMPLETE.to_vec();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let err = ProvisionerConfig::from(&env(&vars)).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("clear text"), "{err}");
            assert!(err.contains("RABBITMQ_ALLOW_PLAINTEXT"), "{err}");
            vars.push(("RABBITMQ_ALLOW_PLAINTEXT", "true"));
            ProvisionerConfig::from(&env(&vars)).unwrap();
        }
        // TLS anywhere, plaintext on this machine only.
        let mut vars = COMPLETE.to_vec();
        vars.retain(|(k, _)| !k.starts_with("RABBITMQ_") || *k == "RABBITMQ_ADMIN_SECRET_ID");
        vars.push(("RABBITMQ_MANAGEMENT_URL", "https://mq.example.com:15671"));
        vars.push(("RABBITMQ_AMQP_URL", "amqp://localhost:5672"));
        ProvisionerConfig::from(&env(&vars)).unwrap();
        vars.push(("RABBITMQ_ALLOW_PLAINTEXT", "maybe"));
        let err = ProvisionerConfig::from(&env(&vars)).unwrap_err().to_string();
        assert!(err.contains("RABBITMQ_ALLOW_PLAINTEXT"), "{err}");
    }

    #[test]
    fn cell_tables_come_together_or_not_at_all() {
        assert_eq!(ProvisionerConfig::from(&env(COMPLETE)).unwrap().cell_tables, None);
        let mut vars = COMPLETE.to_vec();
        vars.push(("CELLS_TABLE", "tgsearch-cells"));
        let err = ProvisionerConfig::from(&env(&vars)).unwrap_err().to_string();
        assert!(err.contains("TENANT_CELLS_TABLE"), "{err}");
        vars.push(("TENANT_CELLS_TABLE", "tgsearch-tenant-cells"));
        let tables = ProvisionerConfig::from(&env(&vars)).unwrap().cell_tables.unwrap();
        assert_eq!(
            (tables.cells.as_str(), tables.map.as_str()),
            ("tgsearch-cells", "tgsearch-tenant-cells")
        );
    }

    #[test]
    fn a_missing_setting_is_named() {
        let err = ProvisionerConfig::from(&env(&[COMPLETE[0], COMPLETE[1], COMPLETE[3]])).unwrap_err();
        assert!(err.to_string().contains("RABBITMQ_ADMIN_SECRET_ID"), "{err}");
    }

    #[test]
    fn malformed_settings_are_named_with_the_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("RABBITMQ_MANAGEMENT_URL", "not a url", "is not a URL"),
            ("RABBITMQ_AMQP_URL", "http://x:5672", "scheme `http`"),
            (
                "RABBITMQ_MANAGEMENT_URL",
                "http://admin:pw@x:15672",
                "credentials",
            ),
            ("PROVISION_BUDGET_MS", "soon", "milliseconds"),
            ("PROVISION_BUDGET_MS", "0", "milliseconds"),
        ];
        for (name, value, reason) in cases {
            let mut vars = COMPLETE.to_vec();
            vars.retain(|(k, _)| k != name);
            vars.push((name, value));
            let err = ProvisionerConfig::from(&env(&vars)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains(reason), "{msg}");
        }
    }
}

/// `TENANT_GUARD_TABLE`: the DynamoDB table of per-tenant locks and request counters.
pub fn tenant_guard_table<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<String, ConfigError> {
    env.required(
        "TENANT_GUARD_TABLE",
        "the DynamoDB table of per-tenant locks and rate limits (partition key `pk`)",
    )
}

/// `USER_POOL_ID`: the Cognito user pool of who should have a tenant (reconcile, teardown's
/// guard).
pub fn user_pool_id<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<String, ConfigError> {
    env.required(
        "USER_POOL_ID",
        "the Cognito user pool id, e.g. eu-west-1_AbCdEf123",
    )
}

/// What reconcile needs besides the provisioner's settings.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// `USER_POOL_ID`: the Cognito user pool that says who should have a tenant.
    pub user_pool_id: String,
    /// `RECONCILE_MAX_REMOVALS`: removals one run may make (default 10).
    pub max_removals: usize,
    /// `TENANT_CAPACITY`: the tenants this deployment is sized for (default 1,000, what
    /// `manifests/cluster/tenant-quota.yaml` allows); reconcile reports the fill against it.
    pub tenant_capacity: usize,
}

/// Removals one reconcile run may make when `RECONCILE_MAX_REMOVALS` is not set.
pub const DEFAULT_MAX_REMOVALS: usize = 10;

/// The tenants a deployment is sized for when `TENANT_CAPACITY` is not set.
pub const DEFAULT_TENANT_CAPACITY: usize = 1000;

impl ReconcileConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }

    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let max_removals = match env.optional("RECONCILE_MAX_REMOVALS") {
            None => DEFAULT_MAX_REMOVALS,
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "RECONCILE_MAX_REMOVALS",
                reason: format!("`{raw}` is not a whole number"),
            })?,
        };
        let tenant_capacity =
            env.count_or("TENANT_CAPACITY", DEFAULT_TENANT_CAPACITY as u32, 1_000_000)? as usize;
        Ok(Self {
            user_pool_id: user_pool_id(env)?,
            max_removals,
            tenant_capacity,
        })
    }
}

/// What the mailgun-webhook function needs.
#[derive(Debug, Clone)]
pub struct MailgunConfig {
    /// `MAILGUN_SIGNING_KEY_SECRET_ID`: the secret holding the webhook signing key (a plain string,
    /// or JSON `{"signing_key": "..."}`).
    pub signing_key_secret_id: String,
    /// `ALERT_TOPIC_ARN`: the SNS topic alerts go to.
    pub alert_topic_arn: String,
    /// `MAILGUN_DEDUP_TABLE`: the DynamoDB table of webhook deliveries (key `token`, TTL
    /// attribute `expires_at`) that makes alerts exactly-once across containers.
    pub dedup_table: String,
}

impl MailgunConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }

    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let signing_key_secret_id = env.required(
            "MAILGUN_SIGNING_KEY_SECRET_ID",
            "Secrets Manager id of Mailgun's HTTP webhook signing key",
        )?;
        let alert_topic_arn = env.required("ALERT_TOPIC_ARN", "the SNS topic that receives alerts")?;
        if !alert_topic_arn.starts_with("arn:") || alert_topic_arn.split(':').count() != 6 {
            return Err(ConfigError::Invalid {
                name: "ALERT_TOPIC_ARN",
                reason: format!(
                    "`{alert_topic_arn}` is not an SNS topic ARN (arn:aws:sns:region:account:name)"
                ),
            });
        }
        let dedup_table = env.required(
            "MAILGUN_DEDUP_TABLE",
            "the DynamoDB table of webhook deliveries, key `token`, TTL attribute `expires_at`",
        )?;
        Ok(Self {
            signing_key_secret_id,
            alert_topic_arn,
            dedup_table,
        })
    }
}

/// How post-confirmation hands over what it cannot finish in time.
#[derive(Debug, Clone)]
pub struct HandOffConfig {
    /// `PROVISION_QUEUE_URL`: the SQS queue the provisioning worker reads.
    pub queue_url: String,
    /// `PROVISION_SYNC_MS`: how long post-confirmation provisions before it hands the rest to the
    /// queue (default 500 ms, so Cognito's answer stays well under a second, bursts included).
    pub sync: Duration,
}

/// Default of `PROVISION_SYNC_MS`.
pub const DEFAULT_PROVISION_SYNC_MS: u64 = 500;

impl HandOffConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }

    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let queue_url = env.required(
            "PROVISION_QUEUE_URL",
            "the SQS queue of the provisioning worker, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/tgsearch-provision",
        )?;
        parse_url("PROVISION_QUEUE_URL", &queue_url, &["https", "http"])?;
        Ok(Self {
            queue_url,
            sync: env.millis_or("PROVISION_SYNC_MS", DEFAULT_PROVISION_SYNC_MS)?,
        })
    }
}

/// What the tenant-credentials function needs besides the provisioner's settings: whose tokens
/// it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCredentialsConfig {
    /// `USER_POOL_ID`: the user pool, `<region>_<id>`.
    pub user_pool_id: String,
    /// `USER_POOL_CLIENT_ID`: the frontend's app client; tokens of other clients are refused.
    pub client_id: String,
    /// `https://cognito-idp.<region>.amazonaws.com/<pool>`, the region taken from the pool id.
    pub issuer: String,
    /// `USER_POOL_JWKS_URL`: where the pool's signing keys are; default `<issuer>/.well-known/jwks.json`.
    pub jwks_url: Url,
    /// `USER_POOL_TOKEN_USE`: `access` (default) or `id`, the one kind of token accepted. Only an
    /// access token lets Cognito say that its user signed out.
    pub token_use: crate::cognito_jwt::TokenUse,
    /// `TENANT_GET_RATE`: `GET /tenant` per tenant (`<max>/<seconds>`, default `120/60`: a
    /// frontend polling every 2 s while provisioning uses a quarter of it).
    pub get_rate: crate::ports::Rate,
    /// `TENANT_ROTATE_RATE`: rotations per tenant (default `3/600`).
    pub rotate_rate: crate::ports::Rate,
    /// `TENANT_ACCESS_FUNCTION`: the function (the provisioning worker) that answers readiness
    /// and rotates, holding the rights this one then does without. Unset: this function does
    /// it in-process, and needs the provisioner's settings and rights.
    pub access_function: Option<String>,
    /// `TENANT_GUARD_TABLE`: where the per-tenant request counters are.
    pub guard_table: String,
}

/// A rate setting `<max>/<seconds>`, e.g. `120/60`.
pub fn parse_rate(name: &'static str, raw: &str) -> Result<crate::ports::Rate, ConfigError> {
    let invalid = || ConfigError::Invalid {
        name,
        reason: format!(
            "`{}` is not <max>/<seconds> (e.g. 120/60) with both from 1 to 86400",
            raw.chars().take(40).collect::<String>()
        ),
    };
    let (max, secs) = raw.trim().split_once('/').ok_or_else(invalid)?;
    let max: u32 = max.trim().parse().map_err(|_| invalid())?;
    let secs: u64 = secs.trim().parse().map_err(|_| invalid())?;
    if !(1..=86_400).contains(&max) || !(1..=86_400).contains(&secs) {
        return Err(invalid());
    }
    Ok(crate::ports::Rate {
        max,
        window: Duration::from_secs(secs),
    })
}

impl TenantCredentialsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }

    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        use crate::cognito_jwt::{issuer, jwks_url, pool_region};
        let user_pool_id = env
            .required(
                "USER_POOL_ID",
                "the Cognito user pool id, e.g. eu-west-1_AbCdEf123",
            )?
            .trim()
            .to_owned();
        let region = pool_region(&user_pool_id).ok_or_else(|| ConfigError::Invalid {
            name: "USER_POOL_ID",
            reason: format!(
                "`{user_pool_id}` is not a user pool id (<region>_<id>, e.g. eu-west-1_AbCdEf123)"
            ),
        })?;
        let client_id = env
            .required(
                "USER_POOL_CLIENT_ID",
                "the frontend's app client id in the user pool",
            )?
            .trim()
            .to_owned();
        if client_id.len() > 128
            || !client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '_')
        {
            return Err(ConfigError::Invalid {
                name: "USER_POOL_CLIENT_ID",
                reason: "an app client id is up to 128 letters, digits, `_` or `+`".into(),
            });
        }
        let issuer = issuer(region, &user_pool_id);
        let jwks_url = match env.optional("USER_POOL_JWKS_URL") {
            Some(raw) => {
                let url = parse_url("USER_POOL_JWKS_URL", &raw, &["https", "http"])?;
                // The keys decide who may sign in: fetched over plaintext, whoever answers could
                // mint a token for any `sub`. Same rule as the broker URLs.
                require_tls(
                    "USER_POOL_JWKS_URL",
                    &url,
                    "https",
                    "the user pool's signing keys",
                    (
                        env.flag_or("USER_POOL_JWKS_ALLOW_PLAINTEXT", false)?,
                        "USER_POOL_JWKS_ALLOW_PLAINTEXT",
                    ),
                )?;
                url
            }
            None => parse_url("USER_POOL_JWKS_URL", &jwks_url(&issuer), &["https"])?,
        };
        let token_use = match env.optional("USER_POOL_TOKEN_USE") {
            None => crate::cognito_jwt::TokenUse::Access,
            Some(raw) => raw.parse().map_err(|reason| ConfigError::Invalid {
                name: "USER_POOL_TOKEN_USE",
                reason,
            })?,
        };
        let rate = |name: &'static str, default: &str| match env.optional(name) {
            Some(raw) => parse_rate(name, &raw),
            None => parse_rate(name, default),
        };
        Ok(Self {
            user_pool_id,
            client_id,
            issuer,
            jwks_url,
            token_use,
            get_rate: rate("TENANT_GET_RATE", "120/60")?,
            rotate_rate: rate("TENANT_ROTATE_RATE", "3/600")?,
            access_function: env
                .optional("TENANT_ACCESS_FUNCTION")
                .map(|f| f.trim().to_owned()),
            guard_table: tenant_guard_table(env)?,
        })
    }

    /// What a token must say to be accepted.
    pub fn expected(&self) -> crate::cognito_jwt::Expected {
        crate::cognito_jwt::Expected {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            token_use: self.token_use,
        }
    }
}

#[cfg(test)]
mod tenant_credentials_tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cognito_jwt::TokenUse;

    fn config(vars: &[(&str, &str)]) -> Result<TenantCredentialsConfig, ConfigError> {
        let mut map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        map.entry("TENANT_GUARD_TABLE".into())
            .or_insert_with(|| "tgsearch-tenant-guard".into());
        TenantCredentialsConfig::from(&Env::from_lookup(move |name| map.get(name).cloned()))
    }

    const POOL: (&str, &str) = ("USER_POOL_ID", "eu-west-1_AbCdEf123");
    const CLIENT: (&str, &str) = ("USER_POOL_CLIENT_ID", "1example23456789abcdefghij");

    #[test]
    fn the_issuer_and_keys_follow_from_the_pool() {
        let c = config(&[POOL, CLIENT]).unwrap();
        assert_eq!(
            c.issuer,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
        );
        assert_eq!(
            c.jwks_url.as_str(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json"
        );
        assert_eq!(c.token_use, TokenUse::Access);
        assert_eq!(c.expected().client_id, CLIENT.1);
    }

    #[test]
    fn a_plaintext_jwks_url_to_another_host_is_refused() {
        let err = config(&[
            POOL,
            CLIENT,
            ("USER_POOL_JWKS_URL", "http://keys.example.com/jwks.json"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("USER_POOL_JWKS_URL") && err.contains("https"),
            "{err}"
        );
        let ok = config(&[
            POOL,
            CLIENT,
            ("USER_POOL_JWKS_URL", "http://keys.internal/jwks.json"),
            ("USER_POOL_JWKS_ALLOW_PLAINTEXT", "true"),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn rates_are_max_per_seconds() {
        let c = config(&[POOL, CLIENT, ("TENANT_ROTATE_RATE", "5/3600")]).unwrap();
        assert_eq!((c.rotate_rate.max, c.rotate_rate.window.as_secs()), (5, 3600));
        assert_eq!((c.get_rate.max, c.get_rate.window.as_secs()), (120, 60));
        for bad in ["5", "0/60", "5/0", "x/60", "5/100000"] {
            let err = config(&[POOL, CLIENT, ("TENANT_ROTATE_RATE", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("TENANT_ROTATE_RATE"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_keys_url_and_the_token_kind_can_be_set() {
        let c = config(&[
            POOL,
            CLIENT,
            (
                "USER_POOL_JWKS_URL",
                "http://127.0.0.1:5000/eu-west-1_AbCdEf123/.well-known/jwks.json",
            ),
            ("USER_POOL_TOKEN_USE", "id"),
        ])
        .unwrap();
        assert_eq!(c.jwks_url.host_str(), Some("127.0.0.1"));
        assert_eq!(c.token_use, TokenUse::Id);
    }

    /// Settings, the variable the error must name, and a word of the reason.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

    #[test]
    fn missing_and_malformed_settings_are_named() {
        let cases: &[Case] = &[
            (&[CLIENT], "USER_POOL_ID", "not set"),
            (&[POOL], "USER_POOL_CLIENT_ID", "not set"),
            (
                &[("USER_POOL_ID", "AbCdEf123"), CLIENT],
                "USER_POOL_ID",
                "<region>_<id>",
            ),
            (
                &[POOL, ("USER_POOL_CLIENT_ID", "a client")],
                "USER_POOL_CLIENT_ID",
                "letters",
            ),
            (
                &[POOL, CLIENT, ("USER_POOL_TOKEN_USE", "refresh")],
                "USER_POOL_TOKEN_USE",
                "`refresh`",
            ),
            (
                &[POOL, CLIENT, ("USER_POOL_JWKS_URL", "ftp://x/jwks")],
                "USER_POOL_JWKS_URL",
                "scheme",
            ),
        ];
        for (vars, name, reason) in cases {
            let msg = config(vars).unwrap_err().to_string();
            assert!(msg.contains(name) && msg.contains(reason), "{msg}");
        }
    }
}
