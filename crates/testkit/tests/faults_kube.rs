//! The Kubernetes API (the stand-in behind a TLS-terminating fault proxy, reached as EKS with
//! `EKS_CLUSTER_ENDPOINT` and `EKS_CLUSTER_CA`) misbehaving under the real `post-confirmation`
//! binary: a black hole, and `Status` errors 500, 409, 422 and 429. Each ends before the deadline
//! with a clear error naming the step or a hand-off to the provisioning worker for that reason;
//! 4xx that will not change are not retried; a one-off 500 is retried at once, a 429 not before
//! its `Retry-After`; after recovery it converges.

use std::time::Duration;
use testkit::cognito::pool_tenant;

use testkit::events;
use testkit::faults::{Canned, POST_CONFIRMATION_TIMEOUT, Rig, Rule, Verdict};
use testkit::runtime::{Answer, Function};
use tgsearch::TenantId;

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/*/deployments/*";
const VOLUMES: &str = "/api/v1/namespaces/*/persistentvolumeclaims/*";
const KUBE_STEPS: &[&str] = &["step `volume`", "step `kube-secret`", "step `deployment`"];

/// Requests to `path` the function sent, with what the proxy answered (`None`: forwarded).
fn sent(rig: &Rig, path: &str) -> Vec<testkit::faults::Seen> {
    let pattern = path.replace('*', "");
    rig.kube
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH"
                && pattern
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .all(|s| r.path.contains(s))
        })
        .collect()
}

/// A signup under `rule`; it must fail, or hand off, naming `step` before the deadline.
async fn signup_under(rig: &Rig, function: &Function, tenant: &TenantId, rule: Rule, step: &str) -> Verdict {
    rig.kube.answer(rule);
    rig.sign_up_under_fault(function, tenant, &[step]).await
}

/// The error, or the hand-off's reason.
fn why(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Failed(error) => error,
        Verdict::HandedOff(handed) => &handed.reason,
    }
}

#[tokio::test]
async fn a_kubernetes_api_that_never_answers_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.kube.black_hole();
    let tenant = pool_tenant().await;
    let verdict = rig.sign_up_under_fault(&function, &tenant, KUBE_STEPS).await;
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn kubernetes_answering_500_every_time_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    let tenant = pool_tenant().await;
    let rule = Rule::on("PATCH", DEPLOYMENTS).respond(Canned::kube(500));
    let verdict = signup_under(&rig, &function, &tenant, rule, "step `deployment`").await;
    let error = why(&verdict);
    assert!(
        error.contains("500") || error.contains("did not finish"),
        "{error}"
    );
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn one_500_from_kubernetes_does_not_fail_a_signup() {
    let rig = Rig::new().await;
    let function = rig.patient_post_confirmation();
    rig.warm(&function).await;
    rig.kube
        .answer(Rule::on("PATCH", DEPLOYMENTS).times(1).respond(Canned::kube(500)));
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    rig.assert_done_despite(&outcome, &tenant, "one Kubernetes 500")
        .await;
    let applies = sent(&rig, DEPLOYMENTS);
    assert_eq!(applies.first().and_then(|r| r.injected), Some(500));
    assert!(applies.len() >= 2, "the Deployment apply was not retried");
    rig.teardown(&tenant).await;
}

#[tokio::test]
async fn kubernetes_409_conflict_is_named_without_retrying() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    let tenant = pool_tenant().await;
    let rule = Rule::on("PATCH", DEPLOYMENTS).respond(Canned::kube(409));
    let verdict = signup_under(&rig, &function, &tenant, rule, "step `deployment`").await;
    let error = why(&verdict);
    assert!(error.contains("409") || error.contains("Conflict"), "{error}");
    let applies = sent(&rig, DEPLOYMENTS).len();
    assert_eq!(applies, 1, "a 409 that will not change was sent {applies} times");
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn kubernetes_422_invalid_is_named_without_retrying() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    let tenant = pool_tenant().await;
    let rule = Rule::on("PATCH", VOLUMES).respond(Canned::kube(422));
    let verdict = signup_under(&rig, &function, &tenant, rule, "step `volume`").await;
    let error = why(&verdict);
    assert!(error.contains("422") || error.contains("Invalid"), "{error}");
    let applies = sent(&rig, VOLUMES).len();
    assert_eq!(applies, 1, "a 422 that will not change was sent {applies} times");
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn kubernetes_429_every_time_is_named_before_the_deadline_and_converges() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    let tenant = pool_tenant().await;
    let rule = Rule::on("PATCH", VOLUMES).respond(Canned::kube(429));
    let verdict = signup_under(&rig, &function, &tenant, rule, "step `volume`").await;
    rig.converges_after_recovery(&function, &tenant, verdict).await;
}

#[tokio::test]
async fn one_429_from_kubernetes_is_retried_not_before_its_retry_after() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    rig.kube
        .answer(Rule::on("PATCH", VOLUMES).times(1).respond(Canned::kube(429)));
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    if !matches!(&outcome.answer, Answer::Ok(answer) if *answer == event) {
        let error = outcome.error();
        rig.fail(
            &tenant,
            format!("one 429 (Retry-After: 1) failed the signup: {error:?}"),
        )
        .await;
    }
    let applies = sent(&rig, VOLUMES);
    assert_eq!(applies.first().and_then(|r| r.injected), Some(429));
    if let Some(retry) = applies.get(1) {
        let waited = retry.at - applies[0].at;
        // Retry-After: 1 (whole seconds; allow for the proxy's and the clock's rounding).
        assert!(
            waited >= Duration::from_millis(900),
            "the retry came {waited:?} after a 429 with Retry-After: 1"
        );
    }
    // Retried once Retry-After allowed it or, when the synchronous part cannot wait that long,
    // handed to the worker: never failed.
    match rig.queue.of(tenant.as_str()).await {
        Some(handed) => {
            rig.converges_after_recovery(&function, &tenant, Verdict::HandedOff(handed))
                .await
        }
        None => {
            assert!(
                applies.len() >= 2,
                "the volume apply was neither retried nor handed off"
            );
            rig.assert_converged(&tenant).await;
            rig.teardown(&tenant).await;
        }
    }
}
