//! `tgsearch reconcile` against moto's Cognito and the local stack: confirmed users get their
//! tenant, resources of deleted users go, unconfirmed users are left alone, and a run that would
//! remove too much is refused.

use std::process::{Command, Output};

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
use testkit::fresh_tenant;
use testkit::stack::{self, Stack};
use tgsearch::TenantId;
use tgsearch::deadline::Deadline;
use tgsearch::status::tenant_status;

/// A fresh user pool; returns its id.
async fn pool(cognito: &Client) -> String {
    let name = format!("tgsearch-test-{}", &fresh_tenant().as_str()[..8]);
    let out = cognito.create_user_pool().pool_name(name).send().await.unwrap();
    out.user_pool().unwrap().id().unwrap().to_owned()
}

/// Creates a user; confirmed users get a permanent password, as after a confirmed signup.
async fn user(cognito: &Client, pool: &str, confirmed: bool) -> TenantId {
    let email = format!("{}@example.com", &fresh_tenant().as_str()[..8]);
    let out = cognito
        .admin_create_user()
        .user_pool_id(pool)
        .username(&email)
        .message_action(MessageActionType::Suppress)
        .user_attributes(
            AttributeType::builder()
                .name("email")
                .value(&email)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    if confirmed {
        cognito
            .admin_set_user_password()
            .user_pool_id(pool)
            .username(&email)
            .password("Correct-Horse-9")
            .permanent(true)
            .send()
            .await
            .unwrap();
    }
    let sub = out
        .user()
        .unwrap()
        .attributes()
        .iter()
        .find(|a| a.name() == "sub")
        .unwrap();
    TenantId::parse(sub.value().unwrap()).unwrap()
}

fn tgsearch(pool: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tgsearch"))
        .args(args)
        .envs(stack::exports())
        .env("USER_POOL_ID", pool)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn reconcile_provisions_the_confirmed_and_removes_the_departed() {
    let stack = Stack::require();
    let app = stack.app().await;
    let cognito = Client::new(&stack.aws().await);
    let pool = pool(&cognito).await;
    let confirmed = user(&cognito, &pool, true).await;
    let unconfirmed = user(&cognito, &pool, false).await;
    // A tenant whose user is gone from the pool.
    let departed = fresh_tenant();
    app.provisioner
        .provision(
            &departed,
            &Deadline::new(std::time::Duration::from_secs(10), None),
        )
        .await
        .unwrap();

    // Other tests' tenants share the stack, so act on ours only (the plan covers everything).
    let ours = [
        "--sub",
        confirmed.as_str(),
        "--sub",
        unconfirmed.as_str(),
        "--sub",
        departed.as_str(),
    ];
    let dry = tgsearch(
        &pool,
        &[&["--json", "reconcile", "--dry-run"][..], &ours].concat(),
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["plan"]["provision"], serde_json::json!([confirmed.as_str()]));
    assert_eq!(plan["plan"]["remove"], serde_json::json!([departed.as_str()]));
    assert!(
        tenant_status(&app.provisioner, &confirmed)
            .await
            .unwrap()
            .is_absent(),
        "a dry run changes nothing"
    );

    let run = tgsearch(&pool, &[&["reconcile"][..], &ours].concat());
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        tenant_status(&app.provisioner, &confirmed)
            .await
            .unwrap()
            .is_complete()
    );
    assert!(
        tenant_status(&app.provisioner, &unconfirmed)
            .await
            .unwrap()
            .is_absent()
    );
    assert!(
        tenant_status(&app.provisioner, &departed)
            .await
            .unwrap()
            .is_absent()
    );

    // Converged: a second run has nothing to do for our tenants.
    let again = tgsearch(&pool, &[&["--json", "reconcile"][..], &ours].concat());
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["provisioned"], serde_json::json!([]));
    assert_eq!(report["removed"], serde_json::json!([]));

    let deadline = Deadline::new(std::time::Duration::from_secs(10), None);
    app.provisioner.teardown(&confirmed, &deadline).await.unwrap();
}

#[tokio::test]
async fn too_many_removals_are_refused() {
    let stack = Stack::require();
    let app = stack.app().await;
    let cognito = Client::new(&stack.aws().await);
    let pool = pool(&cognito).await;
    let deadline = Deadline::new(std::time::Duration::from_secs(10), None);
    let (a, b) = (fresh_tenant(), fresh_tenant());
    for t in [&a, &b] {
        app.provisioner.provision(t, &deadline).await.unwrap();
    }
    let out = tgsearch(
        &pool,
        &[
            "reconcile",
            "--max-removals",
            "1",
            "--sub",
            a.as_str(),
            "--sub",
            b.as_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to remove 2 tenants"),
        "{}",
        text(&out)
    );
    for t in [&a, &b] {
        assert!(
            tenant_status(&app.provisioner, t).await.unwrap().is_complete(),
            "nothing was removed"
        );
        app.provisioner.teardown(t, &deadline).await.unwrap();
    }
}

#[test]
fn a_missing_pool_is_named() {
    Stack::require();
    let out = Command::new(env!("CARGO_BIN_EXE_tgsearch"))
        .args(["reconcile", "--dry-run"])
        .envs(stack::exports())
        .env_remove("USER_POOL_ID")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("USER_POOL_ID is not set"), "{}", text(&out));
}
