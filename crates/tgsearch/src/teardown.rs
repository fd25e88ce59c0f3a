//! Removing everything a tenant owns, idempotently: what is already gone counts as removed, and
//! what is named like the tenant's but not provably ours is left alone and reported.

use serde::Serialize;

use crate::deadline::{Deadline, Step, StepError};
use crate::ports::{
    CredentialStore, DirectoryUser, Found, Removed, TenantBackend, TenantBroker, TenantLocks,
};
use crate::provision::Provisioner;
use crate::tenant::TenantId;

/// What teardown found and did, per resource.
#[derive(Debug, Clone)]
pub struct TornDown {
    pub sub: String,
    pub deployment: Removed,
    pub volume: Removed,
    pub kube_secret: Removed,
    pub vhost: Removed,
    pub user: Removed,
    pub secret: Removed,
}

/// Why teardown refused to start.
#[derive(Debug, thiserror::Error)]
pub enum TeardownRefused {
    #[error(
        "the Cognito user `{0}` still exists and is enabled: removing the tenant would delete the data volume of an active user (and reconcile would re-create it empty); disable or delete the user first, or force the teardown (`\"force\": true`, `tgsearch teardown --force`)"
    )]
    UserActive(String),
}

/// Teardown removes a tenant only once its user is gone or disabled, unless forced.
pub fn guard(sub: &str, user: Option<&DirectoryUser>, force: bool) -> Result<(), TeardownRefused> {
    match user {
        Some(u) if u.enabled && !force => Err(TeardownRefused::UserActive(sub.to_owned())),
        _ => Ok(()),
    }
}

impl TornDown {
    fn resources(&self) -> [(Step, &Removed); 6] {
        [
            (Step::Deployment, &self.deployment),
            (Step::Volume, &self.volume),
            (Step::KubeSecret, &self.kube_secret),
            (Step::Vhost, &self.vhost),
            (Step::User, &self.user),
            (Step::Secret, &self.secret),
        ]
    }

    /// `true` when nothing was left to remove (foreign leftovers aside).
    pub fn was_already_gone(&self) -> bool {
        self.resources()
            .iter()
            .all(|(_, r)| !matches!(r, Removed::Deleted))
    }

    /// Resources that were removed now.
    pub fn deleted(&self) -> Vec<Step> {
        self.resources()
            .iter()
            .filter(|(_, r)| matches!(r, Removed::Deleted))
            .map(|(s, _)| *s)
            .collect()
    }

    /// Resources that were not there.
    pub fn already_absent(&self) -> Vec<Step> {
        self.resources()
            .iter()
            .filter(|(_, r)| matches!(r, Removed::AlreadyAbsent))
            .map(|(s, _)| *s)
            .collect()
    }

    /// Resources named like the tenant's but not provably ours, with why.
    pub fn left_alone(&self) -> Vec<(Step, String)> {
        self.resources()
            .iter()
            .filter_map(|(s, r)| match r {
                Removed::LeftAlone(why) => Some((*s, why.clone())),
                _ => None,
            })
            .collect()
    }
}

#[derive(Serialize)]
struct LeftAlone {
    resource: Step,
    reason: String,
}

impl Serialize for TornDown {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("TornDown", 4)?;
        s.serialize_field("sub", &self.sub)?;
        s.serialize_field("removed", &self.deleted())?;
        s.serialize_field("already_absent", &self.already_absent())?;
        let left: Vec<LeftAlone> = self
            .left_alone()
            .into_iter()
            .map(|(resource, reason)| LeftAlone { resource, reason })
            .collect();
        s.serialize_field("left_alone", &left)?;
        s.end()
    }
}

impl<S: CredentialStore, B: TenantBroker, K: TenantBackend, L: TenantLocks> Provisioner<S, B, K, L> {
    /// Removes the tenant's Deployment first (its pod stops using the rest), then its data
    /// volume, Kubernetes Secret, user and vhost (with its queues and permissions), and its
    /// credentials last.
    ///
    /// The secret goes last: while anything else of the tenant may still exist, the password
    /// that proves the RabbitMQ user ours stays on record, and a failed teardown can simply run
    /// again. Callers check [`guard`] first.
    pub async fn teardown(&self, tenant: &TenantId, deadline: &Deadline) -> Result<TornDown, StepError> {
        let (deployment, _) = deadline
            .run(Step::Deployment, || self.backend.remove_deployment(tenant))
            .await?;
        let (stored, _) = deadline.run(Step::Secret, || self.store.read(tenant)).await?;
        let password = match &stored {
            Found::Ours(credentials) => Some(credentials.password.clone()),
            _ => None,
        };
        // The user first: whether it is ours may rest on its permission on our vhost.
        let broker = async {
            let (user, _) = deadline
                .run(Step::User, || self.broker.remove_user(tenant, password.as_ref()))
                .await?;
            let (vhost, _) = deadline
                .run(Step::Vhost, || self.broker.remove_vhost(tenant))
                .await?;
            Ok::<_, StepError>((user, vhost))
        };
        let ((volume, _), (kube_secret, _), (user, vhost)) = tokio::try_join!(
            deadline.run(Step::Volume, || self.backend.remove_volume(tenant)),
            deadline.run(Step::KubeSecret, || self.backend.remove_secret(tenant)),
            broker,
        )?;
        let secret = match stored {
            Found::Foreign(why) => Removed::LeftAlone(why),
            _ => deadline.run(Step::Secret, || self.store.remove(tenant)).await?.0,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(enabled: bool) -> DirectoryUser {
        DirectoryUser {
            sub: "s".into(),
            confirmed: true,
            enabled,
        }
    }

    #[test]
    fn an_active_user_keeps_their_tenant_unless_forced() {
        let err = guard("s", Some(&user(true)), false).unwrap_err().to_string();
        assert!(
            err.contains("still exists and is enabled") && err.contains("force"),
            "{err}"
        );
        guard("s", Some(&user(true)), true).unwrap();
        guard("s", Some(&user(false)), false).unwrap();
        guard("s", None, false).unwrap();
    }
}
