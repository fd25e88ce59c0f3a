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

/// moto's server as the stack runs it: with DynamoDB's operations serialized, as DynamoDB
/// serializes them (see the launcher's docstring).
const LAUNCHER: &str = include_str!("../../stack/moto_server.py");

pub(super) fn ensure_moto(dir: &Path, say: &impl Fn(&str)) -> Result<()> {
    let marker = dir.join("moto.launcher");
    let current = fs::read_to_string(&marker).ok().as_deref() == Some(LAUNCHER);
    if port_open(MOTO_PORT) && current {
        return Ok(());
    }
    if procs::stop(dir, "moto")? {
        say(
            "restarting moto with the stack's launcher (it forgets everything; the stack re-creates its part)",
        );
    }
    let launcher = dir.join("moto_server.py");
    fs::write(&launcher, LAUNCHER)?;
    say("starting moto");
    procs::spawn(
        dir,
        "moto",
        Command::new(stack::venv_bin().join("python"))
            .arg(&launcher)
            .args(["-H", "127.0.0.1", "-p", &MOTO_PORT.to_string()]),
    )?;
    procs::wait_for(dir, "moto", Duration::from_secs(60), || port_open(MOTO_PORT))?;
    fs::write(&marker, LAUNCHER)?;
    Ok(())
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

/// The alert topic, a Mailgun signing key and the webhook's delivery ledger table, in moto
/// (which forgets them when it restarts).
pub(super) async fn ensure_alerting(aws: &aws_config::SdkConfig) -> Result<()> {
    ensure_table(aws, stack::DEDUP_TABLE, "token").await?;
    ensure_table(aws, stack::TENANT_GUARD_TABLE, "pk").await?;
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

/// A table as `template.yml` defines it: the mailgun-webhook's delivery ledger (key `token`) or
/// the tenant guard (key `pk`); TTL on `expires_at`, on-demand.
async fn ensure_table(aws: &aws_config::SdkConfig, table: &str, key: &str) -> Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let created = dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => anyhow::bail!(
            "creating the stack's DynamoDB table {table}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        ),
    }
    let ttl = dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()?,
        )
        .send()
        .await;
    // Asking twice is refused ("TimeToLive is already enabled"): fine.
    if let Err(e) = ttl {
        let text = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
        if !text.contains("already") {
            anyhow::bail!("enabling TTL on the stack's DynamoDB table {table}: {text}");
        }
    }
    Ok(())
}

/// The provisioning hand-off queue and its dead-letter queue, as `template.yml` defines them
/// (a message goes to the dead-letter queue after 10 receives). Returns whether its URL changed.
pub(super) async fn ensure_provision_queue(aws: &aws_config::SdkConfig) -> Result<bool> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let dlq = sqs
        .create_queue()
        .queue_name(stack::PROVISION_DLQ)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(dlq.queue_url().context("moto's queue without URL")?)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("moto's queue without ARN")?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "10"});
    let queue = sqs
        .create_queue()
        .queue_name(stack::PROVISION_QUEUE)
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await?;
    let url = queue.queue_url().context("moto's queue without URL")?;
    let changed = fs::read_to_string(stack::provision_queue_file()).ok().as_deref() != Some(url);
    if changed {
        fs::write(stack::provision_queue_file(), url)?;
    }
    Ok(changed)
}
