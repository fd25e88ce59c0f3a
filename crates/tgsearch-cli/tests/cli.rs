//! The `tgsearch` binary against the local stack, as an operator runs it.

mod common;

use std::process::Command;

use common::{text, tgsearch};
use testkit::fresh_tenant;

#[test]
fn provision_status_teardown_round_trip() {
    let tenant = fresh_tenant();
    let sub = tenant.as_str();

    let out = tgsearch(&["status", "--sub", sub]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an absent tenant is not complete: {}",
        text(&out)
    );
    assert!(text(&out).contains("absent"));

    let out = tgsearch(&["provision", "--sub", sub]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("provisioned tenant {sub}")),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("(created)"));

    let out = tgsearch(&["provision", "--sub", sub]);
    assert!(text(&out).contains("existing, password kept"), "{}", text(&out));

    let out = tgsearch(&["--json", "status", "--sub", sub]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["complete"], true);
    assert!(
        !text(&out).contains("password"),
        "status must not show the password: {}",
        text(&out)
    );

    let out = tgsearch(&["teardown", "--sub", sub]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("vhost        removed"), "{}", text(&out));
    assert!(text(&out).contains("deployment   removed"), "{}", text(&out));
    let out = tgsearch(&["teardown", "--sub", sub]);
    assert!(
        text(&out).contains("vhost        already absent"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_sub_is_refused_with_the_reason() {
    let out = tgsearch(&["provision", "--sub", "Not-A-Uuid"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not a tenant id"), "{}", text(&out));
}

#[test]
fn a_missing_setting_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_tgsearch"))
        .args(["status", "--sub", fresh_tenant().as_str()])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("RABBITMQ_MANAGEMENT_URL is not set"),
        "{}",
        text(&out)
    );
}

#[test]
fn bootstrap_rabbitmq_is_idempotent_on_a_bootstrapped_broker() {
    // The stack ran bootstrap when it started: guest is gone and the stored admin works.
    let out = tgsearch(&["bootstrap-rabbitmq"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("secret          tgsearch/rabbitmq-admin (existing)"),
        "{t}"
    );
    assert!(t.contains("user            already worked"), "{t}");
    assert!(t.contains("default user    already absent"), "{t}");
}
