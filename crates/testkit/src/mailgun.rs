//! Talking to the mailgun-webhook as Mailgun does (signed webhooks) and reading the alerts an
//! operator receives (an SQS queue subscribed to the alert topic).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::stack::{self, Stack};

/// The stack's webhook signing key, as Mailgun knows it.
pub async fn signing_key(stack: &Stack) -> String {
    let secrets = aws_sdk_secretsmanager::Client::new(&stack.aws().await);
    let out = secrets
        .get_secret_value()
        .secret_id(stack::MAILGUN_KEY_SECRET_ID)
        .send()
        .await
        .expect("the stack's Mailgun key: run `cargo xtask stack up`");
    let stored: Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
    stored["signing_key"].as_str().unwrap().to_owned()
}

/// A webhook body as Mailgun signs it.
pub fn webhook(key: &str, at: SystemTime, token: &str, event: Value) -> Value {
    let timestamp = at.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    json!({"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event})
}

/// A queue subscribed to the alert topic (SNS envelopes, so the subject can be read).
pub struct AlertProbe {
    queue: String,
    subscription: String,
}

/// One alert as a person receives it: the SNS subject and the message.
#[derive(Debug)]
pub struct Received {
    pub subject: String,
    pub alert: Value,
}

impl AlertProbe {
    pub async fn subscribe(stack: &Stack) -> Self {
        let aws = stack.aws().await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let name = format!("alerts-probe-{}", &crate::fresh_tenant().as_str()[..8]);
        let queue = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("moto's SQS: run `cargo xtask stack up`")
            .queue_url()
            .unwrap()
            .to_owned();
        let arn = format!("arn:aws:sqs:{}:{}:{name}", stack::REGION, stack::ACCOUNT);
        let subscription = aws_sdk_sns::Client::new(&aws)
            .subscribe()
            .topic_arn(stack.var("ALERT_TOPIC_ARN"))
            .protocol("sqs")
            .endpoint(arn)
            .return_subscription_arn(true)
            .send()
            .await
            .expect("the stack's alert topic: run `cargo xtask stack up`")
            .subscription_arn()
            .unwrap_or_default()
            .to_owned();
        Self { queue, subscription }
    }

    /// Unsubscribes and deletes the queue (every subscription makes each alert slower in moto).
    pub async fn close(self, stack: &Stack) {
        let aws = stack.aws().await;
        let _ = aws_sdk_sns::Client::new(&aws)
            .unsubscribe()
            .subscription_arn(&self.subscription)
            .send()
            .await;
        let _ = aws_sdk_sqs::Client::new(&aws)
            .delete_queue()
            .queue_url(&self.queue)
            .send()
            .await;
    }

    /// The alerts about `recipient` that reached the queue so far (waits a few seconds).
    pub async fn alerts_about(&self, stack: &Stack, recipient: &str) -> Vec<Received> {
        let sqs = aws_sdk_sqs::Client::new(&stack.aws().await);
        let mut found = Vec::new();
        for _ in 0..3 {
            let out = sqs
                .receive_message()
                .queue_url(&self.queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("moto's SQS");
            for m in out.messages() {
                let envelope: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
                let message: Value =
                    serde_json::from_str(envelope["Message"].as_str().unwrap_or("{}")).unwrap_or_default();
                if message["alert"]["recipient"] == recipient {
                    found.push(Received {
                        subject: envelope["Subject"].as_str().unwrap_or_default().to_owned(),
                        alert: message["alert"].clone(),
                    });
                }
            }
        }
        found
    }
}

/// A Mailgun-like event id and token, fresh each time.
pub fn token() -> String {
    format!(
        "{}{}",
        crate::fresh_tenant().as_str().replace('-', ""),
        "0123456789abcdef01"
    )
}

/// A permanent failure (hard bounce) of a mail to `recipient`, as Mailgun reports it.
pub fn permanent_failure(recipient: &str) -> Value {
    json!({
        "event": "failed", "severity": "permanent", "reason": "bounce", "id": format!("ev-{recipient}"),
        "recipient": recipient,
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
        "message": {"headers": {"message-id": format!("{recipient}.1@tgsearch.io")}}
    })
}

/// POSTs `body` to the stack's mailgun-webhook function URL; the status and the JSON answer.
pub async fn post(stack: &Stack, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let url = format!("{}/lambda-url/mailgun-webhook/", stack.lambda_endpoint());
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .await
        .expect("the Lambda emulator's function URL: run `cargo xtask stack up`");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or_default())
}
