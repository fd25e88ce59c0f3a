//! Mailgun webhook (Lambda function URL): verify the signature, alert exactly once on every mail
//! lost for good.

use lambda_http::{Error, run, service_fn, tracing};
use tgsearch::adapters::dynamodb::DynamoLedger;
use tgsearch::adapters::secrets_manager::SecretsManager;
use tgsearch::adapters::sns::SnsAlerts;
use tgsearch::app::{COLD_START_LIMIT, load_aws_config};
use tgsearch::config::MailgunConfig;
use tgsearch::handlers::mailgun_webhook::{WebhookContext, handle};
use tgsearch::mailgun::{Keyring, load_signing_key};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tgsearch::telemetry::init();
    tgsearch::metrics::init(tgsearch::metrics::MAILGUN_WEBHOOK)?;
    let config = MailgunConfig::from_env()?;
    let aws = load_aws_config().await;
    let secrets = SecretsManager::from_aws(&aws, "");
    let id = &config.signing_key_secret_id;
    let key = tokio::time::timeout(COLD_START_LIMIT, load_signing_key(&secrets, id))
        .await
        .map_err(|_| {
            format!("MAILGUN_SIGNING_KEY_SECRET_ID `{id}`: Secrets Manager did not answer within the cold start's {COLD_START_LIMIT:?}")
        })?
        .map_err(|e| format!("MAILGUN_SIGNING_KEY_SECRET_ID `{id}`: {e}"))
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let reload_id = config.signing_key_secret_id.clone();
    let keys = Keyring::reloading(key, move || {
        let (secrets, id) = (secrets.clone(), reload_id.clone());
        async move { load_signing_key(&secrets, &id).await }
    });
    let ctx = WebhookContext::with_keys(
        keys,
        SnsAlerts::new(&aws, config.alert_topic_arn),
        DynamoLedger::new(&aws, config.dedup_table),
    );
    run(service_fn(|request| handle(&ctx, request))).await
}
