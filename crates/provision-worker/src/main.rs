//! The provisioning worker (SQS event source): finishes the tenants post-confirmation handed off.
//! Invoked directly by tenant-credentials, it also answers a tenant's readiness and rotates its
//! password: the internet-facing function holds none of the rights that takes.

use lambda_runtime::{Error, run, service_fn, tracing};
use tgsearch::adapters::cognito::CognitoDirectory;
use tgsearch::adapters::sqs::SqsQueue;
use tgsearch::app::AppContext;
use tgsearch::config::{Env, HandOffConfig, user_pool_id};
use tgsearch::handlers::provision_worker::{Worker, dispatch};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tgsearch::telemetry::init();
    tgsearch::metrics::init(tgsearch::metrics::PROVISION_WORKER)?;
    let handoff = HandOffConfig::from_env()?;
    let app = AppContext::from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let queue = SqsQueue::new(&app.aws, handoff.queue_url);
    let directory = CognitoDirectory::new(&app.aws, user_pool_id(&Env::process())?);
    let worker = Worker {
        cells: &app.cells,
        queue: &queue,
        directory: &directory,
        budget: app.config.provision_budget,
    };
    // Queue batches, and tenant-credentials' direct requests (it holds none of these rights).
    run(service_fn(|event| dispatch(&worker, &app.cells, event))).await
}
