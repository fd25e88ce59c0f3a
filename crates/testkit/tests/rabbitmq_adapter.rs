//! The RabbitMQ management adapter against the stack's real RabbitMQ.

use reqwest::StatusCode;
use testkit::fresh_tenant;
use testkit::stack::Stack;
use tgsearch::adapters::rabbitmq::AdminCredentials;
use tgsearch::credentials::{Password, generate_password};
use tgsearch::ports::{Removed, TenantBroker};

#[tokio::test]
async fn tenant_resources_are_created_idempotently_and_removed_once() {
    let app = Stack::require().app().await;
    let rabbit = &app.provisioner.broker;
    let tenant = fresh_tenant();
    let password = generate_password();
    for _ in 0..2 {
        rabbit.ensure_vhost(&tenant).await.unwrap();
        rabbit.ensure_user(&tenant, &password).await.unwrap();
        rabbit.ensure_permission(&tenant).await.unwrap();
    }
    let vhost = rabbit
        .get_vhost(tenant.vhost())
        .await
        .unwrap()
        .expect("vhost exists");
    assert_eq!(vhost.description, "tgsearch");
    assert_eq!(vhost.tags, vec!["tgsearch".to_string()]);
    let user = rabbit
        .get_user(tenant.rabbitmq_user())
        .await
        .unwrap()
        .expect("user exists");
    assert!(user.tags.is_empty(), "tenant users get no tags: {:?}", user.tags);
    let perms = rabbit.user_permissions(tenant.rabbitmq_user()).await.unwrap();
    assert_eq!(perms.len(), 1);
    assert_eq!(
        (perms[0].vhost.as_str(), perms[0].configure.as_str()),
        (tenant.vhost(), ".*")
    );

    assert_eq!(rabbit.remove_vhost(&tenant).await.unwrap(), Removed::Deleted);
    assert_eq!(rabbit.remove_user(&tenant).await.unwrap(), Removed::Deleted);
    assert_eq!(
        rabbit.remove_vhost(&tenant).await.unwrap(),
        Removed::AlreadyAbsent
    );
    assert_eq!(rabbit.remove_user(&tenant).await.unwrap(), Removed::AlreadyAbsent);
    assert!(rabbit.get_vhost(tenant.vhost()).await.unwrap().is_none());
}

#[tokio::test]
async fn names_are_percent_encoded_in_paths() {
    let app = Stack::require().app().await;
    let rabbit = &app.provisioner.broker;
    let name = format!("odd/name #{}?&%", fresh_tenant());
    rabbit.put_vhost(&name, "encoding check", &[]).await.unwrap();
    let got = rabbit
        .get_vhost(&name)
        .await
        .unwrap()
        .expect("found by its exact name");
    assert_eq!(got.name, name);
    assert_eq!(rabbit.delete_vhost(&name).await.unwrap(), Removed::Deleted);
    // The default vhost `/` is `%2F` in a path: it must be found, not confused with the root.
    assert_eq!(rabbit.get_vhost("/").await.unwrap().unwrap().name, "/");
}

#[tokio::test]
async fn errors_keep_the_status_and_rabbitmqs_reason() {
    let app = Stack::require().app().await;
    let rabbit = &app.provisioner.broker;
    let tenant = fresh_tenant();
    // A permission on a vhost that does not exist.
    let err = rabbit
        .put_permission(tenant.vhost(), "nobody", ".*", ".*", ".*")
        .await
        .unwrap_err();
    let status = err.status().expect("an HTTP answer");
    assert!(status.is_client_error(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("/api/permissions/{}/nobody", tenant.vhost())),
        "{err}"
    );

    let wrong = rabbit.with_credentials(AdminCredentials {
        username: "tgsearch-admin".into(),
        password: Password::new("wrong"),
    });
    let err = wrong.whoami().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(
        !err.to_string().contains("wrong"),
        "the password must not appear: {err}"
    );
}
