//! `tgsearch reconcile` against moto's Cognito and the local stack: confirmed users get their
//! tenant, resources of deleted users go, unconfirmed users are left alone, and a run that would
//! remove too much is refused.

mod common;

use std::process::{Command, Output};

use common::text;

use aws_sdk_cognitoidentityprovider::Client;
use testkit::fresh_tenant;
use testkit::stack::{self, Stack};
use tgsearch::TenantId;
use tgsearch::deadline::Deadline;
use tgsearch::status::tenant_status;

use common::{pool, user};

/// `tgsearch` with `pool` as its user pool.
fn tgsearch(pool: &str, args: &[&str]) -> Output {
    common::tgsearch_with(&[("USER_POOL_ID", pool)], args)
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

/// Reads the tenant's stored credentials (as the provisioner).
async fn stored(
    app: &tgsearch::app::AppContext,
    tenant: &TenantId,
) -> tgsearch::credentials::TenantCredentials {
    use tgsearch::ports::CredentialStore;
    app.provisioner
        .store
        .read(tenant)
        .await
        .unwrap()
        .ours()
        .expect("the tenant's secret")
}

#[tokio::test]
async fn status_shows_drift_and_reconcile_repairs_it() {
    let stack = Stack::require();
    let app = stack.app().await;
    let cognito = Client::new(&stack.aws().await);
    let pool = pool(&cognito).await;
    let tenant = user(&cognito, &pool, true).await;
    let deadline = Deadline::new(std::time::Duration::from_secs(10), None);
    app.provisioner.provision(&tenant, &deadline).await.unwrap();
    let creds = stored(&app, &tenant).await;
    let rabbit = &app.provisioner.broker;

    // By hand: the RabbitMQ password, an extra permission on another vhost, the Kubernetes
    // Secret's AMQP_URI (as `kubectl` would), and the stored amqp_uri pointed at a neighbour.
    rabbit
        .put_user(
            tenant.as_str(),
            &tgsearch::credentials::Password::new("by-hand"),
            &[],
        )
        .await
        .unwrap();
    let neighbour = fresh_tenant();
    rabbit
        .put_vhost(neighbour.vhost(), "someone else's", &[])
        .await
        .unwrap();
    rabbit
        .put_permission(neighbour.vhost(), tenant.as_str(), ".*", ".*", ".*")
        .await
        .unwrap();
    let kubectl = Command::new("kubectl")
        .args([
            "patch",
            "secret",
            &format!("backend-{tenant}"),
            "--type=merge",
            "-p",
            r#"{"stringData":{"AMQP_URI":"amqp://edited:by@hand/x"}}"#,
        ])
        .envs(stack::exports())
        .output()
        .unwrap();
    assert!(kubectl.status.success(), "{}", text(&kubectl));
    let mut edited = creds.clone();
    edited.amqp_uri = tgsearch::credentials::TenantCredentials::new(
        &neighbour,
        tgsearch::credentials::Password::new("n31ghb0ur"),
        &app.config.rabbitmq_amqp_url,
    )
    .amqp_uri;
    aws_sdk_secretsmanager::Client::new(&stack.aws().await)
        .put_secret_value()
        .secret_id(app.provisioner.store.tenant_secret_name(&tenant))
        .secret_string(serde_json::to_string(&edited).unwrap())
        .send()
        .await
        .unwrap();

    // `status` shows each drift, and exits 3.
    let status = tgsearch(&pool, &["--json", "status", "--sub", tenant.as_str()]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    let shown: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let state = |resource: &str| {
        shown["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == resource)
            .unwrap()["state"]
            .clone()
    };
    for resource in ["secret", "user", "permission", "kube-secret"] {
        assert_eq!(state(resource), "drift", "{resource}: {shown}");
    }
    assert!(
        !text(&status).contains(creds.password.expose()),
        "status shows no password"
    );

    // The next reconcile repairs all of it and says so.
    let run = tgsearch(&pool, &["--json", "reconcile", "--sub", tenant.as_str()]);
    assert!(run.status.success(), "{}", text(&run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let repaired: Vec<&str> = report["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["sub"] == tenant.as_str())
        .map(|c| c["resource"].as_str().unwrap())
        .collect();
    for resource in ["secret", "user", "permission", "kube-secret"] {
        assert!(repaired.contains(&resource), "{resource} not repaired: {report}");
    }
    assert!(
        tenant_status(&app.provisioner, &tenant)
            .await
            .unwrap()
            .is_complete()
    );
    let after = stored(&app, &tenant).await;
    assert_eq!(after.password, creds.password, "the password on record is kept");
    assert_eq!(after.amqp_uri, creds.amqp_uri, "amqp_uri rebuilt from it");
    testkit::amqp::round_trip(after.amqp_uri.expose(), b"repaired")
        .await
        .expect("the tenant logs in with the stored password again");
    assert!(
        testkit::amqp::connect_to_vhost(after.amqp_uri.expose(), neighbour.vhost())
            .await
            .is_err(),
        "the extra permission is gone"
    );

    app.provisioner.teardown(&tenant, &deadline).await.unwrap();
    rabbit.delete_vhost(neighbour.vhost()).await.unwrap();
}

#[tokio::test]
async fn foreign_look_alikes_survive_reconcile_and_teardown() {
    let stack = Stack::require();
    let app = stack.app().await;
    let cognito = Client::new(&stack.aws().await);
    let pool = pool(&cognito).await;
    // Not in the pool: reconcile would remove a tenant of this name. Nothing of it is ours.
    let stranger = fresh_tenant();
    let rabbit = &app.provisioner.broker;
    rabbit
        .put_vhost(stranger.vhost(), "another app", &[])
        .await
        .unwrap();
    rabbit
        .put_user(
            stranger.as_str(),
            &tgsearch::credentials::Password::new("theirs"),
            &[],
        )
        .await
        .unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&stack.aws().await);
    let secret_name = app.provisioner.store.tenant_secret_name(&stranger);
    secrets
        .create_secret()
        .name(&secret_name)
        .secret_string(r#"{"note": "not the provisioner's"}"#)
        .send()
        .await
        .unwrap();
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: backend-{stranger}\nstringData:\n  AMQP_URI: theirs\n"
    );
    let mut apply = Command::new("kubectl")
        .args(["apply", "--server-side", "--validate=false", "-f", "-"])
        .envs(stack::exports())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let applied = apply.wait_with_output().unwrap();
    assert!(applied.status.success(), "{}", text(&applied));

    let run = tgsearch(&pool, &["--json", "reconcile", "--sub", stranger.as_str()]);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["removed"], serde_json::json!([]), "{report}");
    let foreign: Vec<String> = report["foreign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["kind"].as_str().unwrap(), f["name"].as_str().unwrap()))
        .collect();
    for expected in [
        format!("vhost {stranger}"),
        format!("RabbitMQ user {stranger}"),
        format!("secret {secret_name}"),
        format!("Secret backend-{stranger}"),
    ] {
        assert!(
            foreign.contains(&expected),
            "{expected} not reported: {foreign:?}"
        );
    }
    let human = tgsearch(&pool, &["reconcile", "--dry-run", "--sub", stranger.as_str()]);
    assert!(
        text(&human).contains(&format!("foreign vhost {stranger}, left alone")),
        "{}",
        text(&human)
    );

    // Teardown, forced even, leaves all of it alone and says so.
    let torn = tgsearch(
        &pool,
        &["--json", "teardown", "--force", "--sub", stranger.as_str()],
    );
    assert!(torn.status.success(), "{}", text(&torn));
    let torn: serde_json::Value = serde_json::from_slice(&torn.stdout).unwrap();
    let left: Vec<&str> = torn["left_alone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["resource"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["kube-secret", "vhost", "user", "secret"], "{torn}");

    let vhost = rabbit
        .get_vhost(stranger.vhost())
        .await
        .unwrap()
        .expect("the vhost survives");
    assert_eq!(vhost.description, "another app");
    let user = rabbit
        .get_user(stranger.as_str())
        .await
        .unwrap()
        .expect("the user survives");
    assert!(user.has_password(&tgsearch::credentials::Password::new("theirs")));
    let kept = secrets
        .get_secret_value()
        .secret_id(&secret_name)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.secret_string(), Some(r#"{"note": "not the provisioner's"}"#));
    let get = Command::new("kubectl")
        .args(["get", "secret", &format!("backend-{stranger}")])
        .envs(stack::exports())
        .output()
        .unwrap();
    assert!(
        get.status.success(),
        "the Kubernetes Secret survives: {}",
        text(&get)
    );

    rabbit.delete_user(stranger.as_str()).await.unwrap();
    rabbit.delete_vhost(stranger.vhost()).await.unwrap();
    secrets
        .delete_secret()
        .secret_id(&secret_name)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    Command::new("kubectl")
        .args(["delete", "secret", &format!("backend-{stranger}")])
        .envs(stack::exports())
        .output()
        .unwrap();
}

#[tokio::test]
async fn teardown_of_a_user_still_in_the_pool_is_refused() {
    let stack = Stack::require();
    let app = stack.app().await;
    let cognito = Client::new(&stack.aws().await);
    let pool = pool(&cognito).await;
    let tenant = user(&cognito, &pool, true).await;
    let deadline = Deadline::new(std::time::Duration::from_secs(10), None);
    app.provisioner.provision(&tenant, &deadline).await.unwrap();

    let refused = tgsearch(&pool, &["teardown", "--sub", tenant.as_str()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("still exists and is enabled"),
        "{}",
        text(&refused)
    );
    assert!(
        tenant_status(&app.provisioner, &tenant)
            .await
            .unwrap()
            .is_complete()
    );

    // Disabled: the guard lets it go.
    let email = cognito
        .list_users()
        .user_pool_id(&pool)
        .filter(format!("sub = \"{tenant}\""))
        .send()
        .await
        .unwrap()
        .users()[0]
        .username()
        .unwrap()
        .to_owned();
    cognito
        .admin_disable_user()
        .user_pool_id(&pool)
        .username(&email)
        .send()
        .await
        .unwrap();
    let done = tgsearch(&pool, &["teardown", "--sub", tenant.as_str()]);
    assert!(done.status.success(), "{}", text(&done));
    assert!(
        tenant_status(&app.provisioner, &tenant)
            .await
            .unwrap()
            .is_absent()
    );
}

/// The pool as it looked when reconcile listed it, before `late` confirmed; asked about one
/// user, it answers as Cognito does now.
struct ListedBefore {
    now: tgsearch::adapters::cognito::CognitoDirectory,
    late: TenantId,
}

impl tgsearch::ports::UserDirectory for ListedBefore {
    async fn users(&self) -> Result<Vec<tgsearch::ports::DirectoryUser>, tgsearch::ports::PortError> {
        let mut users = self.now.users().await?;
        users.retain(|u| u.sub != self.late.as_str());
        Ok(users)
    }

    async fn user(
        &self,
        sub: &str,
    ) -> Result<Option<tgsearch::ports::DirectoryUser>, tgsearch::ports::PortError> {
        self.now.user(sub).await
    }
}

#[tokio::test]
async fn a_user_confirmed_while_reconcile_lists_keeps_their_tenant() {
    let stack = Stack::require();
    let app = stack.app().await;
    let cognito = Client::new(&stack.aws().await);
    let pool = pool(&cognito).await;
    let late = user(&cognito, &pool, true).await;
    let deadline = Deadline::new(std::time::Duration::from_secs(10), None);
    // Post-confirmation provisioned them; reconcile's listing of the pool missed them.
    app.provisioner.provision(&late, &deadline).await.unwrap();
    let password = stored(&app, &late).await.password;
    let directory = ListedBefore {
        now: tgsearch::adapters::cognito::CognitoDirectory::new(&app.aws, pool.clone()),
        late: late.clone(),
    };
    let options = tgsearch::reconcile::Options {
        only: Some([late.to_string()].into()),
        ..Default::default()
    };
    let report = tgsearch::reconcile::reconcile(&app.provisioner, &directory, &options)
        .await
        .unwrap();
    assert_eq!(
        report.plan.remove,
        [late.to_string()],
        "the stale listing made them a candidate"
    );
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(
        report.kept.iter().any(|k| k.sub == late.as_str()),
        "the report says why: {report:?}"
    );
    assert!(
        tenant_status(&app.provisioner, &late)
            .await
            .unwrap()
            .is_complete()
    );
    assert_eq!(
        stored(&app, &late).await.password,
        password,
        "the same tenant, not a new one"
    );
    app.provisioner.teardown(&late, &deadline).await.unwrap();
}
