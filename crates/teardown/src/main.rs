//! Removes everything a tenant owns, once its Cognito user is gone or disabled.
//! Payload: `{"sub": "<uuid>"}` (`"force": true` overrides the guard).

use lambda_runtime::{Error, run, service_fn, tracing};
use tgsearch::adapters::cognito::CognitoDirectory;
use tgsearch::app::AppContext;
use tgsearch::config::{Env, user_pool_id};
use tgsearch::handlers::teardown::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tgsearch::telemetry::init();
    tgsearch::metrics::init(tgsearch::metrics::TEARDOWN)?;
    let pool = user_pool_id(&Env::process())?;
    let app = AppContext::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let directory = CognitoDirectory::new(&app.aws, pool);
    let budget = app.config.provision_budget;
    run(service_fn(|event| handle(&app.cells, &directory, budget, event))).await
}
