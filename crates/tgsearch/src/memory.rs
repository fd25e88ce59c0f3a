//! In-memory implementations of the ports, for unit tests of the domain logic. Every adapter is
//! also tested against its real server (see `crates/testkit/tests`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::credentials::SecretUri;
use crate::credentials::{Password, TenantCredentials};
use crate::deadline::Step;
use crate::ports::{CredentialStore, PortError, Removed, Stored, TenantBackend, TenantBroker};
use crate::tenant::TenantId;

#[derive(Default)]
pub struct MemoryStore {
    pub secrets: Mutex<HashMap<TenantId, TenantCredentials>>,
    /// Delay before answering, to let concurrent calls interleave.
    pub latency: Duration,
}

impl CredentialStore for MemoryStore {
    async fn create_or_read(
        &self,
        tenant: &TenantId,
        candidate: &TenantCredentials,
    ) -> Result<Stored, PortError> {
        tokio::time::sleep(self.latency).await;
        let mut secrets = self.secrets.lock().unwrap();
        let created = !secrets.contains_key(tenant);
        let credentials = secrets
            .entry(tenant.clone())
            .or_insert_with(|| candidate.clone())
            .clone();
        Ok(Stored { credentials, created })
    }

    async fn read(&self, tenant: &TenantId) -> Result<Option<TenantCredentials>, PortError> {
        Ok(self.secrets.lock().unwrap().get(tenant).cloned())
    }

    async fn remove(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        Ok(match self.secrets.lock().unwrap().remove(tenant) {
            Some(_) => Removed::Deleted,
            None => Removed::AlreadyAbsent,
        })
    }
}

#[derive(Default)]
pub struct MemoryBroker {
    pub vhosts: Mutex<HashSet<String>>,
    pub users: Mutex<HashMap<String, Password>>,
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
}

impl TenantBroker for MemoryBroker {
    async fn ensure_vhost(&self, tenant: &TenantId) -> Result<(), PortError> {
        self.enter(Step::Vhost).await?;
        self.vhosts.lock().unwrap().insert(tenant.vhost().into());
        Ok(())
    }

    async fn ensure_user(&self, tenant: &TenantId, password: &Password) -> Result<(), PortError> {
        self.enter(Step::User).await?;
        self.users
            .lock()
            .unwrap()
            .insert(tenant.rabbitmq_user().into(), password.clone());
        Ok(())
    }

    async fn ensure_permission(&self, tenant: &TenantId) -> Result<(), PortError> {
        self.enter(Step::Permission).await?;
        if !self.vhosts.lock().unwrap().contains(tenant.vhost()) {
            return Err("vhost does not exist".into());
        }
        if !self.users.lock().unwrap().contains_key(tenant.rabbitmq_user()) {
            return Err("user does not exist".into());
        }
        self.permissions
            .lock()
            .unwrap()
            .insert((tenant.vhost().into(), tenant.rabbitmq_user().into()));
        Ok(())
    }

    async fn remove_vhost(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.enter(Step::Vhost).await?;
        self.permissions
            .lock()
            .unwrap()
            .retain(|(v, _)| v != tenant.vhost());
        Ok(if self.vhosts.lock().unwrap().remove(tenant.vhost()) {
            Removed::Deleted
        } else {
            Removed::AlreadyAbsent
        })
    }

    async fn remove_user(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        self.enter(Step::User).await?;
        Ok(match self.users.lock().unwrap().remove(tenant.rabbitmq_user()) {
            Some(_) => Removed::Deleted,
            None => Removed::AlreadyAbsent,
        })
    }
}

/// Kubernetes objects as `kind/sub` keys (the Secret's value is its AMQP URI).
#[derive(Default)]
pub struct MemoryBackend {
    pub objects: Mutex<HashMap<String, String>>,
}

impl MemoryBackend {
    fn put(&self, key: String, value: String) -> Result<(), PortError> {
        self.objects.lock().unwrap().insert(key, value);
        Ok(())
    }

    fn take(&self, key: String) -> Result<Removed, PortError> {
        Ok(match self.objects.lock().unwrap().remove(&key) {
            Some(_) => Removed::Deleted,
            None => Removed::AlreadyAbsent,
        })
    }
}

impl TenantBackend for MemoryBackend {
    async fn ensure_secret(&self, tenant: &TenantId, amqp_uri: &SecretUri) -> Result<(), PortError> {
        self.put(format!("secret/{tenant}"), amqp_uri.expose().to_owned())
    }

    async fn ensure_volume(&self, tenant: &TenantId) -> Result<(), PortError> {
        self.put(format!("volume/{tenant}"), String::new())
    }

    async fn ensure_deployment(&self, tenant: &TenantId) -> Result<(), PortError> {
        self.put(format!("deployment/{tenant}"), String::new())
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
