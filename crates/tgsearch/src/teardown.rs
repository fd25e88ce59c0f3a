//! Removing everything a tenant owns, idempotently: what is already gone counts as removed.

use crate::deadline::{Deadline, Step, StepError};
use crate::ports::{CredentialStore, Removed, TenantBroker};
use crate::provision::Provisioner;
use crate::tenant::TenantId;

/// What teardown found and removed, per resource.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TornDown {
    pub sub: String,
    pub vhost: Removed,
    pub user: Removed,
    pub secret: Removed,
}

impl<S: CredentialStore, B: TenantBroker> Provisioner<S, B> {
    /// Removes the tenant's vhost (with its queues and permissions), its user, then its secret.
    ///
    /// The secret goes last: while anything else of the tenant may still exist, the password
    /// that reaches it stays on record.
    pub async fn teardown(&self, tenant: &TenantId, deadline: &Deadline) -> Result<TornDown, StepError> {
        let ((vhost, _), (user, _)) = tokio::try_join!(
            deadline.run(Step::Vhost, self.broker.remove_vhost(tenant)),
            deadline.run(Step::User, self.broker.remove_user(tenant)),
        )?;
        let (secret, _) = deadline.run(Step::Secret, self.store.remove(tenant)).await?;
        Ok(TornDown {
            sub: tenant.to_string(),
            vhost,
            user,
            secret,
        })
    }
}

impl TornDown {
    /// `true` when nothing was left to remove.
    pub fn was_already_gone(&self) -> bool {
        [self.vhost, self.user, self.secret]
            .iter()
            .all(|r| *r == Removed::AlreadyAbsent)
    }
}
