//! The functions' metrics as CloudWatch would read them: their log lines parsed by
//! `testkit::emf` (by the embedded metric format's rules, not by the writer's code), each datum
//! checked against `tgsearch::metrics::CATALOG` (name, unit, function, dimension values: never a
//! tenant id), and the values a user of the dashboard expects:
//! - through cargo-lambda's emulator: a signup, its teardown, a hand-off taken from the stack's
//!   queue by its event source (the poller) and completed by the worker, and a Mailgun 406;
//! - through the real binaries under `testkit::runtime` (their own logs): a signup handed off by
//!   a slow broker and completed by the worker with its age, and a Mailgun 503.
//!
//! Needs the local stack (`cargo xtask stack up`).

use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use testkit::emf::{self, Datum};
use testkit::faults::{POST_CONFIRMATION_TIMEOUT, Rig};
use testkit::mailgun::{permanent_failure, token, webhook};
use testkit::runtime::{Answer, Function, stack_env};
use testkit::stack::{self, Stack};
use testkit::{cognito, events, lambda};
use tokio::sync::Mutex;

/// Tests that read the emulator's log take turns, so each sees its own lines.
static EMULATOR: Mutex<()> = Mutex::const_new(());

/// The emulator's log from `offset` on.
fn log_since(offset: u64) -> String {
    let log = std::fs::read(stack::lambda_log()).unwrap_or_default();
    String::from_utf8_lossy(&log[(offset as usize).min(log.len())..]).into_owned()
}

fn log_len() -> u64 {
    std::fs::metadata(stack::lambda_log()).map_or(0, |m| m.len())
}

/// Every datum in `log`, each checked: a valid EMF document, in the catalog, no tenant id in
/// any dimension.
fn data_of(log: &str, tenants: &[&str]) -> Vec<Datum> {
    let data = emf::parse(log).unwrap_or_else(|e| panic!("not valid EMF: {e}"));
    for datum in &data {
        assert_eq!(datum.namespace, tgsearch::metrics::DEFAULT_NAMESPACE, "{datum:?}");
        if let Some(why) = emf::off_catalog(datum) {
            panic!("{why}: {datum:?}");
        }
        for value in datum.dims.values() {
            assert!(
                !tenants.iter().any(|t| value.contains(t)),
                "a tenant id as a dimension: {datum:?}"
            );
        }
    }
    data
}

/// The data of `name` from `function` whose dimensions are exactly `dims` (besides `Function`).
fn find<'a>(data: &'a [Datum], function: &str, name: &str, dims: &[(&str, &str)]) -> Vec<&'a Datum> {
    data.iter()
        .filter(|d| {
            d.name == name
                && d.dims.get("Function").map(String::as_str) == Some(function)
                && d.dims.len() == dims.len() + 1
                && dims
                    .iter()
                    .all(|(k, v)| d.dims.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// Waits (at most 10 s) until the emulator's log from `offset` holds a datum `found` accepts.
async fn await_emulator_data(offset: u64, tenants: &[&str], found: impl Fn(&[Datum]) -> bool) -> Vec<Datum> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let data = data_of(&log_since(offset), tenants);
        if found(&data) || Instant::now() > until {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_signup_and_its_teardown_through_the_emulator_are_counted() {
    let _turn = EMULATOR.lock().await;
    let stack = Stack::require();
    let tenant = cognito::pool_tenant().await;
    let http = reqwest::Client::new();
    let offset = log_len();
    let started = Instant::now();
    lambda::invoke(
        &http,
        stack.lambda_endpoint(),
        "post-confirmation",
        &events::signup_for(&tenant),
    )
    .await
    .expect("the emulator: run `cargo xtask stack up`")
    .unwrap_ok();
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let pc = tgsearch::metrics::POST_CONFIRMATION;
    let data = await_emulator_data(offset, &[tenant.as_str()], |d| {
        !find(d, pc, "Signups", &[]).is_empty()
    })
    .await;
    let signups = find(&data, pc, "Signups", &[]);
    assert_eq!(signups.len(), 1, "one signup counted: {data:#?}");
    assert_eq!(signups[0].values, vec![1.0]);
    assert_eq!(signups[0].unit.as_deref(), Some("Count"));
    let outcome = ["sync", "handed_off"]
        .into_iter()
        .find(|o| !find(&data, pc, "Signups", &[("Outcome", o)]).is_empty())
        .unwrap_or_else(|| panic!("a signup counted by its outcome: {data:#?}"));
    let duration = find(&data, pc, "SignupDuration", &[("Outcome", outcome)]);
    assert_eq!(duration.len(), 1, "{data:#?}");
    assert_eq!(duration[0].unit.as_deref(), Some("Milliseconds"));
    assert!(
        duration[0].values[0] > 0.0 && duration[0].values[0] <= took,
        "SignupDuration {} ms within the invocation's {took} ms",
        duration[0].values[0]
    );
    if outcome == "sync" {
        for step in [
            "secret",
            "vhost",
            "user",
            "permission",
            "kube-secret",
            "volume",
            "deployment",
        ] {
            let timed = find(&data, pc, "StepDuration", &[("Step", step)]);
            assert_eq!(timed.len(), 1, "step {step} timed once: {data:#?}");
            assert!(timed[0].values[0] > 0.0 && timed[0].values[0] <= duration[0].values[0]);
        }
        assert!(find(&data, pc, "HandOffs", &[]).is_empty(), "{data:#?}");
    } else {
        assert_eq!(find(&data, pc, "HandOffs", &[]).len(), 1, "{data:#?}");
        testkit::settle::until_complete(&stack.app().await.provisioner, &tenant).await;
    }

    // The user deletes their account; teardown removes the tenant.
    assert!(cognito::delete_pool_user(&tenant).await);
    let offset = log_len();
    lambda::invoke(
        &http,
        stack.lambda_endpoint(),
        "teardown",
        &json!({"sub": tenant.as_str()}),
    )
    .await
    .unwrap()
    .unwrap_ok();
    let td = tgsearch::metrics::TEARDOWN;
    let data = await_emulator_data(offset, &[tenant.as_str()], |d| {
        !find(d, td, "Teardowns", &[]).is_empty()
    })
    .await;
    let removed = find(&data, td, "Teardowns", &[("Outcome", "removed")]);
    assert_eq!(removed.len(), 1, "{data:#?}");
    assert_eq!(removed[0].values, vec![1.0]);
}

#[tokio::test]
async fn a_mailgun_406_through_the_emulator_is_counted_by_its_cause() {
    let _turn = EMULATOR.lock().await;
    let stack = Stack::require();
    let forged = webhook(
        "not-the-signing-key",
        SystemTime::now(),
        &token(),
        permanent_failure("metrics-406@example.com"),
    );
    let offset = log_len();
    let (code, _) = testkit::mailgun::post(&stack, "application/json", forged.to_string().into_bytes()).await;
    assert_eq!(code, 406);
    let mg = tgsearch::metrics::MAILGUN_WEBHOOK;
    let data = await_emulator_data(offset, &[], |d| !find(d, mg, "MailgunRefused", &[]).is_empty()).await;
    let refused = find(&data, mg, "MailgunDeliveries", &[("Outcome", "refused")]);
    assert_eq!(refused.len(), 1, "{data:#?}");
    assert_eq!(refused[0].values, vec![1.0]);
    let cause = find(&data, mg, "MailgunRefused", &[("Cause", "signature")]);
    assert_eq!(cause.len(), 1, "{data:#?}");
    assert_eq!(cause[0].values, vec![1.0]);
    assert_eq!(find(&data, mg, "MailgunRefused", &[]).len(), 1, "the total too");
    assert!(find(&data, mg, "MailgunUnavailable", &[]).is_empty());
}

#[tokio::test]
async fn a_mailgun_503_is_counted_by_its_cause() {
    let stack = Stack::require();
    let key = testkit::mailgun::signing_key(&stack).await;
    let mut env = stack_env(&stack);
    // SNS refuses to publish to a topic that does not exist: what an outage of the alert topic
    // looks like to the function.
    env.insert(
        "ALERT_TOPIC_ARN".into(),
        format!("arn:aws:sns:{}:{}:no-such-topic", stack::REGION, stack::ACCOUNT),
    );
    let function = Function::new("mailgun-webhook", env);
    let mut event = events::load("mailgun-webhook-url.json");
    let body = webhook(
        &key,
        SystemTime::now(),
        &token(),
        permanent_failure("metrics-503@example.com"),
    );
    event["body"] = body.to_string().into();
    let outcome = function.invoke(&event, Duration::from_secs(30)).await;
    let Answer::Ok(response) = &outcome.answer else {
        panic!("{:?}\n{}", outcome.answer, function.log_tail(10));
    };
    assert_eq!(response["statusCode"], 503, "{response}");
    let mg = tgsearch::metrics::MAILGUN_WEBHOOK;
    let data = data_of(&function.logs(), &[]);
    assert_eq!(
        find(&data, mg, "MailgunDeliveries", &[("Outcome", "unavailable")]).len(),
        1,
        "{data:#?}"
    );
    let cause = find(&data, mg, "MailgunUnavailable", &[("Cause", "alert-topic")]);
    assert_eq!(cause.len(), 1, "{data:#?}");
    assert_eq!(cause[0].values, vec![1.0]);
    assert!(find(&data, mg, "MailgunDeliveries", &[("Outcome", "alerted")]).is_empty());
}

#[tokio::test]
async fn a_hand_off_is_counted_when_made_and_when_completed_with_its_age() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.management.latency(Duration::from_millis(1500));
    let tenant = cognito::pool_tenant().await;
    let outcome = function
        .invoke(&events::signup_for(&tenant), POST_CONFIRMATION_TIMEOUT)
        .await;
    assert!(matches!(outcome.answer, Answer::Ok(_)), "{:?}", outcome.answer);
    let pc = tgsearch::metrics::POST_CONFIRMATION;
    let data = data_of(&function.logs(), &[tenant.as_str()]);
    assert_eq!(
        find(&data, pc, "Signups", &[("Outcome", "handed_off")]).len(),
        1,
        "{data:#?}"
    );
    let handed = find(&data, pc, "HandOffs", &[]);
    assert_eq!(handed.len(), 1, "{data:#?}");
    // The slow step, and why: the sync window ran out on the broker.
    let why = data
        .iter()
        .find(|d| d.name == "HandOffs" && d.dims.len() == 3)
        .expect("the hand-off by step and reason");
    assert_eq!(why.dims["Reason"], "timeout", "{why:?}");
    assert!(
        ["vhost", "user", "permission", "limits"].contains(&why.dims["Step"].as_str()),
        "{why:?}"
    );

    rig.heal().await;
    let message = rig.queue.of(tenant.as_str()).await.expect("the hand-off");
    let waited_at_least = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
        - message.sent_timestamp.parse::<f64>().unwrap();
    let worker = rig.function("provision-worker");
    rig.queue.deliver(&worker, &[message]).await.unwrap();
    let pw = tgsearch::metrics::PROVISION_WORKER;
    let data = data_of(&worker.logs(), &[tenant.as_str()]);
    let completed = find(&data, pw, "HandOffsCompleted", &[("Outcome", "provisioned")]);
    assert_eq!(completed.len(), 1, "{data:#?}");
    let age = find(&data, pw, "HandOffAge", &[("Outcome", "provisioned")]);
    assert_eq!(age.len(), 1, "{data:#?}");
    assert!(
        age[0].values[0] >= waited_at_least && age[0].values[0] < 600_000.0,
        "HandOffAge {} ms: at least the {waited_at_least} ms it waited before delivery",
        age[0].values[0]
    );
    assert!(!find(&data, pw, "StepDuration", &[("Step", "deployment")]).is_empty());
    rig.teardown(&tenant).await;
}

#[tokio::test]
async fn a_hand_off_through_the_stack_queue_is_counted_with_its_age() {
    let _turn = EMULATOR.lock().await;
    let stack = Stack::require();
    let tenant = cognito::pool_tenant().await;
    let offset = log_len();
    let sqs = aws_sdk_sqs::Client::new(&stack.aws().await);
    let sent = SystemTime::now();
    sqs.send_message()
        .queue_url(stack.var("PROVISION_QUEUE_URL"))
        .message_body(json!({"sub": tenant.as_str(), "reason": "a test's hand-off"}).to_string())
        .send()
        .await
        .expect("the stack's provisioning queue: run `cargo xtask stack up`");
    let pw = tgsearch::metrics::PROVISION_WORKER;
    let data = await_emulator_data(offset, &[tenant.as_str()], |d| {
        !find(d, pw, "HandOffAge", &[("Outcome", "provisioned")]).is_empty()
    })
    .await;
    let waited = sent.elapsed().unwrap().as_secs_f64() * 1000.0;
    let age = find(&data, pw, "HandOffAge", &[("Outcome", "provisioned")]);
    assert!(
        !age.is_empty(),
        "the worker counted the hand-off with its age: {data:#?}"
    );
    assert!(
        age.iter()
            .any(|a| a.values[0] > 0.0 && a.values[0] <= waited + 1000.0),
        "HandOffAge within the {waited} ms since it was sent: {age:?}"
    );
    assert!(!find(&data, pw, "HandOffsCompleted", &[("Outcome", "provisioned")]).is_empty());
    testkit::settle::until_complete(&stack.app().await.provisioner, &tenant).await;
    assert!(cognito::delete_pool_user(&tenant).await);
    stack
        .app()
        .await
        .provisioner
        .teardown(
            &tenant,
            &tgsearch::deadline::Deadline::new(Duration::from_secs(30), None),
        )
        .await
        .unwrap();
}
