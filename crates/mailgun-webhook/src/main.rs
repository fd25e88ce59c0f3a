//! Mailgun webhook (Lambda function URL): verify the signature, alert on permanent delivery
//! failures.

use lambda_http::{Error, run, service_fn, tracing};
use tgsearch::adapters::secrets_manager::SecretsManager;
use tgsearch::adapters::sns::SnsAlerts;
use tgsearch::app::load_aws_config;
use tgsearch::config::MailgunConfig;
use tgsearch::handlers::mailgun_webhook::{WebhookContext, handle};
use tgsearch::mailgun::{SeenTokens, load_signing_key};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = MailgunConfig::from_env()?;
    let aws = load_aws_config().await;
    let secrets = SecretsManager::from_aws(&aws, "");
    let key = load_signing_key(&secrets, &config.signing_key_secret_id)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let ctx = WebhookContext {
        key,
        alerts: SnsAlerts::new(&aws, config.alert_topic_arn),
        seen: SeenTokens::default(),
    };
    run(service_fn(|request| handle(&ctx, request))).await
}
