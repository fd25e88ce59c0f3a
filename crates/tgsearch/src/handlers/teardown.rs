//! The teardown function: `{"sub": "<uuid>"}` in, a report of what was removed out.

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use tracing::{error, info};

use super::{HandlerError, tenant_from};
use crate::deadline::Deadline;
use crate::ports::{CredentialStore, TenantBackend, TenantBroker};
use crate::provision::Provisioner;
use crate::teardown::TornDown;

/// The teardown payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeardownRequest {
    pub sub: Option<String>,
}

pub async fn handle<S: CredentialStore, B: TenantBroker, K: TenantBackend>(
    provisioner: &Provisioner<S, B, K>,
    budget: Duration,
    event: LambdaEvent<TeardownRequest>,
) -> Result<TornDown, HandlerError> {
    let (payload, context) = event.into_parts();
    let tenant = tenant_from("sub", payload.sub.as_deref())?;
    let deadline = Deadline::new(budget, Some(context.deadline));
    match provisioner.teardown(&tenant, &deadline).await {
        Ok(done) => {
            info!(
                tenant = %tenant,
                deployment = ?done.deployment,
                volume = ?done.volume,
                kube_secret = ?done.kube_secret,
                vhost = ?done.vhost,
                user = ?done.user,
                secret = ?done.secret,
                "tenant torn down"
            );
            Ok(done)
        }
        Err(e) => {
            error!(tenant = %tenant, step = %e.step(), error = %e, "teardown failed; run it again");
            Err(e.into())
        }
    }
}
