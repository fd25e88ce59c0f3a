//! The provisioning hand-off queue in SQS: post-confirmation sends the tenants it could not
//! finish in time; the worker's event source receives them; the worker sets the backoff of the
//! ones that failed.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;

use crate::ports::{PortError, ProvisionQueue, Transient};
use crate::tenant::TenantId;

#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} on `{queue}` failed: {message}")]
pub struct SqsError {
    pub operation: &'static str,
    pub queue: String,
    pub message: String,
}

/// The message body: the tenant, and why it was handed off (for the logs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandOff {
    pub sub: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(aws: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            url: url.into(),
        }
    }

    fn error<E: std::error::Error + 'static>(
        &self,
        operation: &'static str,
        e: aws_sdk_sqs::error::SdkError<E>,
    ) -> PortError {
        // Every SQS failure here may pass on retry; the SDK already retried throttling.
        Transient::wrap(
            SqsError {
                operation,
                queue: self.url.clone(),
                message: DisplayErrorContext(&e).to_string(),
            },
            None,
        )
    }
}

impl ProvisionQueue for SqsQueue {
    async fn hand_off(&self, tenant: &TenantId, reason: &str) -> Result<(), PortError> {
        let body = HandOff {
            sub: tenant.to_string(),
            reason: reason.chars().take(500).collect(),
        };
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(serde_json::to_string(&body).expect("hand-offs serialize"))
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error("SendMessage", e))
    }

    async fn retry_later(&self, receipt: &str, delay: std::time::Duration) -> Result<(), PortError> {
        // SQS caps a visibility timeout at 12 hours.
        let seconds = delay.as_secs().min(12 * 3600) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error("ChangeMessageVisibility", e))
    }
}
