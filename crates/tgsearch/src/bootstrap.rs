//! `tgsearch bootstrap-rabbitmq`: replace RabbitMQ's default `guest` administrator with a
//! generated one whose credentials live in Secrets Manager.
//!
//! Safe to repeat: the secret is created first (first writer wins), the user is only created
//! when the stored credentials do not already work, and the default user is removed last, once
//! the new administrator has proven it can log in.

use crate::adapters::rabbitmq::{AdminCredentials, ManagementClient, RabbitMqError};
use crate::adapters::secrets_manager::{SecretsError, SecretsManager};
use crate::app::ADMIN_SECRET_SHAPE;
use crate::credentials::generate_password;
use crate::ports::Removed;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Secret(#[from] SecretsError),
    #[error(
        "the stored administrator `{admin}` cannot log in, and the bootstrap user `{bootstrap}` cannot create it: {source}"
    )]
    NoWayIn {
        admin: String,
        bootstrap: String,
        #[source]
        source: RabbitMqError,
    },
    #[error("RabbitMQ refused a bootstrap step: {0}")]
    RabbitMq(#[from] RabbitMqError),
    #[error("the new administrator `{0}` lacks the `administrator` tag after bootstrap")]
    NotAdministrator(String),
}

/// What bootstrap did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bootstrapped {
    pub admin_user: String,
    pub secret_id: String,
    /// This run stored new admin credentials.
    pub created_secret: bool,
    /// This run created (or repaired) the admin user in RabbitMQ.
    pub created_user: bool,
    /// What happened to the bootstrap (default) user.
    pub bootstrap_user: Removed,
}

pub struct BootstrapRequest<'a> {
    /// A client authenticated as the bootstrap user (RabbitMQ's default: guest/guest).
    pub bootstrap: &'a ManagementClient,
    pub secrets: &'a SecretsManager,
    pub admin_secret_id: &'a str,
    /// Name of the administrator to create.
    pub admin_user: &'a str,
}

pub async fn bootstrap_rabbitmq(req: BootstrapRequest<'_>) -> Result<Bootstrapped, BootstrapError> {
    let candidate = AdminCredentials {
        username: req.admin_user.to_owned(),
        password: generate_password(),
    };
    let (stored, created_secret) = req
        .secrets
        .create_or_read_json(
            req.admin_secret_id,
            &candidate,
            "TGSearch RabbitMQ administrator (tgsearch bootstrap-rabbitmq)",
            &[("app.kubernetes.io/managed-by", "tgsearch-provisioner")],
            ADMIN_SECRET_SHAPE,
        )
        .await?;
    let bootstrap_user = req.bootstrap.username().to_owned();
    let admin = req.bootstrap.with_credentials(stored.clone());

    let works = matches!(admin.whoami().await, Ok(me) if me.tags.iter().any(|t| t == "administrator"));
    let created_user = !works;
    if created_user {
        req.bootstrap
            .put_user(&stored.username, &stored.password, &["administrator"])
            .await
            .map_err(|source| BootstrapError::NoWayIn {
                admin: stored.username.clone(),
                bootstrap: bootstrap_user.clone(),
                source,
            })?;
        req.bootstrap
            .put_permission("/", &stored.username, ".*", ".*", ".*")
            .await?;
    }
    let me = admin.whoami().await?;
    if !me.tags.iter().any(|t| t == "administrator") {
        return Err(BootstrapError::NotAdministrator(me.name));
    }
    let removed = if bootstrap_user == stored.username {
        Removed::AlreadyAbsent
    } else {
        admin.delete_user(&bootstrap_user).await?
    };
    Ok(Bootstrapped {
        admin_user: stored.username,
        secret_id: req.admin_secret_id.to_owned(),
        created_secret,
        created_user,
        bootstrap_user: removed,
    })
}
