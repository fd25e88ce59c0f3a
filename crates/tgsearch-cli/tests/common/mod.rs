//! Running the `tgsearch` binary against the local stack, as an operator would.

#![allow(dead_code)] // each test file uses its own share of these

use std::process::{Command, Output};

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
use testkit::fresh_tenant;
use testkit::stack::{self, Stack};
use tgsearch::TenantId;

/// `tgsearch <args>` with the stack's environment (and `extra` variables on top).
pub fn tgsearch_with(extra: &[(&str, &str)], args: &[&str]) -> Output {
    Stack::require();
    Command::new(env!("CARGO_BIN_EXE_tgsearch"))
        .args(args)
        .envs(stack::exports())
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

pub fn tgsearch(args: &[&str]) -> Output {
    tgsearch_with(&[], args)
}

/// stdout and stderr, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// A fresh user pool; returns its id.
pub async fn pool(cognito: &Client) -> String {
    let name = format!("tgsearch-test-{}", &fresh_tenant().as_str()[..8]);
    let out = cognito.create_user_pool().pool_name(name).send().await.unwrap();
    out.user_pool().unwrap().id().unwrap().to_owned()
}

/// Creates a user; confirmed users get a permanent password, as after a confirmed signup.
pub async fn user(cognito: &Client, pool: &str, confirmed: bool) -> TenantId {
    let email = format!("{}@example.com", &fresh_tenant().as_str()[..8]);
    let out = cognito
        .admin_create_user()
        .user_pool_id(pool)
        .username(&email)
        .message_action(MessageActionType::Suppress)
        .user_attributes(
            AttributeType::builder()
                .name("email")
                .value(&email)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    if confirmed {
        cognito
            .admin_set_user_password()
            .user_pool_id(pool)
            .username(&email)
            .password("Correct-Horse-9")
            .permanent(true)
            .send()
            .await
            .unwrap();
    }
    let sub = out
        .user()
        .unwrap()
        .attributes()
        .iter()
        .find(|a| a.name() == "sub")
        .unwrap();
    TenantId::parse(sub.value().unwrap()).unwrap()
}

/// The username of the pool's user whose `sub` is `tenant`.
pub async fn username_of(cognito: &Client, pool: &str, tenant: &TenantId) -> String {
    let out = cognito
        .list_users()
        .user_pool_id(pool)
        .filter(format!("sub = \"{tenant}\""))
        .send()
        .await
        .unwrap();
    out.users()
        .first()
        .and_then(|u| u.username())
        .unwrap_or_else(|| panic!("no user with sub {tenant} in {pool}"))
        .to_owned()
}
