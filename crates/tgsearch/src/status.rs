//! `tgsearch status`: what exists of one tenant, in every system, without showing secrets.

use std::fmt;

use crate::adapters::rabbitmq::{ManagementClient, Permission, RabbitMqError, User, Vhost};
use crate::adapters::secrets_manager::SecretsManager;
use crate::ports::{CredentialStore, PortError};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read the tenant secret: {0}")]
    Secret(#[source] PortError),
    #[error("cannot query RabbitMQ: {0}")]
    RabbitMq(#[from] RabbitMqError),
}

/// The tenant's secret, described without its password.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretSummary {
    pub name: String,
    pub username: String,
    pub vhost: String,
    /// The broker part of `amqp_uri`, credentials removed.
    pub broker: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantStatus {
    pub sub: String,
    pub secret: Option<SecretSummary>,
    pub vhost: Option<Vhost>,
    pub user_tags: Option<Vec<String>>,
    /// Every permission the tenant's user holds (anything beyond its own vhost is a leak).
    pub permissions: Vec<Permission>,
}

impl TenantStatus {
    /// Everything is there, and the user can reach its own vhost only.
    pub fn is_complete(&self) -> bool {
        self.secret.is_some()
            && self.vhost.is_some()
            && self.user_tags.as_ref().is_some_and(|t| t.is_empty())
            && self.permissions.len() == 1
            && self.permissions[0].vhost == self.sub
    }

    /// Nothing of the tenant exists.
    pub fn is_absent(&self) -> bool {
        self.secret.is_none() && self.vhost.is_none() && self.user_tags.is_none()
    }
}

pub async fn tenant_status(
    secrets: &SecretsManager,
    rabbitmq: &ManagementClient,
    tenant: &TenantId,
) -> Result<TenantStatus, StatusError> {
    let (secret, vhost, user, permissions) = tokio::join!(
        secrets.read(tenant),
        rabbitmq.get_vhost(tenant.vhost()),
        rabbitmq.get_user(tenant.rabbitmq_user()),
        rabbitmq.user_permissions(tenant.rabbitmq_user()),
    );
    let secret = secret.map_err(StatusError::Secret)?.map(|c| {
        let mut broker = reqwest::Url::parse(c.amqp_uri.expose())
            .map(|mut u| {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.set_path("");
                u.to_string()
            })
            .unwrap_or_else(|_| "<unparseable amqp_uri>".into());
        if broker.ends_with('/') {
            broker.pop();
        }
        SecretSummary {
            name: secrets.tenant_secret_name(tenant),
            username: c.username,
            vhost: c.vhost,
            broker,
        }
    });
    Ok(TenantStatus {
        sub: tenant.to_string(),
        secret,
        vhost: vhost?,
        user_tags: user?.map(|u: User| u.tags),
        permissions: permissions?,
    })
}

fn mark(present: bool) -> &'static str {
    if present { "✓" } else { "✗" }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tenant {}", self.sub)?;
        match &self.secret {
            Some(s) => writeln!(
                f,
                "  {} secret      {} (user {}, vhost {}, broker {})",
                mark(true),
                s.name,
                s.username,
                s.vhost,
                s.broker
            )?,
            None => writeln!(f, "  {} secret      missing", mark(false))?,
        }
        match &self.vhost {
            Some(v) => writeln!(
                f,
                "  {} vhost       {} (description {:?}, tags {})",
                mark(true),
                v.name,
                v.description,
                v.tags.join(",")
            )?,
            None => writeln!(f, "  {} vhost       missing", mark(false))?,
        }
        match &self.user_tags {
            Some(tags) if tags.is_empty() => writeln!(
                f,
                "  {} user        {} (no tags: AMQP only)",
                mark(true),
                self.sub
            )?,
            Some(tags) => writeln!(
                f,
                "  {} user        {} has tags {} (expected none)",
                mark(false),
                self.sub,
                tags.join(",")
            )?,
            None => writeln!(f, "  {} user        missing", mark(false))?,
        }
        if self.permissions.is_empty() {
            writeln!(f, "  {} permission  none", mark(false))?;
        }
        for p in &self.permissions {
            let own = p.vhost == self.sub;
            writeln!(
                f,
                "  {} permission  vhost {} configure {:?} write {:?} read {:?}{}",
                mark(own),
                p.vhost,
                p.configure,
                p.write,
                p.read,
                if own { "" } else { " (not the tenant's vhost!)" }
            )?;
        }
        Ok(())
    }
}
