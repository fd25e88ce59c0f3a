//! The real `mailgun-webhook` binary behind cargo-lambda's function-URL emulation: a signed
//! permanent failure reaches the alert topic; forged, stale, malformed and uninteresting
//! webhooks do not. (Retries are de-duplicated per container: see the unit tests.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use testkit::stack::{self, Stack};

async fn signing_key(stack: &Stack) -> String {
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
fn webhook(key: &str, at: SystemTime, token: &str, event: Value) -> Value {
    let timestamp = at.duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    json!({"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event})
}

fn permanent_failure(recipient: &str) -> Value {
    json!({
        "event": "failed", "severity": "permanent", "reason": "bounce", "id": format!("ev-{recipient}"),
        "recipient": recipient,
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
        "message": {"headers": {"message-id": format!("{recipient}.1@tgsearch.io")}}
    })
}

async fn post(stack: &Stack, body: &str) -> (u16, Value) {
    let url = format!("{}/lambda-url/mailgun-webhook/", stack.lambda_endpoint());
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or_default())
}

/// A queue of this test's own, subscribed to the alert topic.
async fn probe_queue(stack: &Stack) -> String {
    let aws = stack.aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let name = format!("alerts-probe-{}", &testkit::fresh_tenant().as_str()[..8]);
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let arn = format!("arn:aws:sqs:{}:{}:{name}", stack::REGION, stack::ACCOUNT);
    aws_sdk_sns::Client::new(&aws)
        .subscribe()
        .topic_arn(stack.var("ALERT_TOPIC_ARN"))
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("the stack's alert topic: run `cargo xtask stack up`");
    url
}

/// The alerts about `recipient` that reached `queue` (every test's queue sees every alert).
async fn alerts_in(stack: &Stack, queue: &str, recipient: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(&stack.aws().await);
    let mut found = Vec::new();
    for _ in 0..3 {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        found.extend(
            out.messages()
                .iter()
                .map(|m| serde_json::from_str::<Value>(m.body().unwrap_or("{}")).unwrap_or_default())
                .filter(|alert| alert["alert"]["recipient"] == recipient),
        );
    }
    found
}

fn recipient() -> String {
    format!("{}@example.com", &testkit::fresh_tenant().as_str()[..8])
}

#[tokio::test]
async fn a_signed_permanent_failure_reaches_the_alert_topic() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let queue = probe_queue(&stack).await;
    let who = recipient();
    let body = webhook(
        &key,
        SystemTime::now(),
        &format!("token-{who}"),
        permanent_failure(&who),
    )
    .to_string();
    let (code, answer) = post(&stack, &body).await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("alerted")),
        "{answer}"
    );
    let alerts = alerts_in(&stack, &queue, &who).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["alert"]["code"], 550);
    assert_eq!(alerts[0]["alert"]["message_id"], format!("{who}.1@tgsearch.io"));
}

#[tokio::test]
async fn forged_stale_and_malformed_webhooks_are_refused() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let queue = probe_queue(&stack).await;
    let who = recipient();
    let forged = webhook(
        "not-the-key",
        SystemTime::now(),
        "t-forged",
        permanent_failure(&who),
    );
    let stale = webhook(
        &key,
        SystemTime::now() - Duration::from_secs(600),
        "t-stale",
        permanent_failure(&who),
    );
    for (body, why) in [(forged, "does not match"), (stale, "replay")] {
        let (code, answer) = post(&stack, &body.to_string()).await;
        assert_eq!(code, 401, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(why), "{answer}");
    }
    let (code, answer) = post(&stack, "event=failed&recipient=x").await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not a Mailgun webhook"),
        "{answer}"
    );
    assert!(
        alerts_in(&stack, &queue, &who).await.is_empty(),
        "nothing refused may alert"
    );
    // The function's log never shows the key.
    let log = std::fs::read_to_string(stack::dir().join("lambda.log")).unwrap_or_default();
    assert!(!log.contains(&key), "the signing key leaked into the logs");
}

#[tokio::test]
async fn deliveries_and_temporary_failures_are_ignored() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let queue = probe_queue(&stack).await;
    let who = recipient();
    for (i, event) in [
        json!({"event": "delivered", "recipient": who}),
        json!({"event": "failed", "severity": "temporary", "recipient": who}),
    ]
    .into_iter()
    .enumerate()
    {
        let body = webhook(&key, SystemTime::now(), &format!("t-{who}-{i}"), event);
        let (code, answer) = post(&stack, &body.to_string()).await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (200, Some("ignored")),
            "{answer}"
        );
    }
    assert!(alerts_in(&stack, &queue, &who).await.is_empty());
}
