//! The end of `cargo xtask demo`, from the user's side: the user signs up and is confirmed in
//! Cognito (moto), signs in, asks `GET /tenant` with their access token, and talks to their vhost
//! with the `amqp_uri` it returns, exactly as a frontend would.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_cognitoidentityprovider::Client;
use serde_json::Value;
use testkit::amqp;
use testkit::cognito::{self, User};
use testkit::stack::Stack;

/// Where the emulator serves the function URL of `tenant-credentials`.
fn tenant_url(endpoint: &str) -> String {
    format!("{endpoint}/lambda-url/tenant-credentials/tenant")
}

/// Signs a new user up through the frontend's app client and confirms them, so their `sub` is
/// Cognito's own. moto calls no trigger: the demo invokes post-confirmation itself next.
pub async fn sign_up(stack: &Stack) -> Result<User> {
    let cognito = Client::new(&stack.aws().await);
    let user = cognito::sign_up_confirmed(
        &cognito,
        stack.var("USER_POOL_ID"),
        stack.frontend_client_id(),
        "demo",
    )
    .await?;
    println!(
        "\n0. {} signs up in Cognito (moto) through the frontend's app client and is confirmed",
        user.email
    );
    println!("   ✓ their sub is {}", user.tenant);
    Ok(user)
}

/// The user signs in, polls `GET /tenant` until it is ready, and uses the connection.
pub async fn run(stack: &Stack, endpoint: &str, user: &User) -> Result<()> {
    println!("\n4. The user's side: sign in, ask GET /tenant, connect with what it returns");
    let cognito = Client::new(&stack.aws().await);
    let tokens = cognito::sign_in(&cognito, stack.frontend_client_id(), &user.username).await?;
    println!("   ✓ signed in to Cognito (USER_PASSWORD_AUTH): an ID token and an access token");

    let http = reqwest::Client::new();
    let url = tenant_url(endpoint);
    let anonymous = http.get(&url).timeout(Duration::from_secs(120)).send().await?;
    println!(
        "   GET /tenant without a token → {} ({})",
        anonymous.status(),
        anonymous
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    );
    if anonymous.status() != 401 {
        bail!("GET /tenant without a token answered {}", anonymous.status());
    }

    let mut answer: Option<Value> = None;
    for _ in 0..10 {
        let response = http
            .get(&url)
            .bearer_auth(&tokens.access)
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        let status = response.status();
        let retry = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body: Value = response.json().await.context("GET /tenant answered no JSON")?;
        match status.as_u16() {
            200 => {
                answer = Some(body);
                break;
            }
            202 | 503 => {
                let wait = retry.unwrap_or(2);
                println!("   GET /tenant → {status}: {body}; asking again in {wait} s");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            _ => bail!("GET /tenant answered {status}: {body}"),
        }
    }
    let body = answer.context("the tenant was not ready after 10 tries")?;
    let uri = body["amqp_uri"].as_str().context("no amqp_uri in the answer")?;
    let password = body["password"].as_str().unwrap_or_default();
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    println!(
        "   GET /tenant with the access token → 200 {}: username {}, vhost {}, amqp_uri {}",
        field("status"),
        field("username"),
        field("vhost"),
        uri.replacen(password, "********", 1)
    );
    if body["username"] != user.tenant.as_str() {
        bail!("GET /tenant answered another tenant's credentials");
    }
    let message = format!("hello from the frontend of {}", user.email);
    let back = amqp::round_trip(uri, message.as_bytes()).await?;
    println!(
        "   ✓ connected with the returned amqp_uri, published and read back {:?}",
        String::from_utf8_lossy(&back)
    );
    Ok(())
}

/// The user deletes their account: Cognito first, so teardown may remove what they owned.
pub async fn leave(stack: &Stack, user: &User) -> Result<()> {
    let cognito = Client::new(&stack.aws().await);
    cognito::delete_user(&cognito, stack.var("USER_POOL_ID"), &user.username).await?;
    println!("\n   {} deleted their Cognito account", user.email);
    Ok(())
}
