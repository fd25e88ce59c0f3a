//! The provisioning hand-off as a test sees it: a private SQS queue in moto (so the stack's own
//! poller never takes a test's messages), the messages post-confirmation left in it, and the
//! SQS event that delivers them to the real `provision-worker` binary.

use std::time::Duration;

use serde_json::{Value, json};

use crate::runtime::{Answer, Function};
use crate::stack::{self, Stack};

/// One hand-off post-confirmation sent: `{"sub", "reason"}`.
#[derive(Clone, Debug)]
pub struct HandedOff {
    pub sub: String,
    /// Why the trigger did not finish (the step's error).
    pub reason: String,
    pub body: String,
    pub message_id: String,
    pub receipt: String,
    /// SQS's `SentTimestamp` (ms since the epoch), as the event source passes it on.
    pub sent_timestamp: String,
}

/// A queue of one test's own.
pub struct HandOffQueue {
    sqs: aws_sdk_sqs::Client,
    pub name: String,
    pub url: String,
    taken: tokio::sync::Mutex<Vec<HandedOff>>,
}

impl HandOffQueue {
    pub async fn create(stack: &Stack) -> Self {
        let sqs = aws_sdk_sqs::Client::new(&stack.aws().await);
        let name = format!("faults-{}", &crate::fresh_tenant().as_str()[..8]);
        let url = sqs
            .create_queue()
            .queue_name(&name)
            // A message read here stays out of sight for the whole test (no second delivery).
            .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "3600")
            .send()
            .await
            .unwrap_or_else(|e| panic!("create queue {name} in moto: {e}"))
            .queue_url()
            .expect("a queue URL")
            .to_owned();
        Self {
            sqs,
            name,
            url,
            taken: Default::default(),
        }
    }

    /// The hand-off of `sub`, if post-confirmation made one (messages read from the queue are
    /// kept here, so each can be asked for in any order).
    pub async fn of(&self, sub: &str) -> Option<HandedOff> {
        let mut taken = self.taken.lock().await;
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap_or_else(|e| panic!("receive from {}: {e}", self.name));
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let id = m.message_id().unwrap_or_default();
                if taken.iter().any(|t| t.message_id == id) {
                    continue;
                }
                let body = m.body().unwrap_or_default().to_owned();
                let parsed: Value = serde_json::from_str(&body).unwrap_or_default();
                taken.push(HandedOff {
                    sub: parsed["sub"].as_str().unwrap_or_default().to_owned(),
                    reason: parsed["reason"].as_str().unwrap_or_default().to_owned(),
                    body,
                    message_id: m.message_id().unwrap_or_default().to_owned(),
                    receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                    sent_timestamp: m
                        .attributes()
                        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
                        .cloned()
                        .unwrap_or_else(|| "0".into()),
                });
            }
        }
        taken.iter().find(|h| h.sub == sub).cloned()
    }

    /// Every hand-off in the queue (or read from it) so far.
    pub async fn all(&self) -> Vec<HandedOff> {
        self.of("").await;
        self.taken.lock().await.clone()
    }

    /// The SQS event Lambda's event source delivers for `messages`.
    pub fn event(&self, messages: &[HandedOff]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt,
                    "body": m.body,
                    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": m.sent_timestamp},
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": format!("arn:aws:sqs:{}:{}:{}", stack::REGION, stack::ACCOUNT, self.name),
                    "awsRegion": stack::REGION,
                })
            })
            .collect();
        json!({ "Records": records })
    }

    /// Sends `body` as a message (as post-confirmation would, or as anyone with access could).
    pub async fn send(&self, body: &str) -> String {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("send to {}: {e}", self.name))
            .message_id()
            .unwrap_or_default()
            .to_owned()
    }

    /// Delivers `messages` to `worker` (the real `provision-worker`) as the event source would;
    /// returns the ids of the messages it reported as failed, or why it did not answer.
    pub async fn failures(&self, worker: &Function, messages: &[HandedOff]) -> Result<Vec<String>, String> {
        let outcome = worker
            .invoke(&self.event(messages), Duration::from_secs(60))
            .await;
        match &outcome.answer {
            Answer::Ok(answer) => Ok(answer["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect()),
            other => Err(format!(
                "provision-worker: {other:?}; last log lines:\n{}",
                worker.log_tail(15)
            )),
        }
    }

    /// Delivers `messages` to `worker` (the real `provision-worker`) as the event source would,
    /// and removes them from the queue when the worker reports no failure, as it would. Returns
    /// the failures the worker reported, or why it did not answer.
    pub async fn deliver(&self, worker: &Function, messages: &[HandedOff]) -> Result<(), String> {
        let failures = self.failures(worker, messages).await?;
        if !failures.is_empty() {
            return Err(format!(
                "provision-worker reported failures {failures:?}; last log lines:\n{}",
                worker.log_tail(15)
            ));
        }
        let mut taken = self.taken.lock().await;
        for m in messages {
            let _ = self
                .sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(&m.receipt)
                .send()
                .await;
            taken.retain(|t| t.message_id != m.message_id);
        }
        Ok(())
    }

    /// Deletes the queue (its messages with it).
    pub async fn delete(&self) {
        let _ = self.sqs.delete_queue().queue_url(&self.url).send().await;
    }
}
