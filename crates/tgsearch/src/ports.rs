//! The capabilities provisioning needs, one small trait each. The domain logic is written
//! against these; `adapters` implements them for Secrets Manager and RabbitMQ, and unit tests
//! implement them in memory.

use std::future::Future;

use crate::credentials::{Password, TenantCredentials};
use crate::tenant::TenantId;

/// Any adapter's error: the domain only wraps it with the step it happened in.
pub type PortError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether a delete removed something or found it already gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Removed {
    Deleted,
    AlreadyAbsent,
}

/// The result of create-or-read: the credentials that are now stored, and whether this call
/// stored them.
#[derive(Clone, Debug)]
pub struct Stored {
    pub credentials: TenantCredentials,
    pub created: bool,
}

/// Where tenant credentials live. The store is the single source of a tenant's password.
pub trait CredentialStore: Send + Sync {
    /// Stores `candidate` unless credentials for `tenant` exist; either way returns what is
    /// stored. The first writer wins, so retries and concurrent duplicates agree on a password.
    fn create_or_read(
        &self,
        tenant: &TenantId,
        candidate: &TenantCredentials,
    ) -> impl Future<Output = Result<Stored, PortError>> + Send;

    fn read(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<TenantCredentials>, PortError>> + Send;

    /// Removes the credentials for good (no recovery window, so the same `sub` can sign up again).
    fn remove(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;
}

/// The tenant's share of the message broker: a vhost, a user, and the user's permission on it.
pub trait TenantBroker: Send + Sync {
    fn ensure_vhost(&self, tenant: &TenantId) -> impl Future<Output = Result<(), PortError>> + Send;

    fn ensure_user(
        &self,
        tenant: &TenantId,
        password: &Password,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Grants the tenant's user full rights on the tenant's vhost, and on nothing else.
    fn ensure_permission(&self, tenant: &TenantId) -> impl Future<Output = Result<(), PortError>> + Send;

    fn remove_vhost(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;

    fn remove_user(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;
}

/// The tenant's backend on the cluster: its Secret, its data volume, its Deployment.
pub trait TenantBackend: Send + Sync {
    fn ensure_secret(
        &self,
        tenant: &TenantId,
        amqp_uri: &crate::credentials::SecretUri,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    fn ensure_volume(&self, tenant: &TenantId) -> impl Future<Output = Result<(), PortError>> + Send;

    fn ensure_deployment(&self, tenant: &TenantId) -> impl Future<Output = Result<(), PortError>> + Send;

    fn remove_deployment(&self, tenant: &TenantId)
    -> impl Future<Output = Result<Removed, PortError>> + Send;

    fn remove_volume(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;

    fn remove_secret(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;
}

/// A user as the user directory knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The raw `sub`; not every directory entry need be a valid tenant id.
    pub sub: String,
    /// Signup confirmed: the user should have a tenant.
    pub confirmed: bool,
    pub enabled: bool,
}

/// Who exists (Cognito): the truth reconcile converges the tenants on.
pub trait UserDirectory: Send + Sync {
    fn users(&self) -> impl Future<Output = Result<Vec<DirectoryUser>, PortError>> + Send;
}

/// Where operators hear about problems that need a person.
pub trait AlertSink: Send + Sync {
    fn publish(
        &self,
        subject: &str,
        message: &serde_json::Value,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Where a webhook delivery stands, per signature token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// An invocation holds the token and is publishing its alert (until `lease_until`).
    Pending,
    /// The alert went out.
    Sent,
    /// The event needed no alert.
    Ignored,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "sent" => Some(DeliveryState::Sent),
            "ignored" => Some(DeliveryState::Ignored),
            _ => None,
        }
    }
}

/// What the ledger records of one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub state: DeliveryState,
    /// Digest of the event first seen with the token (a different one is a replay).
    pub digest: String,
    /// Who holds a pending claim (a random id per invocation).
    pub owner: String,
    /// Unix time until which a pending claim is held; after it, a retry may take over.
    pub lease_until: u64,
    /// Unix time after which the record may be forgotten (DynamoDB TTL).
    pub expires_at: u64,
}

/// The outcome of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The token was new (or its pending claim had lapsed): the caller holds it now.
    Claimed,
    /// The token is recorded already, as this.
    Existing(Delivery),
}

/// Durable memory of webhook deliveries, shared by every container: what makes alerts
/// exactly-once and replays recognisable.
pub trait DeliveryLedger: Send + Sync {
    /// Records `entry` under `token` unless the token is recorded already (a lapsed pending
    /// claim, `lease_until < now`, is taken over).
    fn claim(
        &self,
        token: &str,
        entry: &Delivery,
        now: u64,
    ) -> impl Future<Output = Result<Claim, PortError>> + Send;

    fn get(&self, token: &str) -> impl Future<Output = Result<Option<Delivery>, PortError>> + Send;

    /// Marks `owner`'s pending claim as sent.
    fn mark_sent(&self, token: &str, owner: &str) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Gives `owner`'s pending claim up, so a retry can try again.
    fn release(&self, token: &str, owner: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}
