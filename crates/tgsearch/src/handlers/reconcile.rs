//! The scheduled reconcile function (EventBridge): repair drift, report what it did.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use tracing::{info, warn};

use super::HandlerError;
use crate::app::LiveProvisioner;
use crate::ports::UserDirectory;
use crate::reconcile::{Options, Report, reconcile};

pub async fn handle<D: UserDirectory>(
    provisioner: &LiveProvisioner,
    directory: &D,
    options: &Options,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Report, HandlerError> {
    // Work until the Lambda's deadline leaves just the time to report.
    let mut options = options.clone();
    if let Some(left) = crate::deadline::remaining_until(event.context.deadline) {
        options.deadline = Some(tokio::time::Instant::now() + left);
    }
    let report = reconcile(provisioner, directory, &options).await?;
    info!(
        trigger = event.payload.id.as_deref().unwrap_or("direct"),
        provisioned = report.provisioned.len(),
        repaired = report.repaired.len(),
        needs_person = report.needs_person.len(),
        removed = report.removed.len(),
        foreign = report.foreign.len(),
        failed = report.failed.len(),
        left_for_next_run = report.left_for_next_run.len(),
        "reconciled"
    );
    for change in &report.repaired {
        info!(tenant = %change.sub, resource = %change.resource, detail = %change.detail, "drift repaired");
    }
    for foreign in &report.foreign {
        info!(kind = %foreign.kind, name = %foreign.name, reason = %foreign.reason, "foreign resource left alone");
    }
    if report.is_clean() {
        return Ok(report);
    }
    // A run with failures fails the invocation, so it shows in the function's error metrics;
    // the next run retries what failed.
    for (sub, error) in &report.failed {
        warn!(tenant = %sub, error = %error, "tenant not reconciled");
    }
    for change in &report.needs_person {
        warn!(tenant = %change.sub, resource = %change.resource, detail = %change.detail, "needs a person");
    }
    Err(HandlerError::Incomplete(format!(
        "{} tenants failed, {} resources need a person{}; provisioned {}, removed {}",
        report.failed.len(),
        report.needs_person.len(),
        report
            .refused_removals
            .as_deref()
            .map(|r| format!("; {r}"))
            .unwrap_or_default(),
        report.provisioned.len(),
        report.removed.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_fixture_is_an_eventbridge_event() {
        let path = format!(
            "{}/../../tests/events/reconcile-schedule.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let event: EventBridgeEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(event.detail_type, "Scheduled Event");
        assert_eq!(event.source, "aws.events");
    }
}
