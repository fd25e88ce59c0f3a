//! RabbitMQ's management API misbehaving under the real `post-confirmation` binary (run by
//! `testkit::runtime` with the management URL pointing at a fault proxy): before its deadline
//! the signup ends with an error naming the step, or hands the tenant to the provisioning worker
//! with a reason naming it; after recovery the worker and a retry of the same event each give
//! one complete tenant whose stored password logs in over AMQP. A one-off blip fails nothing.
//! Checked with independent clients straight to the real servers.

use testkit::cognito::pool_tenant;
use testkit::events;
use testkit::faults::{POST_CONFIRMATION_TIMEOUT, Rig, Rule};

const RABBITMQ_STEPS: &[&str] = &["step `vhost`", "step `user`", "step `permission`"];

#[tokio::test]
async fn rabbitmq_stopped_mid_signup_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    // RabbitMQ dies on the vhost PUT: the connection is reset, new ones are refused.
    rig.management
        .answer(Rule::on("PUT", "/api/vhosts/*").times(1).stop_server());
    let tenant = pool_tenant().await;
    let verdict = rig.sign_up_under_fault(&function, &tenant, RABBITMQ_STEPS).await;
    assert!(
        rig.management.requests().iter().any(|r| r.injected == Some(0)),
        "the fault never fired: the signup did not reach the vhost PUT"
    );
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn a_management_api_that_never_answers_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.management.black_hole();
    let tenant = pool_tenant().await;
    let verdict = rig.sign_up_under_fault(&function, &tenant, RABBITMQ_STEPS).await;
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn one_reset_connection_to_the_management_api_does_not_fail_a_signup() {
    let rig = Rig::new().await;
    let function = rig.patient_post_confirmation();
    rig.warm(&function).await;
    // The next request the function sends is lost in flight: its connection is reset.
    rig.management.reset_next(1);
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    rig.assert_done_despite(&outcome, &tenant, "one reset connection")
        .await;
    rig.teardown(&tenant).await;
}

#[tokio::test]
async fn one_500_from_the_management_api_does_not_fail_a_signup() {
    let rig = Rig::new().await;
    let function = rig.patient_post_confirmation();
    rig.warm(&function).await;
    rig.management.answer(Rule::on("PUT", "/api/vhosts/*").times(1));
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    rig.assert_done_despite(&outcome, &tenant, "one 500").await;
    let vhost_puts: Vec<_> = rig
        .management
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/api/vhosts/"))
        .collect();
    assert_eq!(vhost_puts.first().and_then(|r| r.injected), Some(500));
    assert!(vhost_puts.len() >= 2, "the vhost PUT was not retried");
    rig.teardown(&tenant).await;
}

/// Cognito shows the user a failed trigger's error text. With the broker down and the hand-off
/// queue gone too, the signup fails: the user reads a generic message and a reference, never
/// the broker's words, an address or a step; the log holds the detail under that reference.
#[tokio::test]
async fn the_error_a_user_sees_under_a_broker_outage_is_generic_with_a_reference() {
    let rig = Rig::new().await;
    let mut env = rig.env();
    let queue = env["PROVISION_QUEUE_URL"].clone();
    let gone = format!("{}-gone", queue.trim_end_matches('/'));
    env.insert("PROVISION_QUEUE_URL".into(), gone);
    let function = testkit::runtime::Function::new("post-confirmation", env);
    rig.warm(&function).await;
    rig.management.black_hole();
    let tenant = pool_tenant().await;
    let outcome = function
        .invoke(&events::signup_for(&tenant), POST_CONFIRMATION_TIMEOUT)
        .await;
    let shown = outcome
        .error()
        .expect("the signup cannot succeed: broker and queue are down");
    let reference = testkit::faults::reference_in(&shown)
        .unwrap_or_else(|| panic!("the error carries no reference: {shown}"))
        .to_owned();
    // check_clear_error also refuses internal words in what is shown; it returns what the log
    // says under the reference.
    let logged = testkit::faults::check_clear_error(
        &outcome,
        testkit::runtime::COGNITO_LIMIT,
        RABBITMQ_STEPS,
        &function,
    )
    .unwrap_or_else(|why| panic!("{why}"));
    assert!(logged.contains(&reference));
    assert!(
        !shown.contains(rig.management.url().trim_start_matches("http://")),
        "{shown}"
    );
    rig.converges_after_recovery(&function, &tenant, testkit::faults::Verdict::Failed(shown))
        .await;
}
