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
//! on the same tenant. Every step observes before it writes: it creates what is missing, repairs
//! what drifted from the stored credentials and the template, leaves alone (and stops at) what
//! is not provably ours, and reports per resource what it did. Reconcile runs the same code.

use reqwest::Url;

use crate::credentials::{TenantCredentials, generate_password};
use crate::deadline::{Deadline, Step, StepError, StepTiming};
use crate::ports::{
    BrokerLimits, Converged, CredentialStore, Foreign, Found, PortError, Stored, TenantBackend, TenantBroker,
    TenantLocks,
};
use crate::tenant::TenantId;

/// The clients provisioning works with, built once per container and passed in.
pub struct Provisioner<S, B, K, L> {
    pub store: S,
    pub broker: B,
    pub backend: K,
    /// The tenant locks under which credentials are written (see [`crate::rotation`]).
    pub locks: L,
    /// The broker address written into tenants' `amqp_uri`.
    pub amqp_url: Url,
    /// Each tenant's limits on the broker.
    pub limits: BrokerLimits,
}

/// How the secret step starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretFirst {
    /// Create, and read only when it exists: one call for a new tenant (post-confirmation).
    Create,
    /// Read, and create only when absent: one call for an existing tenant (reconcile).
    Read,
}

/// What one provisioning did.
#[derive(Debug)]
pub struct Provisioned {
    pub tenant: TenantId,
    pub credentials: TenantCredentials,
    /// `true` when this run stored the credentials, `false` when it found them stored.
    pub created_secret: bool,
    /// Per-step durations, in dependency order.
    pub timings: Vec<StepTiming>,
    /// What each step did to its resource, in dependency order.
    pub changes: Vec<(Step, Converged)>,
}

impl Provisioned {
    /// Steps that created or repaired something.
    pub fn changed(&self) -> impl Iterator<Item = &(Step, Converged)> {
        self.changes.iter().filter(|(_, c)| c.changed())
    }

    /// Steps that found something a person must look at.
    pub fn needs_person(&self) -> impl Iterator<Item = &(Step, Converged)> {
        self.changes
            .iter()
            .filter(|(_, c)| matches!(c, Converged::NeedsPerson(_)))
    }
}

impl<S: CredentialStore, B: TenantBroker, K: TenantBackend, L: TenantLocks> Provisioner<S, B, K, L> {
    /// Provisions (or repairs) `tenant`; the secret is created first.
    pub async fn provision(&self, tenant: &TenantId, deadline: &Deadline) -> Result<Provisioned, StepError> {
        self.converge(tenant, deadline, SecretFirst::Create).await
    }

    pub async fn converge(
        &self,
        tenant: &TenantId,
        deadline: &Deadline,
        first: SecretFirst,
    ) -> Result<Provisioned, StepError> {
        let candidate = TenantCredentials::new(tenant, generate_password(), &self.amqp_url);

        let vhost = deadline.run(Step::Vhost, || self.broker.ensure_vhost(tenant));
        let volume = deadline.run(Step::Volume, || self.backend.ensure_volume(tenant));
        let from_secret = async {
            let ((stored, drift), secret_t) = deadline
                .run(Step::Secret, || self.settle_secret(tenant, &candidate, first))
                .await?;
            let secret = match (&drift, stored.created) {
                (_, true) => Converged::Created,
                (Some(drift), false) => Converged::Repaired(drift.clone()),
                (None, false) => Converged::Unchanged,
            };
            let credentials = &stored.credentials;
            let started = tokio::time::Instant::now();
            let took = |step| StepTiming {
                step,
                micros: started.elapsed().as_micros() as u64,
            };
            if stored.created {
                // A tenant this run just created: nothing of it can hold its new password yet, and
                // nobody can have rotated it, so write without observing and without the lock
                // (fewer calls on the signup path), then check that the stored version is still
                // the one written; if not (a duplicate run finished and a rotation came in
                // between), settle under the lock as any repair does.
                if let Some((user, kube_secret)) =
                    self.write_new_credentials(tenant, credentials, deadline).await?
                {
                    return Ok::<_, StepError>((
                        stored.credentials,
                        [
                            (secret, secret_t),
                            (user, took(Step::User)),
                            (kube_secret, took(Step::KubeSecret)),
                        ],
                    ));
                }
            } else {
                // Observe first: a tenant whose broker user and Kubernetes Secret hold the stored
                // credentials needs no write and no lock.
                let ((user_ok, user_t), (kube_ok, kube_t)) = tokio::try_join!(
                    deadline.run(Step::User, || self
                        .broker
                        .user_has_password(tenant, &credentials.password)),
                    deadline.run(Step::KubeSecret, || self
                        .backend
                        .secret_holds(tenant, &credentials.amqp_uri)),
                )?;
                if user_ok && kube_ok && drift.is_none() {
                    return Ok((
                        stored.credentials,
                        [
                            (secret, secret_t),
                            (Converged::Unchanged, user_t),
                            (Converged::Unchanged, kube_t),
                        ],
                    ));
                }
            }
            let settled = self.settle_credentials(tenant, deadline).await?;
            let secret = if settled.secret == Converged::Unchanged {
                secret
            } else {
                settled.secret
            };
            Ok((
                settled.credentials,
                [
                    (secret, secret_t),
                    (settled.user, took(Step::User)),
                    (settled.kube_secret, took(Step::KubeSecret)),
                ],
            ))
        };
        // Fail fast: when one branch fails the others are dropped; whatever they did is
        // idempotent, and the next run converges.
        let ((vhost, vhost_t), (volume, volume_t), (credentials, [secret, user, kube_secret])) =
            tokio::try_join!(vhost, volume, from_secret)?;

        // The Deployment names the Secret and the volume; the permission needs user and vhost;
        // and the vhost must run on every node (checked here, off the vhost's own path).
        let (permission, deployment, (running, _), (limits, _)) = tokio::try_join!(
            deadline.run(Step::Permission, || self.broker.ensure_permission(tenant)),
            deadline.run(Step::Deployment, || self.backend.ensure_deployment(tenant)),
            deadline.run(Step::Vhost, || self.broker.ensure_vhost_running(tenant)),
            deadline.run(Step::Limits, || self.broker.ensure_limits(tenant, &self.limits)),
        )?;

        let steps = [
            (Step::Secret, secret),
            (Step::Vhost, (vhost, vhost_t)),
            (Step::Volume, (volume, volume_t)),
            (Step::User, user),
            (Step::KubeSecret, kube_secret),
            (Step::Permission, permission),
            (Step::Deployment, deployment),
        ];
        let mut changes: Vec<(Step, Converged)> =
            steps.iter().map(|(step, (c, _))| (*step, c.clone())).collect();
        if running != Converged::Unchanged {
            changes.push((Step::Vhost, running));
        }
        let created_secret = matches!(changes[0].1, Converged::Created);
        changes.push((Step::Limits, limits));
        Ok(Provisioned {
            tenant: tenant.clone(),
            credentials,
            created_secret,
            timings: steps.iter().map(|(_, (_, t))| *t).collect(),
            changes,
        })
    }

    /// The broker user and the Kubernetes Secret made to hold `credentials` (at once).
    pub(crate) async fn write_credentials(
        &self,
        tenant: &TenantId,
        credentials: &TenantCredentials,
        deadline: &Deadline,
    ) -> Result<(Converged, Converged), StepError> {
        let ((user, _), (kube_secret, _)) = tokio::try_join!(
            deadline.run(Step::User, || self
                .broker
                .ensure_user(tenant, &credentials.password)),
            deadline.run(Step::KubeSecret, || self
                .backend
                .ensure_secret(tenant, &credentials.amqp_uri)),
        )?;
        Ok((user, kube_secret))
    }

    /// Writes a just-created tenant's credentials to the broker and the cluster, then checks that
    /// they are still the current version with nothing pending: `None` when they are not (the
    /// caller settles under the lock).
    async fn write_new_credentials(
        &self,
        tenant: &TenantId,
        credentials: &TenantCredentials,
        deadline: &Deadline,
    ) -> Result<Option<(Converged, Converged)>, StepError> {
        let (user, kube_secret) = self.write_credentials(tenant, credentials, deadline).await?;
        let (found, _) = deadline.run(Step::Secret, || self.store.versions(tenant)).await?;
        let unchanged =
            matches!(&found, Found::Ours(v) if v.pending.is_none() && v.current.credentials == *credentials);
        Ok(unchanged.then_some((user, kube_secret)))
    }

    /// The stored credentials, created when absent, and what in them no longer says what it must:
    /// the tenant's own user and vhost, and an `amqp_uri` rebuilt from the stored password and
    /// the configured broker (so a hand-edited secret cannot point a tenant at another tenant's
    /// credentials or another broker). Writes nothing but a new secret: repairs are made under
    /// the tenant's lock ([`Self::settle_credentials`]).
    async fn settle_secret(
        &self,
        tenant: &TenantId,
        candidate: &TenantCredentials,
        first: SecretFirst,
    ) -> Result<(Stored, Option<String>), PortError> {
        let stored = match first {
            SecretFirst::Create => self.store.create_or_read(tenant, candidate).await?,
            SecretFirst::Read => match self.store.read(tenant).await? {
                Found::Ours(credentials) => Stored {
                    credentials,
                    created: false,
                },
                Found::Absent => self.store.create_or_read(tenant, candidate).await?,
                Found::Foreign(reason) => {
                    return Err(Foreign {
                        kind: "secret",
                        name: tenant.to_string(),
                        reason,
                    }
                    .into());
                }
            },
        };
        let drift = (!stored.created)
            .then(|| self.expected(tenant, &stored.credentials).1)
            .flatten();
        Ok((stored, drift))
    }

    /// The credentials `stored` must be (the stored password, rebuilt), and what differs.
    pub(crate) fn expected(
        &self,
        tenant: &TenantId,
        stored: &TenantCredentials,
    ) -> (TenantCredentials, Option<String>) {
        let password = if stored.password.expose().is_empty() {
            generate_password()
        } else {
            stored.password.clone()
        };
        let expected = TenantCredentials::new(tenant, password, &self.amqp_url);
        let drift = stored.drift_from(&expected);
        (expected, drift)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::credentials::Password;
    use crate::memory::{MemoryBackend, MemoryBroker, MemoryLocks, MemoryStore, MemoryUser};

    pub(crate) type Memory = Provisioner<MemoryStore, MemoryBroker, MemoryBackend, MemoryLocks>;

    pub(crate) fn provisioner() -> Memory {
        Provisioner {
            store: MemoryStore {
                latency: Duration::from_millis(1),
                ..Default::default()
            },
            broker: MemoryBroker::default(),
            backend: MemoryBackend::default(),
            locks: MemoryLocks::default(),
            amqp_url: Url::parse("amqp://mq.local:5672").unwrap(),
            limits: BrokerLimits::default(),
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
        assert_eq!(
            p.broker.users.lock().unwrap()[t.as_str()].password,
            stored.password
        );
        assert_eq!(p.broker.vhosts.lock().unwrap().get(t.as_str()), Some(&true));
        let permissions = p.broker.permissions.lock().unwrap();
        assert!(permissions.contains(&(t.to_string(), t.to_string())));
        assert_eq!(permissions.iter().filter(|(_, u)| u == t.as_str()).count(), 1);
        assert_eq!(
            p.backend.objects.lock().unwrap()[&format!("secret/{t}")].0,
            stored.amqp_uri.expose()
        );
    }

    #[tokio::test]
    async fn provisions_every_resource_with_the_stored_password() {
        let p = provisioner();
        let done = p.provision(&tenant(), &deadline()).await.unwrap();
        assert!(done.created_secret);
        assert_eq!(done.timings.len(), 7);
        assert!(
            done.changes.iter().all(|(_, c)| *c == Converged::Created),
            "{:?}",
            done.changes
        );
        assert_consistent(&p, &tenant());
    }

    #[tokio::test]
    async fn a_repeated_event_keeps_the_first_password_and_changes_nothing() {
        let p = provisioner();
        let first = p.provision(&tenant(), &deadline()).await.unwrap();
        for _ in 0..3 {
            let again = p.provision(&tenant(), &deadline()).await.unwrap();
            assert!(!again.created_secret);
            assert_eq!(again.credentials.password, first.credentials.password);
            assert_eq!(again.changed().count(), 0, "{:?}", again.changes);
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
    async fn drift_is_repaired_and_reported_per_resource() {
        let p = provisioner();
        let t = tenant();
        let first = p.provision(&t, &deadline()).await.unwrap();
        // A password changed by hand, an extra permission, a hand-edited secret.
        p.broker
            .users
            .lock()
            .unwrap()
            .get_mut(t.as_str())
            .unwrap()
            .password = Password::new("by-hand");
        p.broker
            .permissions
            .lock()
            .unwrap()
            .insert(("another-vhost".into(), t.to_string()));
        let neighbour = TenantId::parse("0d9e8f6a-1b2c-4d3e-8f4a-5b6c7d8e9f00").unwrap();
        p.store.secrets.lock().unwrap().get_mut(&t).unwrap().amqp_uri =
            TenantCredentials::new(&neighbour, Password::new("x"), &p.amqp_url).amqp_uri;
        let again = p.converge(&t, &deadline(), SecretFirst::Read).await.unwrap();
        let repaired: Vec<Step> = again.changed().map(|(s, _)| *s).collect();
        assert_eq!(
            repaired,
            [Step::Secret, Step::User, Step::Permission],
            "{:?}",
            again.changes
        );
        assert_eq!(again.credentials.password, first.credentials.password);
        assert_consistent(&p, &t);
    }

    #[tokio::test]
    async fn what_is_not_ours_stops_provisioning_and_is_never_adopted() {
        let p = provisioner();
        let t = tenant();
        p.broker.vhosts.lock().unwrap().insert(t.to_string(), false);
        let err = p.provision(&t, &deadline()).await.unwrap_err();
        assert_eq!(err.step(), Step::Vhost);
        assert!(err.is_foreign(), "{err}");
        assert!(!p.broker.vhosts.lock().unwrap()[t.as_str()], "never adopted");

        let p = provisioner();
        p.broker.users.lock().unwrap().insert(
            t.to_string(),
            MemoryUser {
                password: Password::new("someone-elses"),
                tags: vec![],
            },
        );
        let err = p.provision(&t, &deadline()).await.unwrap_err();
        assert_eq!(err.step(), Step::User);
        assert!(err.is_foreign(), "{err}");
        assert_eq!(
            p.broker.users.lock().unwrap()[t.as_str()].password,
            Password::new("someone-elses")
        );
    }

    #[tokio::test]
    async fn teardown_removes_everything_and_is_idempotent() {
        let p = provisioner();
        p.provision(&tenant(), &deadline()).await.unwrap();
        let first = p.teardown(&tenant(), &deadline()).await.unwrap();
        assert_eq!(first.deleted().len(), 6, "{first:?}");
        assert!(p.store.secrets.lock().unwrap().is_empty());
        assert!(p.broker.users.lock().unwrap().is_empty());
        assert!(p.broker.permissions.lock().unwrap().is_empty());
        assert!(p.backend.objects.lock().unwrap().is_empty());
        let second = p.teardown(&tenant(), &deadline()).await.unwrap();
        assert!(second.was_already_gone());
        assert_eq!(second.already_absent().len(), 6);
    }

    #[tokio::test]
    async fn teardown_leaves_foreign_resources_alone_and_says_so() {
        let p = provisioner();
        let t = tenant();
        p.broker.vhosts.lock().unwrap().insert(t.to_string(), false);
        p.broker.users.lock().unwrap().insert(
            t.to_string(),
            MemoryUser {
                password: Password::new("someone-elses"),
                tags: vec![],
            },
        );
        p.backend
            .objects
            .lock()
            .unwrap()
            .insert(format!("volume/{t}"), (String::new(), false));
        p.store.foreign.lock().unwrap().insert(t.clone());
        let done = p.teardown(&t, &deadline()).await.unwrap();
        let left: Vec<Step> = done.left_alone().into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, [Step::Volume, Step::Vhost, Step::User, Step::Secret]);
        assert_eq!(p.broker.vhosts.lock().unwrap().len(), 1);
        assert_eq!(p.broker.users.lock().unwrap().len(), 1);
        assert_eq!(p.backend.objects.lock().unwrap().len(), 1);
    }
}
