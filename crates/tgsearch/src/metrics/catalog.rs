//! Every metric the functions emit: its name, unit, the functions that emit it, and each
//! dimension it may carry with the values it takes.

use super::{Dim, Unit};

/// Steps of a provisioning, as dimension values.
pub(super) const STEPS: &[&str] = &[
    "secret",
    "vhost",
    "user",
    "permission",
    "kube-secret",
    "volume",
    "deployment",
    "directory",
    "hand-off",
    "lock",
    "limits",
];
/// Why a step did not complete ([`failure_reason`]).
const REASONS: &[&str] = &["timeout", "foreign", "transient", "error"];
/// Resource kinds: the steps that own a resource, and the inventory's kinds.
const RESOURCES: &[&str] = &[
    "secret",
    "vhost",
    "user",
    "permission",
    "kube-secret",
    "volume",
    "deployment",
    "limits",
];

/// Every metric the functions emit: its name, unit, the function(s) that emit it, and each
/// dimension it may carry with the values it takes. The dashboard and the alarms reference
/// nothing outside it (a test checks the template against it), and every line emitted is
/// checked against it in the tests that read the functions' logs.
pub struct MetricSpec {
    pub name: &'static str,
    pub unit: Unit,
    pub functions: &'static [&'static str],
    pub dims: &'static [(Dim, &'static [&'static str])],
}

pub const POST_CONFIRMATION: &str = "post-confirmation";
pub const PROVISION_WORKER: &str = "provision-worker";
pub const TEARDOWN: &str = "teardown";
pub const RECONCILE: &str = "reconcile";
pub const MAILGUN_WEBHOOK: &str = "mailgun-webhook";
pub const TENANT_CREDENTIALS: &str = "tenant-credentials";

const PROVISIONERS: &[&str] = &[POST_CONFIRMATION, PROVISION_WORKER, RECONCILE];

pub const CATALOG: &[MetricSpec] = &[
    // A signup as Cognito saw it: finished in the trigger, handed off, or failed.
    MetricSpec {
        name: "Signups",
        unit: Unit::Count,
        functions: &[POST_CONFIRMATION],
        dims: &[(Dim::Outcome, &["sync", "handed_off", "failed"])],
    },
    MetricSpec {
        name: "SignupDuration",
        unit: Unit::Milliseconds,
        functions: &[POST_CONFIRMATION],
        dims: &[(Dim::Outcome, &["sync", "handed_off", "failed"])],
    },
    // Each step of a provisioning that completed.
    MetricSpec {
        name: "StepDuration",
        unit: Unit::Milliseconds,
        functions: &[POST_CONFIRMATION, PROVISION_WORKER],
        dims: &[(Dim::Step, STEPS)],
    },
    // Why the trigger handed a signup to the worker: the step it was at, and the reason.
    MetricSpec {
        name: "HandOffs",
        unit: Unit::Count,
        functions: &[POST_CONFIRMATION],
        dims: &[(Dim::Step, STEPS), (Dim::Reason, REASONS)],
    },
    // A hand-off the worker took: provisioned, dropped (its user is gone), or failed (retried).
    MetricSpec {
        name: "HandOffsCompleted",
        unit: Unit::Count,
        functions: &[PROVISION_WORKER],
        dims: &[(Dim::Outcome, &["provisioned", "dropped", "failed"])],
    },
    // How long a hand-off waited, from its SendMessage to its completion.
    MetricSpec {
        name: "HandOffAge",
        unit: Unit::Milliseconds,
        functions: &[PROVISION_WORKER],
        dims: &[(Dim::Outcome, &["provisioned", "dropped"])],
    },
    // A provisioning that did not complete, by the step it stopped at and why.
    MetricSpec {
        name: "ProvisionFailures",
        unit: Unit::Count,
        functions: &[POST_CONFIRMATION, PROVISION_WORKER],
        dims: &[(Dim::Step, STEPS), (Dim::Reason, REASONS)],
    },
    MetricSpec {
        name: "DriftRepaired",
        unit: Unit::Count,
        functions: PROVISIONERS,
        dims: &[(Dim::Resource, RESOURCES)],
    },
    MetricSpec {
        name: "NeedsPerson",
        unit: Unit::Count,
        functions: PROVISIONERS,
        dims: &[(Dim::Resource, RESOURCES)],
    },
    MetricSpec {
        name: "ForeignResources",
        unit: Unit::Count,
        functions: &[POST_CONFIRMATION, PROVISION_WORKER, RECONCILE, TEARDOWN],
        dims: &[(Dim::Resource, RESOURCES)],
    },
    MetricSpec {
        name: "Teardowns",
        unit: Unit::Count,
        functions: &[TEARDOWN],
        dims: &[(Dim::Outcome, &["removed", "refused", "failed"])],
    },
    MetricSpec {
        name: "MailgunDeliveries",
        unit: Unit::Count,
        functions: &[MAILGUN_WEBHOOK],
        dims: &[(
            Dim::Outcome,
            &["alerted", "duplicate", "ignored", "refused", "unavailable"],
        )],
    },
    // 406: Mailgun never retries it.
    MetricSpec {
        name: "MailgunRefused",
        unit: Unit::Count,
        functions: &[MAILGUN_WEBHOOK],
        dims: &[(Dim::Cause, &["signature", "timestamp", "replay", "malformed"])],
    },
    // 503: Mailgun retries for about 8 hours, then gives up.
    MetricSpec {
        name: "MailgunUnavailable",
        unit: Unit::Count,
        functions: &[MAILGUN_WEBHOOK],
        dims: &[(Dim::Cause, &["ledger", "alert-topic", "signing-key", "in-flight"])],
    },
    MetricSpec {
        name: "Rotations",
        unit: Unit::Count,
        functions: &[PROVISION_WORKER, TENANT_CREDENTIALS],
        dims: &[(
            Dim::Outcome,
            &["rotated", "joined", "busy", "not_ready", "absent", "failed"],
        )],
    },
    MetricSpec {
        name: "TenantApiAnswers",
        unit: Unit::Count,
        functions: &[TENANT_CREDENTIALS],
        dims: &[(
            Dim::Status,
            &["200", "202", "401", "404", "405", "409", "429", "500", "503"],
        )],
    },
    MetricSpec {
        name: "ReconcileRuns",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[(Dim::Outcome, &["clean", "incomplete", "aborted"])],
    },
    MetricSpec {
        name: "ReconcileDuration",
        unit: Unit::Milliseconds,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileUsers",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileProvisioned",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileRepaired",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileNeedsPerson",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileRemoved",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileKept",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileForeign",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileFailed",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileRefusedRemovals",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "ReconcileLeftForNextRun",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    // The deployment's fill: tenants against `TENANT_CAPACITY`, counted by reconcile.
    MetricSpec {
        name: "Tenants",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "TenantCapacity",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "TenantFill",
        unit: Unit::Percent,
        functions: &[RECONCILE],
        dims: &[],
    },
    // A new tenant's cell: placed now, found in the map (a retry or duplicate), none with room
    // (the signup is handed off; the alarm says capacity ran out), or the registry failed.
    MetricSpec {
        name: "Placements",
        unit: Unit::Count,
        functions: PROVISIONERS,
        dims: &[(Dim::Outcome, &["placed", "existing", "no_capacity", "failed"])],
    },
    // The cells as reconcile found them: the fullest open cell's fill, cells that failed their
    // health check, and open cells with room left.
    MetricSpec {
        name: "CellFillMax",
        unit: Unit::Percent,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "CellsUnhealthy",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
    MetricSpec {
        name: "CellsWithRoom",
        unit: Unit::Count,
        functions: &[RECONCILE],
        dims: &[],
    },
];

/// The catalog's entry for `name`.
pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    CATALOG.iter().find(|m| m.name == name)
}
