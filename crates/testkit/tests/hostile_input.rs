//! Hostile input for every function, through the stack's Lambda emulator (the real binaries):
//! malformed, truncated, oversized and wrongly typed events, and tenant ids with traversal,
//! percent-encoding, unicode look-alikes and uppercase. Each is refused with an error that names
//! the field and does not echo a huge input back, and nothing is created (or removed) in any
//! system: checked in RabbitMQ, Secrets Manager and Kubernetes with independent clients.
//!
//! `provision-worker` gets its hostile messages through a queue of the test's own and the real
//! binary (`testkit::runtime`). Still to add, from the same pieces: `tenant-credentials`
//! (`GET /tenant` behind the JWT authorizer): malformed, truncated and oversized requests and
//! tokens, each refused naming what was wrong, nothing returned of any tenant.

use std::time::Duration;
use testkit::settle::until_complete;

use serde_json::{Value, json};
use testkit::faults::HandOffQueue;
use testkit::lambda::{Invocation, invoke, invoke_bytes};
use testkit::runtime::{Function, stack_env};
use testkit::stack::Stack;
use testkit::{events, fresh_tenant};
use tgsearch::TenantId;
use tgsearch::app::AppContext;
use tgsearch::status::tenant_status;

/// An error longer than this echoes the input back.
const MAX_ERROR_LEN: usize = 2048;
/// A field this large is an attack or a bug (a real `sub` is 36 bytes).
const OVERSIZED: usize = 256 * 1024;

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

    /// Invokes `function` with `body` as the event's bytes (not necessarily JSON).
    async fn invoke_raw(&self, function: &str, body: Vec<u8>) -> Invocation {
        invoke_bytes(&self.http, self.stack.lambda_endpoint(), function, body)
            .await
            .unwrap()
    }

    async fn invoke(&self, function: &str, event: &Value) -> Invocation {
        invoke(&self.http, self.stack.lambda_endpoint(), function, event)
            .await
            .unwrap()
    }

    /// Nothing named `name` exists in RabbitMQ (vhost, user) or Secrets Manager.
    async fn assert_nothing_named(&self, name: &str, case: &str) {
        let broker = &self.app.provisioner.broker;
        // `/` is RabbitMQ's default vhost; names that cannot be asked about were not created.
        if !name.is_empty() && name != "/" && name.len() < 1024 && !name.contains('\0') {
            let vhost = broker.get_vhost(name).await;
            assert!(
                !matches!(vhost, Ok(Some(_))),
                "{case}: vhost {name:?} was created"
            );
            let user = broker.get_user(name).await;
            assert!(!matches!(user, Ok(Some(_))), "{case}: user {name:?} was created");
            let secret = self
                .app
                .provisioner
                .store
                .read_string(&format!("{}{name}", self.app.config.user_secret_prefix))
                .await;
            assert!(
                !matches!(secret, Ok(Some(_))),
                "{case}: a secret for {name:?} was created"
            );
        }
    }
}

/// Why `invocation` is not a refusal naming `field` without echoing a huge input, if it is not.
fn refusal_problem(invocation: Invocation, case: &str, field: &str) -> Option<String> {
    match invocation {
        Invocation::Ok(v) => {
            let shown: String = v.to_string().chars().take(200).collect();
            Some(format!("{case}: accepted: {shown}"))
        }
        Invocation::FunctionError { error_type, message } if message.len() > MAX_ERROR_LEN => Some(format!(
            "{case}: the error is {} bytes long, it echoes the input ({error_type})",
            message.len()
        )),
        Invocation::FunctionError { error_type, message } => (!message.contains(field))
            .then(|| format!("{case}: the error does not name `{field}`: {error_type}: {message}")),
    }
}

/// Collects the cases that were not refused as they should be, to report them all at once.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, invocation: Invocation, case: &str, field: &str) {
        self.0.extend(refusal_problem(invocation, case, field));
    }

    fn assert_none(self, function: &str) {
        assert!(
            self.0.is_empty(),
            "{function} mishandled {} hostile inputs:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// A fresh tenant id with letters a look-alike can stand for.
fn tenant_with_letters() -> TenantId {
    loop {
        let t = fresh_tenant();
        if t.as_str().contains(['a', 'c', 'e']) {
            return t;
        }
    }
}

/// Strings that are not `real` but that a careless decoder, normaliser or path builder could
/// turn into it (or into another tenant, or a path of the API).
fn hostile_subs(real: &TenantId) -> Vec<(&'static str, String)> {
    let r = real.as_str();
    let cyrillic: String = r
        .chars()
        .map(|c| match c {
            'a' => 'а',
            'c' => 'с',
            'e' => 'е',
            c => c,
        })
        .collect();
    let fullwidth: String = r
        .chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0xFF10 + c as u32 - '0' as u32).unwrap(),
            'a'..='f' => char::from_u32(0xFF41 + c as u32 - 'a' as u32).unwrap(),
            c => c,
        })
        .collect();
    vec![
        ("path traversal", "../../api/users".to_owned()),
        ("traversal to the tenant", format!("../{r}")),
        ("traversal inside the id", format!("{}/../{}", &r[..8], &r[9..])),
        ("percent-encoded hyphens", r.replace('-', "%2D")),
        ("percent-encoded slash", format!("{}%2F..%2F{}", &r[..8], &r[9..])),
        (
            "percent-encoded id",
            r.bytes().map(|b| format!("%{b:02X}")).collect(),
        ),
        ("uppercase", r.to_uppercase()),
        ("cyrillic look-alikes", cyrillic),
        ("fullwidth look-alikes", fullwidth),
        ("unicode hyphens", r.replace('-', "\u{2010}")),
        ("zero-width joiner", format!("{}\u{200d}{}", &r[..4], &r[4..])),
        ("trailing newline", format!("{r}\n")),
        ("leading space", format!(" {r}")),
        ("NUL byte", format!("{}\0", &r[..35])),
        ("empty", String::new()),
        ("the default vhost", "/".to_owned()),
        ("oversized", "a".repeat(OVERSIZED)),
    ]
}

/// The signup fixture for `real` with `sub` (and the user name) replaced by `hostile`.
fn signup_with_sub(real: &TenantId, hostile: &str) -> Value {
    let mut event = events::signup_for(real);
    event["userName"] = hostile.into();
    event["request"]["userAttributes"]["sub"] = hostile.into();
    event
}

#[tokio::test]
async fn post_confirmation_refuses_hostile_tenant_ids_and_creates_nothing() {
    let h = Harness::new().await;
    let real = tenant_with_letters();
    let mut problems = Problems::default();
    for (case, sub) in hostile_subs(&real) {
        let answer = h.invoke("post-confirmation", &signup_with_sub(&real, &sub)).await;
        problems.check(answer, case, "request.userAttributes.sub");
        h.assert_nothing_named(&sub, case).await;
    }
    let status = tenant_status(&h.app.provisioner, &real).await.unwrap();
    assert!(
        status.is_absent(),
        "a hostile id provisioned the real tenant: {status}"
    );
    problems.assert_none("post-confirmation");
}

#[tokio::test]
async fn post_confirmation_refuses_malformed_truncated_oversized_and_mistyped_events() {
    let h = Harness::new().await;
    let real = fresh_tenant();
    let good = events::signup_for(&real);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let text = good.to_string();
    cases.push(("truncated", text.as_bytes()[..text.len() / 2].to_vec(), "EOF"));
    cases.push(("not JSON", b"sub=1".to_vec(), "expected"));
    let mut mistyped = |case, path: &[&str], value: Value, field| {
        let mut event = good.clone();
        let mut slot = &mut event;
        for key in path {
            slot = &mut slot[*key];
        }
        *slot = value;
        cases.push((case, event.to_string().into_bytes(), field));
    };
    mistyped(
        "sub is a number",
        &["request", "userAttributes", "sub"],
        json!(5),
        "request.userAttributes.sub",
    );
    mistyped(
        "sub is null",
        &["request", "userAttributes", "sub"],
        Value::Null,
        "request.userAttributes.sub",
    );
    mistyped(
        "userAttributes is a list",
        &["request", "userAttributes"],
        json!([real.as_str()]),
        "request.userAttributes",
    );
    mistyped(
        "triggerSource is a number",
        &["triggerSource"],
        json!(7),
        "triggerSource",
    );
    mistyped(
        "userName is an object",
        &["userName"],
        json!({"sub": real.as_str()}),
        "userName",
    );
    cases.push((
        "an array",
        json!([good.clone()]).to_string().into_bytes(),
        "post-confirmation",
    ));
    let mut oversized = good.clone();
    oversized["request"]["userAttributes"]
        .as_object_mut()
        .unwrap()
        .remove("sub");
    oversized["request"]["clientMetadata"] = json!({"padding": "x".repeat(OVERSIZED)});
    cases.push((
        "oversized without a sub",
        oversized.to_string().into_bytes(),
        "request.userAttributes.sub",
    ));
    let mut problems = Problems::default();
    for (case, body, field) in cases {
        problems.check(h.invoke_raw("post-confirmation", body).await, case, field);
    }
    let status = tenant_status(&h.app.provisioner, &real).await.unwrap();
    assert!(
        status.is_absent(),
        "a refused event provisioned the tenant: {status}"
    );
    problems.assert_none("post-confirmation");
}

#[tokio::test]
async fn teardown_refuses_hostile_tenant_ids_and_removes_nothing() {
    let h = Harness::new().await;
    let real = tenant_with_letters();
    h.invoke("post-confirmation", &events::signup_for(&real))
        .await
        .unwrap_ok();
    until_complete(&h.app.provisioner, &real).await;
    let mut problems = Problems::default();
    for (case, sub) in hostile_subs(&real) {
        problems.check(h.invoke("teardown", &json!({ "sub": sub })).await, case, "sub");
    }
    let malformed: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            format!("{{\"sub\": \"{}", real.as_str()).into_bytes(),
            "EOF",
        ),
        ("sub is a number", br#"{"sub": 5}"#.to_vec(), "sub"),
        (
            "sub is a list",
            json!({"sub": [real.as_str()]}).to_string().into_bytes(),
            "sub",
        ),
        ("no sub", b"{}".to_vec(), "sub"),
        (
            "an array",
            json!([{"sub": real.as_str()}]).to_string().into_bytes(),
            "sub",
        ),
        (
            "force is a string",
            json!({"sub": real.as_str(), "force": "yes"})
                .to_string()
                .into_bytes(),
            "force",
        ),
        (
            "oversized unknown field",
            json!({"sub": real.as_str(), "padding": "x".repeat(OVERSIZED)})
                .to_string()
                .into_bytes(),
            "padding",
        ),
    ];
    for (case, body, field) in malformed {
        problems.check(h.invoke_raw("teardown", body).await, case, field);
    }
    let status = tenant_status(&h.app.provisioner, &real).await.unwrap();
    let complete = status.is_complete();
    h.invoke("teardown", &json!({ "sub": real.as_str() }))
        .await
        .unwrap_ok();
    assert!(
        complete,
        "a refused teardown removed part of the tenant: {status}"
    );
    problems.assert_none("teardown");
}

#[tokio::test]
async fn reconcile_refuses_malformed_truncated_oversized_and_mistyped_events() {
    let h = Harness::new().await;
    // Every case lacks a valid `detail-type` or `source`: none of them may start a reconcile
    // run against the shared stack.
    let schedule = events::load("reconcile-schedule.json");
    let text = schedule.to_string();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", text.as_bytes()[..text.len() / 2].to_vec(), "EOF"),
        ("not JSON", b"rate(15 minutes)".to_vec(), "expected"),
        (
            "an array",
            json!([schedule.clone()]).to_string().into_bytes(),
            "expected",
        ),
    ];
    let mut mistyped = schedule.clone();
    mistyped["detail-type"] = json!(5);
    cases.push((
        "detail-type is a number",
        mistyped.to_string().into_bytes(),
        "detail-type",
    ));
    let mut mistyped = schedule.clone();
    mistyped["source"] = json!({"aws": "events"});
    cases.push(("source is an object", mistyped.to_string().into_bytes(), "source"));
    let mut oversized = schedule.clone();
    oversized.as_object_mut().unwrap().remove("source");
    oversized["detail-type"] = json!("x".repeat(OVERSIZED));
    cases.push((
        "oversized without a source",
        oversized.to_string().into_bytes(),
        "source",
    ));
    let mut problems = Problems::default();
    for (case, body, field) in cases {
        problems.check(h.invoke_raw("reconcile", body).await, case, field);
    }
    problems.assert_none("reconcile");
}

#[tokio::test]
async fn mailgun_webhook_refuses_malformed_truncated_oversized_and_mistyped_bodies() {
    let h = Harness::new().await;
    let url = format!("{}/lambda-url/mailgun-webhook/", h.stack.lambda_endpoint());
    let signature = json!({"timestamp": "1700000000", "token": "t", "signature": "00"});
    let event = json!({"event": "failed", "severity": "permanent", "recipient": "x@example.com"});
    let whole = json!({"signature": signature, "event-data": event}).to_string();
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated", whole[..whole.len() / 2].to_owned(), "JSON"),
        ("form-encoded", "event=failed&recipient=x".to_owned(), "JSON"),
        (
            "signature is a string",
            json!({"signature": "abc", "event-data": event}).to_string(),
            "signature",
        ),
        (
            "timestamp is a number",
            json!({"signature": {"timestamp": 1700000000, "token": "t", "signature": "00"}, "event-data": event})
                .to_string(),
            "timestamp",
        ),
        (
            "event-data is a list",
            json!({"signature": signature, "event-data": [event]}).to_string(),
            "event-data",
        ),
        ("no signature", json!({"event-data": event}).to_string(), "signature"),
        (
            "oversized token",
            json!({"signature": {"timestamp": "1700000000", "token": "t".repeat(OVERSIZED / 4), "signature": "00"}, "event-data": event})
                .to_string(),
            "signature",
        ),
        (
            "oversized body",
            json!({"signature": signature, "event-data": event, "padding": "x".repeat(4 * OVERSIZED)}).to_string(),
            "larger",
        ),
    ];
    let mut problems = Vec::new();
    for (case, body, field) in cases {
        let response = h
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(400..500).contains(&code) {
            let shown: String = text.chars().take(200).collect();
            problems.push(format!("{case}: answered {code}: {shown}"));
        } else if text.len() > MAX_ERROR_LEN {
            problems.push(format!(
                "{case}: the answer is {} bytes long: it echoes the input",
                text.len()
            ));
        } else if !text.contains(field) {
            problems.push(format!("{case}: the answer does not name `{field}`: {text}"));
        }
    }
    Problems(problems).assert_none("mailgun-webhook");
}

#[tokio::test]
async fn provision_worker_refuses_hostile_messages_and_creates_nothing() {
    let h = Harness::new().await;
    let queue = HandOffQueue::create(&h.stack).await;
    let mut env = stack_env(&h.stack);
    env.insert("PROVISION_QUEUE_URL".into(), queue.url.clone());
    let worker = Function::new("provision-worker", env);
    let real = tenant_with_letters();
    let mut bodies: Vec<(String, String)> = hostile_subs(&real)
        .into_iter()
        .map(|(case, sub)| (case.to_owned(), json!({"sub": sub, "reason": "test"}).to_string()))
        .collect();
    let good = json!({"sub": real.as_str(), "reason": "test"}).to_string();
    for (case, body) in [
        ("not JSON", "sub=1".to_owned()),
        ("truncated", good[..good.len() / 2].to_owned()),
        ("sub is a number", r#"{"sub": 5}"#.to_owned()),
        ("no sub", "{}".to_owned()),
        ("an array", json!([{"sub": real.as_str()}]).to_string()),
        (
            "oversized reason",
            json!({"sub": "not-a-uuid", "reason": "x".repeat(200 * 1024)}).to_string(),
        ),
    ] {
        bodies.push((case.to_owned(), body));
    }
    let mut sent = Vec::new();
    for (case, body) in &bodies {
        sent.push((queue.send(body).await, case.clone()));
    }
    let messages = queue.all().await;
    let failed = queue.failures(&worker, &messages).await;
    queue.delete().await;
    let failed = failed.unwrap_or_else(|why| panic!("{why}"));
    let accepted: Vec<&String> = sent
        .iter()
        .filter(|(id, _)| !failed.contains(id))
        .map(|(_, case)| case)
        .collect();
    assert!(
        accepted.is_empty(),
        "hostile messages taken as done: {accepted:?}"
    );
    for (case, sub) in hostile_subs(&real) {
        h.assert_nothing_named(&sub, case).await;
    }
    let status = tenant_status(&h.app.provisioner, &real).await.unwrap();
    assert!(
        status.is_absent(),
        "a hostile message provisioned the real tenant: {status}"
    );
    let logs = worker.logs();
    assert!(
        logs.contains("`sub`"),
        "the worker's log does not name the field `sub`"
    );
    assert!(
        !logs.contains(&"x".repeat(1024)),
        "the worker's log echoes an oversized message"
    );
}
