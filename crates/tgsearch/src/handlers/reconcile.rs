//! The scheduled reconcile function (EventBridge): repair drift, report what it did.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::LambdaEvent;
use tracing::{info, warn};

use super::HandlerError;
use crate::cells::live::LiveCells;
use crate::cells::reconcile::{CellRun, CellsReport, reconcile_cells};
use crate::deadline::Step;
use crate::metrics::{Dim, Record, resource_record};
use crate::ports::UserDirectory;
use crate::reconcile::{Options, Report};

pub async fn handle<D: UserDirectory>(
    cells: &LiveCells,
    directory: &D,
    options: &Options,
    capacity: usize,
    event: LambdaEvent<EventBridgeEvent>,
) -> Result<CellsReport, HandlerError> {
    // Work until the Lambda's deadline leaves just the time to report.
    let mut options = options.clone();
    if let Some(left) = crate::deadline::remaining_until(event.context.deadline) {
        options.deadline = Some(tokio::time::Instant::now() + left);
    }
    let started = std::time::Instant::now();
    let cells_report = reconcile_cells(cells, directory, &options)
        .await
        .inspect_err(|_| {
            Record::new()
                .dim(Dim::Outcome, "aborted")
                .one("ReconcileRuns")
                .millis("ReconcileDuration", started.elapsed())
                .emit()
        })?;
    let report = &cells_report.total;
    report_metrics(report, started.elapsed(), capacity);
    for record in cell_records(&cells_report.cells) {
        record.emit();
    }
    for run in &cells_report.cells {
        match &run.error {
            None => {
                info!(cell = %run.cell, state = run.state, mapped = run.mapped, capacity = run.capacity, health = run.health.as_deref().unwrap_or("ok"), "cell reconciled")
            }
            Some(e) => warn!(cell = %run.cell, error = %e, "cell not reconciled; nothing of it was changed"),
        }
    }
    for (sub, why) in &cells_report.unplaced {
        warn!(tenant = %sub, reason = %why, "user without a cell");
    }
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
    if cells_report.is_clean() {
        return Ok(cells_report);
    }
    // A run with failures fails the invocation, so it shows in the function's error metrics;
    // the next run retries what failed.
    for (sub, error) in &report.failed {
        warn!(tenant = %sub, error = %error, "tenant not reconciled");
    }
    for change in &report.needs_person {
        warn!(tenant = %change.sub, resource = %change.resource, detail = %change.detail, "needs a person");
    }
    let cells_failed: Vec<&str> = cells_report
        .cells
        .iter()
        .filter(|c| c.error.is_some())
        .map(|c| c.cell.as_str())
        .collect();
    Err(HandlerError::Incomplete(format!(
        "{} cells not reconciled ({}), {} users without a cell, {} tenants failed, {} resources need a person{}; provisioned {}, removed {}",
        cells_failed.len(),
        cells_failed.join(", "),
        cells_report.unplaced.len(),
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
    for record in run_records(report, took, capacity) {
        record.emit();
    }
}

/// The records of [`report_metrics`] (pure).
pub fn run_records(report: &Report, took: std::time::Duration, capacity: usize) -> Vec<Record> {
    let outcome = if report.is_clean() { "clean" } else { "incomplete" };
    let n = |v: usize| v as f64;
    let fill = 100.0 * report.tenants_seen as f64 / capacity.max(1) as f64;
    let mut records = vec![
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
                n(usize::from(report.refused_removals.is_some())),
            )
            .value("ReconcileLeftForNextRun", n(report.left_for_next_run.len()))
            .value("Tenants", n(report.tenants_seen))
            .value("TenantCapacity", n(capacity))
            .value("TenantFill", fill),
    ];
    let mut count = |name: &'static str, steps: &mut dyn Iterator<Item = Step>| {
        let mut counts = std::collections::BTreeMap::<Step, usize>::new();
        for step in steps {
            *counts.entry(step).or_default() += 1;
        }
        records.extend(counts.into_iter().map(|(step, c)| resource_record(name, step, c)));
    };
    count("DriftRepaired", &mut report.repaired.iter().map(|c| c.resource));
    count("NeedsPerson", &mut report.needs_person.iter().map(|c| c.resource));
    count(
        "ForeignResources",
        &mut report.foreign.iter().filter_map(|f| foreign_kind(&f.kind)),
    );
    records
}

/// The cells as a run found them: the fullest open cell's fill (percent), cells that failed their
/// health check, and open cells with room left.
pub fn cell_records(cells: &[CellRun]) -> Vec<Record> {
    let registered: Vec<&CellRun> = cells
        .iter()
        .filter(|c| c.cell != crate::cells::UNMAPPED)
        .collect();
    if registered.is_empty() {
        return Vec::new();
    }
    let open = registered.iter().filter(|c| c.state == "open");
    let fill_max = open
        .clone()
        .map(|c| 100.0 * c.mapped as f64 / f64::from(c.capacity.max(1)))
        .fold(0.0, f64::max);
    let with_room = open.filter(|c| c.mapped < c.capacity as usize).count();
    let unhealthy = registered
        .iter()
        .filter(|c| c.state != "closed" && (c.health.is_some() || c.error.is_some()))
        .count();
    vec![
        Record::new()
            .value("CellFillMax", fill_max)
            .value("CellsUnhealthy", unhealthy as f64)
            .value("CellsWithRoom", with_room as f64),
    ]
}

/// The inventory's kinds of foreign resources, as the steps that own such a resource.
fn foreign_kind(kind: &str) -> Option<Step> {
    Some(match kind {
        "secret" => Step::Secret,
        "vhost" => Step::Vhost,
        "RabbitMQ user" => Step::User,
        "Secret" => Step::KubeSecret,
        "PersistentVolumeClaim" => Step::Volume,
        "Deployment" => Step::Deployment,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reports_its_counts_drift_by_resource_and_the_fill() {
        use crate::reconcile::{Change, ForeignResource};
        let change = |resource| Change {
            sub: "s".into(),
            resource,
            detail: "d".into(),
        };
        let report = Report {
            users: 900,
            tenants_seen: 850,
            repaired: vec![change(Step::User), change(Step::User), change(Step::Permission)],
            foreign: vec![ForeignResource {
                kind: "vhost".into(),
                name: "n".into(),
                reason: "r".into(),
            }],
            ..Report::default()
        };
        let docs: Vec<serde_json::Value> = run_records(&report, std::time::Duration::from_millis(1500), 1000)
            .iter()
            .map(|r| r.document("TGSearch", "reconcile", 0))
            .collect();
        let run = &docs[0];
        assert_eq!(run["Outcome"], "clean");
        assert_eq!(run["ReconcileRepaired"], 3.0);
        assert_eq!(run["ReconcileForeign"], 1.0);
        assert_eq!(run["ReconcileDuration"], 1500.0);
        assert_eq!(run["Tenants"], 850.0);
        assert_eq!(run["TenantFill"], 85.0);
        let of = |metric: &str, resource: &str| {
            docs.iter()
                .find(|d| d["Resource"] == resource && d.get(metric).is_some())
                .map(|d| d[metric].clone())
        };
        assert_eq!(of("DriftRepaired", "user"), Some(2.0.into()));
        assert_eq!(of("DriftRepaired", "permission"), Some(1.0.into()));
        assert_eq!(of("ForeignResources", "vhost"), Some(1.0.into()));
        assert_eq!(docs.len(), 4);
    }

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
