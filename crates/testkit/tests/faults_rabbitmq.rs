//! RabbitMQ's management API misbehaving under the real `post-confirmation` binary (run by
//! `testkit::runtime` with the management URL pointing at a fault proxy): before its deadline
//! the signup ends with an error naming the step, or hands the tenant to the provisioning worker
//! with a reason naming it; after recovery the worker and a retry of the same event each give
//! one complete tenant whose stored password logs in over AMQP. A one-off blip fails nothing.
//! Checked with independent clients straight to the real servers.

use testkit::faults::{POST_CONFIRMATION_TIMEOUT, Rig, Rule};
use testkit::{events, fresh_tenant};

const RABBITMQ_STEPS: &[&str] = &["step `vhost`", "step `user`", "step `permission`"];

#[tokio::test]
async fn rabbitmq_stopped_mid_signup_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    // RabbitMQ dies on the vhost PUT: the connection is reset, new ones are refused.
    rig.management
        .answer(Rule::on("PUT", "/api/vhosts/*").times(1).stop_server());
    let tenant = fresh_tenant();
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
    let tenant = fresh_tenant();
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
    let tenant = fresh_tenant();
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
    let tenant = fresh_tenant();
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
