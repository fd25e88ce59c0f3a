//! The RabbitMQ management adapter against the stack's real RabbitMQ.

use std::time::Duration;

use amqprs::channel::QueueDeclareArguments;
use reqwest::StatusCode;
use testkit::amqp;
use testkit::fresh_tenant;
use testkit::stack::Stack;
use tgsearch::adapters::rabbitmq::{AdminCredentials, missing_built_in_exchanges};
use tgsearch::credentials::TenantCredentials;
use tgsearch::credentials::{Password, generate_password};
use tgsearch::deadline::{Deadline, Step};
use tgsearch::ports::{BrokerLimits, Converged, Foreign, Removed, TenantBroker};
use tgsearch::status::tenant_status;

#[tokio::test]
async fn tenant_resources_are_created_idempotently_and_removed_once() {
    let app = Stack::require().app().await;
    let rabbit = &app.provisioner.broker;
    let tenant = fresh_tenant();
    let password = generate_password();
    for expected in [Converged::Created, Converged::Unchanged] {
        assert_eq!(rabbit.ensure_vhost(&tenant).await.unwrap(), expected);
        assert_eq!(rabbit.ensure_user(&tenant, &password).await.unwrap(), expected);
        assert_eq!(rabbit.ensure_permission(&tenant).await.unwrap(), expected);
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
    assert!(
        user.has_password(&password),
        "RabbitMQ's hash proves the stored password"
    );
    let perms = rabbit.user_permissions(tenant.rabbitmq_user()).await.unwrap();
    assert_eq!(perms.len(), 1);
    assert_eq!(
        (perms[0].vhost.as_str(), perms[0].configure.as_str()),
        (tenant.vhost(), ".*")
    );

    assert_eq!(
        rabbit.remove_user(&tenant, Some(&password)).await.unwrap(),
        Removed::Deleted
    );
    assert_eq!(rabbit.remove_vhost(&tenant).await.unwrap(), Removed::Deleted);
    assert_eq!(
        rabbit.remove_vhost(&tenant).await.unwrap(),
        Removed::AlreadyAbsent
    );
    assert_eq!(
        rabbit.remove_user(&tenant, Some(&password)).await.unwrap(),
        Removed::AlreadyAbsent
    );
    assert!(rabbit.get_vhost(tenant.vhost()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_password_changed_by_hand_and_an_extra_permission_are_repaired() {
    let app = Stack::require().app().await;
    let rabbit = &app.provisioner.broker;
    let tenant = fresh_tenant();
    let elsewhere = fresh_tenant();
    let password = generate_password();
    rabbit.ensure_vhost(&tenant).await.unwrap();
    rabbit.ensure_user(&tenant, &password).await.unwrap();
    rabbit.ensure_permission(&tenant).await.unwrap();
    // By hand, with the management API: another password, rights on another vhost.
    rabbit
        .put_user(tenant.rabbitmq_user(), &Password::new("changed-by-hand"), &[])
        .await
        .unwrap();
    rabbit
        .put_vhost(elsewhere.vhost(), "someone else's", &[])
        .await
        .unwrap();
    rabbit
        .put_permission(elsewhere.vhost(), tenant.rabbitmq_user(), ".*", ".*", ".*")
        .await
        .unwrap();

    assert!(matches!(
        rabbit.ensure_user(&tenant, &password).await.unwrap(),
        Converged::Repaired(_)
    ));
    let user = rabbit.get_user(tenant.rabbitmq_user()).await.unwrap().unwrap();
    assert!(user.has_password(&password));
    match rabbit.ensure_permission(&tenant).await.unwrap() {
        Converged::Repaired(what) => assert!(what.contains(elsewhere.vhost()), "{what}"),
        other => panic!("{other:?}"),
    }
    let perms = rabbit.user_permissions(tenant.rabbitmq_user()).await.unwrap();
    assert_eq!(perms.len(), 1, "{perms:?}");
    assert_eq!(perms[0].vhost, tenant.vhost());

    rabbit.remove_user(&tenant, Some(&password)).await.unwrap();
    rabbit.remove_vhost(&tenant).await.unwrap();
    rabbit.delete_vhost(elsewhere.vhost()).await.unwrap();
}

#[tokio::test]
async fn a_foreign_vhost_and_a_foreign_user_are_never_adopted_nor_removed() {
    let app = Stack::require().app().await;
    let rabbit = &app.provisioner.broker;
    let tenant = fresh_tenant();
    let mine = generate_password();
    // Somebody else's, named like a tenant: an untagged vhost, a tag-less user with their own
    // password and no rights on a tenant vhost.
    rabbit
        .put_vhost(tenant.vhost(), "another app", &[])
        .await
        .unwrap();
    rabbit
        .put_user(tenant.rabbitmq_user(), &Password::new("theirs"), &[])
        .await
        .unwrap();

    let err = rabbit.ensure_vhost(&tenant).await.unwrap_err();
    assert!(Foreign::is_in(err.as_ref()), "{err}");
    assert!(err.to_string().contains("foreign vhost"), "{err}");
    let err = rabbit.ensure_user(&tenant, &mine).await.unwrap_err();
    assert!(Foreign::is_in(err.as_ref()), "{err}");
    assert!(matches!(
        rabbit.remove_user(&tenant, Some(&mine)).await.unwrap(),
        Removed::LeftAlone(_)
    ));
    assert!(matches!(
        rabbit.remove_vhost(&tenant).await.unwrap(),
        Removed::LeftAlone(_)
    ));
    let vhost = rabbit.get_vhost(tenant.vhost()).await.unwrap().unwrap();
    assert_eq!((vhost.description.as_str(), vhost.tags.len()), ("another app", 0));
    let user = rabbit.get_user(tenant.rabbitmq_user()).await.unwrap().unwrap();
    assert!(
        user.has_password(&Password::new("theirs")),
        "its password is untouched"
    );

    rabbit.delete_user(tenant.rabbitmq_user()).await.unwrap();
    rabbit.delete_vhost(tenant.vhost()).await.unwrap();
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

/// `PUT /api/vhosts/<name>` (tagged as a tenant's) from a client that gives up after `after`,
/// as a deadline or the signup's synchronous window would: the connection closes mid-request.
async fn put_vhost_given_up_after(
    base: &reqwest::Url,
    admin: &AdminCredentials,
    name: &str,
    after: Duration,
) {
    let url = format!("{}/api/vhosts/{name}", base.as_str().trim_end_matches('/'));
    let _ = reqwest::Client::new()
        .put(url)
        .basic_auth(&admin.username, Some(admin.password.expose()))
        .json(&serde_json::json!({"description": "tgsearch", "tags": "tgsearch"}))
        .timeout(after)
        .send()
        .await;
}

#[tokio::test]
async fn a_vhost_whose_creation_was_cut_short_is_seen_and_created_again() {
    let stack = Stack::require();
    let app = stack.app().await;
    let rabbit = &app.provisioner.broker;
    let admin = testkit::stack::rabbitmq_admin(&app).await;

    // Cut creations short at growing delays until one leaves a vhost without its built-in
    // exchanges (RabbitMQ stops declaring them when the client goes away).
    let mut cut_short = None;
    for step in 0..120u64 {
        let tenant = fresh_tenant();
        let after = Duration::from_micros(1_000 + step * 500);
        put_vhost_given_up_after(rabbit.base_url(), &admin, tenant.vhost(), after).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        match rabbit.vhost_exchanges(tenant.vhost()).await.unwrap() {
            Some(exchanges) if !missing_built_in_exchanges(&exchanges).is_empty() => {
                cut_short = Some(tenant);
                break;
            }
            Some(_) => {
                rabbit.delete_vhost(tenant.vhost()).await.unwrap();
            }
            None => {}
        }
    }
    let tenant = cut_short
        .expect("no PUT /api/vhosts given up after 1 to 60 ms left a vhost without its built-in exchanges");

    // Seen by status, as a drift provisioning repairs.
    let status = tenant_status(&app.provisioner, &tenant).await.unwrap();
    assert!(!status.is_complete(), "{status}");
    assert!(status.to_string().contains("cut short"), "{status}");

    // Provisioning re-creates it (it holds no queue), and the tenant works over AMQP.
    let deadline = Deadline::new(Duration::from_secs(30), None);
    let provisioned = app.provisioner.provision(&tenant, &deadline).await.unwrap();
    let vhost_change = provisioned
        .changes
        .iter()
        .find(|(step, c)| *step == Step::Vhost && matches!(c, Converged::Repaired(_)));
    assert!(
        matches!(vhost_change, Some((_, Converged::Repaired(what))) if what.contains("cut short")),
        "{:?}",
        provisioned.changes
    );
    let exchanges = rabbit.vhost_exchanges(tenant.vhost()).await.unwrap().unwrap();
    assert_eq!(missing_built_in_exchanges(&exchanges), Vec::<&str>::new());
    let status = tenant_status(&app.provisioner, &tenant).await.unwrap();
    assert!(status.is_complete(), "{status}");
    let echoed = testkit::amqp::round_trip(
        provisioned.credentials.amqp_uri.expose(),
        tenant.as_str().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(echoed, tenant.as_str().as_bytes());

    // A whole vhost is left as it is.
    assert_eq!(rabbit.ensure_vhost(&tenant).await.unwrap(), Converged::Unchanged);
    app.provisioner.teardown(&tenant, &deadline).await.unwrap();
}

/// The tenant's limits, as an independent AMQP client meets them: one connection too many is
/// refused, and a limit changed by hand is set back.
#[tokio::test]
async fn a_tenant_meets_its_limits_and_a_changed_limit_is_repaired() {
    let stack = Stack::require();
    let app = stack.app().await;
    let rabbit = &app.provisioner.broker;
    let tenant = fresh_tenant();
    let password = generate_password();
    rabbit.ensure_vhost(&tenant).await.unwrap();
    rabbit.ensure_user(&tenant, &password).await.unwrap();
    rabbit.ensure_permission(&tenant).await.unwrap();
    let limits = BrokerLimits {
        vhost_connections: 3,
        vhost_queues: 2,
        user_connections: 2,
        user_channels: 2,
    };
    assert_eq!(
        rabbit.ensure_limits(&tenant, &limits).await.unwrap(),
        Converged::Created
    );
    assert_eq!(
        rabbit.ensure_limits(&tenant, &limits).await.unwrap(),
        Converged::Unchanged
    );
    let on_vhost = rabbit.vhost_limits(tenant.vhost()).await.unwrap();
    assert_eq!((on_vhost["max-connections"], on_vhost["max-queues"]), (3, 2));
    let on_user = rabbit.user_limits(tenant.rabbitmq_user()).await.unwrap();
    assert_eq!((on_user["max-connections"], on_user["max-channels"]), (2, 2));

    let uri = TenantCredentials::new(&tenant, password.clone(), &app.provisioner.amqp_url);
    let uri = uri.amqp_uri.expose();
    let (a, b) = (
        amqp::connect(uri).await.unwrap(),
        amqp::connect(uri).await.unwrap(),
    );
    assert!(
        amqp::connect(uri).await.is_err(),
        "a third connection is refused (user max-connections 2)"
    );
    // Two queues at most in the vhost (exclusive: RabbitMQ 4 deprecates transient queues that
    // are not).
    let channel = a.open_channel(None).await.unwrap();
    for n in 0..2 {
        channel
            .queue_declare(
                QueueDeclareArguments::new(&format!("q{n}"))
                    .exclusive(true)
                    .finish(),
            )
            .await
            .unwrap();
    }
    let third = b.open_channel(None).await.unwrap();
    assert!(
        third
            .queue_declare(QueueDeclareArguments::new("q2").exclusive(true).finish())
            .await
            .is_err(),
        "a third queue is refused (vhost max-queues 2)"
    );
    let _ = a.close().await;
    let _ = b.close().await;

    // Raised by hand: set back, and said so.
    rabbit
        .put_user_limit(tenant.rabbitmq_user(), "max-connections", 500)
        .await
        .unwrap();
    match rabbit.ensure_limits(&tenant, &limits).await.unwrap() {
        Converged::Repaired(what) => assert!(what.contains("user max-connections was 500"), "{what}"),
        other => panic!("{other:?}"),
    }
    rabbit.remove_user(&tenant, Some(&password)).await.unwrap();
    rabbit.remove_vhost(&tenant).await.unwrap();
}
