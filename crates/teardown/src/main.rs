//! Removes everything a tenant owns. Payload: `{"sub": "<uuid>"}`.

use lambda_runtime::{Error, run, service_fn, tracing};
use tgsearch::app::AppContext;
use tgsearch::handlers::teardown::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let app = AppContext::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let budget = app.config.provision_budget;
    run(service_fn(|event| handle(&app.provisioner, budget, event))).await
}
