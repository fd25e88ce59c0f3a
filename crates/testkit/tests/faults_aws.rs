//! Secrets Manager (moto behind a fault proxy) misbehaving under the real `post-confirmation`
//! binary: a black hole during a signup and at cold start (the admin secret read), throttling as
//! AWS sends it. Each ends before the deadline (Cognito's 5 s counted from the process start for
//! a cold start) with a clear error naming the step or the dependency, or with the tenant handed
//! to the provisioning worker for that reason; after recovery it converges.

use std::time::Duration;
use testkit::cognito::pool_tenant;

use testkit::events;
use testkit::faults::Verdict;
use testkit::faults::{Canned, POST_CONFIRMATION_TIMEOUT, Rig, Rule};
use testkit::runtime::{Answer, COGNITO_LIMIT};

/// What names the cold start's admin secret read in an error.
const ADMIN_SECRET_READ: &[&str] = &[
    "RABBITMQ_ADMIN_SECRET_ID",
    "Secrets Manager",
    "admin secret",
    "tgsearch/rabbitmq-admin",
];

fn secrets_manager_calls() -> Rule {
    Rule::on("POST", "/").header("x-amz-target", "secretsmanager.*")
}

#[tokio::test]
async fn a_secrets_manager_that_never_answers_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.aws.black_hole();
    let tenant = pool_tenant().await;
    let verdict = rig
        .sign_up_under_fault(&function, &tenant, &["step `secret`"])
        .await;
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn secrets_manager_throttling_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.aws
        .answer(secrets_manager_calls().respond(Canned::aws_throttling()));
    let tenant = pool_tenant().await;
    let verdict = rig
        .sign_up_under_fault(&function, &tenant, &["step `secret`"])
        .await;
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn one_throttled_secrets_manager_call_does_not_fail_a_signup() {
    let rig = Rig::new().await;
    let function = rig.patient_post_confirmation();
    rig.warm(&function).await;
    rig.aws
        .answer(secrets_manager_calls().times(1).respond(Canned::aws_throttling()));
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    rig.assert_done_despite(&outcome, &tenant, "one throttled call")
        .await;
    assert!(
        rig.aws.requests().iter().any(|r| r.injected == Some(400)),
        "the throttling never fired"
    );
    rig.teardown(&tenant).await;
}

#[tokio::test]
async fn a_cold_start_against_a_black_holed_secrets_manager_answers_within_5_s_naming_it() {
    let rig = Rig::new().await;
    rig.aws.black_hole();
    let function = rig.function("post-confirmation");
    let tenant = pool_tenant().await;
    // The process starts with the invocation: Cognito's 5 s count from here.
    let outcome = function
        .invoke(&events::signup_for(&tenant), POST_CONFIRMATION_TIMEOUT)
        .await;
    assert!(outcome.cold);
    // What names the dependency: the error the caller sees or, when the process exits during
    // init (Lambda then reports Runtime.ExitError), the cold start's own log line.
    let error = outcome.error().unwrap_or_default();
    let explained = match &outcome.answer {
        Answer::Exited { .. } => function.logs(),
        _ => error.clone(),
    };
    assert!(
        outcome.answered_within(COGNITO_LIMIT),
        "the cold start did not answer within Cognito's 5 s of the process start: {:?} after {:?}; last log lines:\n{}",
        outcome.answer,
        outcome.elapsed,
        function.log_tail(15)
    );
    assert!(
        ADMIN_SECRET_READ.iter().any(|n| explained.contains(n)),
        "the cold-start error does not name the admin secret read: `{error}`; last log lines:\n{}",
        function.log_tail(15)
    );
    rig.assert_absent(&tenant).await;
    // Recovered: the retry (a new process, if the first one gave up) provisions the tenant.
    rig.converges_after_recovery(&function, &tenant, Verdict::Failed(error))
        .await;
}

#[tokio::test]
async fn a_slow_cold_start_leaves_the_signup_only_what_is_left_of_cognitos_5_s() {
    let rig = Rig::new().await;
    // Every AWS round trip takes over a second, so the cold start's admin secret read eats much
    // of the 5 s (yet less than a cold start may take); then the management API never answers.
    rig.aws.latency(Duration::from_millis(400));
    rig.management.black_hole();
    let function = rig.function("post-confirmation");
    let tenant = pool_tenant().await;
    let outcome = function
        .invoke(&events::signup_for(&tenant), POST_CONFIRMATION_TIMEOUT)
        .await;
    assert!(outcome.cold);
    let names = [&["step `"], ADMIN_SECRET_READ].concat();
    let verdict = rig
        .assert_failed_or_handed_off(&outcome, COGNITO_LIMIT, &names, &function, &tenant)
        .await;
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}
