//! Whether a tenant is ready for its user, and if so its connection: what `GET /tenant` and
//! `tgsearch credentials` answer. Ready means complete in every system, the same check as
//! `tgsearch status`; the answer comes within a deadline or not at all, never half.

use std::future::Future;
use std::time::Duration;

use crate::app::LiveProvisioner;
use crate::credentials::TenantCredentials;
use crate::ports::{CredentialStore, PortError};
use crate::rotation::Rotation;
use crate::status::{StatusError, tenant_status};
use crate::tenant::TenantId;

/// How long the frontend waits for an answer.
pub const READINESS_DEADLINE: Duration = Duration::from_secs(1);
/// How long a rotation may take (a status read, then four writes and a restart).
pub const ROTATION_DEADLINE: Duration = Duration::from_secs(4);

/// Where a tenant stands, from its user's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Complete in every system: here is the connection.
    Ready(TenantCredentials),
    /// Some of it exists: provisioning is under way (or being repaired).
    Provisioning,
    /// Nothing of it exists.
    Absent,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error("the tenant's state could not be read within {ms} ms")]
    TimedOut { ms: u64 },
    #[error(transparent)]
    Status(Box<StatusError>),
    #[error("cannot read the tenant secret: {0}")]
    Secret(#[source] PortError),
    #[error("the tenant changed while it was read; ask again")]
    Changed,
    #[error("the rotation did not complete; ask again (it is safe to repeat): {0}")]
    Rotation(String),
    #[error("another rotation of this tenant is under way")]
    RotationBusy,
    /// The function that holds the provisioner's rights answered with a failure, or not at all.
    #[error("the tenant access function: {reason}")]
    Remote { transient: bool, reason: String },
    /// A secret edited by hand, or written for someone else: never handed out.
    #[error("the stored credentials do not belong to the tenant: {0}")]
    Foreign(String),
    /// The tenant's cell could not be had (the registry, or the cell's broker or cluster).
    #[error(transparent)]
    Cell(#[from] crate::cells::CellError),
}

impl From<StatusError> for ReadinessError {
    fn from(e: StatusError) -> Self {
        ReadinessError::Status(Box::new(e))
    }
}

impl ReadinessError {
    /// A dependency that is down, slow or mid-change: asking again later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ReadinessError::Foreign(_) => false,
            ReadinessError::Remote { transient, .. } => *transient,
            ReadinessError::Cell(e) => e.is_transient(),
            _ => true,
        }
    }
}

/// What the internet-facing function asks of the one that holds the provisioner's rights (the
/// provisioning worker, invoked directly): the only way its requests reach the broker, the
/// cluster or the tenant secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    Readiness,
    Rotate,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessRequest {
    pub action: AccessAction,
    pub sub: String,
    /// How long the answer may take.
    pub within_ms: u64,
}

/// The answer, as it crosses between the two functions (the credentials in it are the user's
/// own, on their way to them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AccessAnswer {
    Ready { credentials: TenantCredentials },
    Provisioning,
    Absent,
    Busy,
    Failed { transient: bool, reason: String },
}

impl AccessAnswer {
    pub fn of(outcome: Result<Readiness, ReadinessError>) -> Self {
        match outcome {
            Ok(Readiness::Ready(credentials)) => AccessAnswer::Ready { credentials },
            Ok(Readiness::Provisioning) => AccessAnswer::Provisioning,
            Ok(Readiness::Absent) => AccessAnswer::Absent,
            Err(ReadinessError::RotationBusy) => AccessAnswer::Busy,
            Err(e) => AccessAnswer::Failed {
                transient: e.is_transient(),
                reason: e.to_string(),
            },
        }
    }

    pub fn outcome(self) -> Result<Readiness, ReadinessError> {
        match self {
            AccessAnswer::Ready { credentials } => Ok(Readiness::Ready(credentials)),
            AccessAnswer::Provisioning => Ok(Readiness::Provisioning),
            AccessAnswer::Absent => Ok(Readiness::Absent),
            AccessAnswer::Busy => Err(ReadinessError::RotationBusy),
            AccessAnswer::Failed { transient, reason } => Err(ReadinessError::Remote { transient, reason }),
        }
    }
}

/// Reads where a tenant stands (a port, so the handler's mapping is tested with a fake).
pub trait TenantReadiness: Send + Sync {
    fn readiness(
        &self,
        tenant: &TenantId,
        within: Duration,
    ) -> impl Future<Output = Result<Readiness, ReadinessError>> + Send;

    /// Rotates a ready tenant's password and answers the new credentials; an incomplete or absent
    /// tenant is answered as such, untouched.
    fn rotate(
        &self,
        tenant: &TenantId,
        within: Duration,
    ) -> impl Future<Output = Result<Readiness, ReadinessError>> + Send;
}

/// The verdict from what was read: the status' two verdicts and the stored credentials, read
/// concurrently (so they may disagree when the tenant changes in between).
pub fn verdict(
    tenant: &TenantId,
    complete: bool,
    absent: bool,
    stored: Option<TenantCredentials>,
) -> Result<Readiness, ReadinessError> {
    match (complete, absent, stored) {
        (true, _, Some(credentials)) => {
            if credentials.username != tenant.rabbitmq_user() || credentials.vhost != tenant.vhost() {
                return Err(ReadinessError::Foreign(format!(
                    "they name user `{}` and vhost `{}`",
                    credentials.username, credentials.vhost
                )));
            }
            Ok(Readiness::Ready(credentials))
        }
        // Complete a moment ago, its secret gone now: being torn down, or a race.
        (true, _, None) => Err(ReadinessError::Changed),
        (false, true, None) => Ok(Readiness::Absent),
        // Its secret appeared after the status was read: provisioning has begun.
        (false, _, _) => Ok(Readiness::Provisioning),
    }
}

impl TenantReadiness for LiveProvisioner {
    async fn readiness(&self, tenant: &TenantId, within: Duration) -> Result<Readiness, ReadinessError> {
        // One read of everything: the credentials handed out are the ones the status checked.
        let read = async {
            let status = tenant_status(self, tenant).await?;
            verdict(
                tenant,
                status.is_complete(),
                status.is_absent(),
                status.credentials().cloned(),
            )
        };
        tokio::time::timeout(within, read)
            .await
            .map_err(|_| ReadinessError::TimedOut {
                ms: within.as_millis() as u64,
            })?
    }

    async fn rotate(&self, tenant: &TenantId, within: Duration) -> Result<Readiness, ReadinessError> {
        let mut outcome = "failed";
        let result = rotate_counted(self, tenant, within, &mut outcome).await;
        crate::metrics::Record::new()
            .dim(crate::metrics::Dim::Outcome, outcome)
            .one("Rotations")
            .emit();
        result
    }
}

/// A rotation for [`TenantReadiness::rotate`]; `outcome` says how it ended, for its metric.
async fn rotate_counted(
    this: &LiveProvisioner,
    tenant: &TenantId,
    within: Duration,
    outcome: &mut &'static str,
) -> Result<Readiness, ReadinessError> {
    let deadline = crate::deadline::Deadline::new(within, None);
    let failed = |e: crate::deadline::StepError| ReadinessError::Rotation(e.to_string());
    let (found, _) = deadline
        .run(crate::deadline::Step::Secret, || this.store.versions(tenant))
        .await
        .map_err(failed)?;
    // A rotation left pending is finished whatever the tenant looks like meanwhile (its
    // broker user already holds the pending password); otherwise only a ready tenant rotates.
    let before = match found {
        crate::ports::Found::Ours(versions) if versions.pending.is_some() => versions,
        crate::ports::Found::Ours(versions) => match this.readiness(tenant, deadline.remaining()).await? {
            Readiness::Ready(_) => versions,
            other => {
                *outcome = not_rotated(&other);
                return Ok(other);
            }
        },
        // Absent or not ours: the readiness check says which, as for `GET /tenant`.
        _ => {
            return match this.readiness(tenant, deadline.remaining()).await? {
                Readiness::Ready(_) => Err(ReadinessError::Changed),
                other => {
                    *outcome = not_rotated(&other);
                    Ok(other)
                }
            };
        }
    };
    match this
        .rotate_from(tenant, &before, &deadline)
        .await
        .map_err(failed)?
    {
        Rotation::Rotated(credentials) => {
            *outcome = "rotated";
            Ok(Readiness::Ready(credentials))
        }
        Rotation::Joined(credentials) => {
            *outcome = "joined";
            Ok(Readiness::Ready(credentials))
        }
        Rotation::Busy => {
            *outcome = "busy";
            Err(ReadinessError::RotationBusy)
        }
    }
}

fn not_rotated(readiness: &Readiness) -> &'static str {
    match readiness {
        Readiness::Absent => "absent",
        _ => "not_ready",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Password;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    const A: &str = "4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
    const B: &str = "00000000-0000-4000-8000-000000000000";

    fn creds(of: &str) -> TenantCredentials {
        let broker = reqwest::Url::parse("amqp://mq:5672").unwrap();
        TenantCredentials::new(&tenant(of), Password::new("p4ssw0rd"), &broker)
    }

    #[test]
    fn answers_cross_between_the_functions_unchanged() {
        for outcome in [
            Ok(Readiness::Ready(creds(A))),
            Ok(Readiness::Provisioning),
            Ok(Readiness::Absent),
            Err(ReadinessError::RotationBusy),
            Err(ReadinessError::TimedOut { ms: 1000 }),
            Err(ReadinessError::Foreign("x".into())),
        ] {
            let transient = outcome.as_ref().err().map(ReadinessError::is_transient);
            let wire = serde_json::to_string(&AccessAnswer::of(outcome)).unwrap();
            let back: AccessAnswer = serde_json::from_str(&wire).unwrap();
            let back = back.outcome();
            assert_eq!(
                back.as_ref().err().map(ReadinessError::is_transient),
                transient,
                "{wire}"
            );
            if let Ok(r) = back {
                assert!(wire.contains(r_tag(&r)), "{wire}");
            }
        }
    }

    fn r_tag(r: &Readiness) -> &'static str {
        match r {
            Readiness::Ready(_) => "ready",
            Readiness::Provisioning => "provisioning",
            Readiness::Absent => "absent",
        }
    }

    #[test]
    fn a_complete_tenant_with_its_own_secret_is_ready() {
        let got = verdict(&tenant(A), true, false, Some(creds(A))).unwrap();
        assert_eq!(got, Readiness::Ready(creds(A)));
    }

    #[test]
    fn another_tenants_secret_is_never_handed_out() {
        let err = verdict(&tenant(A), true, false, Some(creds(B))).unwrap_err();
        assert!(matches!(err, ReadinessError::Foreign(_)), "{err}");
        assert!(!err.is_transient());
        assert!(!err.to_string().contains("p4ssw0rd"), "{err}");
    }

    #[test]
    fn incomplete_absent_and_changing_tenants() {
        assert_eq!(
            verdict(&tenant(A), false, false, Some(creds(A))).unwrap(),
            Readiness::Provisioning
        );
        assert_eq!(
            verdict(&tenant(A), false, false, None).unwrap(),
            Readiness::Provisioning
        );
        assert_eq!(verdict(&tenant(A), false, true, None).unwrap(), Readiness::Absent);
        assert_eq!(
            verdict(&tenant(A), false, true, Some(creds(A))).unwrap(),
            Readiness::Provisioning
        );
        let err = verdict(&tenant(A), true, false, None).unwrap_err();
        assert!(matches!(err, ReadinessError::Changed) && err.is_transient());
    }
}
