//! No secret in the logs at any level: every function runs at TRACE with `LOG_SIGNABLE_BODY=true`
//! and `LOG_SENSITIVE_BODIES=true` (which tell the AWS SDK to log request and response bodies),
//! on its success path and on an error path,
//! and its whole output is searched for the secrets it handled: the tenant's password and
//! `amqp_uri`, the RabbitMQ admin password (also as the Basic credentials it travels in), EKS
//! bearer tokens, and Mailgun's signing key.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use testkit::faults::{POST_CONFIRMATION_TIMEOUT, Rig, Rule};
use testkit::runtime::{Answer, Function};
use testkit::stack;
use testkit::{events, fresh_tenant};
use tgsearch::adapters::rabbitmq::AdminCredentials;
use tgsearch::ports::CredentialStore;

fn at_trace(rig: &Rig) -> BTreeMap<String, String> {
    let mut env = rig.env();
    env.insert("RUST_LOG".into(), "trace".into());
    env.insert("AWS_LAMBDA_LOG_LEVEL".into(), "TRACE".into());
    env.insert("LOG_SIGNABLE_BODY".into(), "true".into());
    env.insert("LOG_SENSITIVE_BODIES".into(), "true".into());
    env
}

/// The forms a secret takes in a log: as text, and as the byte list a `Debug` of `Bytes` or
/// `Vec<u8>` prints (`[112, 97, ...]`, how the SDK logs a request body).
fn forms(secret: &str) -> [String; 2] {
    let bytes: Vec<String> = secret.bytes().map(|b| b.to_string()).collect();
    [secret.to_owned(), bytes.join(", ")]
}

/// The secrets that appear in `logs`, by name and form (never the secret itself).
fn leaked(logs: &str, secrets: &[(&str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, secret) in secrets.iter().filter(|(_, s)| !s.is_empty()) {
        for (form, text) in ["as text", "as a byte list"].iter().zip(forms(secret)) {
            if logs.contains(text.as_str()) {
                found.push(format!("{name} ({form})"));
            }
        }
    }
    found
}

async fn admin(rig: &Rig) -> AdminCredentials {
    stack::rabbitmq_admin(&rig.app).await
}

#[tokio::test]
async fn provisioning_functions_log_no_secret_at_trace() {
    let rig = Rig::new().await;
    let admin = admin(&rig).await;
    let env = at_trace(&rig);
    let signup = Function::new("post-confirmation", env.clone());
    let teardown = Function::new("teardown", env.clone());

    // Success path, then an error path: the user PUT (whose body holds the password) fails.
    let tenant = fresh_tenant();
    let event = events::signup_for(&tenant);
    let first = signup.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    assert!(matches!(first.answer, Answer::Ok(_)), "{:?}", first.answer);
    let creds = rig
        .app
        .provisioner
        .store
        .read(&tenant)
        .await
        .unwrap()
        .ours()
        .unwrap();
    rig.management.answer(Rule::on("PUT", "/api/users/*"));
    let _ = signup.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    rig.heal().await;
    let removed = teardown
        .invoke(&json!({ "sub": tenant.as_str() }), Duration::from_secs(30))
        .await;
    assert!(matches!(removed.answer, Answer::Ok(_)), "{:?}", removed.answer);

    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        admin.username,
        admin.password.expose()
    ));
    let secrets = [
        ("the tenant's password", creds.password.expose().to_owned()),
        ("the tenant's amqp_uri", creds.amqp_uri.expose().to_owned()),
        ("the RabbitMQ admin password", admin.password.expose().to_owned()),
        ("the admin's Basic credentials", basic),
        ("an EKS bearer token", "k8s-aws-v1.".to_owned()),
    ];
    let logs = format!("{}{}", signup.logs(), teardown.logs());
    assert!(
        logs.contains("TRACE") || logs.to_ascii_lowercase().contains("trace"),
        "the functions did not log at TRACE; the test proves nothing"
    );
    let found = leaked(&logs, &secrets);
    assert!(found.is_empty(), "secrets in the TRACE logs: {found:?}");
}

#[tokio::test]
async fn reconcile_logs_no_secret_at_trace() {
    let rig = Rig::new().await;
    let admin = admin(&rig).await;
    // An empty user pool of its own and no removals allowed: the run only takes its
    // inventory, never touching the tenants of tests running beside it.
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&rig.stack.aws().await);
    let pool = cognito
        .create_user_pool()
        .pool_name(format!("trace-logs-{}", &fresh_tenant().as_str()[..8]))
        .send()
        .await
        .unwrap();
    let pool_id = pool.user_pool().and_then(|p| p.id()).unwrap().to_owned();
    let mut env = at_trace(&rig);
    env.insert("USER_POOL_ID".into(), pool_id.clone());
    env.insert("RECONCILE_MAX_REMOVALS".into(), "0".into());
    let reconcile = Function::new("reconcile", env);
    let outcome = reconcile
        .invoke(&events::load("reconcile-schedule.json"), Duration::from_secs(60))
        .await;
    let _ = cognito.delete_user_pool().user_pool_id(pool_id).send().await;
    assert!(
        !matches!(outcome.answer, Answer::TimedOut | Answer::Exited { .. }),
        "{:?}",
        outcome.answer
    );
    let secrets = [
        ("the RabbitMQ admin password", admin.password.expose().to_owned()),
        ("an EKS bearer token", "k8s-aws-v1.".to_owned()),
    ];
    let found = leaked(&reconcile.logs(), &secrets);
    assert!(found.is_empty(), "secrets in the TRACE logs: {found:?}");
}

#[tokio::test]
async fn mailgun_webhook_logs_no_signing_key_at_trace() {
    let rig = Rig::new().await;
    let stored = rig
        .app
        .provisioner
        .store
        .read_string(stack::MAILGUN_KEY_SECRET_ID)
        .await
        .unwrap()
        .expect("the stack's Mailgun key");
    let key = serde_json::from_str::<Value>(&stored).unwrap()["signing_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let webhook = Function::new("mailgun-webhook", at_trace(&rig));
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let token = format!("trace-{}", fresh_tenant());
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let body = json!({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"event": "delivered", "recipient": "trace@example.com", "id": "trace"}
    });
    let mut event = events::load("mailgun-webhook-url.json");
    event["body"] = body.to_string().into();
    let outcome = webhook.invoke(&event, Duration::from_secs(10)).await;
    assert!(
        matches!(&outcome.answer, Answer::Ok(r) if r["statusCode"] == 200),
        "{:?}",
        outcome.answer
    );
    let secrets = [("Mailgun's signing key", key)];
    let found = leaked(&webhook.logs(), &secrets);
    assert!(found.is_empty(), "secrets in the TRACE logs: {found:?}");
}
