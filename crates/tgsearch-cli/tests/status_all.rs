//! `tgsearch status --all` against the local stack: every tenant of a fresh user pool lands in
//! the state an operator would give it, from the listings alone. Other tests' tenants share the
//! stack (they show as orphaned to this pool), so only this test's are asserted.

mod common;

use std::time::Duration;

use aws_sdk_cognitoidentityprovider::Client;
use common::{json, pool, tgsearch_with, user};
use testkit::fresh_tenant;
use testkit::stack::Stack;
use tgsearch::TenantId;
use tgsearch::deadline::Deadline;

fn deadline() -> Deadline {
    Deadline::new(Duration::from_secs(20), None)
}

#[tokio::test]
async fn status_all_counts_every_tenant_by_state() {
    let stack = Stack::require();
    let app = stack.app().await;
    let cognito = Client::new(&stack.aws().await);
    let pool = pool(&cognito).await;
    let p = &app.provisioner;

    let ready = user(&cognito, &pool, true).await;
    p.provision(&ready, &deadline()).await.unwrap();
    // Its vhost removed by hand: the rest is there, so it is being provisioned.
    let partial = user(&cognito, &pool, true).await;
    p.provision(&partial, &deadline()).await.unwrap();
    p.broker.delete_vhost(partial.as_str()).await.unwrap();
    let missing = user(&cognito, &pool, true).await;
    // A right on another vhost: drift.
    let drifted = user(&cognito, &pool, true).await;
    p.provision(&drifted, &deadline()).await.unwrap();
    p.broker
        .put_permission("/", drifted.as_str(), ".*", ".*", ".*")
        .await
        .unwrap();
    // Its broker password changed by hand: drift, found from the listings.
    let password_changed = user(&cognito, &pool, true).await;
    p.provision(&password_changed, &deadline()).await.unwrap();
    p.broker
        .put_user(
            password_changed.as_str(),
            &tgsearch::credentials::Password::new("changed-by-hand"),
            &[],
        )
        .await
        .unwrap();
    // Someone else's vhost of a confirmed user's name: in the way, and foreign.
    let blocked = user(&cognito, &pool, true).await;
    p.broker
        .put_vhost(blocked.as_str(), "not ours", &[])
        .await
        .unwrap();
    // Resources of a user who is not in the pool.
    let orphaned = fresh_tenant();
    p.provision(&orphaned, &deadline()).await.unwrap();
    // An unconfirmed user's leftovers are kept.
    let inactive = user(&cognito, &pool, false).await;
    p.provision(&inactive, &deadline()).await.unwrap();

    let out = tgsearch_with(&[("USER_POOL_ID", &pool)], &["--json", "status", "--all"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "not all is well: exit code 3\n{}",
        common::text(&out)
    );
    let fleet = json(&out);
    let state_of = |t: &TenantId| -> Vec<String> {
        fleet["tenants"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, subs)| subs.as_array().unwrap().iter().any(|s| s == t.as_str()))
            .map(|(state, _)| state.clone())
            .collect()
    };
    assert_eq!(state_of(&ready), ["ready"], "{fleet}");
    assert_eq!(state_of(&partial), ["provisioning"]);
    assert_eq!(state_of(&missing), ["missing"]);
    assert_eq!(state_of(&drifted), ["drift"]);
    assert_eq!(state_of(&password_changed), ["drift"]);
    assert!(
        fleet["drift"][password_changed.as_str()]
            .as_str()
            .unwrap()
            .contains("password"),
        "{}",
        fleet["drift"]
    );
    assert!(
        fleet["drift"][drifted.as_str()]
            .as_str()
            .unwrap()
            .contains("rights")
    );
    assert_eq!(state_of(&blocked), ["needs_person"]);
    assert_eq!(state_of(&orphaned), ["orphaned"]);
    assert_eq!(state_of(&inactive), ["inactive"]);
    assert_eq!(fleet["users"], 7);
    assert_eq!(fleet["active_users"], 6);
    assert!(
        fleet["foreign"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == blocked.as_str() && f["kind"] == "vhost"),
        "{}",
        fleet["foreign"]
    );
    for state in [
        "ready",
        "provisioning",
        "missing",
        "drift",
        "needs_person",
        "orphaned",
        "inactive",
    ] {
        assert!(
            fleet["counts"][state].as_u64().unwrap() >= 1,
            "{state}: {}",
            fleet["counts"]
        );
    }
    // The human summary says the same.
    let text = common::text(&tgsearch_with(&[("USER_POOL_ID", &pool)], &["status", "--all"]));
    assert!(
        text.contains("7 users in the pool, 6 confirmed and enabled"),
        "{text}"
    );
    assert!(text.contains(&format!("needs person: {blocked}")), "{text}");

    p.broker.delete_vhost(blocked.as_str()).await.unwrap();
    p.broker.delete_permission("/", drifted.as_str()).await.unwrap();
    for t in [
        &ready,
        &partial,
        &drifted,
        &password_changed,
        &orphaned,
        &inactive,
    ] {
        p.teardown(t, &deadline()).await.unwrap();
    }
}
