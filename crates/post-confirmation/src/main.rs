//! Cognito `PostConfirmation_ConfirmSignUp` trigger: provisions the new user's tenant, handing to
//! the provisioning worker what does not finish in time.

use lambda_runtime::{Error, run, service_fn, tracing};
use tgsearch::adapters::sqs::SqsQueue;
use tgsearch::app::{AppContext, ColdStart};
use tgsearch::config::HandOffConfig;
use tgsearch::handlers::post_confirmation::{PostConfirmation, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let cold_start = ColdStart::now();
    tgsearch::telemetry::init();
    tgsearch::metrics::init(tgsearch::metrics::POST_CONFIRMATION)?;
    let handoff = HandOffConfig::from_env()?;
    let app = AppContext::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let queue = SqsQueue::new(&app.aws, handoff.queue_url);
    let ctx = PostConfirmation {
        cells: &app.cells,
        queue: &queue,
        budget: app.config.provision_budget,
        sync: handoff.sync,
        cold_start: &cold_start,
    };
    cold_start.initialized();
    run(service_fn(|event| handle(&ctx, event))).await
}
