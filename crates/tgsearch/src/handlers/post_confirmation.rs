//! Cognito `PostConfirmation` trigger: provision the tenant of a newly confirmed user.

use std::time::Duration;

use aws_lambda_events::event::cognito::{
    CognitoEventUserPoolsPostConfirmation, CognitoEventUserPoolsPostConfirmationTriggerSource as TriggerSource,
};
use lambda_runtime::LambdaEvent;
use tracing::{error, info};

use super::{EventError, HandlerError, tenant_from};
use crate::deadline::Deadline;
use crate::ports::{CredentialStore, TenantBroker};
use crate::provision::Provisioner;
use crate::tenant::TenantId;

pub type PostConfirmationEvent = CognitoEventUserPoolsPostConfirmation;

/// The tenant to provision for this event, or `None` when the event needs no provisioning
/// (a confirmed password reset).
pub fn tenant_of(event: &PostConfirmationEvent) -> Result<Option<TenantId>, EventError> {
    match &event.cognito_event_user_pools_header.trigger_source {
        None => Err(EventError::Missing { field: "triggerSource" }),
        Some(TriggerSource::ConfirmForgotPassword) => Ok(None),
        Some(_) => tenant_from(
            "request.userAttributes.sub",
            event.request.user_attributes.get("sub").map(String::as_str),
        )
        .map(Some),
    }
}

/// Provisions the user's tenant and hands the event back unchanged, as Cognito requires.
pub async fn handle<S: CredentialStore, B: TenantBroker>(
    provisioner: &Provisioner<S, B>,
    budget: Duration,
    event: LambdaEvent<PostConfirmationEvent>,
) -> Result<PostConfirmationEvent, HandlerError> {
    let (payload, context) = event.into_parts();
    let Some(tenant) = tenant_of(&payload)? else {
        info!("password reset confirmed: nothing to provision");
        return Ok(payload);
    };
    let deadline = Deadline::new(budget, Some(context.deadline));
    let started = std::time::Instant::now();
    match provisioner.provision(&tenant, &deadline).await {
        Ok(done) => {
            let steps: Vec<String> = done
                .timings
                .iter()
                .map(|t| format!("{}={}ms", t.step, t.micros / 1000))
                .collect();
            info!(
                tenant = %tenant,
                created = done.created_secret,
                ms = started.elapsed().as_millis() as u64,
                steps = %steps.join(","),
                "tenant provisioned"
            );
            Ok(payload)
        }
        Err(e) => {
            error!(
                tenant = %tenant,
                step = %e.step(),
                ms = started.elapsed().as_millis() as u64,
                error = %e,
                "provisioning failed; a retry of the same event converges"
            );
            Err(e.into())
        }
    }
}
