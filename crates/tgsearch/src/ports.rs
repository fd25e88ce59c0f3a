//! The capabilities the domain logic needs, one small trait each. The domain is written against
//! these; `adapters` implements them for Secrets Manager, RabbitMQ, Kubernetes, Cognito, SNS and
//! DynamoDB, and unit tests implement them in memory.
//!
//! Ownership is the adapters' first duty: every `ensure_*` and `remove_*` acts only on what it
//! can prove the provisioner wrote (the vhost's tag, the secret's tags, the Kubernetes labels, the
//! README's rule for the RabbitMQ user). A same-named resource that is not provably ours is
//! [`Foreign`]: never changed, never removed, reported.

use std::future::Future;

use crate::credentials::{Password, SecretUri, TenantCredentials};
use crate::tenant::TenantId;

/// Any adapter's error: the domain only wraps it with the step it happened in.
pub type PortError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error a retry may fix (a reset connection, a 5xx, throttling, a 429): adapters wrap such
/// errors in it, and [`crate::deadline::Deadline::run`] retries them while time is left.
#[derive(Debug)]
pub struct Transient {
    pub source: PortError,
    /// How long the server asked us to wait (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl Transient {
    pub fn wrap(source: impl Into<PortError>, retry_after: Option<std::time::Duration>) -> PortError {
        Box::new(Self {
            source: source.into(),
            retry_after,
        })
    }

    /// `Some(retry_after)` when `error` is transient.
    pub fn of(error: &PortError) -> Option<Option<std::time::Duration>> {
        error.downcast_ref::<Transient>().map(|t| t.retry_after)
    }
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for Transient {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// What a removal did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Removed {
    Deleted,
    AlreadyAbsent,
    /// Something of that name exists but is not provably ours: left alone (the reason).
    LeftAlone(String),
}

/// What making one resource right did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Converged {
    Created,
    Unchanged,
    /// It existed but differed from what it must be; now it is right (what differed).
    Repaired(String),
    /// It differs in a way the provisioner must not change on its own (a volume that would
    /// shrink or change class): reported for a person, left as it is.
    NeedsPerson(String),
}

impl Converged {
    /// Created or repaired: something was written.
    pub fn changed(&self) -> bool {
        matches!(self, Converged::Created | Converged::Repaired(_))
    }
}

/// A resource named like the tenant's that the provisioner cannot prove it wrote. Provisioning
/// stops at it rather than adopt it; no retry changes that, a person must look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("foreign {kind} `{name}` is in the way (left alone): {reason}")]
pub struct Foreign {
    pub kind: &'static str,
    pub name: String,
    pub reason: String,
}

impl Foreign {
    /// `true` when `error` is (or wraps) a [`Foreign`].
    pub fn is_in(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(e) = current {
            if e.is::<Foreign>() {
                return true;
            }
            current = e.source();
        }
        false
    }
}

/// A resource as found: absent, ours, or foreign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found<T> {
    Absent,
    Ours(T),
    /// Named like the tenant's, not provably ours (why).
    Foreign(String),
}

impl<T> Found<T> {
    pub fn ours(self) -> Option<T> {
        match self {
            Found::Ours(t) => Some(t),
            _ => None,
        }
    }
}

/// The result of create-or-read: the credentials that are now stored, and whether this call
/// stored them.
#[derive(Clone, Debug)]
pub struct Stored {
    pub credentials: TenantCredentials,
    pub created: bool,
}

/// One stored version of a tenant's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The store's id of this version (Secrets Manager's `VersionId`).
    pub version: String,
    pub credentials: TenantCredentials,
}

/// A tenant's stored credentials as a rotation sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialVersions {
    pub current: Versioned,
    /// A version a rotation stored and has not yet made current.
    pub pending: Option<Versioned>,
}

/// Where tenant credentials live. The store is the single source of a tenant's password.
pub trait CredentialStore: Send + Sync {
    /// Stores `candidate` unless credentials for `tenant` exist; either way returns what is
    /// stored. The first writer wins, so retries and concurrent duplicates agree on a password.
    /// An existing secret without the provisioner's tags is [`Foreign`].
    fn create_or_read(
        &self,
        tenant: &TenantId,
        candidate: &TenantCredentials,
    ) -> impl Future<Output = Result<Stored, PortError>> + Send;

    /// The stored credentials, with their ownership.
    fn read(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Found<TenantCredentials>, PortError>> + Send;

    /// The stored versions: the current one and, while a rotation is under way or was cut
    /// short, the pending one.
    fn versions(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Found<CredentialVersions>, PortError>> + Send;

    /// Stores `credentials` as the pending version `token` (a rotation's first step). Repeating
    /// it with the same token stores nothing new.
    fn put_pending(
        &self,
        tenant: &TenantId,
        token: &str,
        credentials: &TenantCredentials,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Makes the pending version `pending` the current one (a rotation's last step). Repeating it
    /// once it is current does nothing.
    fn promote(&self, tenant: &TenantId, pending: &str)
    -> impl Future<Output = Result<(), PortError>> + Send;

    /// Replaces the stored credentials of an existing tenant secret of ours (a new version).
    fn replace(
        &self,
        tenant: &TenantId,
        credentials: &TenantCredentials,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Removes the credentials for good (no recovery window, so the same `sub` can sign up
    /// again), when they are ours.
    fn remove(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;
}

/// The tenant's share of the message broker: a vhost, a user, and the user's permission on it.
pub trait TenantBroker: Send + Sync {
    /// The vhost `<sub>`, tagged `tgsearch`; an untagged one of that name is [`Foreign`].
    fn ensure_vhost(&self, tenant: &TenantId) -> impl Future<Output = Result<Converged, PortError>> + Send;

    /// The vhost runs on every node that is up: one left stopped on a node (created while that
    /// node was leaving the cluster) is started there again.
    fn ensure_vhost_running(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Converged, PortError>> + Send;

    /// The tag-less user `<sub>` with `password`; a user of that name that is not provably ours
    /// is [`Foreign`].
    fn ensure_user(
        &self,
        tenant: &TenantId,
        password: &Password,
    ) -> impl Future<Output = Result<Converged, PortError>> + Send;

    /// Full rights of the tenant's user on the tenant's vhost, and on nothing else.
    fn ensure_permission(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Converged, PortError>> + Send;

    /// Removes the tenant's user when provably ours (`stored`: the password on record, if any).
    fn remove_user(
        &self,
        tenant: &TenantId,
        stored: Option<&Password>,
    ) -> impl Future<Output = Result<Removed, PortError>> + Send;

    /// Removes the tenant's vhost (queues and all) when it carries the `tgsearch` tag.
    fn remove_vhost(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;

    /// Whether the tenant's user exists, carries no tags and logs in with `password`: what the
    /// broker itself checks at login. Reads only.
    fn user_has_password(
        &self,
        tenant: &TenantId,
        password: &Password,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Closes every connection the tenant's user has open (after its password changed, so a
    /// leaked password keeps no session).
    fn close_connections(&self, tenant: &TenantId) -> impl Future<Output = Result<(), PortError>> + Send;

    /// The tenant's limits on the broker: connections and queues on its vhost, connections and
    /// channels of its user. Set when missing, repaired when they differ.
    fn ensure_limits(
        &self,
        tenant: &TenantId,
        limits: &BrokerLimits,
    ) -> impl Future<Output = Result<Converged, PortError>> + Send;
}

/// The tenant's backend on the cluster: its Secret, its data volume, its Deployment.
pub trait TenantBackend: Send + Sync {
    fn ensure_secret(
        &self,
        tenant: &TenantId,
        amqp_uri: &SecretUri,
    ) -> impl Future<Output = Result<Converged, PortError>> + Send;

    /// Whether the tenant's Secret exists, is ours and holds `amqp_uri`. Reads only.
    fn secret_holds(
        &self,
        tenant: &TenantId,
        amqp_uri: &SecretUri,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Creates the volume when absent, grows it when the configured size grew; never shrinks it
    /// or changes its class (that is [`Converged::NeedsPerson`]).
    fn ensure_volume(&self, tenant: &TenantId) -> impl Future<Output = Result<Converged, PortError>> + Send;

    fn ensure_deployment(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Converged, PortError>> + Send;

    /// Restarts the backend's pod onto credentials `version`, unless it runs on them already: the
    /// pod template carries the version, so a repeated call restarts nothing.
    fn restart(
        &self,
        tenant: &TenantId,
        version: &str,
    ) -> impl Future<Output = Result<Converged, PortError>> + Send;

    fn remove_deployment(&self, tenant: &TenantId)
    -> impl Future<Output = Result<Removed, PortError>> + Send;

    fn remove_volume(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;

    fn remove_secret(&self, tenant: &TenantId) -> impl Future<Output = Result<Removed, PortError>> + Send;
}

/// Where a provisioning that cannot finish inside Cognito's 5 s is handed over, to be finished
/// in the background by the provisioning worker (a durable queue).
pub trait ProvisionQueue: Send + Sync {
    fn hand_off(&self, tenant: &TenantId, reason: &str)
    -> impl Future<Output = Result<(), PortError>> + Send;

    /// Lets a message that failed come back after `delay` (backoff between attempts).
    fn retry_later(
        &self,
        receipt: &str,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
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

    /// One user by `sub`, asked right before anything of theirs is removed.
    fn user(&self, sub: &str) -> impl Future<Output = Result<Option<DirectoryUser>, PortError>> + Send;
}

/// The broker limits every tenant gets (RabbitMQ's vhost and user limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BrokerLimits {
    /// Connections to the tenant's vhost (`max-connections` on the vhost).
    pub vhost_connections: u32,
    /// Queues in the tenant's vhost (`max-queues`).
    pub vhost_queues: u32,
    /// Connections of the tenant's user (`max-connections` on the user).
    pub user_connections: u32,
    /// Channels per connection of the tenant's user (`max-channels`).
    pub user_channels: u32,
}

impl Default for BrokerLimits {
    /// Room for a backend that restarts (its old connections still closing) and a few tools: a
    /// tenant is one process that needs a handful of connections and queues.
    fn default() -> Self {
        Self {
            vhost_connections: 20,
            vhost_queues: 200,
            user_connections: 20,
            user_channels: 64,
        }
    }
}

/// One tenant at a time: the lock that serialises every write of a tenant's credentials
/// (rotations, and the repairs of provisioning and reconcile), shared by every container.
pub trait TenantLocks: Send + Sync {
    /// Takes `tenant`'s lock for `owner` until `lease` has passed; `false` when another owner
    /// holds it. A lapsed lease is taken over.
    fn acquire(
        &self,
        tenant: &TenantId,
        owner: &str,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Gives `owner`'s lock up (nothing when it is not theirs any more).
    fn release(&self, tenant: &TenantId, owner: &str) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Gives `owner`'s lock up in the background: for a holder that is cancelled (its caller's
    /// deadline dropped it mid-write), so the next holder need not wait for the lease to lapse.
    fn release_detached(&self, tenant: &TenantId, owner: &str);
}

/// A rate: at most `max` in each window of `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub max: u32,
    pub window: std::time::Duration,
}

/// What a rate limiter said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the rate: ask again after this.
    Limited {
        retry_after: std::time::Duration,
    },
}

/// Counts requests per key in fixed windows, shared by every container.
pub trait RateLimiter: Send + Sync {
    /// Counts one request under `key` and says whether it is within `rate` (`now`: Unix seconds).
    fn admit(
        &self,
        key: &str,
        rate: Rate,
        now: u64,
    ) -> impl Future<Output = Result<Admission, PortError>> + Send;
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
