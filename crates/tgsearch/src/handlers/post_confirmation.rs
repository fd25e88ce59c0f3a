//! Cognito `PostConfirmation` trigger: provision the tenant of a newly confirmed user.

use std::time::Duration;

use aws_lambda_events::event::cognito::{
    CognitoEventUserPoolsPostConfirmation,
    CognitoEventUserPoolsPostConfirmationTriggerSource as TriggerSource,
};
use lambda_runtime::LambdaEvent;
use tracing::{error, info, warn};

use super::{EventError, HandlerError, tenant_from};
use crate::app::ColdStart;
use crate::cells::{CellError, TenantCells};
use crate::deadline::{Deadline, Step};
use crate::metrics::{self, Dim, Record};
use crate::ports::ProvisionQueue;
use crate::tenant::TenantId;

pub type PostConfirmationEvent = CognitoEventUserPoolsPostConfirmation;

/// The tenant to provision for this event, or `None` when the event needs no provisioning
/// (a confirmed password reset).
pub fn tenant_of(event: &PostConfirmationEvent) -> Result<Option<TenantId>, EventError> {
    match &event.cognito_event_user_pools_header.trigger_source {
        None => Err(EventError::Missing {
            field: "triggerSource",
        }),
        Some(TriggerSource::ConfirmForgotPassword) => Ok(None),
        Some(_) => tenant_from(
            "request.userAttributes.sub",
            event.request.user_attributes.get("sub").map(String::as_str),
        )
        .map(Some),
    }
}

/// Parses the raw event into its `aws_lambda_events` type, naming the field that does not fit.
pub fn parse(raw: &serde_json::Value) -> Result<PostConfirmationEvent, EventError> {
    let Some(object) = raw.as_object() else {
        return Err(EventError::Shape {
            expected: "Cognito post-confirmation",
            source: serde_json::Error::io(std::io::Error::other("the event must be a JSON object")),
        });
    };
    // The header's fields are flattened into the typed event, where a type error loses its
    // path: check them here, so the error names the field.
    for field in ["version", "region", "userPoolId", "userName"] {
        match object.get(field) {
            None | Some(serde_json::Value::Null | serde_json::Value::String(_)) => {}
            Some(_) => {
                return Err(EventError::Field {
                    field: field.into(),
                    reason: "expected a string".into(),
                });
            }
        }
    }
    match object.get("triggerSource") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(s))
            if matches!(
                s.as_str(),
                "PostConfirmation_ConfirmSignUp" | "PostConfirmation_ConfirmForgotPassword"
            ) => {}
        Some(_) => {
            return Err(EventError::Field {
                field: "triggerSource".into(),
                reason: "expected PostConfirmation_ConfirmSignUp or PostConfirmation_ConfirmForgotPassword"
                    .into(),
            });
        }
    }
    super::parse_event(raw, "Cognito post-confirmation")
}

/// What the trigger works with, built once per container.
pub struct PostConfirmation<'a, C, Q> {
    /// The tenant's cell, chosen before anything is created (or the one provisioner).
    pub cells: &'a C,
    pub queue: &'a Q,
    /// `PROVISION_BUDGET_MS`: the most one invocation may take.
    pub budget: Duration,
    /// `PROVISION_SYNC_MS`: how long to provision before handing the rest to the queue.
    pub sync: Duration,
    pub cold_start: &'a ColdStart,
}

/// Time kept for the hand-off itself (one SQS SendMessage) after the synchronous attempt.
pub const HAND_OFF_RESERVE: Duration = Duration::from_millis(500);

/// Provisions the user's tenant and hands the event back unchanged, as Cognito requires.
///
/// It provisions synchronously while `sync` allows; what does not finish in time, or fails in a
/// way a retry can fix (the broker slow or briefly down), is handed to the provisioning worker
/// through the queue, and Cognito gets its answer: the secret is written first, so the password
/// is fixed whoever finishes. Only what can never succeed later fails the trigger: a malformed
/// event, a foreign resource in the way, or a hand-off that itself fails.
///
/// The event is read as raw JSON and parsed into its typed form for validation; the raw JSON is
/// what goes back, so not even an absent optional field (`clientMetadata`) is added to it.
pub async fn handle<C: TenantCells, Q: ProvisionQueue>(
    ctx: &PostConfirmation<'_, C, Q>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, HandlerError> {
    let (payload, context) = event.into_parts();
    // The first invocation of a process also pays for its cold start.
    let budget = ctx.cold_start.budget(ctx.budget);
    let Some(tenant) = tenant_of(&parse(&payload)?)? else {
        info!("password reset confirmed: nothing to provision");
        return Ok(payload);
    };
    let deadline = Deadline::new(budget, Some(context.deadline));
    let sync = Deadline::new(
        ctx.sync
            .min(deadline.remaining().saturating_sub(HAND_OFF_RESERVE)),
        None,
    );
    let started = std::time::Instant::now();
    // The cell first, before anything is created: a retried event finds the cell chosen.
    let placed = tokio::time::timeout(sync.remaining(), ctx.cells.place(&tenant))
        .await
        .unwrap_or_else(|_| {
            Err(CellError::TimedOut {
                ms: started.elapsed().as_millis() as u64,
            })
        });
    let at = match placed {
        Ok(at) => at,
        Err(e) => return unplaced(ctx, &tenant, &deadline, e, started, payload, &context.request_id).await,
    };
    let cell = at.cell_name().to_owned();
    let e = match at.provisioner.provision(&tenant, &sync).await {
        Ok(done) => {
            let steps: Vec<String> = done
                .timings
                .iter()
                .map(|t| format!("{}={:.1}ms", t.step, t.micros as f64 / 1000.0))
                .collect();
            info!(
                tenant = %tenant,
                cell = %cell,
                created = done.created_secret,
                ms = started.elapsed().as_millis() as u64,
                steps = %steps.join(","),
                "tenant provisioned"
            );
            for (step, detail) in done.needs_person() {
                warn!(tenant = %tenant, resource = %step, detail = ?detail, "needs a person");
            }
            signup("sync", started.elapsed());
            metrics::provisioned(&done);
            return Ok(payload);
        }
        Err(e) => e,
    };
    if e.is_foreign() {
        error!(tenant = %tenant, step = %e.step(), error = %e, "provisioning refused: a foreign resource is in the way");
        signup("failed", started.elapsed());
        metrics::provision_failed(&e);
        return Err(HandlerError::from(e).withheld(&context.request_id));
    }
    let reason = e.to_string();
    match deadline
        .run(Step::HandOff, || ctx.queue.hand_off(&tenant, &reason))
        .await
    {
        Ok(_) => {
            info!(
                tenant = %tenant,
                cell = %cell,
                step = %e.step(),
                ms = started.elapsed().as_millis() as u64,
                reason = %reason,
                "handed off to the provisioning worker"
            );
            signup("handed_off", started.elapsed());
            Record::new()
                .dim(Dim::Step, e.step().as_str())
                .dim(Dim::Reason, metrics::failure_reason(&e))
                .one("HandOffs")
                .emit();
            Ok(payload)
        }
        Err(handoff) => {
            error!(
                tenant = %tenant,
                step = %e.step(),
                error = %e,
                handoff = %handoff,
                "provisioning failed and could not be handed off; a retry of the same event converges"
            );
            signup("failed", started.elapsed());
            metrics::provision_failed(&e);
            Err(HandlerError::from(e).withheld(&context.request_id))
        }
    }
}

/// No cell could be had in time (none with room, the registry slow or down): the signup is
/// handed off, never failed, unless the hand-off fails too. Nothing was created.
async fn unplaced<C: TenantCells, Q: ProvisionQueue>(
    ctx: &PostConfirmation<'_, C, Q>,
    tenant: &TenantId,
    deadline: &Deadline,
    why: CellError,
    started: std::time::Instant,
    payload: serde_json::Value,
    request_id: &str,
) -> Result<serde_json::Value, HandlerError> {
    let reason = why.to_string();
    match deadline
        .run(Step::HandOff, || ctx.queue.hand_off(tenant, &reason))
        .await
    {
        Ok(_) => {
            warn!(tenant = %tenant, reason = %reason, "no cell now: handed off to the provisioning worker");
            signup("handed_off", started.elapsed());
            Ok(payload)
        }
        Err(handoff) => {
            error!(tenant = %tenant, reason = %reason, handoff = %handoff, "no cell, and the hand-off failed; a retry of the same event converges");
            signup("failed", started.elapsed());
            Err(HandlerError::from(why).withheld(request_id))
        }
    }
}

/// A signup as Cognito saw it, and how long it took.
fn signup(outcome: &'static str, took: Duration) {
    Record::new()
        .dim(Dim::Outcome, outcome)
        .one("Signups")
        .millis("SignupDuration", took)
        .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!("{}/../../tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn event(name: &str) -> PostConfirmationEvent {
        serde_json::from_value(fixture(name)).unwrap()
    }

    #[test]
    fn an_event_of_another_trigger_is_refused() {
        let mut raw = fixture("post-confirmation-signup.json");
        raw["triggerSource"] = "PreSignUp_SignUp".into();
        let err = parse(&raw).unwrap_err().to_string();
        assert!(err.contains("event field `triggerSource` is invalid"), "{err}");
        raw["triggerSource"] = 7.into();
        let err = parse(&raw).unwrap_err().to_string();
        assert!(err.contains("event field `triggerSource` is invalid"), "{err}");
        raw["triggerSource"] = "PostConfirmation_ConfirmSignUp".into();
        raw["userName"] = serde_json::json!({"sub": "x"});
        let err = parse(&raw).unwrap_err().to_string();
        assert_eq!(err, "event field `userName` is invalid: expected a string");
        raw["userName"] = "alice".into();
        raw["triggerSource"] = serde_json::Value::Null;
        let err = tenant_of(&parse(&raw).unwrap()).unwrap_err().to_string();
        assert_eq!(err, "event field `triggerSource` is missing");
    }

    #[test]
    fn a_signup_names_its_tenant() {
        let tenant = tenant_of(&event("post-confirmation-signup.json"))
            .unwrap()
            .unwrap();
        assert_eq!(tenant.as_str(), "2f6d1c0e-4b3a-4e29-9c8d-7a6b5c4d3e2f");
    }

    #[test]
    fn a_password_reset_needs_nothing() {
        assert!(
            tenant_of(&event("post-confirmation-forgot-password.json"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_events_are_refused_naming_the_field() {
        for (name, expected) in [
            (
                "post-confirmation-missing-sub.json",
                "event field `request.userAttributes.sub` is missing",
            ),
            ("post-confirmation-uppercase-sub.json", "lowercase"),
            (
                "post-confirmation-path-traversal-sub.json",
                "request.userAttributes.sub",
            ),
        ] {
            let err = tenant_of(&event(name)).unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
        }
    }
}
