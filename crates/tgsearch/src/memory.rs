//! In-memory implementations of the ports, for unit tests of the domain logic. They keep the
//! ownership rules of the real adapters in their simplest form; every adapter is also tested
//! against its real server (see `crates/testkit/tests`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::credentials::{Password, SecretUri, TenantCredentials};
use crate::deadline::Step;
use crate::ports::{
    Admission, BrokerLimits, Converged, CredentialStore, CredentialVersions, Foreign, Found, PortError, Rate,
    RateLimiter, Removed, Stored, TenantBackend, TenantBroker, TenantLocks, Versioned,
};
use crate::tenant::TenantId;

#[derive(Default)]
pub struct MemoryStore {
    pub secrets: Mutex<HashMap<TenantId, TenantCredentials>>,
    /// Secrets named like a tenant's but not written by the provisioner.
    pub foreign: Mutex<HashSet<TenantId>>,
    /// The current version's id, per tenant (absent: "v0").
    pub current: Mutex<HashMap<TenantId, String>>,
    /// A rotation's pending version, per tenant.
    pub pending: Mutex<HashMap<TenantId, Versioned>>,
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

    async fn versions(&self, tenant: &TenantId) -> Result<Found<CredentialVersions>, PortError> {
        tokio::time::sleep(self.latency).await;
        Ok(match self.read(tenant).await? {
            Found::Ours(credentials) => Found::Ours(CredentialVersions {
                current: Versioned {
                    version: self
                        .current
                        .lock()
                        .unwrap()
                        .get(tenant)
                        .cloned()
                        .unwrap_or_else(|| "v0".into()),
                    credentials,
                },
                pending: self.pending.lock().unwrap().get(tenant).cloned(),
            }),
            Found::Absent => Found::Absent,
            Found::Foreign(r) => Found::Foreign(r),
        })
    }

    async fn put_pending(
        &self,
        tenant: &TenantId,
        token: &str,
        credentials: &TenantCredentials,
    ) -> Result<(), PortError> {
        tokio::time::sleep(self.latency).await;
        self.pending.lock().unwrap().insert(
            tenant.clone(),
            Versioned {
                version: token.into(),
                credentials: credentials.clone(),
            },
        );
        Ok(())
    }

    async fn promote(&self, tenant: &TenantId, pending: &str) -> Result<(), PortError> {
        tokio::time::sleep(self.latency).await;
        let mut all = self.pending.lock().unwrap();
        if let Some(p) = all.get(tenant).filter(|p| p.version == pending).cloned() {
            all.remove(tenant);
            self.secrets.lock().unwrap().insert(tenant.clone(), p.credentials);
            self.current.lock().unwrap().insert(tenant.clone(), p.version);
        }
        Ok(())
    }

    async fn replace(&self, tenant: &TenantId, credentials: &TenantCredentials) -> Result<(), PortError> {
        self.current
            .lock()
            .unwrap()
            .insert(tenant.clone(), crate::credentials::random_uuid());
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
    /// Connections closed, per user.
    pub closed: Mutex<HashMap<String, usize>>,
    /// Limits set, per tenant.
    pub limits: Mutex<HashMap<String, BrokerLimits>>,
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

    async fn user_has_password(&self, tenant: &TenantId, password: &Password) -> Result<bool, PortError> {
        self.enter(Step::User).await?;
        Ok(self
            .users
            .lock()
            .unwrap()
            .get(tenant.rabbitmq_user())
            .is_some_and(|u| u.tags.is_empty() && u.password == *password))
    }

    async fn close_connections(&self, tenant: &TenantId) -> Result<(), PortError> {
        *self
            .closed
            .lock()
            .unwrap()
            .entry(tenant.rabbitmq_user().into())
            .or_default() += 1;
        Ok(())
    }

    async fn ensure_limits(&self, tenant: &TenantId, limits: &BrokerLimits) -> Result<Converged, PortError> {
        self.enter(Step::Limits).await?;
        let before = self.limits.lock().unwrap().insert(tenant.to_string(), *limits);
        Ok(match before {
            None => Converged::Created,
            Some(b) if b == *limits => Converged::Unchanged,
            Some(_) => Converged::Repaired("limits differed".into()),
        })
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
    /// The credentials version each backend was restarted onto.
    pub restarted: Mutex<HashMap<String, String>>,
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

    async fn secret_holds(&self, tenant: &TenantId, amqp_uri: &SecretUri) -> Result<bool, PortError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&format!("secret/{tenant}"))
            .is_some_and(|(v, ours)| *ours && v == amqp_uri.expose()))
    }

    async fn restart(&self, tenant: &TenantId, version: &str) -> Result<Converged, PortError> {
        let before = self
            .restarted
            .lock()
            .unwrap()
            .insert(tenant.to_string(), version.to_owned());
        Ok(if before.as_deref() == Some(version) {
            Converged::Unchanged
        } else {
            Converged::Repaired(format!("restarted onto {version}"))
        })
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

/// Tenant locks in memory: (owner, lease end).
#[derive(Default)]
pub struct MemoryLocks {
    pub held: Mutex<HashMap<TenantId, (String, tokio::time::Instant)>>,
}

impl TenantLocks for MemoryLocks {
    async fn acquire(&self, tenant: &TenantId, owner: &str, lease: Duration) -> Result<bool, PortError> {
        tokio::task::yield_now().await;
        let now = tokio::time::Instant::now();
        let mut held = self.held.lock().unwrap();
        match held.get(tenant) {
            Some((o, until)) if o != owner && *until > now => Ok(false),
            _ => {
                held.insert(tenant.clone(), (owner.to_owned(), now + lease));
                Ok(true)
            }
        }
    }

    async fn release(&self, tenant: &TenantId, owner: &str) -> Result<(), PortError> {
        self.release_detached(tenant, owner);
        Ok(())
    }

    fn release_detached(&self, tenant: &TenantId, owner: &str) {
        let mut held = self.held.lock().unwrap();
        if held.get(tenant).is_some_and(|(o, _)| o == owner) {
            held.remove(tenant);
        }
    }
}

/// Fixed-window counters in memory.
#[derive(Default)]
pub struct MemoryRates {
    pub hits: Mutex<HashMap<(String, u64), u32>>,
}

impl RateLimiter for MemoryRates {
    async fn admit(&self, key: &str, rate: Rate, now: u64) -> Result<Admission, PortError> {
        let (index, left) = crate::adapters::tenant_guard::window(rate, now);
        let mut hits = self.hits.lock().unwrap();
        let count = hits.entry((key.to_owned(), index)).or_default();
        if *count >= rate.max {
            return Ok(Admission::Limited { retry_after: left });
        }
        *count += 1;
        Ok(Admission::Admitted)
    }
}
