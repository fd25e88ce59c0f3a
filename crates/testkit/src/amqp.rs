//! An independent AMQP 0-9-1 client (amqprs) to check what a tenant can do with its credentials.

use std::time::Duration;

use amqprs::BasicProperties;
use amqprs::channel::{BasicGetArguments, BasicPublishArguments, QueueDeclareArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use anyhow::{Context, Result, anyhow};

/// Opens a connection with an `amqp://user:password@host:port/vhost` URI, exactly as the
/// frontend would with the `amqp_uri` from Secrets Manager.
pub async fn connect(uri: &str) -> Result<Connection> {
    let args = OpenConnectionArguments::try_from(uri).map_err(|e| anyhow!("bad AMQP URI: {e}"))?;
    open(args).await
}

async fn open(args: OpenConnectionArguments) -> Result<Connection> {
    let connection = tokio::time::timeout(Duration::from_secs(10), Connection::open(&args))
        .await
        .context("AMQP connection timed out")?
        .map_err(|e| anyhow!("AMQP connection refused: {e}"))?;
    Ok(connection)
}

/// Declares a queue, publishes `payload` to it and reads it back. Returns what came back. The
/// queue is exclusive (gone with the connection: RabbitMQ 4 deprecates transient queues that
/// are not exclusive, `transient_nonexcl_queues`) and named by the server (a fixed name would
/// clash with the queue of a connection that just closed, until the cluster has removed it).
pub async fn round_trip(uri: &str, payload: &[u8]) -> Result<Vec<u8>> {
    let connection = connect(uri).await?;
    let channel = connection
        .open_channel(None)
        .await
        .map_err(|e| anyhow!("open channel: {e}"))?;
    let (queue, _, _) = channel
        .queue_declare(QueueDeclareArguments::new("").exclusive(true).finish())
        .await
        .map_err(|e| anyhow!("declare queue: {e}"))?
        .ok_or_else(|| anyhow!("declare queue: no answer"))?;
    channel
        .basic_publish(
            BasicProperties::default(),
            payload.to_vec(),
            BasicPublishArguments::new("", &queue),
        )
        .await
        .map_err(|e| anyhow!("publish: {e}"))?;
    // Publishing is asynchronous in AMQP: poll briefly until the message is routed.
    for _ in 0..50 {
        if let Some((_, _, body)) = channel
            .basic_get(BasicGetArguments::new(&queue).no_ack(true).finish())
            .await
            .map_err(|e| anyhow!("get: {e}"))?
        {
            let _ = channel.close().await;
            let _ = connection.close().await;
            return Ok(body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(anyhow!("the published message never arrived in queue {queue}"))
}

/// Opens a connection with the credentials of `uri` to another `vhost` (to check isolation).
pub async fn connect_to_vhost(uri: &str, vhost: &str) -> Result<Connection> {
    let args = OpenConnectionArguments::try_from(uri)
        .map_err(|e| anyhow!("bad AMQP URI: {e}"))?
        .virtual_host(vhost)
        .finish();
    open(args).await
}
