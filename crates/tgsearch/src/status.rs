//! `tgsearch status`: what exists of one tenant, in every system, without showing secrets.

use std::fmt;

use crate::adapters::kubernetes::KubeError;
use crate::adapters::rabbitmq::{Permission, RabbitMqError, User, Vhost};
use crate::app::LiveProvisioner;
use crate::backend::{AMQP_URI_KEY, CONTAINER};
use crate::ports::{CredentialStore, PortError};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read the tenant secret: {0}")]
    Secret(#[source] PortError),
    #[error("cannot query RabbitMQ: {0}")]
    RabbitMq(#[from] RabbitMqError),
    #[error("cannot query Kubernetes: {0}")]
    Kube(#[from] KubeError),
}

/// The tenant's Deployment, as far as an operator checks it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentSummary {
    pub name: String,
    pub image: String,
    pub replicas: i32,
    pub strategy: String,
    /// `AMQP_URI` comes from the tenant's own Secret.
    pub uses_tenant_secret: bool,
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
    /// The Kubernetes Secret, and whether its `AMQP_URI` is the one in Secrets Manager.
    pub kube_secret: Option<bool>,
    pub volume: Option<String>,
    pub deployment: Option<DeploymentSummary>,
}

impl TenantStatus {
    /// Everything is there, and the user can reach its own vhost only.
    pub fn is_complete(&self) -> bool {
        self.secret.is_some()
            && self.vhost.is_some()
            && self.user_tags.as_ref().is_some_and(|t| t.is_empty())
            && self.permissions.len() == 1
            && self.permissions[0].vhost == self.sub
            && self.kube_secret == Some(true)
            && self.volume.is_some()
            && self.deployment.as_ref().is_some_and(|d| d.uses_tenant_secret)
    }

    /// Nothing of the tenant exists.
    pub fn is_absent(&self) -> bool {
        self.secret.is_none()
            && self.vhost.is_none()
            && self.user_tags.is_none()
            && self.kube_secret.is_none()
            && self.volume.is_none()
            && self.deployment.is_none()
    }
}

pub async fn tenant_status(
    provisioner: &LiveProvisioner,
    tenant: &TenantId,
) -> Result<TenantStatus, StatusError> {
    let (secrets, rabbitmq) = (&provisioner.store, &provisioner.broker);
    let (secret, vhost, user, permissions, kube) = tokio::join!(
        secrets.read(tenant),
        rabbitmq.get_vhost(tenant.vhost()),
        rabbitmq.get_user(tenant.rabbitmq_user()),
        rabbitmq.user_permissions(tenant.rabbitmq_user()),
        provisioner.backend.get(tenant),
    );
    let stored = secret.map_err(StatusError::Secret)?;
    let (kube_secret, volume, deployment) = kube?;
    let kube_secret = kube_secret.map(|s| {
        let uri = s
            .data
            .as_ref()
            .and_then(|d| d.get(AMQP_URI_KEY))
            .map(|b| b.0.as_slice());
        uri.is_some() && uri == stored.as_ref().map(|c| c.amqp_uri.expose().as_bytes())
    });
    let volume = volume.and_then(|v| v.metadata.name);
    let deployment = deployment.map(|d| {
        let secret_name = crate::backend::secret_name(tenant);
        let spec = d.spec.unwrap_or_default();
        let container = spec
            .template
            .spec
            .unwrap_or_default()
            .containers
            .into_iter()
            .find(|c| c.name == CONTAINER)
            .unwrap_or_default();
        let uses_tenant_secret = container.env.iter().flatten().any(|e| {
            e.name == AMQP_URI_KEY
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .is_some_and(|r| r.name == secret_name && r.key == AMQP_URI_KEY)
        });
        DeploymentSummary {
            name: d.metadata.name.unwrap_or_default(),
            image: container.image.unwrap_or_default(),
            replicas: spec.replicas.unwrap_or(1),
            strategy: spec.strategy.and_then(|s| s.type_).unwrap_or_default(),
            uses_tenant_secret,
        }
    });
    let secret = stored.map(|c| {
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
        kube_secret,
        volume,
        deployment,
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
        let secret_name = format!("backend-{}", self.sub);
        match self.kube_secret {
            Some(true) => writeln!(
                f,
                "  {} k8s secret  {secret_name} (AMQP_URI matches Secrets Manager)",
                mark(true)
            )?,
            Some(false) => writeln!(
                f,
                "  {} k8s secret  {secret_name} (AMQP_URI differs from Secrets Manager)",
                mark(false)
            )?,
            None => writeln!(f, "  {} k8s secret  missing", mark(false))?,
        }
        match &self.volume {
            Some(name) => writeln!(f, "  {} volume      {name}", mark(true))?,
            None => writeln!(f, "  {} volume      missing", mark(false))?,
        }
        match &self.deployment {
            Some(d) => writeln!(
                f,
                "  {} deployment  {} (image {}, {} replica, {}, AMQP_URI {})",
                mark(d.uses_tenant_secret),
                d.name,
                d.image,
                d.replicas,
                d.strategy,
                if d.uses_tenant_secret {
                    "from the tenant's Secret"
                } else {
                    "NOT from the tenant's Secret"
                }
            )?,
            None => writeln!(f, "  {} deployment  missing", mark(false))?,
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
