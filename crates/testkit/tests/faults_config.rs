//! The cold start's configuration checks, through the real `post-confirmation` binary: a
//! plaintext management or broker URL to anything but loopback fails the cold start naming the
//! variable (TLS by default); TLS URLs and loopback are accepted; a missing setting is named.
//!
//! Each invocation is a confirmed password reset, which provisions nothing: the function
//! never contacts the hosts named here (`*.invalid`, which no resolver answers).

use std::collections::BTreeMap;

use testkit::events;
use testkit::faults::POST_CONFIRMATION_TIMEOUT;
use testkit::runtime::{Answer, COGNITO_LIMIT, Function, Outcome, stack_env};
use testkit::stack::Stack;

async fn cold_start(env: BTreeMap<String, String>) -> (Outcome, Function) {
    let function = Function::new("post-confirmation", env);
    let event = events::load("post-confirmation-forgot-password.json");
    let outcome = function.invoke(&event, POST_CONFIRMATION_TIMEOUT).await;
    (outcome, function)
}

fn with(stack: &Stack, changes: &[(&str, Option<&str>)]) -> BTreeMap<String, String> {
    let mut env = stack_env(stack);
    for (name, value) in changes {
        match value {
            Some(v) => env.insert(name.to_string(), v.to_string()),
            None => env.remove(*name),
        };
    }
    env
}

/// Why the cold start did not fail in time with an error (or, when the process exited, a log)
/// naming `variable`, if it did not.
fn refusal_problem(outcome: &Outcome, function: &Function, variable: &str, case: &str) -> Option<String> {
    let shown = match &outcome.answer {
        Answer::Ok(_) => return Some(format!("{case}: accepted (the cold start went through)")),
        Answer::Exited { .. } => function.logs(),
        _ => outcome.error().unwrap_or_default(),
    };
    if !outcome.answered_within(COGNITO_LIMIT) {
        return Some(format!("{case}: no answer within 5 s: {:?}", outcome.answer));
    }
    (!shown.contains(variable))
        .then(|| format!("{case}: the cold-start error does not name {variable}: {shown}"))
}

#[tokio::test]
async fn plaintext_urls_to_remote_hosts_fail_the_cold_start_naming_the_variable() {
    let stack = Stack::require();
    let cases = [
        ("RABBITMQ_MANAGEMENT_URL", "http://rabbitmq.example.invalid:15672"),
        ("RABBITMQ_AMQP_URL", "amqp://rabbitmq.example.invalid:5672"),
    ];
    let mut problems = Vec::new();
    for (variable, url) in cases {
        let (outcome, function) = cold_start(with(&stack, &[(variable, Some(url))])).await;
        let case = format!("{variable}={url}");
        problems.extend(refusal_problem(&outcome, &function, variable, &case));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn tls_urls_and_loopback_are_accepted() {
    let stack = Stack::require();
    let cases: [&[(&str, Option<&str>)]; 2] = [
        // The stack's own: plaintext, but loopback.
        &[],
        &[
            (
                "RABBITMQ_MANAGEMENT_URL",
                Some("https://rabbitmq.example.invalid:15671"),
            ),
            ("RABBITMQ_AMQP_URL", Some("amqps://rabbitmq.example.invalid:5671")),
        ],
    ];
    for changes in cases {
        let (outcome, function) = cold_start(with(&stack, changes)).await;
        assert!(
            matches!(outcome.answer, Answer::Ok(_)),
            "{changes:?} was refused: {:?}; last log lines:\n{}",
            outcome.answer,
            function.log_tail(10)
        );
    }
}

#[tokio::test]
async fn a_missing_setting_fails_the_cold_start_naming_it() {
    let stack = Stack::require();
    for variable in [
        "RABBITMQ_ADMIN_SECRET_ID",
        "RABBITMQ_MANAGEMENT_URL",
        "BACKEND_IMAGE",
    ] {
        let (outcome, function) = cold_start(with(&stack, &[(variable, None)])).await;
        let problem = refusal_problem(&outcome, &function, variable, &format!("without {variable}"));
        assert!(problem.is_none(), "{}", problem.unwrap_or_default());
    }
}
