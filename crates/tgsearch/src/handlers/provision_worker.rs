//! The provisioning worker: finishes, from the hand-off queue, the tenants post-confirmation
//! could not finish inside Cognito's 5 s. The same idempotent provisioning code; each message
//! under its own deadline; failures reported per message (partial batch failure), each coming
//! back after an exponential backoff; after the queue's maximum receives a message goes to the
//! dead-letter queue, whose alarm calls a person. Reconcile remains the last safety net.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use lambda_runtime::LambdaEvent;
use tracing::{error, info, warn};

use super::HandlerError;
use crate::adapters::sqs::HandOff;
use crate::cells::TenantCells;
use crate::deadline::{Deadline, Step};
use crate::metrics::{self, Dim, Record};
use crate::ports::{DirectoryUser, ProvisionQueue, UserDirectory};
use crate::readiness::{AccessAction, AccessAnswer, AccessRequest, TenantReadiness};
use crate::tenant::TenantId;

/// What the worker works with, built once per container.
pub struct Worker<'a, C, Q, D> {
    /// The tenant's cell (placed now if the signup could not place it).
    pub cells: &'a C,
    pub queue: &'a Q,
    /// Asked before anything is provisioned: a hand-off outlives its user when they delete or
    /// are disabled while it waits.
    pub directory: &'a D,
    /// The most one tenant may take (`PROVISION_BUDGET_MS`), Lambda deadline permitting.
    pub budget: Duration,
}

/// Messages handled at once: a batch is small, and the broker is what is protected (the event
/// source's maximum concurrency bounds the workers).
const AT_ONCE: usize = 5;

/// When a failed message comes back: 10 s doubling with each receive, at most 15 minutes,
/// jittered so that a burst does not come back as one.
pub fn backoff(receive_count: u32) -> Duration {
    let base = Duration::from_secs(10 * (1u64 << receive_count.saturating_sub(1).min(7)));
    base.min(Duration::from_secs(900))
        .mul_f64(0.75 + rand::random::<f64>() / 2.0)
}

pub async fn handle<C: TenantCells, Q: ProvisionQueue, D: UserDirectory>(
    ctx: &Worker<'_, C, Q, D>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, HandlerError> {
    let (event, context) = event.into_parts();
    let lambda_deadline = context.deadline;
    let outcomes: Vec<(SqsMessage, Result<(), String>)> = futures::stream::iter(event.records)
        .map(|record| async move {
            let outcome = process(ctx, &record, lambda_deadline).await;
            (record, outcome)
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in outcomes {
        let Err(why) = outcome else { continue };
        let Some(id) = record.message_id.clone() else {
            error!(error = %why, "a failed message without an id cannot be reported");
            continue;
        };
        let receives: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        if let Some(receipt) = &record.receipt_handle {
            let delay = backoff(receives);
            if let Err(e) = ctx.queue.retry_later(receipt, delay).await {
                warn!(message = %id, error = %e, "could not set the backoff; the queue's visibility timeout applies");
            }
        }
        warn!(message = %id, receives, error = %why, "not provisioned; the message comes back after a backoff");
        completed(&record, "failed");
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

async fn process<C: TenantCells, Q: ProvisionQueue, D: UserDirectory>(
    ctx: &Worker<'_, C, Q, D>,
    record: &SqsMessage,
    lambda_deadline: u64,
) -> Result<(), String> {
    // A malformed message can never succeed: it fails until it reaches the dead-letter queue,
    // where a person sees it (its body is not logged: it is not ours to trust).
    let message: HandOff = serde_json::from_str(record.body.as_deref().unwrap_or(""))
        .map_err(|_| "the message is not a hand-off (JSON with `sub`)".to_owned())?;
    let tenant = TenantId::parse(&message.sub).map_err(|e| format!("field `sub`: {e}"))?;
    let deadline = Deadline::new(ctx.budget, Some(lambda_deadline));
    // Cognito first: a user deleted or disabled since the signup gets nothing new (whatever the
    // signup created is removed by reconcile, which asks Cognito again).
    let (user, _) = deadline
        .run(Step::Directory, || ctx.directory.user(tenant.as_str()))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(why) = not_to_provision(user.as_ref()) {
        warn!(
            tenant = %tenant,
            handed_off_because = %message.reason,
            dropped_because = why,
            "hand-off dropped: not provisioned"
        );
        completed(record, "dropped");
        return Ok(());
    }
    let at = tokio::time::timeout(deadline.remaining(), ctx.cells.place(&tenant))
        .await
        .map_err(|_| "choosing the tenant's cell did not finish in time".to_owned())?
        .map_err(|e| e.to_string())?;
    match at.provisioner.provision(&tenant, &deadline).await {
        Ok(done) => {
            let changed: Vec<String> = done.changed().map(|(step, _)| step.to_string()).collect();
            info!(
                tenant = %tenant,
                cell = at.cell_name(),
                handed_off_because = %message.reason,
                created = %changed.join(","),
                "provisioned by the worker"
            );
            completed(record, "provisioned");
            metrics::provisioned(&done);
            Ok(())
        }
        Err(e) => {
            metrics::provision_failed(&e);
            Err(e.to_string())
        }
    }
}

/// A hand-off the worker is done with: its outcome, and how long it waited since it was sent
/// (SQS's `SentTimestamp`), for the provisioned and the dropped.
fn completed(record: &SqsMessage, outcome: &'static str) {
    let mut metric = Record::new().dim(Dim::Outcome, outcome).one("HandOffsCompleted");
    let sent = record
        .attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0);
    if let (Some(sent), "provisioned" | "dropped") = (sent, outcome) {
        let age = metrics::epoch_millis().saturating_sub(sent);
        metric = metric.value("HandOffAge", age as f64);
    }
    metric.emit();
}

/// A direct invocation from tenant-credentials, which holds none of the provisioner's rights: a
/// tenant's readiness, or its rotation, answered as [`AccessAnswer`]. Logs name the tenant and
/// the outcome, never the credentials.
pub async fn access<T: TenantReadiness>(tenants: &T, request: AccessRequest) -> AccessAnswer {
    let tenant = match TenantId::parse(&request.sub) {
        Ok(tenant) => tenant,
        Err(e) => {
            return AccessAnswer::Failed {
                transient: false,
                reason: format!("field `sub`: {e}"),
            };
        }
    };
    let within = Duration::from_millis(request.within_ms.clamp(1, 10_000));
    let outcome = match request.action {
        AccessAction::Readiness => tenants.readiness(&tenant, within).await,
        AccessAction::Rotate => tenants.rotate(&tenant, within).await,
    };
    let answer = AccessAnswer::of(outcome);
    let what = match &answer {
        AccessAnswer::Ready { .. } => "ready",
        AccessAnswer::Provisioning => "provisioning",
        AccessAnswer::Absent => "absent",
        AccessAnswer::Busy => "busy",
        AccessAnswer::Failed { .. } => "failed",
    };
    match &answer {
        AccessAnswer::Failed { reason, .. } => {
            warn!(tenant = %tenant, action = ?request.action, %reason, "tenant access failed")
        }
        _ => info!(tenant = %tenant, action = ?request.action, outcome = what, "tenant access answered"),
    }
    answer
}

/// The worker's one entry point: a batch from the queue's event source, or a tenant access
/// request from tenant-credentials (`{"tenant_access": {...}}`).
pub async fn dispatch<C: TenantCells, Q: ProvisionQueue, D: UserDirectory, T: TenantReadiness>(
    ctx: &Worker<'_, C, Q, D>,
    tenants: &T,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, HandlerError> {
    let (payload, context) = event.into_parts();
    if let Some(request) = payload.get("tenant_access") {
        let request: AccessRequest = super::parse_event(request, "tenant access request")?;
        let answer = access(tenants, request).await;
        return Ok(serde_json::to_value(answer).expect("an answer serializes"));
    }
    let batch: SqsEvent = super::parse_event(&payload, "SQS")?;
    let response = handle(ctx, LambdaEvent::new(batch, context)).await?;
    Ok(serde_json::to_value(response).expect("a batch response serializes"))
}

/// Why a hand-off's user must not get a tenant (`None`: provision it).
pub fn not_to_provision(user: Option<&DirectoryUser>) -> Option<&'static str> {
    match user {
        None => Some("the user no longer exists in the user pool"),
        Some(u) if !u.enabled => Some("the user is disabled"),
        Some(u) if !u.confirmed => Some("the user's sign-up is not confirmed"),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_enabled_confirmed_user_is_provisioned() {
        let user = |confirmed, enabled| DirectoryUser {
            sub: "s".into(),
            confirmed,
            enabled,
        };
        assert_eq!(not_to_provision(Some(&user(true, true))), None);
        assert!(not_to_provision(None).unwrap().contains("no longer exists"));
        assert!(
            not_to_provision(Some(&user(true, false)))
                .unwrap()
                .contains("disabled")
        );
        assert!(
            not_to_provision(Some(&user(false, true)))
                .unwrap()
                .contains("not confirmed")
        );
    }

    #[test]
    fn backoff_grows_with_each_receive_and_stays_bounded() {
        let first = backoff(1);
        assert!(first >= Duration::from_millis(7_500) && first <= Duration::from_millis(12_500));
        let later = backoff(4);
        assert!(later >= Duration::from_secs(60), "{later:?}");
        assert!(backoff(40) <= Duration::from_millis(900 * 1250));
    }
}
