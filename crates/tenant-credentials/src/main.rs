//! tenant-credentials (API Gateway HTTP API or Lambda function URL): `GET /tenant` answers the
//! signed-in user's own tenant connection, or that it is still being provisioned.

use lambda_http::{Error, run, service_fn, tracing};
use tgsearch::adapters::cognito::CognitoSessions;
use tgsearch::app::{AppContext, http_client, load_aws_config};
use tgsearch::cognito_jwt::{CachedSessions, HttpJwks, TokenVerifier};
use tgsearch::config::{ProvisionerConfig, TenantCredentialsConfig};
use tgsearch::handlers::tenant_credentials::{CredentialsContext, READINESS_DEADLINE, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Not the runtime's default: at TRACE it logs every raw event, bearer token included.
    tgsearch::telemetry::init();
    let config = TenantCredentialsConfig::from_env()?;
    let provisioner_config = ProvisionerConfig::from_env()?;
    let aws = load_aws_config().await;
    let http = http_client()?;
    let app = AppContext::new(provisioner_config, &aws, http.clone())
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let verifier = TokenVerifier::new(config.expected(), HttpJwks::new(http, config.jwks_url.as_str()));
    // Best effort: a pool whose keys cannot be fetched now is fetched again on the first request.
    match verifier.prefetch().await {
        Ok(keys) => tracing::info!(keys, token_use = %config.token_use, "user pool keys loaded"),
        Err(e) => tracing::warn!(error = %e, "user pool keys not loaded at cold start"),
    }
    let sessions = CognitoSessions::new(&aws, config.user_pool_id.clone(), config.token_use);
    let ctx = CredentialsContext {
        verifier,
        sessions: CachedSessions::new(sessions),
        rates: app.provisioner.locks.clone(),
        tenants: app.provisioner,
        deadline: READINESS_DEADLINE,
        get_rate: config.get_rate,
        rotate_rate: config.rotate_rate,
    };
    run(service_fn(|request| handle(&ctx, request))).await
}
