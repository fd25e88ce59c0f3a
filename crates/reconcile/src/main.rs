//! Scheduled reconcile: provision confirmed users that lack resources, remove resources of users
//! that no longer exist.

use lambda_runtime::{Error, run, service_fn, tracing};
use tgsearch::adapters::cognito::CognitoDirectory;
use tgsearch::app::{AppContext, http_client, load_aws_config};
use tgsearch::config::{ProvisionerConfig, ReconcileConfig};
use tgsearch::handlers::reconcile::handle;
use tgsearch::reconcile::Options;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tgsearch::telemetry::init();
    tgsearch::metrics::init(tgsearch::metrics::RECONCILE)?;
    let config = ProvisionerConfig::from_env()?;
    let reconcile = ReconcileConfig::from_env()?;
    let aws = load_aws_config().await;
    let app = AppContext::new(config, &aws, http_client()?)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let directory = CognitoDirectory::new(&app.aws, reconcile.user_pool_id);
    let options = Options {
        max_removals: reconcile.max_removals,
        ..Options::default()
    };
    run(service_fn(|event| {
        handle(&app.cells, &directory, &options, reconcile.tenant_capacity, event)
    }))
    .await
}
