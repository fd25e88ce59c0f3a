//! Rotation as a protocol, after Secrets Manager's own four steps, and the one rule that keeps
//! every writer of a tenant's credentials from undoing another's.
//!
//! ```text
//!   create: a pending version of the tenant secret (AWSPENDING), new password
//!   set:    the broker user takes it; every connection the user has open is closed
//!   test:   the broker holds exactly that password; the Kubernetes Secret gets the new URI
//!           and the backend restarts onto that version
//!   finish: the pending version becomes current (AWSCURRENT)
//! ```
//!
//! **The rule:** the broker user's password, the Kubernetes Secret and the secret's versions are
//! written only under the tenant's lock (a lease in DynamoDB, shared by every function), from a
//! read made after the lock was taken. A rotation holds the lock from `create` to `finish`;
//! provisioning and reconcile take it only when what they observed needs a write. So a repair
//! can never put back a password a rotation replaced: it reads the newer version under the lock.
//!
//! **Cut anywhere, repeated, finished:** the pending version is the rotation's memory. Whoever
//! next holds the lock and finds a pending version (the user repeating the rotation, the worker,
//! reconcile) carries the same version through `set`, `test` and `finish`; every step is
//! idempotent. Until `finish`, `GET /tenant` answers "provisioning" (the broker no longer takes
//! the current version), never credentials that fail.
//!
//! **Two at once:** the second finds the lock held, waits for it, and then joins the first: it
//! answers the credentials the first made current. When the first outlasts the wait, the second
//! answers 409.

use std::time::Duration;

use crate::credentials::{TenantCredentials, generate_password, random_uuid};
use crate::deadline::{Deadline, Step, StepError};
use crate::ports::{
    Converged, CredentialStore, Found, PortError, TenantBackend, TenantBroker, TenantLocks, Versioned,
};
use crate::provision::Provisioner;
use crate::tenant::TenantId;

/// Kept on a lock beyond its holder's deadline: a holder cut off mid-request may still land a
/// write that long after (a request's server side outlives the client that dropped it).
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// How often a waiter asks for a held lock again.
const LOCK_POLL: Duration = Duration::from_millis(150);

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// This call made these credentials current (a new rotation, or one cut short, finished).
    Rotated(TenantCredentials),
    /// Another rotation held the tenant and finished while this one waited: these are the
    /// credentials it made current.
    Joined(TenantCredentials),
    /// Another rotation still holds the tenant.
    Busy,
}

/// What settling a tenant's credentials under its lock did.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The credentials now current.
    pub credentials: TenantCredentials,
    pub secret: Converged,
    pub user: Converged,
    pub kube_secret: Converged,
}

/// A lock holder's id: random, so that a lapsed holder never releases its successor's lock.
fn owner() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A held tenant lock. Given up with [`Held::release`]; a holder dropped before that (its
/// caller's deadline cancelled it mid-write) gives it up in the background.
struct Held<'a, L: TenantLocks> {
    locks: &'a L,
    tenant: TenantId,
    owner: String,
    /// The lock was free on the first ask (`false`: this holder waited for another).
    first: bool,
    released: bool,
}

impl<L: TenantLocks> Held<'_, L> {
    async fn release(mut self) {
        self.released = true;
        if let Err(e) = self.locks.release(&self.tenant, &self.owner).await {
            tracing::warn!(tenant = %self.tenant, error = %e, "tenant lock not released; it lapses with its lease");
        }
    }
}

impl<L: TenantLocks> Drop for Held<'_, L> {
    fn drop(&mut self) {
        if !self.released {
            self.locks.release_detached(&self.tenant, &self.owner);
        }
    }
}

impl<S: CredentialStore, B: TenantBroker, K: TenantBackend, L: TenantLocks> Provisioner<S, B, K, L> {
    /// Waits for `tenant`'s lock until the deadline: `None` when it stayed with another holder.
    async fn lock(&self, tenant: &TenantId, deadline: &Deadline) -> Result<Option<Held<'_, L>>, StepError> {
        let owner = owner();
        let mut first = true;
        loop {
            let lease = deadline.remaining() + LEASE_MARGIN;
            let (held, _) = deadline
                .run(Step::Lock, || self.locks.acquire(tenant, &owner, lease))
                .await?;
            if held {
                return Ok(Some(Held {
                    locks: &self.locks,
                    tenant: tenant.clone(),
                    owner,
                    first,
                    released: false,
                }));
            }
            let pause = LOCK_POLL.mul_f64(0.5 + rand::random::<f64>());
            if deadline.remaining() <= pause {
                return Ok(None);
            }
            first = false;
            tokio::time::sleep(pause).await;
        }
    }

    /// Makes the broker user and the Kubernetes Secret hold the current credentials, under the
    /// tenant's lock, from a fresh read; a rotation found cut short is finished first.
    pub async fn settle_credentials(
        &self,
        tenant: &TenantId,
        deadline: &Deadline,
    ) -> Result<Settled, StepError> {
        let Some(held) = self.lock(tenant, deadline).await? else {
            return Err(StepError::Failed {
                step: Step::Lock,
                source: crate::ports::Transient::wrap(
                    "another run is writing the tenant's credentials (a rotation, or a repair); try again",
                    None,
                ),
            });
        };
        let settled = self.settle_locked(tenant, deadline).await;
        held.release().await;
        settled
    }

    async fn settle_locked(&self, tenant: &TenantId, deadline: &Deadline) -> Result<Settled, StepError> {
        let versions = self.fresh_versions(tenant, deadline).await?;
        if let Some(pending) = versions.pending {
            self.finish(tenant, &pending, deadline).await?;
            let finished = || Converged::Repaired("a rotation cut short was finished".into());
            return Ok(Settled {
                credentials: pending.credentials,
                secret: finished(),
                user: finished(),
                kube_secret: finished(),
            });
        }
        let (expected, drift) = self.expected(tenant, &versions.current.credentials);
        let secret = match drift {
            Some(drift) => {
                deadline
                    .run(Step::Secret, || self.store.replace(tenant, &expected))
                    .await?;
                Converged::Repaired(drift)
            }
            None => Converged::Unchanged,
        };
        let (user, kube_secret) = self.write_credentials(tenant, &expected, deadline).await?;
        Ok(Settled {
            credentials: expected,
            secret,
            user,
            kube_secret,
        })
    }

    async fn fresh_versions(
        &self,
        tenant: &TenantId,
        deadline: &Deadline,
    ) -> Result<crate::ports::CredentialVersions, StepError> {
        let (found, _) = deadline.run(Step::Secret, || self.store.versions(tenant)).await?;
        match found {
            Found::Ours(v) => Ok(v),
            Found::Absent => Err(StepError::Failed {
                step: Step::Secret,
                source: "the tenant secret is gone (the tenant is being removed)".into(),
            }),
            Found::Foreign(reason) => Err(StepError::Failed {
                step: Step::Secret,
                source: PortError::from(crate::ports::Foreign {
                    kind: "secret",
                    name: tenant.to_string(),
                    reason,
                }),
            }),
        }
    }

    /// Gives the tenant a new password (a user who believes theirs leaked), or finishes the
    /// rotation left pending; see the module documentation for the protocol.
    pub async fn rotate(&self, tenant: &TenantId, deadline: &Deadline) -> Result<Rotation, StepError> {
        let before = self.fresh_versions(tenant, deadline).await?;
        self.rotate_from(tenant, &before, deadline).await
    }

    /// [`Self::rotate`], from the versions the caller read before deciding to rotate (`before`:
    /// a rotation that finished while this one waited for the lock is recognised by its newer
    /// current version, and joined).
    pub async fn rotate_from(
        &self,
        tenant: &TenantId,
        before: &crate::ports::CredentialVersions,
        deadline: &Deadline,
    ) -> Result<Rotation, StepError> {
        let Some(held) = self.lock(tenant, deadline).await? else {
            return Ok(Rotation::Busy);
        };
        let waited = !held.first;
        let rotated = async {
            let versions = self.fresh_versions(tenant, deadline).await?;
            if waited && versions.pending.is_none() && versions.current.version != before.current.version {
                // Another rotation held the tenant and finished while this one waited.
                return Ok(Rotation::Joined(versions.current.credentials));
            }
            let pending = match versions.pending {
                Some(pending) => pending,
                None => {
                    let pending = Versioned {
                        version: random_uuid(),
                        credentials: TenantCredentials::new(tenant, generate_password(), &self.amqp_url),
                    };
                    deadline
                        .run(Step::Secret, || {
                            self.store
                                .put_pending(tenant, &pending.version, &pending.credentials)
                        })
                        .await?;
                    pending
                }
            };
            self.finish(tenant, &pending, deadline).await?;
            Ok(Rotation::Rotated(pending.credentials))
        }
        .await;
        held.release().await;
        rotated
    }

    /// `set`, `test` and `finish` for the pending version, each repeatable.
    async fn finish(
        &self,
        tenant: &TenantId,
        pending: &Versioned,
        deadline: &Deadline,
    ) -> Result<(), StepError> {
        let credentials = &pending.credentials;
        // set: the user takes the new password, keeps its permission, and loses its sessions.
        deadline
            .run(Step::User, || {
                self.broker.ensure_user(tenant, &credentials.password)
            })
            .await?;
        tokio::try_join!(
            deadline.run(Step::Permission, || self.broker.ensure_permission(tenant)),
            deadline.run(Step::User, || self.broker.close_connections(tenant)),
        )?;
        // test: the broker holds exactly the pending password.
        let (holds, _) = deadline
            .run(Step::User, || {
                self.broker.user_has_password(tenant, &credentials.password)
            })
            .await?;
        if !holds {
            return Err(StepError::Failed {
                step: Step::User,
                source: crate::ports::Transient::wrap("the broker does not hold the new password yet", None),
            });
        }
        deadline
            .run(Step::KubeSecret, || {
                self.backend.ensure_secret(tenant, &credentials.amqp_uri)
            })
            .await?;
        deadline
            .run(Step::Deployment, || {
                self.backend.restart(tenant, &pending.version)
            })
            .await?;
        // finish: the pending version becomes current.
        deadline
            .run(Step::Secret, || self.store.promote(tenant, &pending.version))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::SecretFirst;
    use crate::provision::tests::{Memory, provisioner};

    fn tenant() -> TenantId {
        TenantId::parse("1c9e8f6a-1b2c-4d3e-8f4a-5b6c7d8e9f00").unwrap()
    }

    fn deadline() -> Deadline {
        Deadline::new(Duration::from_secs(5), None)
    }

    /// The broker, the Kubernetes Secret and the current stored version agree; nothing pending.
    fn assert_settled(p: &Memory, t: &TenantId) -> TenantCredentials {
        let stored = p.store.secrets.lock().unwrap()[t].clone();
        assert_eq!(
            p.broker.users.lock().unwrap()[t.as_str()].password,
            stored.password
        );
        assert_eq!(
            p.backend.objects.lock().unwrap()[&format!("secret/{t}")].0,
            stored.amqp_uri.expose()
        );
        assert!(
            p.store.pending.lock().unwrap().get(t).is_none(),
            "nothing left pending"
        );
        assert!(
            p.locks.held.lock().unwrap().get(t).is_none(),
            "the lock was given up"
        );
        stored
    }

    async fn ready(p: &Memory) -> TenantCredentials {
        p.provision(&tenant(), &deadline()).await.unwrap().credentials
    }

    #[tokio::test]
    async fn a_rotation_replaces_the_password_everywhere_and_closes_the_old_sessions() {
        let p = provisioner();
        let old = ready(&p).await;
        let Rotation::Rotated(new) = p.rotate(&tenant(), &deadline()).await.unwrap() else {
            panic!("not rotated")
        };
        assert_ne!(new.password, old.password);
        assert_eq!(assert_settled(&p, &tenant()), new);
        assert_eq!(p.broker.closed.lock().unwrap()[tenant().as_str()], 1);
        let version = p.store.current.lock().unwrap()[&tenant()].clone();
        assert_eq!(p.backend.restarted.lock().unwrap()[tenant().as_str()], version);
    }

    #[tokio::test]
    async fn a_rotation_cut_before_the_broker_took_it_is_finished_by_the_repeat() {
        let p = provisioner();
        let old = ready(&p).await;
        p.broker.fail_once.lock().unwrap().insert(Step::User);
        p.rotate(&tenant(), &deadline()).await.unwrap_err();
        let pending = p.store.pending.lock().unwrap()[&tenant()].clone();
        assert_eq!(p.store.secrets.lock().unwrap()[&tenant()], old, "still current");
        let Rotation::Rotated(new) = p.rotate(&tenant(), &deadline()).await.unwrap() else {
            panic!("not rotated")
        };
        assert_eq!(new, pending.credentials, "the repeat finished the same rotation");
        assert_settled(&p, &tenant());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotation_cut_after_the_broker_took_it_is_finished_by_reconcile() {
        let p = provisioner();
        ready(&p).await;
        p.broker.hang.lock().unwrap().insert(Step::Permission);
        let short = Deadline::new(Duration::from_millis(300), None);
        p.rotate(&tenant(), &short).await.unwrap_err();
        p.broker.hang.lock().unwrap().clear();
        let pending = p.store.pending.lock().unwrap()[&tenant()].clone();
        assert_eq!(
            p.broker.users.lock().unwrap()[tenant().as_str()].password,
            pending.credentials.password,
            "the broker holds the pending password"
        );
        // The cut rotation's lease lapses; reconcile then finishes it rather than revert it.
        tokio::time::sleep(LEASE_MARGIN + Duration::from_secs(1)).await;
        let repaired = p
            .converge(&tenant(), &deadline(), SecretFirst::Read)
            .await
            .unwrap();
        assert_eq!(repaired.credentials, pending.credentials);
        assert_eq!(assert_settled(&p, &tenant()), pending.credentials);
    }

    #[tokio::test]
    async fn two_rotations_at_once_agree_on_one_password() {
        let mut p = provisioner();
        p.store.latency = Duration::from_millis(20);
        ready(&p).await;
        let (t, d) = (tenant(), deadline());
        let (a, b) = tokio::join!(p.rotate(&t, &d), p.rotate(&t, &d));
        let creds = |r: Rotation| match r {
            Rotation::Rotated(c) | Rotation::Joined(c) => c,
            Rotation::Busy => panic!("busy within 5 s"),
        };
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            matches!(
                (&a, &b),
                (Rotation::Rotated(_), Rotation::Joined(_)) | (Rotation::Joined(_), Rotation::Rotated(_))
            ),
            "{a:?} {b:?}"
        );
        let (a, b) = (creds(a), creds(b));
        assert_eq!(a, b);
        assert_eq!(assert_settled(&p, &tenant()), a);
    }

    #[tokio::test]
    async fn reconcile_racing_a_rotation_never_puts_the_old_password_back() {
        let mut p = provisioner();
        p.store.latency = Duration::from_millis(5);
        let old = ready(&p).await;
        let (t, d) = (tenant(), deadline());
        for _ in 0..5 {
            let (rotated, repaired) = tokio::join!(p.rotate(&t, &d), p.converge(&t, &d, SecretFirst::Read));
            let Rotation::Rotated(new) = rotated.unwrap() else {
                panic!("not rotated")
            };
            repaired.unwrap();
            let settled = assert_settled(&p, &tenant());
            assert_eq!(settled, new);
            assert_ne!(settled.password, old.password);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_cut_off_by_its_deadline_gives_the_lock_up() {
        let p = provisioner();
        ready(&p).await;
        p.broker.hang.lock().unwrap().insert(Step::Permission);
        p.rotate(&tenant(), &Deadline::new(Duration::from_millis(300), None))
            .await
            .unwrap_err();
        p.broker.hang.lock().unwrap().clear();
        assert!(
            p.locks.held.lock().unwrap().is_empty(),
            "the lock outlived its holder"
        );
        // The next run need not wait for the lease: it finishes the rotation at once.
        assert!(matches!(
            p.rotate(&tenant(), &Deadline::new(Duration::from_millis(300), None))
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
    }

    #[tokio::test]
    async fn a_busy_tenant_answers_busy_when_the_wait_runs_out() {
        let p = provisioner();
        ready(&p).await;
        assert!(
            p.locks
                .acquire(&tenant(), "someone", Duration::from_secs(60))
                .await
                .unwrap()
        );
        let short = Deadline::new(Duration::from_millis(400), None);
        assert_eq!(p.rotate(&tenant(), &short).await.unwrap(), Rotation::Busy);
    }
}
