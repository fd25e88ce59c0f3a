//! The scheduled reconcile function (EventBridge): repair drift, report what it did.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use tracing::{info, warn};

use super::HandlerError;
use crate::app::LiveProvisioner;
use crate::deadline::Step;
use crate::metrics::{Dim, Record, resource_count};
use crate::ports::UserDirectory;
use crate::reconcile::{Change, Options, Report, reconcile};

pub async fn handle<D: UserDirectory>(
    provisioner: &LiveProvisioner,
    directory: &D,
    options: &Options,
    capacity: usize,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<Report, HandlerError> {
    // Work until the Lambda's deadline leaves just the time to report.
    let mut options = options.clone();
    if let Some(left) = crate::deadline::remaining_until(event.context.deadline) {
        options.deadline = Some(tokio::time::Instant::now() + left);
    }
    let started = std::time::Instant::now();
    let report = reconcile(provisioner, directory, &options)
        .await
        .inspect_err(|_| {
            Record::new()
                .dim(Dim::Outcome, "aborted")
                .one("ReconcileRuns")
                .millis("ReconcileDuration", started.elapsed())
                .emit()
        })?;
    report_metrics(&report, started.elapsed(), capacity);
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

/// One run's counts, drift repaired and left for a person by resource, foreign resources by
/// kind, and the deployment's fill (tenants seen against `capacity`).
pub fn report_metrics(report: &Report, took: std::time::Duration, capacity: usize) {
    let outcome = if report.is_clean() { "clean" } else { "incomplete" };
    let n = |v: usize| v as f64;
    let fill = if capacity == 0 {
        100.0
    } else {
        100.0 * report.tenants_seen as f64 / capacity as f64
    };
    Record::new()
        .dim(Dim::Outcome, outcome)
        .one("ReconcileRuns")
        .millis("ReconcileDuration", took)
        .value("ReconcileUsers", n(report.users))
        .value("ReconcileProvisioned", n(report.provisioned.len()))
        .value("ReconcileRepaired", n(report.repaired.len()))
        .value("ReconcileNeedsPerson", n(report.needs_person.len()))
        .value("ReconcileRemoved", n(report.removed.len()))
        .value("ReconcileKept", n(report.kept.len()))
        .value("ReconcileForeign", n(report.foreign.len()))
        .value("ReconcileFailed", n(report.failed.len()))
        .value(
            "ReconcileRefusedRemovals",
            if report.refused_removals.is_some() {
                1.0
            } else {
                0.0
            },
        )
        .value("ReconcileLeftForNextRun", n(report.left_for_next_run.len()))
        .value("Tenants", n(report.tenants_seen))
        .value("TenantCapacity", n(capacity))
        .value("TenantFill", fill)
        .emit();
    let by_resource = |changes: &[Change]| {
        let mut counts = std::collections::BTreeMap::<Step, usize>::new();
        for change in changes {
            *counts.entry(change.resource).or_default() += 1;
        }
        counts
    };
    for (step, count) in by_resource(&report.repaired) {
        resource_count("DriftRepaired", step, count);
    }
    for (step, count) in by_resource(&report.needs_person) {
        resource_count("NeedsPerson", step, count);
    }
    let mut foreign = std::collections::BTreeMap::<Step, usize>::new();
    for f in &report.foreign {
        if let Some(step) = foreign_kind(&f.kind) {
            *foreign.entry(step).or_default() += 1;
        }
    }
    for (step, count) in foreign {
        resource_count("ForeignResources", step, count);
    }
}

/// The inventory's kinds of foreign resources, as the steps that own such a resource.
fn foreign_kind(kind: &str) -> Option<Step> {
    Some(match kind {
        "secret" => Step::Secret,
        "vhost" => Step::Vhost,
        "RabbitMQ user" | "user" => Step::User,
        "Secret" | "kube-secret" => Step::KubeSecret,
        "PersistentVolumeClaim" | "volume" => Step::Volume,
        "Deployment" | "deployment" => Step::Deployment,
        _ => return None,
    })
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
