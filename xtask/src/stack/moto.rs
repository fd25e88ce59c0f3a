//! moto's standalone server and what the stack keeps in it (moto forgets all when it restarts).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use testkit::stack::{self, MOTO_PORT};
use tgsearch::adapters::secrets_manager::SecretsManager;

use crate::procs::{self, port_open};

/// The stack's Cognito user pool in moto, for the reconcile function.
const USER_POOL_NAME: &str = "tgsearch-local";

pub(super) fn ensure_moto(dir: &Path, say: &impl Fn(&str)) -> Result<()> {
    if port_open(MOTO_PORT) {
        return Ok(());
    }
    say("starting moto");
    procs::spawn(
        dir,
        "moto",
        Command::new(stack::venv_bin().join("moto_server")).args([
            "-H",
            "127.0.0.1",
            "-p",
            &MOTO_PORT.to_string(),
        ]),
    )?;
    procs::wait_for(dir, "moto", Duration::from_secs(60), || port_open(MOTO_PORT))
}

/// Finds or creates the stack's user pool in moto (moto forgets it when it restarts) and
/// records its id for `stack env`. Returns whether the id changed.
pub(super) async fn ensure_user_pool(aws: &aws_config::SdkConfig) -> Result<bool> {
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(aws);
    let pools = cognito.list_user_pools().max_results(60).send().await?;
    let existing = pools
        .user_pools()
        .iter()
        .find(|p| p.name() == Some(USER_POOL_NAME))
        .and_then(|p| p.id().map(String::from));
    let id = match existing {
        Some(id) => id,
        None => cognito
            .create_user_pool()
            .pool_name(USER_POOL_NAME)
            .send()
            .await?
            .user_pool()
            .and_then(|p| p.id())
            .context("moto created a user pool without an id")?
            .to_owned(),
    };
    let file = stack::user_pool_file();
    let changed = fs::read_to_string(&file).ok().as_deref() != Some(id.as_str());
    if changed {
        fs::write(&file, &id)?;
    }
    Ok(changed)
}

/// Finds or creates the frontend's app client in the stack's user pool (public: no secret;
/// password sign-in allowed so tests and the demo can sign in without SRP) and records its id
/// for `stack env`. Returns whether the id changed.
pub(super) async fn ensure_frontend_client(aws: &aws_config::SdkConfig) -> Result<bool> {
    let pool = fs::read_to_string(stack::user_pool_file())?;
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(aws);
    let id =
        testkit::cognito::find_or_create_client(&cognito, pool.trim(), stack::FRONTEND_CLIENT_NAME).await?;
    let file = stack::user_pool_client_file();
    let changed = fs::read_to_string(&file).ok().as_deref() != Some(id.as_str());
    if changed {
        fs::write(&file, &id)?;
    }
    Ok(changed)
}

/// The alert topic and a Mailgun signing key, in moto (which forgets them when it restarts).
pub(super) async fn ensure_alerting(aws: &aws_config::SdkConfig) -> Result<()> {
    use tgsearch::credentials::generate_password;
    let sns = aws_sdk_sns::Client::new(aws);
    sns.create_topic().name(stack::ALERT_TOPIC).send().await?;
    let secrets = SecretsManager::from_aws(aws, "");
    secrets
        .create_or_read_json(
            stack::MAILGUN_KEY_SECRET_ID,
            &serde_json::json!({ "signing_key": format!("key-{}", generate_password().expose().to_lowercase()) }),
            "Mailgun HTTP webhook signing key (local stack)",
            &[],
            r#"{"signing_key"}"#,
        )
        .await?;
    Ok(())
}
