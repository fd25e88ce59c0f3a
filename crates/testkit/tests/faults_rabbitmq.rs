//! RabbitMQ's management API misbehaving under the real `post-confirmation` binary (run by
//! `testkit::runtime` with the management URL pointing at a fault proxy): the signup ends with
//! an error naming the step before its deadline, and the same event after recovery gives one
//! complete tenant whose stored password logs in over AMQP. A one-off blip fails nothing.
//! Checked with independent clients straight to the real servers.

use testkit::faults::{POST_CONFIRMATION_TIMEOUT, Rig, Rule};
use testkit::runtime::{Answer, COGNITO_LIMIT, Function};
use testkit::{events, fresh_tenant};
use tgsearch::TenantId;

const RABBITMQ_STEPS: &[&str] = &["step `vhost`", "step `user`", "step `permission`"];

/// The same event again, with every fault removed: it must succeed and converge.
async fn retry_converges(rig: &Rig, function: &Function, tenant: &TenantId) {
    rig.heal().await;
    let event = events::signup_for(tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    match &outcome.answer {
        Answer::Ok(answer) => assert_eq!(answer, &event, "Cognito needs its event back unchanged"),
        other => panic!(
            "the retry after recovery failed: {other:?}; last log lines:\n{}",
            function.log_tail(15)
        ),
    }
    rig.assert_converged(tenant).await;
    rig.teardown(tenant).await;
}

#[tokio::test]
async fn rabbitmq_stopped_mid_signup_fails_naming_the_step_and_the_retry_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    // RabbitMQ dies on the vhost PUT: the connection is reset, new ones are refused.
    rig.management
        .answer(Rule::on("PUT", "/api/vhosts/*").times(1).stop_server());
    let tenant = fresh_tenant();
    let outcome = function
        .invoke(&events::signup_for(&tenant), POST_CONFIRMATION_TIMEOUT)
        .await;
    rig.assert_clear_error(&outcome, COGNITO_LIMIT, RABBITMQ_STEPS, &function, &tenant)
        .await;
    assert!(
        rig.management.requests().iter().any(|r| r.injected == Some(0)),
        "the fault never fired: the signup did not reach the vhost PUT"
    );
    retry_converges(&rig, &function, &tenant).await;
}

#[tokio::test]
async fn a_management_api_that_never_answers_fails_naming_the_step_before_the_deadline() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.management.black_hole();
    let tenant = fresh_tenant();
    let outcome = function
        .invoke(&events::signup_for(&tenant), POST_CONFIRMATION_TIMEOUT)
        .await;
    let error = rig
        .assert_clear_error(&outcome, COGNITO_LIMIT, RABBITMQ_STEPS, &function, &tenant)
        .await;
    assert!(error.contains("did not finish"), "{error}");
    retry_converges(&rig, &function, &tenant).await;
}

#[tokio::test]
async fn one_reset_connection_to_the_management_api_does_not_fail_a_signup() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    // The next request the function sends is lost in flight: its connection is reset.
    rig.management.reset_next(1);
    let tenant = fresh_tenant();
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    if !matches!(&outcome.answer, Answer::Ok(answer) if *answer == event) {
        let error = outcome.error();
        rig.fail(
            &tenant,
            format!("one reset connection failed the signup: {error:?}"),
        )
        .await;
    }
    rig.assert_converged(&tenant).await;
    rig.teardown(&tenant).await;
}

#[tokio::test]
async fn one_500_from_the_management_api_does_not_fail_a_signup() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.management.answer(Rule::on("PUT", "/api/vhosts/*").times(1));
    let tenant = fresh_tenant();
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    if !matches!(&outcome.answer, Answer::Ok(answer) if *answer == event) {
        let error = outcome.error();
        rig.fail(&tenant, format!("one 500 failed the signup: {error:?}"))
            .await;
    }
    let vhost_puts: Vec<_> = rig
        .management
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/api/vhosts/"))
        .collect();
    assert_eq!(vhost_puts.first().and_then(|r| r.injected), Some(500));
    assert!(vhost_puts.len() >= 2, "the vhost PUT was not retried");
    rig.assert_converged(&tenant).await;
    rig.teardown(&tenant).await;
}
