//! The Lambda deadline under the real binaries: for `post-confirmation` a deadline shorter than
//! `PROVISION_BUDGET_MS` wins, and the function still answers before it (an error naming the
//! step, or a hand-off for that reason); for
//! `reconcile`, a dependency that never answers still gets an answer before the deadline.

use std::time::Duration;
use testkit::cognito::pool_tenant;

use testkit::faults::{Rig, Verdict};
use testkit::{events, fresh_tenant};

#[tokio::test]
async fn a_lambda_deadline_shorter_than_the_budget_is_kept() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.management.black_hole();
    let tenant = pool_tenant().await;
    // The budget is 4.5 s; this invocation's deadline is 1.5 s away.
    let timeout = Duration::from_millis(1500);
    let outcome = function.invoke(&events::signup_for(&tenant), timeout).await;
    let steps = ["step `vhost`", "step `user`", "step `permission`"];
    let verdict = rig
        .assert_failed_or_handed_off(&outcome, timeout, &steps, &function, &tenant)
        .await;
    if let Verdict::Failed(error) = &verdict {
        assert!(
            !error.contains("4500 ms"),
            "the error reports the configured budget, not the time the deadline left: {error}"
        );
    }
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

/// Reconcile's inventory under the Lambda's deadline: with a dependency that never answers, the
/// run ends before its deadline with an error that says the inventory could not be taken.
#[tokio::test]
async fn reconcile_answers_before_its_deadline_when_a_dependency_never_answers() {
    let rig = Rig::new().await;
    // An empty user pool of its own and no removals allowed: whatever the run sees, it changes
    // nothing of the tenants of tests running beside it.
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&rig.stack.aws().await);
    let pool = cognito
        .create_user_pool()
        .pool_name(format!("reconcile-deadline-{}", &fresh_tenant().as_str()[..8]))
        .send()
        .await
        .unwrap();
    let pool_id = pool.user_pool().and_then(|p| p.id()).unwrap().to_owned();
    let mut problems = Vec::new();
    for (dependency, proxy) in [("Kubernetes", &rig.kube), ("RabbitMQ", &rig.management)] {
        let mut env = rig.env();
        env.insert("USER_POOL_ID".into(), pool_id.clone());
        env.insert("RECONCILE_MAX_REMOVALS".into(), "0".into());
        let reconcile = testkit::runtime::Function::new("reconcile", env);
        proxy.black_hole();
        let timeout = Duration::from_secs(8);
        let outcome = reconcile
            .invoke(&events::load("reconcile-schedule.json"), timeout)
            .await;
        rig.heal().await;
        if let Err(why) = testkit::faults::check_clear_error(&outcome, timeout, &["inventory"], &reconcile) {
            problems.push(format!("{dependency} black-holed: {why}"));
        }
    }
    let _ = cognito.delete_user_pool().user_pool_id(pool_id).send().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
