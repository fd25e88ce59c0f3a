//! `tgsearch credentials`: what `GET /tenant` answers, for operators, against the local stack.

mod common;

use common::{json, text, tgsearch};
use testkit::stack::Stack;
use testkit::{amqp, fresh_tenant};
use tgsearch::ports::{CredentialStore, TenantBroker};

#[tokio::test]
async fn credentials_follow_the_tenant_from_absent_to_ready() {
    let stack = Stack::require();
    let app = stack.app().await;
    let tenant = fresh_tenant();
    let sub = tenant.as_str();

    let out = tgsearch(&["credentials", "--sub", sub]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("absent"), "{}", text(&out));
    let out = tgsearch(&["--json", "credentials", "--sub", sub]);
    assert_eq!(json(&out), serde_json::json!({"sub": sub, "status": "absent"}));

    // The first steps of provisioning only: the secret and the vhost.
    let candidate = tgsearch::credentials::TenantCredentials::new(
        &tenant,
        tgsearch::credentials::generate_password(),
        &app.provisioner.amqp_url,
    );
    let stored = app
        .provisioner
        .store
        .create_or_read(&tenant, &candidate)
        .await
        .unwrap()
        .credentials;
    app.provisioner.broker.ensure_vhost(&tenant).await.unwrap();
    let out = tgsearch(&["--json", "credentials", "--sub", sub]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(json(&out)["status"], "provisioning");

    let out = tgsearch(&["provision", "--sub", sub]);
    assert!(out.status.success(), "{}", text(&out));
    let password = stored.password.expose();

    // Ready; the password only on request.
    let out = tgsearch(&["credentials", "--sub", sub]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ready") && text(&out).contains(":********@"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains(password),
        "the password was shown without --show-password"
    );
    let out = tgsearch(&["--json", "credentials", "--sub", sub]);
    let masked = json(&out);
    assert_eq!(masked["status"], "ready");
    assert_eq!(masked["username"], sub);
    assert!(masked.get("password").is_none() && !text(&out).contains(password));

    let out = tgsearch(&["--json", "credentials", "--sub", sub, "--show-password"]);
    assert!(out.status.success(), "{}", text(&out));
    let full = json(&out);
    assert_eq!(full["password"], password);
    assert_eq!(full["amqp_uri"], stored.amqp_uri.expose());
    let back = amqp::round_trip(full["amqp_uri"].as_str().unwrap(), b"operator check")
        .await
        .unwrap();
    assert_eq!(back, b"operator check");

    // Slower than the deadline: an error that says so, and no credential.
    let out = tgsearch(&[
        "credentials",
        "--sub",
        sub,
        "--deadline-ms",
        "1",
        "--show-password",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("within 1 ms"), "{}", text(&out));
    assert!(!text(&out).contains(password));

    let out = tgsearch(&["teardown", "--sub", sub]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_malformed_sub_is_refused_before_anything_is_read() {
    let out = tgsearch(&["credentials", "--sub", "../../etc/passwd"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a tenant id"), "{}", text(&out));
}

#[tokio::test]
async fn rotate_gives_a_ready_tenant_a_new_password_and_refuses_the_old_one() {
    let stack = Stack::require();
    let app = stack.app().await;
    let tenant = fresh_tenant();
    let sub = tenant.as_str();
    let out = tgsearch(&["rotate", "--sub", sub]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "absent: nothing to rotate: {}",
        text(&out)
    );
    let deadline = tgsearch::deadline::Deadline::new(std::time::Duration::from_secs(10), None);
    let old = app
        .provisioner
        .provision(&tenant, &deadline)
        .await
        .unwrap()
        .credentials;

    let out = tgsearch(&["--json", "rotate", "--sub", sub, "--show-password"]);
    assert!(out.status.success(), "{}", text(&out));
    let new = json(&out);
    assert_ne!(new["password"].as_str(), Some(old.password.expose()));
    let masked = tgsearch(&["rotate", "--sub", sub]);
    assert!(
        !text(&masked).contains(new["password"].as_str().unwrap()),
        "shown without asking"
    );
    assert!(
        amqp::connect(old.amqp_uri.expose()).await.is_err(),
        "the old password still works"
    );
    let stored = app.provisioner.store.read(&tenant).await.unwrap().ours().unwrap();
    amqp::round_trip(stored.amqp_uri.expose(), b"rotated")
        .await
        .unwrap();
    assert!(
        tgsearch::status::tenant_status(&app.provisioner, &tenant)
            .await
            .unwrap()
            .is_complete()
    );
    app.provisioner.teardown(&tenant, &deadline).await.unwrap();
}
