//! A user as the frontend makes one in Cognito (moto's here): sign up through the app client,
//! confirmed by an administrator (moto sends no codes), signed in with USER_PASSWORD_AUTH.

use anyhow::{Context, Result};
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::error::DisplayErrorContext;
use aws_sdk_cognitoidentityprovider::types::{AttributeType, AuthFlowType, ExplicitAuthFlowsType};
use tgsearch::TenantId;

/// A password moto's default policy accepts (length, cases, digit, symbol).
pub const PASSWORD: &str = "Correct-Horse-9-Battery";

/// A confirmed user.
#[derive(Clone, Debug)]
pub struct User {
    pub username: String,
    pub email: String,
    /// Cognito's `sub`, which names the tenant.
    pub tenant: TenantId,
}

/// What InitiateAuth hands a signed-in user.
#[derive(Clone)]
pub struct Tokens {
    pub id: String,
    pub access: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

/// A Cognito call's result, its error with the whole error chain and the operation's name.
fn context<T, E>(
    result: Result<T, aws_sdk_cognitoidentityprovider::error::SdkError<E>>,
    what: &str,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result.map_err(|e| anyhow::anyhow!("Cognito {what}: {}", DisplayErrorContext(&e)))
}

/// Signs a new user up through the app client and confirms them as an administrator, as a
/// confirmed sign-up leaves them. `label` goes into the e-mail address, with fresh random digits.
pub async fn sign_up_confirmed(cognito: &Client, pool: &str, client_id: &str, label: &str) -> Result<User> {
    let email = format!("{label}-{}@example.com", &crate::fresh_tenant().as_str()[..8]);
    let email_attribute = AttributeType::builder().name("email").value(&email).build()?;
    context(
        cognito
            .sign_up()
            .client_id(client_id)
            .username(&email)
            .password(PASSWORD)
            .user_attributes(email_attribute)
            .send()
            .await,
        "SignUp",
    )?;
    context(
        cognito
            .admin_confirm_sign_up()
            .user_pool_id(pool)
            .username(&email)
            .send()
            .await,
        "AdminConfirmSignUp",
    )?;
    let user = context(
        cognito
            .admin_get_user()
            .user_pool_id(pool)
            .username(&email)
            .send()
            .await,
        "AdminGetUser",
    )?;
    let sub = user
        .user_attributes()
        .iter()
        .find(|a| a.name() == "sub")
        .and_then(|a| a.value())
        .context("the confirmed user has no `sub`")?;
    Ok(User {
        username: user.username().to_owned(),
        email,
        tenant: TenantId::parse(sub)?,
    })
}

/// Signs in with the user's password (USER_PASSWORD_AUTH) through `client_id`.
pub async fn sign_in(cognito: &Client, client_id: &str, username: &str) -> Result<Tokens> {
    let out = context(
        cognito
            .initiate_auth()
            .client_id(client_id)
            .auth_flow(AuthFlowType::UserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", PASSWORD)
            .send()
            .await,
        "InitiateAuth",
    )?;
    let result = out
        .authentication_result()
        .context("InitiateAuth answered a challenge instead of tokens")?;
    Ok(Tokens {
        id: result.id_token().context("no ID token")?.to_owned(),
        access: result.access_token().context("no access token")?.to_owned(),
    })
}

/// Deletes a user (tests clean up after themselves).
pub async fn delete_user(cognito: &Client, pool: &str, username: &str) -> Result<()> {
    context(
        cognito
            .admin_delete_user()
            .user_pool_id(pool)
            .username(username)
            .send()
            .await,
        "AdminDeleteUser",
    )?;
    Ok(())
}

/// The id of the app client named `name` in `pool`, created when missing: public (no secret),
/// as a browser or desktop frontend is, with password sign-in allowed so tests and the demo can
/// sign in without SRP.
pub async fn find_or_create_client(cognito: &Client, pool: &str, name: &str) -> Result<String> {
    let mut pages = cognito
        .list_user_pool_clients()
        .user_pool_id(pool)
        .max_results(60)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = context(page, "ListUserPoolClients")?;
        if let Some(id) = page
            .user_pool_clients()
            .iter()
            .find(|c| c.client_name() == Some(name))
            .and_then(|c| c.client_id())
        {
            return Ok(id.to_owned());
        }
    }
    let out = context(
        cognito
            .create_user_pool_client()
            .user_pool_id(pool)
            .client_name(name)
            .generate_secret(false)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserSrpAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
            .send()
            .await,
        "CreateUserPoolClient",
    )?;
    out.user_pool_client()
        .and_then(|c| c.client_id())
        .map(String::from)
        .context("moto created an app client without an id")
}

/// The id of the user pool named `name`, created when missing.
pub async fn find_or_create_pool(cognito: &Client, name: &str) -> Result<String> {
    let mut pages = cognito.list_user_pools().max_results(60).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = context(page, "ListUserPools")?;
        if let Some(id) = page
            .user_pools()
            .iter()
            .find(|p| p.name() == Some(name))
            .and_then(|p| p.id())
        {
            return Ok(id.to_owned());
        }
    }
    let out = context(
        cognito.create_user_pool().pool_name(name).send().await,
        "CreateUserPool",
    )?;
    out.user_pool()
        .and_then(|p| p.id())
        .map(String::from)
        .context("moto created a user pool without an id")
}

/// A tenant whose `sub` is a real, confirmed user of the stack's pool: what every signup is in
/// production, and what the provisioning worker asks Cognito about before it provisions a
/// hand-off. Tests whose signups may be handed off use these, never a bare random `sub`.
pub async fn pool_tenant() -> TenantId {
    pool_tenants(1).await.remove(0)
}

/// `n` such tenants, signed up a few at a time through one client.
pub async fn pool_tenants(n: usize) -> Vec<TenantId> {
    use futures::StreamExt;
    let stack = crate::stack::Stack::require();
    let cognito = Client::new(&stack.aws().await);
    let (pool, client_id) = (stack.var("USER_POOL_ID"), stack.frontend_client_id());
    futures::stream::iter(0..n)
        .map(|_| sign_up_confirmed(&cognito, pool, client_id, "signup"))
        .buffer_unordered(8)
        .map(|user| {
            user.unwrap_or_else(|e| {
                panic!("cannot sign a user up in the stack's pool ({e}): run `cargo xtask stack up`")
            })
            .tenant
        })
        .collect()
        .await
}

/// Deletes the stack pool's user whose `sub` is `tenant`, if there is one (so that a test's
/// tenant can be torn down, and reconcile finds no confirmed user without a tenant). Returns
/// whether there was one.
pub async fn delete_pool_user(tenant: &TenantId) -> bool {
    let stack = crate::stack::Stack::require();
    let cognito = Client::new(&stack.aws().await);
    let pool = stack.var("USER_POOL_ID");
    let found = context(
        cognito
            .list_users()
            .user_pool_id(pool)
            .filter(format!("sub = \"{tenant}\""))
            .limit(1)
            .send()
            .await,
        "ListUsers",
    )
    .unwrap_or_else(|e| panic!("{e}: run `cargo xtask stack up`"));
    let Some(username) = found.users().first().and_then(|u| u.username()) else {
        return false;
    };
    delete_user(&cognito, pool, username)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    true
}
