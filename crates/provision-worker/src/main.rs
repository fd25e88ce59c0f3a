//! The provisioning worker (SQS event source): finishes the tenants post-confirmation handed off.

use lambda_runtime::{Error, run, service_fn, tracing};
use tgsearch::adapters::cognito::CognitoDirectory;
use tgsearch::adapters::sqs::SqsQueue;
use tgsearch::app::AppContext;
use tgsearch::config::{Env, HandOffConfig, user_pool_id};
use tgsearch::handlers::provision_worker::{Worker, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tgsearch::telemetry::init();
    let handoff = HandOffConfig::from_env()?;
    let app = AppContext::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let queue = SqsQueue::new(&app.aws, handoff.queue_url);
    let directory = CognitoDirectory::new(&app.aws, user_pool_id(&Env::process())?);
    let worker = Worker {
        provisioner: &app.provisioner,
        queue: &queue,
        directory: &directory,
        budget: app.config.provision_budget,
    };
    run(service_fn(|event| handle(&worker, event))).await
}
