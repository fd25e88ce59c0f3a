//! Provisioning one tenant: the domain logic behind post-confirmation, reconcile and
//! `tgsearch provision`.
//!
//! Order and concurrency follow the dependencies:
//!
//! ```text
//!   vhost ────────────────────────────────────────┐
//!   volume (PVC) ───────────────────┐             │
//!   secret (create-or-read) ─┬─> user ────────────┴─> permission
//!                            └─> kube-secret ─┴─> deployment
//! ```
//!
//! The secret is written first and is the one source of the password: a retry, or a duplicate
//! running at the same time, reads the password the first writer stored, so every run converges
//! on the same tenant. Every other step is an idempotent PUT.

use reqwest::Url;

use crate::credentials::{TenantCredentials, generate_password};
use crate::deadline::{Deadline, Step, StepError, StepTiming};
use crate::ports::{CredentialStore, TenantBackend, TenantBroker};
use crate::tenant::TenantId;

/// The clients provisioning works with, built once per container and passed in.
pub struct Provisioner<S, B, K> {
    pub store: S,
    pub broker: B,
    pub backend: K,
    /// The broker address written into new tenants' `amqp_uri`.
    pub amqp_url: Url,
}

/// What one provisioning did.
#[derive(Debug)]
pub struct Provisioned {
    pub tenant: TenantId,
    pub credentials: TenantCredentials,
    /// `true` when this run stored the credentials, `false` when it found them stored.
    pub created_secret: bool,
    /// Per-step durations, in the order the steps finished.
    pub timings: Vec<StepTiming>,
}

impl<S: CredentialStore, B: TenantBroker, K: TenantBackend> Provisioner<S, B, K> {
    pub async fn provision(&self, tenant: &TenantId, deadline: &Deadline) -> Result<Provisioned, StepError> {
        let candidate = TenantCredentials::new(tenant, generate_password(), &self.amqp_url);

        let vhost = deadline.run(Step::Vhost, self.broker.ensure_vhost(tenant));
        let volume = deadline.run(Step::Volume, self.backend.ensure_volume(tenant));
        let from_secret = async {
            let (stored, secret) = deadline
                .run(Step::Secret, self.store.create_or_read(tenant, &candidate))
                .await?;
            let credentials = &stored.credentials;
            let user = deadline.run(Step::User, self.broker.ensure_user(tenant, &credentials.password));
            let kube_secret = deadline.run(
                Step::KubeSecret,
                self.backend.ensure_secret(tenant, &credentials.amqp_uri),
            );
            let (((), user), ((), kube_secret)) = tokio::try_join!(user, kube_secret)?;
            Ok::<_, StepError>((stored, [secret, user, kube_secret]))
        };
        // Fail fast: when one branch fails the others are dropped; whatever they did is
        // idempotent, and the next run converges.
        let (((), vhost), ((), volume), (stored, [secret, user, kube_secret])) =
            tokio::try_join!(vhost, volume, from_secret)?;

        // The Deployment names the Secret and the volume; the permission needs user and vhost.
        let (((), permission), ((), deployment)) = tokio::try_join!(
            deadline.run(Step::Permission, self.broker.ensure_permission(tenant)),
            deadline.run(Step::Deployment, self.backend.ensure_deployment(tenant)),
        )?;

        Ok(Provisioned {
            tenant: tenant.clone(),
            credentials: stored.credentials,
            created_secret: stored.created,
            timings: vec![secret, vhost, volume, user, kube_secret, permission, deployment],
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::{MemoryBackend, MemoryBroker, MemoryStore};
    use crate::ports::Removed;

    type Memory = Provisioner<MemoryStore, MemoryBroker, MemoryBackend>;

    fn provisioner() -> Memory {
        Provisioner {
            store: MemoryStore {
                latency: Duration::from_millis(1),
                ..Default::default()
            },
            broker: MemoryBroker::default(),
            backend: MemoryBackend::default(),
            amqp_url: Url::parse("amqp://mq.local:5672").unwrap(),
        }
    }

    fn tenant() -> TenantId {
        TenantId::parse("0c9e8f6a-1b2c-4d3e-8f4a-5b6c7d8e9f00").unwrap()
    }

    fn deadline() -> Deadline {
        Deadline::new(Duration::from_secs(5), None)
    }

    fn assert_consistent(p: &Memory, t: &TenantId) {
        let stored = p.store.secrets.lock().unwrap()[t].clone();
        assert_eq!(p.broker.users.lock().unwrap()[t.as_str()], stored.password);
        assert!(p.broker.vhosts.lock().unwrap().contains(t.as_str()));
        assert!(
            p.broker
                .permissions
                .lock()
                .unwrap()
                .contains(&(t.to_string(), t.to_string()))
        );
    }

    #[tokio::test]
    async fn provisions_every_resource_with_the_stored_password() {
        let p = provisioner();
        let done = p.provision(&tenant(), &deadline()).await.unwrap();
        assert!(done.created_secret);
        assert_eq!(done.timings.len(), 7);
        assert_consistent(&p, &tenant());
    }

    #[tokio::test]
    async fn a_repeated_event_keeps_the_first_password() {
        let p = provisioner();
        let first = p.provision(&tenant(), &deadline()).await.unwrap();
        for _ in 0..3 {
            let again = p.provision(&tenant(), &deadline()).await.unwrap();
            assert!(!again.created_secret);
            assert_eq!(again.credentials.password, first.credentials.password);
        }
        assert_consistent(&p, &tenant());
    }

    #[tokio::test]
    async fn concurrent_duplicates_agree_on_one_password() {
        let p = provisioner();
        let t = tenant();
        let d = deadline();
        let (a, b, c) = tokio::join!(p.provision(&t, &d), p.provision(&t, &d), p.provision(&t, &d));
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(
            [a.created_secret, b.created_secret, c.created_secret]
                .iter()
                .filter(|c| **c)
                .count(),
            1
        );
        assert_eq!(a.credentials.password, b.credentials.password);
        assert_eq!(b.credentials.password, c.credentials.password);
        assert_consistent(&p, &t);
    }

    #[tokio::test]
    async fn a_failed_step_is_named_and_a_retry_converges() {
        let p = provisioner();
        p.broker.fail_once.lock().unwrap().insert(Step::User);
        let err = p.provision(&tenant(), &deadline()).await.unwrap_err();
        assert_eq!(err.step(), Step::User);
        assert!(err.to_string().contains("step `user` failed"), "{err}");
        let retry = p.provision(&tenant(), &deadline()).await.unwrap();
        assert!(!retry.created_secret, "the retry must reuse the stored password");
        assert_consistent(&p, &tenant());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_server_fails_within_the_budget_naming_the_step() {
        let p = provisioner();
        p.broker.hang.lock().unwrap().insert(Step::Permission);
        let d = Deadline::new(Duration::from_millis(300), None);
        let err = p.provision(&tenant(), &d).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "step `permission` did not finish within the 300 ms budget"
        );
    }

    #[tokio::test]
    async fn teardown_removes_everything_and_is_idempotent() {
        let p = provisioner();
        p.provision(&tenant(), &deadline()).await.unwrap();
        let first = p.teardown(&tenant(), &deadline()).await.unwrap();
        assert_eq!(
            (first.vhost, first.user, first.secret),
            (Removed::Deleted, Removed::Deleted, Removed::Deleted)
        );
        assert!(p.store.secrets.lock().unwrap().is_empty());
        assert!(p.broker.users.lock().unwrap().is_empty());
        assert!(p.broker.permissions.lock().unwrap().is_empty());
        assert!(p.backend.objects.lock().unwrap().is_empty());
        assert_eq!(first.deployment, Removed::Deleted);
        let second = p.teardown(&tenant(), &deadline()).await.unwrap();
        assert!(second.was_already_gone());
    }
}
