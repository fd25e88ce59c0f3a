//! The provisioning queue's event source, locally: what Lambda's SQS event source mapping does in
//! AWS. It receives batches from moto's queue, invokes the `provision-worker` function through
//! the emulator's invoke API with an SQS event, and deletes what the worker did not report as
//! failed (`batchItemFailures`); failed messages come back after the backoff the worker set, and
//! reach the dead-letter queue after the queue's maximum receives. Up to `MAX_CONCURRENCY`
//! batches are in flight, as the event source's maximum concurrency bounds the workers in AWS.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Value, json};
use testkit::lambda::{Invocation, invoke};
use testkit::stack::{self, Stack};

use super::with_env;
use crate::procs;

/// Batch size and concurrent batches, as `template.yml` configures the event source.
const BATCH_SIZE: i32 = 5;
const MAX_CONCURRENCY: usize = 5;

/// Starts the poller (again when the xtask binary or the emulator is newer than it).
pub(super) fn ensure_poller(dir: &Path, say: &impl Fn(&str)) -> Result<()> {
    let exe = std::env::current_exe()?;
    let started = std::fs::metadata(procs::pid_file(dir, "poller"))
        .and_then(|m| m.modified())
        .ok();
    let newer = |path: &Path| {
        let changed = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        matches!((changed, started), (Some(c), Some(s)) if c > s)
    };
    let running = procs::is_running(dir, "poller");
    if running && !newer(&exe) && !newer(&dir.join("lambda.workspace")) {
        return Ok(());
    }
    procs::stop(dir, "poller")?;
    say("starting the provisioning queue's poller (the SQS event source of provision-worker)");
    let mut poll = Command::new(exe);
    poll.args(["stack", "poll"]);
    with_env(&mut poll);
    procs::spawn(dir, "poller", &mut poll)?;
    Ok(())
}

/// The poller's loop (`cargo xtask stack poll`, started by `stack up`).
pub async fn run() -> Result<()> {
    let stack = Stack::require();
    let sqs = aws_sdk_sqs::Client::new(&stack.aws().await);
    let queue = stack.var("PROVISION_QUEUE_URL").to_owned();
    let endpoint = stack.var(stack::LAMBDA_ENDPOINT_VAR).to_owned();
    let http = reqwest::Client::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENCY));
    eprintln!("poller: {queue} → provision-worker at {endpoint}");
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let received = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(BATCH_SIZE)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!(
                    "poller: receive failed: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let (sqs, queue, endpoint, http) = (sqs.clone(), queue.clone(), endpoint.clone(), http.clone());
        tokio::spawn(async move {
            let _slot = slot;
            deliver(&sqs, &queue, &endpoint, &http, messages).await;
        });
    }
}

/// One batch: invoke the worker, delete what succeeded.
async fn deliver(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    endpoint: &str,
    http: &reqwest::Client,
    messages: Vec<aws_sdk_sqs::types::Message>,
) {
    let arn = format!(
        "arn:aws:sqs:{}:{}:{}",
        stack::REGION,
        stack::ACCOUNT,
        queue.rsplit('/').next().unwrap_or_default()
    );
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.as_str())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": attributes, "messageAttributes": {}, "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": stack::REGION
            })
        })
        .collect();
    let failed: Vec<String> =
        match invoke(http, endpoint, "provision-worker", &json!({ "Records": records })).await {
            Ok(Invocation::Ok(answer)) => answer["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str().map(String::from))
                .collect(),
            // The whole batch failed: every message comes back after its visibility timeout.
            Ok(Invocation::FunctionError { error_type, message }) => {
                eprintln!("poller: provision-worker failed: {error_type}: {message}");
                return;
            }
            Err(e) => {
                eprintln!("poller: cannot invoke provision-worker: {e:#}");
                return;
            }
        };
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    if done.is_empty() {
        return;
    }
    if let Err(e) = sqs
        .delete_message_batch()
        .queue_url(queue)
        .set_entries(Some(done))
        .send()
        .await
    {
        eprintln!(
            "poller: delete failed: {}",
            aws_sdk_sqs::error::DisplayErrorContext(e)
        );
    }
}
