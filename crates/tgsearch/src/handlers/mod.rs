//! Lambda handlers: event in, validated, handed to the domain logic, answer out. Each binary
//! crate wires one of these to `lambda_runtime::run`.

pub mod mailgun_webhook;
pub mod post_confirmation;
pub mod provision_worker;
pub mod reconcile;
pub mod teardown;
pub mod tenant_credentials;

use lambda_runtime::Diagnostic;

use crate::deadline::StepError;

/// A field of the incoming event that is missing or malformed. Nothing is created for it.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event is not a {expected} event: {source}")]
    Shape {
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("event field `{field}` is invalid: {reason}")]
    Field { field: String, reason: String },
    #[error("event field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("event field `{field}` is invalid: {source}")]
    Invalid {
        field: &'static str,
        #[source]
        source: crate::tenant::InvalidTenantId,
    },
}

/// Why a handler failed, as the Lambda error it reports.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Reconcile(#[from] crate::reconcile::ReconcileError),
    #[error("reconcile finished incompletely: {0}")]
    Incomplete(String),
    #[error(transparent)]
    Refused(#[from] crate::teardown::TeardownRefused),
    #[error(transparent)]
    Cell(#[from] crate::cells::CellError),
    /// What a user may be shown of a failure: the detail (broker reasons, Kubernetes messages,
    /// host names) is in the log under the reference, never in the answer.
    #[error(
        "your account is confirmed, but setting it up did not finish; it will be completed within 15 minutes (reference {reference})"
    )]
    Withheld { kind: &'static str, reference: String },
}

impl HandlerError {
    /// This failure as its user may see it: its kind, and `reference` (the invocation's request
    /// id) under which the log holds the detail.
    pub fn withheld(self, reference: &str) -> Self {
        if matches!(
            self,
            HandlerError::InvalidEvent(_) | HandlerError::Withheld { .. }
        ) {
            return self;
        }
        let kind = self.kind();
        tracing::error!(reference, kind, error = %self, "failed; the caller was shown only the reference");
        HandlerError::Withheld {
            kind,
            reference: reference.to_owned(),
        }
    }

    /// The failure's kind: the Lambda error type.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Step(StepError::TimedOut { .. }) => "StepTimedOut",
            HandlerError::Step(StepError::Failed { .. }) => "StepFailed",
            HandlerError::Reconcile(_) => "InventoryFailed",
            HandlerError::Incomplete(_) => "ReconcileIncomplete",
            HandlerError::Refused(_) => "TeardownRefused",
            HandlerError::Cell(_) => "CellUnavailable",
            HandlerError::Withheld { kind, .. } => kind,
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Self {
        Diagnostic {
            error_type: err.kind().into(),
            error_message: err.to_string(),
        }
    }
}

/// Reads `raw` as a `T`, naming the field that does not fit (its path, e.g.
/// `request.userAttributes.sub`) and never quoting more than a little of the input.
pub fn parse_event<T: serde::de::DeserializeOwned>(
    raw: &serde_json::Value,
    expected: &'static str,
) -> Result<T, EventError> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let field = e.path().to_string();
        let reason: String = e.inner().to_string().chars().take(160).collect();
        if field.is_empty() || field == "." {
            EventError::Shape {
                expected,
                source: serde_json::Error::io(std::io::Error::other(reason)),
            }
        } else {
            EventError::Field { field, reason }
        }
    })
}

fn tenant_from(field: &'static str, value: Option<&str>) -> Result<crate::TenantId, EventError> {
    let value = value.ok_or(EventError::Missing { field })?;
    crate::TenantId::parse(value).map_err(|source| EventError::Invalid { field, source })
}
