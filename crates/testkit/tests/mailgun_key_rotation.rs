//! A Mailgun signing key rotated while a webhook container is warm: the real `mailgun-webhook`
//! binary (one process, under `testkit::runtime`) loaded the old key at its cold start; the key in
//! Secrets Manager changes; the first delivery signed with the new key alerts, and a forgery is
//! still refused. A test binary of its own: it changes the stack's key for a moment, which no
//! other test may see.
//!
//! Needs the local stack (`cargo xtask stack up`).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use testkit::events;
use testkit::mailgun::{AlertProbe, permanent_failure, signing_key, token, webhook};
use testkit::runtime::{Answer, Function, stack_env};
use testkit::stack::{self, Stack};

fn url_event(body: &Value) -> Value {
    let mut event = events::load("mailgun-webhook-url.json");
    event["body"] = body.to_string().into();
    event
}

async fn post(function: &Function, body: &Value) -> u16 {
    let outcome = function.invoke(&url_event(body), Duration::from_secs(30)).await;
    match outcome.answer {
        Answer::Ok(response) => response["statusCode"].as_u64().unwrap_or_default() as u16,
        other => panic!(
            "the webhook failed: {other:?}; last log lines:\n{}",
            function.log_tail(10)
        ),
    }
}

async fn store_key(stack: &Stack, key: &str) {
    aws_sdk_secretsmanager::Client::new(&stack.aws().await)
        .put_secret_value()
        .secret_id(stack::MAILGUN_KEY_SECRET_ID)
        .secret_string(json!({ "signing_key": key }).to_string())
        .send()
        .await
        .expect("moto's Secrets Manager: run `cargo xtask stack up`");
}

#[tokio::test]
async fn a_key_rotated_in_the_secret_is_used_by_a_warm_container_and_loses_nothing() {
    let stack = Stack::require();
    let old = signing_key(&stack).await;
    let function = Function::new("mailgun-webhook", stack_env(&stack));
    let probe = AlertProbe::subscribe(&stack).await;
    let before = format!("before-{}@example.com", &testkit::fresh_tenant().as_str()[..8]);
    assert_eq!(
        post(
            &function,
            &webhook(&old, SystemTime::now(), &token(), permanent_failure(&before))
        )
        .await,
        200
    );

    let new = format!("key-{}", testkit::fresh_tenant().as_str().replace('-', ""));
    store_key(&stack, &new).await;
    let after = format!("after-{}@example.com", &testkit::fresh_tenant().as_str()[..8]);
    let rotated = post(
        &function,
        &webhook(&new, SystemTime::now(), &token(), permanent_failure(&after)),
    )
    .await;
    let forged = post(
        &function,
        &webhook(
            "not-the-key",
            SystemTime::now(),
            &token(),
            permanent_failure(&after),
        ),
    )
    .await;
    store_key(&stack, &old).await;

    assert_eq!(
        rotated, 200,
        "the first delivery signed with the rotated key was refused"
    );
    assert_eq!(forged, 406, "a forgery after the rotation");
    assert_eq!(
        probe.alerts_about(&stack, &after).await.len(),
        1,
        "one alert for it"
    );
    assert!(
        function.logs().contains("the new one is in use"),
        "the warm container did not take the new key: {}",
        function.log_tail(10)
    );
    let log = function.logs();
    assert!(
        !log.contains(&new) && !log.contains(&old),
        "a signing key reached the log"
    );
    probe.close(&stack).await;
}
