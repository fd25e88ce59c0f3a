//! Removing everything a tenant owns, idempotently: what is already gone counts as removed.

use crate::deadline::{Deadline, Step, StepError};
use crate::ports::{CredentialStore, Removed, TenantBackend, TenantBroker};
use crate::provision::Provisioner;
use crate::tenant::TenantId;

/// What teardown found and removed, per resource.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TornDown {
    pub sub: String,
    pub deployment: Removed,
    pub volume: Removed,
    pub kube_secret: Removed,
    pub vhost: Removed,
    pub user: Removed,
    pub secret: Removed,
}

impl<S: CredentialStore, B: TenantBroker, K: TenantBackend> Provisioner<S, B, K> {
    /// Removes the tenant's Deployment first (its pod stops using the rest), then its data
    /// volume, Kubernetes Secret, vhost (with its queues and permissions) and user together,
    /// and its credentials last.
    ///
    /// The secret goes last: while anything else of the tenant may still exist, the password
    /// that reaches it stays on record, and a failed teardown can simply run again.
    pub async fn teardown(&self, tenant: &TenantId, deadline: &Deadline) -> Result<TornDown, StepError> {
        let (deployment, _) = deadline
            .run(Step::Deployment, self.backend.remove_deployment(tenant))
            .await?;
        let ((volume, _), (kube_secret, _), (vhost, _), (user, _)) = tokio::try_join!(
            deadline.run(Step::Volume, self.backend.remove_volume(tenant)),
            deadline.run(Step::KubeSecret, self.backend.remove_secret(tenant)),
            deadline.run(Step::Vhost, self.broker.remove_vhost(tenant)),
            deadline.run(Step::User, self.broker.remove_user(tenant)),
        )?;
        let (secret, _) = deadline.run(Step::Secret, self.store.remove(tenant)).await?;
        Ok(TornDown {
            sub: tenant.to_string(),
            deployment,
            volume,
            kube_secret,
            vhost,
            user,
            secret,
        })
    }
}

impl TornDown {
    /// `true` when nothing was left to remove.
    pub fn was_already_gone(&self) -> bool {
        [
            self.deployment,
            self.volume,
            self.kube_secret,
            self.vhost,
            self.user,
            self.secret,
        ]
        .iter()
        .all(|r| *r == Removed::AlreadyAbsent)
    }
}
