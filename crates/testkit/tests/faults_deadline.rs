//! The Lambda deadline under the real `post-confirmation` binary: a deadline shorter than
//! `PROVISION_BUDGET_MS` wins, and the function still answers before it, naming the step.

use std::time::Duration;

use testkit::faults::{POST_CONFIRMATION_TIMEOUT, Rig};
use testkit::runtime::Answer;
use testkit::{events, fresh_tenant};

#[tokio::test]
async fn a_lambda_deadline_shorter_than_the_budget_is_kept_and_the_step_named() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.management.black_hole();
    let tenant = fresh_tenant();
    // The budget is 4.5 s; this invocation's deadline is 1.5 s away.
    let timeout = Duration::from_millis(1500);
    let outcome = function.invoke(&events::signup_for(&tenant), timeout).await;
    let steps = ["step `vhost`", "step `user`", "step `permission`"];
    let error = rig
        .assert_clear_error(&outcome, timeout, &steps, &function, &tenant)
        .await;
    assert!(
        !error.contains("4500 ms"),
        "the error reports the configured budget, not the time the deadline left: {error}"
    );

    rig.heal().await;
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    match &outcome.answer {
        Answer::Ok(answer) => assert_eq!(answer, &event),
        other => {
            let why = format!("the retry after recovery failed: {other:?}");
            rig.fail(&tenant, why).await
        }
    }
    rig.assert_converged(&tenant).await;
    rig.teardown(&tenant).await;
}
