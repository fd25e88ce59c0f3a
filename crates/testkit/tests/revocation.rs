//! A token is not enough: Cognito must still know its user as active. Through the real
//! `tenant-credentials` function URL, with tokens from the stack's Cognito (moto): a disabled, a
//! deleted and a globally signed-out user's still-valid token get 401, within 60 s even when
//! the function had just accepted it.
//!
//! Needs the local stack (`cargo xtask stack up`).

use std::time::Duration;

use testkit::frontend::{Frontend, bearer};

async fn rotate(f: &Frontend, token: &str) -> u16 {
    f.request(reqwest::Method::POST, "/tenant/rotate", &[token])
        .await
        .status
}

#[tokio::test]
async fn a_disabled_deleted_or_signed_out_user_gets_401_with_a_still_valid_token() {
    let f = Frontend::new().await;
    for case in ["disabled", "signed out", "deleted"] {
        let user = f.user("revoked").await;
        f.provision(&user).await;
        let token = bearer(&f.sign_in(&user).await.access);
        match case {
            "disabled" => {
                f.cognito
                    .admin_disable_user()
                    .user_pool_id(&f.pool)
                    .username(&user.username)
                    .send()
                    .await
                    .unwrap();
            }
            "signed out" => {
                f.cognito
                    .admin_user_global_sign_out()
                    .user_pool_id(&f.pool)
                    .username(&user.username)
                    .send()
                    .await
                    .unwrap();
            }
            _ => testkit::cognito::delete_user(&f.cognito, &f.pool, &user.username)
                .await
                .unwrap(),
        }
        let answer = f.get("/tenant", &[&token]).await;
        assert_eq!(answer.status, 401, "{case}: {}", answer.text);
        assert!(answer.json().get("password").is_none());
        assert_eq!(rotate(&f, &token).await, 401, "{case}: rotation");
        if case != "deleted" {
            testkit::cognito::delete_user(&f.cognito, &f.pool, &user.username)
                .await
                .unwrap();
        }
        let payload = serde_json::json!({ "sub": user.tenant.as_str() });
        testkit::lambda::invoke(&f.http, f.stack.lambda_endpoint(), "teardown", &payload)
            .await
            .unwrap()
            .unwrap_ok();
    }
}

/// The function asks Cognito at most every 30 s per token: a user disabled right after a
/// request the function accepted is refused within 60 s, and meanwhile gets nothing else.
#[tokio::test]
async fn a_revocation_reaches_a_token_the_function_had_just_accepted_within_60_s() {
    let f = Frontend::new().await;
    let user = f.user("revoked-warm").await;
    f.provision(&user).await;
    let token = bearer(&f.sign_in(&user).await.access);
    assert_eq!(f.get("/tenant", &[&token]).await.status, 200);
    f.cognito
        .admin_disable_user()
        .user_pool_id(&f.pool)
        .username(&user.username)
        .send()
        .await
        .unwrap();
    let disabled_at = tokio::time::Instant::now();
    let mut last = 200;
    // The bound the function promises, plus a request's own time: a correctness limit, not a
    // speed goal.
    while disabled_at.elapsed() < Duration::from_secs(62) {
        last = f.get("/tenant", &[&token]).await.status;
        if last == 401 {
            break;
        }
        assert_eq!(last, 200, "before the refusal the answer stays what it was");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert_eq!(last, 401, "still accepted 60 s after the user was disabled");
    f.remove(&user).await;
}
