//! The real `post-confirmation` binary, invoked through the Lambda invoke API that
//! `cargo lambda watch` serves, checked with independent clients: AMQP, the management API and
//! Secrets Manager.

use serde_json::Value;
use testkit::cognito::pool_tenant;
use testkit::lambda::{Invocation, invoke};
use testkit::settle::until_complete;
use testkit::stack::Stack;
use testkit::{amqp, events};
use tgsearch::TenantId;
use tgsearch::adapters::rabbitmq::AdminCredentials;
use tgsearch::app::AppContext;
use tgsearch::credentials::TenantCredentials;
use tgsearch::ports::CredentialStore;
use tgsearch::status::tenant_status;

struct Harness {
    stack: Stack,
    app: AppContext,
    http: reqwest::Client,
}

impl Harness {
    async fn new() -> Self {
        let stack = Stack::require();
        stack.lambda_endpoint();
        let app = stack.app().await;
        Self {
            stack,
            app,
            http: reqwest::Client::new(),
        }
    }

    async fn invoke(&self, event: &Value) -> Invocation {
        invoke(
            &self.http,
            self.stack.lambda_endpoint(),
            "post-confirmation",
            event,
        )
        .await
        .unwrap()
    }

    async fn stored(&self, tenant: &TenantId) -> TenantCredentials {
        self.app
            .provisioner
            .store
            .read(tenant)
            .await
            .unwrap()
            .ours()
            .expect("the tenant secret exists")
    }

    /// The user leaves (as teardown requires), then their tenant is removed.
    async fn teardown(&self, tenant: &TenantId) {
        testkit::cognito::delete_pool_user(tenant).await;
        let payload = serde_json::json!({ "sub": tenant.as_str() });
        invoke(&self.http, self.stack.lambda_endpoint(), "teardown", &payload)
            .await
            .unwrap()
            .unwrap_ok();
    }

    /// Exactly one consistent tenant: secret, vhost, tag-less user, one permission, and the
    /// stored password logs in over AMQP.
    async fn assert_one_working_tenant(&self, tenant: &TenantId) -> TenantCredentials {
        until_complete(&self.app.provisioner, tenant).await;
        let creds = self.stored(tenant).await;
        let body = amqp::round_trip(creds.amqp_uri.expose(), tenant.as_str().as_bytes())
            .await
            .unwrap();
        assert_eq!(body, tenant.as_str().as_bytes());
        creds
    }
}

#[tokio::test]
async fn a_new_user_gets_an_isolated_working_tenant() {
    let h = Harness::new().await;
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    match h.invoke(&event).await {
        Invocation::Ok(answer) => assert_eq!(answer, event, "Cognito needs its event back unchanged"),
        other => panic!("{other:?}"),
    }
    let creds = h.assert_one_working_tenant(&tenant).await;
    assert_eq!(creds.username, tenant.as_str());
    assert_eq!(creds.vhost, tenant.as_str());
    assert!(creds.password.expose().len() >= 32);
    let expected_uri = format!(
        "{}{}:{}@{}/{}",
        "amqp://",
        tenant,
        creds.password.expose(),
        h.stack.var("RABBITMQ_AMQP_URL").trim_start_matches("amqp://"),
        tenant
    );
    assert_eq!(creds.amqp_uri.expose(), expected_uri);

    // Isolation: not the default vhost, not another tenant's vhost, not the management API.
    let neighbour = pool_tenant().await;
    h.invoke(&events::signup_for(&neighbour)).await.unwrap_ok();
    until_complete(&h.app.provisioner, &neighbour).await;
    for vhost in ["/", neighbour.vhost()] {
        let refused = amqp::connect_to_vhost(creds.amqp_uri.expose(), vhost).await;
        assert!(refused.is_err(), "the tenant opened vhost {vhost}");
    }
    let as_tenant = h.app.provisioner.broker.with_credentials(AdminCredentials {
        username: creds.username.clone(),
        password: creds.password.clone(),
    });
    let err = as_tenant.whoami().await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::UNAUTHORIZED));

    // Nothing secret in the function's logs.
    let log = std::fs::read_to_string(testkit::stack::dir().join("lambda.log")).unwrap_or_default();
    assert!(
        log.contains(tenant.as_str()),
        "the log should name the tenant it provisioned"
    );
    assert!(
        !log.contains(creds.password.expose()),
        "the password leaked into the logs"
    );

    h.teardown(&tenant).await;
    h.teardown(&neighbour).await;
}

#[tokio::test]
async fn the_same_event_three_times_in_a_row_keeps_one_tenant_and_its_password() {
    let h = Harness::new().await;
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    h.invoke(&event).await.unwrap_ok();
    let first = h.stored(&tenant).await;
    for _ in 0..3 {
        h.invoke(&event).await.unwrap_ok();
    }
    let last = h.assert_one_working_tenant(&tenant).await;
    assert_eq!(first, last, "a retry must not change the password");
    h.teardown(&tenant).await;
}

#[tokio::test]
async fn the_same_event_three_times_at_once_keeps_one_tenant() {
    let h = Harness::new().await;
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let (a, b, c) = tokio::join!(h.invoke(&event), h.invoke(&event), h.invoke(&event));
    for answer in [a, b, c] {
        assert_eq!(answer.unwrap_ok(), event);
    }
    h.assert_one_working_tenant(&tenant).await;
    h.teardown(&tenant).await;
}

#[tokio::test]
async fn malformed_events_are_refused_by_name_and_create_nothing() {
    let h = Harness::new().await;
    let cases = [
        (
            "post-confirmation-missing-sub.json",
            "event field `request.userAttributes.sub` is missing",
        ),
        (
            "post-confirmation-uppercase-sub.json",
            "hex digits must be lowercase",
        ),
        (
            "post-confirmation-path-traversal-sub.json",
            "`../../api/users` is not a tenant id",
        ),
    ];
    for (fixture, expected) in cases {
        match h.invoke(&events::load(fixture)).await {
            Invocation::FunctionError { error_type, message } => {
                assert_eq!(error_type, "InvalidEvent", "{fixture}");
                assert!(message.contains(expected), "{fixture}: {message}");
            }
            Invocation::Ok(v) => panic!("{fixture} was accepted: {v}"),
        }
    }
    // The fixture's sub, in either case, must not have been provisioned.
    let lower = TenantId::parse("2f6d1c0e-4b3a-4e29-9c8d-7a6b5c4d3e2f").unwrap();
    let rabbit = &h.app.provisioner.broker;
    for name in [
        lower.as_str(),
        "2F6D1C0E-4B3A-4E29-9C8D-7A6B5C4D3E2F",
        "../../api/users",
    ] {
        assert!(
            rabbit.get_vhost(name).await.unwrap().is_none(),
            "vhost {name} was created"
        );
        assert!(
            rabbit.get_user(name).await.unwrap().is_none(),
            "user {name} was created"
        );
    }
    assert_eq!(
        h.app.provisioner.store.read(&lower).await.unwrap(),
        tgsearch::ports::Found::Absent
    );
}

#[tokio::test]
async fn a_confirmed_password_reset_provisions_nothing() {
    let h = Harness::new().await;
    let tenant = pool_tenant().await;
    let mut event = events::signup_for(&tenant);
    event["triggerSource"] = "PostConfirmation_ConfirmForgotPassword".into();
    assert_eq!(h.invoke(&event).await.unwrap_ok(), event);
    let status = tenant_status(&h.app.provisioner, &tenant).await.unwrap();
    assert!(status.is_absent(), "{status}");
}

#[tokio::test]
async fn teardown_removes_everything_and_is_idempotent() {
    let h = Harness::new().await;
    let tenant = pool_tenant().await;
    h.invoke(&events::signup_for(&tenant)).await.unwrap_ok();
    let creds = h.assert_one_working_tenant(&tenant).await;
    assert!(
        testkit::cognito::delete_pool_user(&tenant).await,
        "the user leaves first"
    );
    let payload = serde_json::json!({ "sub": tenant.as_str() });
    let first = invoke(&h.http, h.stack.lambda_endpoint(), "teardown", &payload)
        .await
        .unwrap()
        .unwrap_ok();
    let every = serde_json::json!(["deployment", "volume", "kube-secret", "vhost", "user", "secret"]);
    let sorted = |v: &Value| {
        let mut items: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        items.sort();
        items
    };
    assert_eq!(sorted(&first["removed"]), sorted(&every), "{first}");
    assert_eq!(first["left_alone"], serde_json::json!([]), "{first}");
    let second = invoke(&h.http, h.stack.lambda_endpoint(), "teardown", &payload)
        .await
        .unwrap()
        .unwrap_ok();
    assert_eq!(sorted(&second["already_absent"]), sorted(&every), "{second}");
    assert_eq!(second["removed"], serde_json::json!([]), "{second}");
    assert!(
        amqp::connect(creds.amqp_uri.expose()).await.is_err(),
        "the old credentials still log in"
    );

    let bad = invoke(
        &h.http,
        h.stack.lambda_endpoint(),
        "teardown",
        &serde_json::json!({ "sub": "nope" }),
    )
    .await
    .unwrap();
    match bad {
        Invocation::FunctionError { message, .. } => {
            assert!(message.contains("event field `sub` is invalid"), "{message}")
        }
        Invocation::Ok(v) => panic!("accepted: {v}"),
    }
}
