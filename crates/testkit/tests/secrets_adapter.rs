//! The Secrets Manager adapter against moto's server.

use aws_sdk_secretsmanager::types::Tag;
use testkit::fresh_tenant;
use testkit::stack::Stack;
use tgsearch::adapters::secrets_manager::SecretsError;
use tgsearch::credentials::{TenantCredentials, generate_password};
use tgsearch::ports::{CredentialStore, Foreign, Found, Removed};

#[tokio::test]
async fn the_first_writer_wins_even_when_writers_race() {
    let stack = Stack::require();
    let app = stack.app().await;
    let store = &app.provisioner.store;
    let tenant = fresh_tenant();
    let broker = app.config.rabbitmq_amqp_url.clone();
    let candidates: Vec<TenantCredentials> = (0..5)
        .map(|_| TenantCredentials::new(&tenant, generate_password(), &broker))
        .collect();
    // Polled together, so the CreateSecret calls overlap.
    let results =
        futures::future::join_all(candidates.iter().map(|c| store.create_or_read(&tenant, c))).await;
    let stored: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        stored.iter().filter(|s| s.created).count(),
        1,
        "exactly one writer creates"
    );
    let winner = &stored[0].credentials;
    assert!(
        stored.iter().all(|s| &s.credentials == winner),
        "everyone reads the winner's password"
    );
    assert!(candidates.contains(winner));
    assert_eq!(store.read(&tenant).await.unwrap(), Found::Ours(winner.clone()));

    assert_eq!(store.remove(&tenant).await.unwrap(), Removed::Deleted);
    assert_eq!(store.remove(&tenant).await.unwrap(), Removed::AlreadyAbsent);
    // No recovery window: the same sub can be provisioned again at once.
    let again = store.create_or_read(&tenant, &candidates[1]).await.unwrap();
    assert!(again.created);
    store.remove(&tenant).await.unwrap();
}

#[tokio::test]
async fn a_malformed_secret_is_refused_without_quoting_it() {
    let stack = Stack::require();
    let app = stack.app().await;
    let store = &app.provisioner.store;
    let tenant = fresh_tenant();
    let name = store.tenant_secret_name(&tenant);
    let aws = stack.aws().await;
    let raw = aws_sdk_secretsmanager::Client::new(&aws);
    raw.create_secret()
        .name(&name)
        .secret_string(r#"{"username": "x", "password": "sup3rs3cret"#)
        .tags(
            Tag::builder()
                .key("app.kubernetes.io/managed-by")
                .value("tgsearch-provisioner")
                .build(),
        )
        .tags(
            Tag::builder()
                .key("tgsearch.io/tenant")
                .value(tenant.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let err = store.read(&tenant).await.unwrap_err();
    let malformed = err.downcast_ref::<SecretsError>().expect("a SecretsError");
    assert!(matches!(malformed, SecretsError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    assert!(!err.to_string().contains("sup3rs3cret"), "{err}");
    store.remove(&tenant).await.unwrap();
}

#[tokio::test]
async fn a_secret_the_provisioner_did_not_write_is_never_used_nor_removed() {
    let stack = Stack::require();
    let app = stack.app().await;
    let store = &app.provisioner.store;
    let (tenant, other) = (fresh_tenant(), fresh_tenant());
    let broker = app.config.rabbitmq_amqp_url.clone();
    // Someone stored another tenant's credentials under this tenant's name, without our tags.
    let planted = TenantCredentials::new(&other, generate_password(), &broker);
    let raw = aws_sdk_secretsmanager::Client::new(&stack.aws().await);
    let name = store.tenant_secret_name(&tenant);
    raw.create_secret()
        .name(&name)
        .secret_string(serde_json::to_string(&planted).unwrap())
        .send()
        .await
        .unwrap();
    let mine = TenantCredentials::new(&tenant, generate_password(), &broker);
    let err = store.create_or_read(&tenant, &mine).await.unwrap_err();
    assert!(Foreign::is_in(err.as_ref()), "{err}");
    assert!(err.to_string().contains("foreign secret"), "{err}");
    assert!(matches!(store.read(&tenant).await.unwrap(), Found::Foreign(_)));
    assert!(matches!(
        store.remove(&tenant).await.unwrap(),
        Removed::LeftAlone(_)
    ));
    let still = raw.get_secret_value().secret_id(&name).send().await.unwrap();
    assert_eq!(
        still.secret_string(),
        Some(serde_json::to_string(&planted).unwrap().as_str())
    );
    raw.delete_secret()
        .secret_id(&name)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
}
