//! The provisioning worker (SQS event source): finishes the tenants post-confirmation handed off.

use lambda_runtime::{Error, run, service_fn, tracing};
use tgsearch::adapters::sqs::SqsQueue;
use tgsearch::app::AppContext;
use tgsearch::config::HandOffConfig;
use tgsearch::handlers::provision_worker::{Worker, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tgsearch::telemetry::init();
    let handoff = HandOffConfig::from_env()?;
    let app = AppContext::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let queue = SqsQueue::new(&app.aws, handoff.queue_url);
    let worker = Worker {
        provisioner: &app.provisioner,
        queue: &queue,
        budget: app.config.provision_budget,
    };
    run(service_fn(|event| handle(&worker, event))).await
}
