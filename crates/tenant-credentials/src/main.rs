//! tenant-credentials (API Gateway HTTP API or Lambda function URL): `GET /tenant` answers the
//! signed-in user's own tenant connection, or that it is still being provisioned;
//! `POST /tenant/rotate` gives it a new password.
//!
//! Deployed, it holds no provisioner rights: it verifies the token, asks Cognito whether its
//! user is still active, counts the request, and asks the provisioning worker
//! (`TENANT_ACCESS_FUNCTION`) for the rest. Without that setting it does the rest in-process.

use lambda_http::{Error, run, service_fn, tracing};
use tgsearch::adapters::cognito::CognitoSessions;
use tgsearch::adapters::tenant_access::RemoteTenants;
use tgsearch::adapters::tenant_guard::TenantGuard;
use tgsearch::app::{AppContext, http_client, load_aws_config};
use tgsearch::cognito_jwt::{CachedSessions, HttpJwks, TokenVerifier};
use tgsearch::config::{ProvisionerConfig, TenantCredentialsConfig};
use tgsearch::handlers::tenant_credentials::{CredentialsContext, READINESS_DEADLINE, handle};
use tgsearch::readiness::TenantReadiness;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Not the runtime's default: at TRACE it logs every raw event, bearer token included.
    tgsearch::telemetry::init();
    tgsearch::metrics::init(tgsearch::metrics::TENANT_CREDENTIALS)?;
    let config = TenantCredentialsConfig::from_env()?;
    let aws = load_aws_config().await;
    let http = http_client()?;
    let verifier = TokenVerifier::new(
        config.expected(),
        HttpJwks::new(http.clone(), config.jwks_url.as_str()),
    );
    // Best effort: a pool whose keys cannot be fetched now is fetched again on the first request.
    match verifier.prefetch().await {
        Ok(keys) => tracing::info!(keys, token_use = %config.token_use, "user pool keys loaded"),
        Err(e) => tracing::warn!(error = %e, "user pool keys not loaded at cold start"),
    }
    let parts = Parts {
        sessions: CachedSessions::new(CognitoSessions::new(
            &aws,
            config.user_pool_id.clone(),
            config.token_use,
        )),
        rates: TenantGuard::new(&aws, config.guard_table.clone()),
        verifier,
    };
    match &config.access_function {
        Some(function) => {
            tracing::info!(%function, "tenant state and rotation through the access function");
            serve(parts, &config, RemoteTenants::new(&aws, function.clone())).await
        }
        None => {
            let app = AppContext::new(ProvisionerConfig::from_env()?, &aws, http)
                .await
                .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
            serve(parts, &config, app.cells).await
        }
    }
}

/// What either way of serving shares.
struct Parts {
    verifier: TokenVerifier<HttpJwks>,
    sessions: CachedSessions<CognitoSessions>,
    rates: TenantGuard,
}

async fn serve<T: TenantReadiness>(
    parts: Parts,
    config: &TenantCredentialsConfig,
    tenants: T,
) -> Result<(), Error> {
    let ctx = CredentialsContext {
        verifier: parts.verifier,
        sessions: parts.sessions,
        rates: parts.rates,
        tenants,
        deadline: READINESS_DEADLINE,
        get_rate: config.get_rate,
        rotate_rate: config.rotate_rate,
    };
    run(service_fn(|request| handle(&ctx, request))).await
}
