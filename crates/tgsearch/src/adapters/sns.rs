//! Alerts to an SNS topic (e-mail, chat, paging subscribe to it).

use aws_sdk_sns::Client;
use aws_sdk_sns::error::DisplayErrorContext;

use crate::ports::{AlertSink, PortError};

#[derive(Debug, thiserror::Error)]
#[error("SNS Publish to `{topic}` failed: {message}")]
pub struct SnsError {
    pub topic: String,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct SnsAlerts {
    client: Client,
    topic_arn: String,
}

impl SnsAlerts {
    pub fn new(aws: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            topic_arn: topic_arn.into(),
        }
    }
}

impl AlertSink for SnsAlerts {
    async fn publish(&self, subject: &str, message: &serde_json::Value) -> Result<(), PortError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            // SNS subjects are at most 100 characters.
            .subject(subject.chars().take(100).collect::<String>())
            .message(serde_json::to_string_pretty(message).expect("alerts serialize"))
            .send()
            .await
            .map_err(|e| SnsError {
                topic: self.topic_arn.clone(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        Ok(())
    }
}
