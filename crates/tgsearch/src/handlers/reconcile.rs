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
    let report = reconcile(provisioner, directory, options).await?;
    info!(
        trigger = event.payload.id.as_deref().unwrap_or("direct"),
        provisioned = report.provisioned.len(),
        removed = report.removed.len(),
        failed = report.failed.len(),
        "reconciled"
    );
    if report.is_clean() {
        return Ok(report);
    }
    // A run with failures fails the invocation, so it shows in the function's error metrics;
    // the next run retries what failed.
    for (sub, error) in &report.failed {
        warn!(tenant = %sub, error = %error, "tenant not reconciled");
    }
    Err(HandlerError::Incomplete(format!(
        "{} tenants failed{}; provisioned {}, removed {}",
        report.failed.len(),
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
