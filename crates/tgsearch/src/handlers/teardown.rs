//! The teardown function: `{"sub": "<uuid>", "force": false}` in, a report of what was removed,
//! what was already absent and what was left alone out.
//!
//! A tenant whose Cognito user still exists and is enabled is not removed (its data volume would
//! go, and reconcile would re-create an empty tenant) unless `force` is set.

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use tracing::{error, info, warn};

use super::{EventError, HandlerError, parse_event, tenant_from};
use crate::cells::TenantCells;
use crate::deadline::Deadline;
use crate::ports::UserDirectory;
use crate::teardown::{TornDown, guard};

/// The teardown payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeardownRequest {
    pub sub: Option<String>,
    /// Remove even while the user exists and is enabled.
    #[serde(default)]
    pub force: bool,
}

pub async fn handle<C: TenantCells, D: UserDirectory>(
    cells: &C,
    directory: &D,
    budget: Duration,
    event: LambdaEvent<serde_json::Value>,
) -> Result<TornDown, HandlerError> {
    let (raw, context) = event.into_parts();
    if !raw.is_object() {
        return Err(EventError::Shape {
            expected: r#"teardown ({"sub": "<uuid>", "force": false})"#,
            source: serde_json::Error::io(std::io::Error::other(
                "the event must be a JSON object with `sub`",
            )),
        }
        .into());
    }
    let payload: TeardownRequest = parse_event(&raw, "teardown")?;
    let tenant = tenant_from("sub", payload.sub.as_deref())?;
    let deadline = Deadline::new(budget, Some(context.deadline));
    let user = deadline
        .run(crate::deadline::Step::Directory, || {
            directory.user(tenant.as_str())
        })
        .await?
        .0;
    guard(tenant.as_str(), user.as_ref(), payload.force).inspect_err(|_| teardown_outcome("refused"))?;
    if payload.force && user.as_ref().is_some_and(|u| u.enabled) {
        warn!(tenant = %tenant, "forced teardown of a tenant whose user is enabled");
    }
    // Only the tenant's own cell is touched.
    let at = cells.locate(&tenant).await?;
    match at.provisioner.teardown(&tenant, &deadline).await {
        Ok(done) => {
            // The map entry goes last: a teardown that stopped half-way is found again.
            if let Some(cell) = &at.cell {
                cells.forget(&tenant, cell).await?;
            }
            info!(
                tenant = %tenant,
                cell = at.cell_name(),
                removed = ?done.deleted(),
                already_absent = ?done.already_absent(),
                left_alone = ?done.left_alone(),
                "tenant torn down"
            );
            teardown_outcome("removed");
            for (step, _) in done.left_alone() {
                crate::metrics::resource_count("ForeignResources", step, 1);
            }
            Ok(done)
        }
        Err(e) => {
            error!(tenant = %tenant, step = %e.step(), error = %e, "teardown failed; run it again");
            teardown_outcome("failed");
            Err(e.into())
        }
    }
}

fn teardown_outcome(outcome: &'static str) {
    crate::metrics::Record::new()
        .dim(crate::metrics::Dim::Outcome, outcome)
        .one("Teardowns")
        .emit();
}
