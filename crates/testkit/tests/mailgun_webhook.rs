//! The real `mailgun-webhook` binary behind cargo-lambda's function-URL emulation, checked as
//! Mailgun and an operator would: real HMAC-signed POSTs over HTTP, alerts read from an SQS queue
//! subscribed to the alert topic. A mail lost for good alerts exactly once, however often and
//! however concurrently its delivery arrives; nothing that can never succeed is answered with a
//! code Mailgun would retry.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use testkit::mailgun::{AlertProbe, permanent_failure, signing_key, token, webhook};
use testkit::stack::{self, Stack};

async fn post_as(stack: &Stack, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    testkit::mailgun::post(stack, content_type, body).await
}

async fn post(stack: &Stack, body: &str) -> (u16, Value) {
    post_as(stack, "application/json", body.as_bytes().to_vec()).await
}

fn recipient() -> String {
    format!("{}@example.com", &testkit::fresh_tenant().as_str()[..8])
}

#[tokio::test]
async fn a_lost_mail_alerts_once_however_often_it_is_delivered() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let who = recipient();
    let body = webhook(&key, SystemTime::now(), &token(), permanent_failure(&who)).to_string();
    let (code, answer) = post(&stack, &body).await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("alerted")),
        "{answer}"
    );
    // Mailgun's retry of the same delivery: acknowledged, not alerted again.
    let (code, answer) = post(&stack, &body).await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    let alerts = probe.alerts_about(&stack, &who).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(
        alert.subject,
        format!("Mail lost for good to {who}: bounce 550 (5.1.1 The email account does not exist)")
    );
    assert_eq!(alert.alert["code"], 550);
    assert_eq!(alert.alert["recipient_domain"], "example.com");
    assert_eq!(alert.alert["message_id"], format!("{who}.1@tgsearch.io"));
    probe.close(&stack).await;
}

#[tokio::test]
async fn eight_deliveries_at_once_on_several_containers_alert_once() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let who = recipient();
    let body = webhook(&key, SystemTime::now(), &token(), permanent_failure(&who)).to_string();
    let answers = futures::future::join_all((0..8).map(|_| post(&stack, &body))).await;
    for (code, answer) in &answers {
        assert_eq!(*code, 200, "{answer}");
    }
    let alerted = answers.iter().filter(|(_, a)| a["status"] == "alerted").count();
    assert_eq!(alerted, 1, "{answers:?}");
    assert_eq!(probe.alerts_about(&stack, &who).await.len(), 1);
    probe.close(&stack).await;
}

#[tokio::test]
async fn a_retry_signed_three_hours_ago_is_accepted_and_alerts_once() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let who = recipient();
    let three_hours_ago = SystemTime::now() - Duration::from_secs(3 * 3600);
    let body = webhook(&key, three_hours_ago, &token(), permanent_failure(&who)).to_string();
    for expected in ["alerted", "duplicate"] {
        let (code, answer) = post(&stack, &body).await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }
    assert_eq!(probe.alerts_about(&stack, &who).await.len(), 1);
    probe.close(&stack).await;
}

#[tokio::test]
async fn what_can_never_succeed_is_refused_with_406_and_alerts_nothing() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let who = recipient();
    let event = permanent_failure(&who);
    let two_days_old = webhook(
        &key,
        SystemTime::now() - Duration::from_secs(2 * 86_400),
        &token(),
        event.clone(),
    );
    let tomorrow = webhook(
        &key,
        SystemTime::now() + Duration::from_secs(86_400),
        &token(),
        event.clone(),
    );
    let forged = webhook("not-the-key", SystemTime::now(), &token(), event.clone());
    let unsigned = json!({"event-data": event});
    let no_event = json!({"signature": webhook(&key, SystemTime::now(), &token(), json!({}))["signature"]});
    let genuine = webhook(&key, SystemTime::now(), &token(), event.clone()).to_string();
    let truncated = genuine[..genuine.len() / 2].to_owned();
    let mut huge = webhook(&key, SystemTime::now(), &token(), event.clone());
    huge["event-data"]["padding"] = "x".repeat(3 * 1024 * 1024).into();
    let marker = "hunter2-do-not-echo";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "signed two days ago",
            "application/json",
            two_days_old.to_string().into_bytes(),
        ),
        (
            "dated tomorrow",
            "application/json",
            tomorrow.to_string().into_bytes(),
        ),
        ("forged", "application/json", forged.to_string().into_bytes()),
        ("unsigned", "application/json", unsigned.to_string().into_bytes()),
        (
            "without event-data",
            "application/json",
            no_event.to_string().into_bytes(),
        ),
        ("truncated", "application/json", truncated.into_bytes()),
        (
            "not JSON",
            "application/json",
            format!("event=failed&secret={marker}").into_bytes(),
        ),
        ("3 MB", "application/json", huge.to_string().into_bytes()),
    ];
    for (what, content_type, body) in cases {
        let (code, answer) = post_as(&stack, content_type, body).await;
        assert_eq!(code, 406, "{what}: {answer}");
        let text = answer.to_string();
        assert!(
            text.len() < 200 && !text.contains(marker),
            "{what} echoed its input: {text}"
        );
    }
    assert!(
        probe.alerts_about(&stack, &who).await.is_empty(),
        "nothing refused may alert"
    );
    // The function's log never shows the key.
    let log = std::fs::read_to_string(stack::dir().join("lambda.log")).unwrap_or_default();
    assert!(!log.contains(&key), "the signing key leaked into the logs");
    probe.close(&stack).await;
}

#[tokio::test]
async fn a_token_replayed_with_another_event_is_refused() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let (first, forged) = (recipient(), recipient());
    let token = token();
    let genuine = webhook(&key, SystemTime::now(), &token, permanent_failure(&first));
    assert_eq!(post(&stack, &genuine.to_string()).await.0, 200);
    let mut replay = webhook(&key, SystemTime::now(), &token, permanent_failure(&forged));
    replay["signature"] = genuine["signature"].clone();
    let (code, answer) = post(&stack, &replay.to_string()).await;
    assert_eq!(code, 406, "{answer}");
    assert!(probe.alerts_about(&stack, &forged).await.is_empty());
    probe.close(&stack).await;
}

#[tokio::test]
async fn deliveries_and_temporary_failures_are_ignored_but_too_old_alerts() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let who = recipient();
    for event in [
        json!({"event": "delivered", "recipient": who}),
        json!({"event": "failed", "severity": "temporary", "reason": "generic", "recipient": who}),
    ] {
        let body = webhook(&key, SystemTime::now(), &token(), event);
        let (code, answer) = post(&stack, &body.to_string()).await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (200, Some("ignored")),
            "{answer}"
        );
    }
    assert!(probe.alerts_about(&stack, &who).await.is_empty());
    // Mailgun gave up after its retries ("Too old"), sometimes reported as temporary.
    let old = json!({
        "event": "failed", "severity": "temporary", "reason": "old", "recipient": who,
        "delivery-status": {"code": 421, "message": "Too old"}
    });
    let body = webhook(&key, SystemTime::now(), &token(), old).to_string();
    for expected in ["alerted", "duplicate"] {
        let (code, answer) = post(&stack, &body).await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }
    let alerts = probe.alerts_about(&stack, &who).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].alert["reason"], "old");
    probe.close(&stack).await;
}

#[tokio::test]
async fn a_legacy_form_encoded_webhook_alerts_once() {
    let stack = Stack::require();
    let key = signing_key(&stack).await;
    let probe = AlertProbe::subscribe(&stack).await;
    let who = recipient();
    let signed = webhook(&key, SystemTime::now(), &token(), json!({}));
    let sig = &signed["signature"];
    let form = [
        ("timestamp", sig["timestamp"].as_str().unwrap()),
        ("token", sig["token"].as_str().unwrap()),
        ("signature", sig["signature"].as_str().unwrap()),
        ("event", "dropped"),
        ("recipient", who.as_str()),
        ("reason", "hardfail"),
        ("code", "605"),
        ("description", "Not delivering to previously bounced address"),
    ];
    let body: String = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    for expected in ["alerted", "duplicate"] {
        let (code, answer) = post_as(
            &stack,
            "application/x-www-form-urlencoded",
            body.clone().into_bytes(),
        )
        .await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }
    let alerts = probe.alerts_about(&stack, &who).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].alert["code"], 605);
    assert!(
        alerts[0].subject.contains("hardfail 605"),
        "{}",
        alerts[0].subject
    );
    probe.close(&stack).await;
}
