//! Waiting for a tenant as its frontend does after a signup: post-confirmation answers Cognito
//! once it has provisioned, or once it has handed the rest to the provisioning worker (its
//! synchronous window ran out, which a loaded machine may do without any fault), and the stack's
//! poller runs the worker as Lambda's SQS event source would.

use std::time::{Duration, Instant};

use tgsearch::TenantId;
use tgsearch::app::LiveProvisioner;
use tgsearch::status::{TenantStatus, tenant_status};

/// How long a tenant may take to complete after its signup was answered: the worker's first
/// attempt plus two of its retries, with room for a loaded machine.
pub const COMPLETION_WAIT: Duration = Duration::from_secs(60);

/// Polls `tenant`'s status until it is complete in every system and returns it; panics with the
/// last status (and what to look at) after [`COMPLETION_WAIT`].
pub async fn until_complete(provisioner: &LiveProvisioner, tenant: &TenantId) -> TenantStatus {
    let start = Instant::now();
    loop {
        let status = tenant_status(provisioner, tenant)
            .await
            .unwrap_or_else(|e| panic!("status of {tenant}: {e}"));
        if status.is_complete() {
            return status;
        }
        if start.elapsed() > COMPLETION_WAIT {
            panic!(
                "tenant {tenant} is not complete {COMPLETION_WAIT:?} after its signup was answered (a hand-off is finished by the stack's poller: see poller.log in the stack's directory): {status}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
