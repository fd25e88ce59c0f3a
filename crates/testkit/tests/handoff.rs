//! No signup fails for slowness: what post-confirmation cannot finish inside Cognito's 5 s goes
//! to the provisioning queue, and the real `provision-worker` finishes it. Through the real
//! binaries (`testkit::runtime`, with RabbitMQ's management API behind a fault proxy), checked
//! with independent clients; and through the stack's own event source (its poller and the
//! emulator), as AWS would deliver it.

use std::time::Duration;
use testkit::cognito::{pool_tenant, pool_tenants};

use serde_json::json;
use testkit::faults::{POST_CONFIRMATION_TIMEOUT, Rig};
use testkit::runtime::{Answer, COGNITO_LIMIT};
use testkit::{amqp, events};
use tgsearch::ports::CredentialStore;
use tgsearch::status::tenant_status;

#[tokio::test]
async fn a_slow_broker_gets_the_signup_handed_off_and_the_worker_finishes_it() {
    let rig = Rig::new().await;
    let function = rig.function("post-confirmation");
    rig.warm(&function).await;
    // Every management API request takes 1.5 s: a busy cluster on a launch day.
    rig.management.latency(Duration::from_millis(1500));
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    match &outcome.answer {
        Answer::Ok(answer) => assert_eq!(*answer, event, "Cognito gets its event back"),
        other => panic!(
            "a slow broker failed the trigger: {other:?}\n{}",
            function.log_tail(10)
        ),
    }
    assert!(outcome.answered_within(COGNITO_LIMIT), "{:?}", outcome.elapsed);
    let handed = rig
        .queue
        .of(tenant.as_str())
        .await
        .expect("the tenant was handed off");
    assert!(handed.reason.contains("step `"), "{}", handed.reason);
    // Meanwhile: provisioning, with the password already fixed.
    let status = tenant_status(&rig.app.provisioner, &tenant).await.unwrap();
    assert!(status.is_provisioning(), "{status}");
    let password = rig
        .app
        .provisioner
        .store
        .read(&tenant)
        .await
        .unwrap()
        .ours()
        .unwrap()
        .password;

    // The broker recovers; the event source delivers the hand-off to the worker.
    rig.heal().await;
    let worker = rig.function("provision-worker");
    rig.queue.deliver(&worker, &[handed]).await.unwrap();
    let creds = rig.assert_converged(&tenant).await;
    assert_eq!(creds.password, password, "the worker kept the stored password");
    rig.teardown(&tenant).await;
}

#[tokio::test]
async fn a_burst_while_the_broker_is_down_fails_no_trigger_and_every_tenant_completes() {
    let rig = Rig::new().await;
    let instances: Vec<_> = (0..4).map(|_| rig.function("post-confirmation")).collect();
    for f in &instances {
        rig.warm(f).await;
    }
    rig.management.stop().await;
    let tenants: Vec<_> = pool_tenants(8).await;
    let signups: Vec<_> = tenants.iter().map(events::signup_for).collect();
    let outcomes = futures::future::join_all(
        signups
            .iter()
            .enumerate()
            .map(|(i, event)| instances[i % instances.len()].invoke(event, POST_CONFIRMATION_TIMEOUT)),
    )
    .await;
    for (tenant, outcome) in tenants.iter().zip(&outcomes) {
        assert!(
            matches!(outcome.answer, Answer::Ok(_)),
            "{tenant}: the broker being down failed the trigger: {:?}",
            outcome.answer
        );
        assert!(outcome.answered_before_deadline());
    }
    rig.management.start().await.unwrap();
    let mut handed = Vec::new();
    for tenant in &tenants {
        handed.push(rig.queue.of(tenant.as_str()).await.expect("handed off"));
    }
    let worker = rig.function("provision-worker");
    rig.queue.deliver(&worker, &handed).await.unwrap();
    for tenant in &tenants {
        rig.assert_converged(tenant).await;
        rig.teardown(tenant).await;
    }
}

#[tokio::test]
async fn what_the_worker_cannot_finish_is_reported_and_retried_later() {
    let rig = Rig::new().await;
    let tenant = pool_tenant().await;
    // Somebody else's vhost with the tenant's name: the worker must not adopt it.
    rig.app
        .provisioner
        .broker
        .put_vhost(tenant.vhost(), "another app", &[])
        .await
        .unwrap();
    let id = rig
        .queue
        .send(&json!({"sub": tenant.as_str(), "reason": "test"}).to_string())
        .await;
    let handed = rig.queue.of(tenant.as_str()).await.expect("the message");
    assert_eq!(handed.message_id, id);
    let worker = rig.function("provision-worker");
    let poison = rig.queue.send(r#"{"not": "a hand-off"}"#).await;
    let poisoned = rig
        .queue
        .all()
        .await
        .into_iter()
        .find(|m| m.message_id == poison)
        .unwrap();
    let failures = rig
        .queue
        .failures(&worker, &[handed.clone(), poisoned])
        .await
        .unwrap();
    assert_eq!(failures.len(), 2, "both are reported as failed: {failures:?}");
    assert!(failures.contains(&id) && failures.contains(&poison));
    assert!(worker.logs().contains("foreign vhost"), "{}", worker.log_tail(10));
    // Once the way is clear, the next delivery finishes it.
    rig.app
        .provisioner
        .broker
        .delete_vhost(tenant.vhost())
        .await
        .unwrap();
    rig.queue.deliver(&worker, &[handed]).await.unwrap();
    rig.assert_converged(&tenant).await;
    rig.teardown(&tenant).await;
}

#[tokio::test]
async fn the_stacks_event_source_delivers_hand_offs_to_the_worker() {
    let rig = Rig::new().await;
    let tenant = pool_tenant().await;
    // What post-confirmation sends, into the stack's own queue: its poller invokes the
    // provision-worker under the emulator, as Lambda's SQS event source would.
    let sqs = aws_sdk_sqs::Client::new(&rig.stack.aws().await);
    sqs.send_message()
        .queue_url(rig.stack.var("PROVISION_QUEUE_URL"))
        .message_body(json!({"sub": tenant.as_str(), "reason": "test"}).to_string())
        .send()
        .await
        .expect("the stack's provisioning queue: run `cargo xtask stack up`");
    let mut complete = false;
    for _ in 0..60 {
        if tenant_status(&rig.app.provisioner, &tenant)
            .await
            .unwrap()
            .is_complete()
        {
            complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        complete,
        "the stack's poller did not get the tenant provisioned within 60 s (see poller.log)"
    );
    let creds = rig
        .app
        .provisioner
        .store
        .read(&tenant)
        .await
        .unwrap()
        .ours()
        .unwrap();
    amqp::round_trip(creds.amqp_uri.expose(), b"from the worker")
        .await
        .unwrap();
    rig.teardown(&tenant).await;
}

/// A hand-off outlives its user: deleted or disabled while it waited in the queue, the user gets
/// nothing provisioned, and the message is done with (not retried).
#[tokio::test]
async fn a_hand_off_for_a_deleted_or_disabled_user_is_dropped_and_reported() {
    let rig = Rig::new().await;
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&rig.stack.aws().await);
    let pool = rig.stack.var("USER_POOL_ID").to_owned();
    let worker = rig.function("provision-worker");
    for case in ["deleted", "disabled"] {
        let user =
            testkit::cognito::sign_up_confirmed(&cognito, &pool, rig.stack.frontend_client_id(), "gone")
                .await
                .unwrap();
        if case == "deleted" {
            testkit::cognito::delete_user(&cognito, &pool, &user.username)
                .await
                .unwrap();
        } else {
            cognito
                .admin_disable_user()
                .user_pool_id(&pool)
                .username(&user.username)
                .send()
                .await
                .unwrap();
        }
        rig.queue
            .send(&json!({"sub": user.tenant.as_str(), "reason": "test"}).to_string())
            .await;
        let handed = rig.queue.of(user.tenant.as_str()).await.expect("the message");
        let failures = rig.queue.failures(&worker, &[handed]).await.unwrap();
        assert!(
            failures.is_empty(),
            "{case}: a dropped hand-off is done with: {failures:?}"
        );
        let status = tenant_status(&rig.app.provisioner, &user.tenant).await.unwrap();
        assert!(status.is_absent(), "{case}: something was provisioned");
        assert!(
            worker.logs().contains("hand-off dropped"),
            "{case}: not reported: {}",
            worker.log_tail(10)
        );
        if case == "disabled" {
            testkit::cognito::delete_user(&cognito, &pool, &user.username)
                .await
                .unwrap();
        }
    }
}
