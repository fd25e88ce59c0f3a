//! In-memory implementations of the ports, for unit tests of the domain logic. They keep the
//! ownership rules of the real adapters in their simplest form; every adapter is also tested
//! against its real server (see `crates/testkit/tests`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::credentials::{Password, SecretUri, TenantCredentials};
use crate::deadline::Step;
use crate::ports::{
    Converged, CredentialStore, Foreign, Found, PortError, Removed, Stored, TenantBackend, TenantBroker,
};
use crate::tenant::TenantId;

#[derive(Default)]
pub struct MemoryStore {
    pub secrets: Mutex<HashMap<TenantId, TenantCredentials>>,
    /// Secrets named like a tenant's but not written by the provisioner.
    pub foreign: Mutex<HashSet<TenantId>>,
    /// Delay before answering, to let concurrent calls interleave.
    pub latency: Duration,
}

fn foreign(kind: &'static str, tenant: &TenantId) -> PortError {
    Foreign {
        kind,
        name: tenant.to_string(),
        reason: "not written by the provisioner".into(),
    }
    .into()
}

impl CredentialStore for MemoryStore {
    async fn create_or_read(
        &self,
        tenant: &TenantId,
        candidate: &TenantCredentials,
    ) -> Result<Stored, PortError> {
        tokio::time::sleep(self.latency).await;
        if self.foreign.lock().unwrap().contains(tenant) {
            return Err(foreign("secret", tenant));
        }
        let mut secrets = self.secrets.lock().unwrap();
        let created = !secrets.contains_key(tenant);
        let credentials = secrets
            .entry(tenant.clone())
            .or_insert_with(|| candidate.clone())
            .clone();
        Ok(Stored { credentials, created })
    }

    async fn read(&self, tenant: &TenantId) -> Result<Found<TenantCredentials>, PortError> {
        if self.foreign.lock().unwrap().contains(tenant) {
            return Ok(Found::Foreign("not written by the provisioner".into()));
        }
        Ok(match self.secrets.lock().unwrap().get(tenant) {
            Some(c) => Found::Ours(c.clone()),
            None => Found::Absent,
        })
    }

    async fn replace(&self, tenant: &TenantId, credentials: &TenantCredentials) -> Result<(), PortError> {
        self.secrets
            .lock()
            .unwrap()
            .insert(tenant.clone(), credentials.clone());
        Ok(())
    }

    async fn remove(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        if self.foreign.lock().unwrap().contains(tenant) {
            return Ok(Removed::LeftAlone("not written by the provisioner".into()));
        }
        Ok(match self.secrets.lock().unwrap().remove(tenant) {
            Some(_) => Removed::Deleted,
            None => Removed::AlreadyAbsent,
        })
    }
}

/// A user: password and tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryUser {
    pub password: Password,
    pub tags: Vec<String>,
}

#[derive(Default)]
pub struct MemoryBroker {
    /// Vhost name → carries the `tgsearch` tag.
    pub vhosts: Mutex<HashMap<String, bool>>,
    pub users: Mutex<HashMap<String, MemoryUser>>,
    /// (vhost, user) pairs with full rights.
    pub permissions: Mutex<HashSet<(String, String)>>,
    /// Steps that fail once, then succeed (a transient outage).
    pub fail_once: Mutex<HashSet<Step>>,
    /// Steps that hang (an unreachable server).
    pub hang: Mutex<HashSet<Step>>,
}

impl MemoryBroker {
    async fn enter(&self, step: Step) -> Result<(), PortError> {
        if self.hang.lock().unwrap().contains(&step) {
            std::future::pending::<()>().await;
        }
        if self.fail_once.lock().unwrap().remove(&step) {
            return Err(format!("{step}: 503 service unavailable").into());
        }
        tokio::task::yield_now().await;
        Ok(())
    }

    /// The README's rule: tag-less, and its password matches the stored one or it holds a
    /// permission on the tenant's tagged vhost.
    fn ours(&self, tenant: &TenantId, user: &MemoryUser, stored: Option<&Password>) -> bool {
        let tagged_vhost = self.vhosts.lock().unwrap().get(tenant.vhost()) == Some(&true);
        let on_vhost = self
            .permissions
            .lock()
            .unwrap()
            .contains(&(tenant.vhost().to_owned(), tenant.rabbitmq_user().to_owned()));
        user.tags.is_empty() && (stored == Some(&user.password) || (tagged_vhost && on_vhost))
    }
}

impl TenantBroker for MemoryBroker {
    async fn ensure_vhost(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        self.enter(Step::Vhost).await?;
        let mut vhosts = self.vhosts.lock().unwrap();
        match vhosts.get(tenant.vhost()) {
            Some(true) => Ok(Converged::Unchanged),
            Some(false) => Err(foreign("vhost", tenant)),
            None => {
                vhosts.insert(tenant.vhost().into(), true);
                Ok(Converged::Created)
            }
        }
    }

    async fn ensure_vhost_running(&self, _tenant: &TenantId) -> Result<Converged, PortError> {
        Ok(Converged::Unchanged)
    }

    async fn ensure_user(&self, tenant: &TenantId, password: &Password) -> Result<Converged, PortError> {
        self.enter(Step::User).await?;
        let existing = self.users.lock().unwrap().get(tenant.rabbitmq_user()).cloned();
        let outcome = match existing {
            None => Converged::Created,
            Some(u) if u.password == *password && u.tags.is_empty() => return Ok(Converged::Unchanged),
            Some(u) if self.ours(tenant, &u, Some(password)) => {
                Converged::Repaired("password did not match the stored secret".into())
            }
            Some(_) => return Err(foreign("user", tenant)),
        };
        self.users.lock().unwrap().insert(
            tenant.rabbitmq_user().into(),
            MemoryUser {
                password: password.clone(),
                tags: vec![],
            },
        );
        Ok(outcome)
    }

    async fn ensure_permission(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        self.enter(Step::Permission).await?;
        if !self.vhosts.lock().unwrap().contains_key(tenant.vhost()) {
            return Err("vhost does not exist".into());
        }
        if !self.users.lock().unwrap().contains_key(tenant.rabbitmq_user()) {
            return Err("user does not exist".into());
        }
        let mut permissions = self.permissions.lock().unwrap();
        let before = permissions.len();
        permissions.retain(|(v, u)| u != tenant.rabbitmq_user() || v == tenant.vhost());
        let revoked = before != permissions.len();
        let granted = permissions.insert((tenant.vhost().into(), tenant.rabbitmq_user().into()));
        Ok(match (granted, revoked) {
            (_, true) => Converged::Repaired("rights on other vhosts revoked".into()),
            (true, false) => Converged::Created,
            (false, false) => Converged::Unchanged,
        })
    }

    async fn remove_user(&self, tenant: &TenantId, stored: Option<&Password>) -> Result<Removed, PortError> {
        self.enter(Step::User).await?;
        let existing = self.users.lock().unwrap().get(tenant.rabbitmq_user()).cloned();
        Ok(match existing {
            None => Removed::AlreadyAbsent,
            Some(u) if self.ours(tenant, &u, stored) => {
                self.users.lock().unwrap().remove(tenant.rabbitmq_user());
                self.permissions
                    .lock()
                    .unwrap()
                    .retain(|(_, user)| user != tenant.rabbitmq_user());
                Removed::Deleted
            }
            Some(_) => Removed::LeftAlone("not provably ours".into()),
        })
    }

    async fn recreate_user(&self, tenant: &TenantId, password: &Password) -> Result<(), PortError> {
        self.users.lock().unwrap().insert(
            tenant.rabbitmq_user().into(),
            MemoryUser {
                password: password.clone(),
                tags: vec![],
            },
        );
        Ok(())
    }

    async fn remove_vhost(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.enter(Step::Vhost).await?;
        let mut vhosts = self.vhosts.lock().unwrap();
        Ok(match vhosts.get(tenant.vhost()) {
            None => Removed::AlreadyAbsent,
            Some(false) => Removed::LeftAlone("no `tgsearch` tag".into()),
            Some(true) => {
                vhosts.remove(tenant.vhost());
                self.permissions
                    .lock()
                    .unwrap()
                    .retain(|(v, _)| v != tenant.vhost());
                Removed::Deleted
            }
        })
    }
}

/// Kubernetes objects as `kind/sub` keys: (value, ours). The Secret's value is its AMQP URI.
#[derive(Default)]
pub struct MemoryBackend {
    pub objects: Mutex<HashMap<String, (String, bool)>>,
}

impl MemoryBackend {
    fn put(&self, key: String, value: String, tenant: &TenantId) -> Result<Converged, PortError> {
        let mut objects = self.objects.lock().unwrap();
        let outcome = match objects.get(&key) {
            None => Converged::Created,
            Some((_, false)) => return Err(foreign("object", tenant)),
            Some((old, true)) if *old == value => Converged::Unchanged,
            Some(_) => Converged::Repaired("differed".into()),
        };
        objects.insert(key, (value, true));
        Ok(outcome)
    }

    fn take(&self, key: String) -> Result<Removed, PortError> {
        let mut objects = self.objects.lock().unwrap();
        Ok(match objects.get(&key) {
            None => Removed::AlreadyAbsent,
            Some((_, false)) => Removed::LeftAlone("no provisioner labels".into()),
            Some(_) => {
                objects.remove(&key);
                Removed::Deleted
            }
        })
    }
}

impl TenantBackend for MemoryBackend {
    async fn ensure_secret(&self, tenant: &TenantId, amqp_uri: &SecretUri) -> Result<Converged, PortError> {
        self.put(format!("secret/{tenant}"), amqp_uri.expose().to_owned(), tenant)
    }

    async fn ensure_volume(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        self.put(format!("volume/{tenant}"), String::new(), tenant)
    }

    async fn ensure_deployment(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        self.put(format!("deployment/{tenant}"), String::new(), tenant)
    }

    async fn restart(&self, _tenant: &TenantId) -> Result<(), PortError> {
        Ok(())
    }

    async fn remove_deployment(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.take(format!("deployment/{tenant}"))
    }

    async fn remove_volume(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.take(format!("volume/{tenant}"))
    }

    async fn remove_secret(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.take(format!("secret/{tenant}"))
    }
}
