//! The tenant's readiness and rotation as the internet-facing function reaches them: by invoking
//! the provisioning worker, which holds the provisioner's rights (the RabbitMQ administrator, the
//! tenant secrets, the cluster), with one [`AccessRequest`]. The internet-facing function holds
//! none of them: a flaw in it reaches no other tenant's credentials.

use std::time::Duration;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;

use crate::readiness::{
    AccessAction, AccessAnswer, AccessRequest, Readiness, ReadinessError, TenantReadiness,
};
use crate::tenant::TenantId;

/// Allowed on top of the asked time: the worker's own start when no instance is warm.
pub const COLD_ALLOWANCE: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct RemoteTenants {
    client: Client,
    function: String,
}

impl RemoteTenants {
    pub fn new(aws: &aws_config::SdkConfig, function: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            function: function.into(),
        }
    }

    async fn ask(
        &self,
        action: AccessAction,
        tenant: &TenantId,
        within: Duration,
    ) -> Result<Readiness, ReadinessError> {
        let request = AccessRequest {
            action,
            sub: tenant.to_string(),
            within_ms: within.as_millis() as u64,
        };
        let payload = serde_json::to_vec(&serde_json::json!({ "tenant_access": request }))
            .expect("a request serializes");
        let limit = within + COLD_ALLOWANCE;
        let call = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload))
            .send();
        let out = tokio::time::timeout(limit, call)
            .await
            .map_err(|_| ReadinessError::TimedOut {
                ms: limit.as_millis() as u64,
            })?
            .map_err(|e| ReadinessError::Remote {
                transient: true,
                reason: format!("invoking `{}`: {}", self.function, DisplayErrorContext(&e)),
            })?;
        let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = out.function_error() {
            let message: String = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["errorMessage"].as_str().map(|m| m.chars().take(300).collect()))
                .unwrap_or_default();
            return Err(ReadinessError::Remote {
                transient: true,
                reason: format!("`{}` failed ({kind}): {message}", self.function),
            });
        }
        let answer: AccessAnswer = serde_json::from_slice(body).map_err(|_| ReadinessError::Remote {
            transient: true,
            reason: format!("`{}` did not answer a tenant access request", self.function),
        })?;
        answer.outcome()
    }
}

impl TenantReadiness for RemoteTenants {
    async fn readiness(&self, tenant: &TenantId, within: Duration) -> Result<Readiness, ReadinessError> {
        self.ask(AccessAction::Readiness, tenant, within).await
    }

    async fn rotate(&self, tenant: &TenantId, within: Duration) -> Result<Readiness, ReadinessError> {
        self.ask(AccessAction::Rotate, tenant, within).await
    }
}
