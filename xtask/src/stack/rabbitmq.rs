//! The stack's RabbitMQ administrator (bootstrapped on the cluster, kept in Secrets Manager), and
//! the bench's comparison broker: Debian 12's own RabbitMQ 3.10 as a node of its own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use testkit::stack::{ADMIN_SECRET_ID, ADMIN_USER, Stack};
use tgsearch::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use tgsearch::adapters::secrets_manager::SecretsManager;
use tgsearch::app::{ADMIN_SECRET_SHAPE, http_client};
use tgsearch::bootstrap::{BootstrapRequest, bootstrap_rabbitmq};

use crate::procs::{self, port_open};

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The bench's comparison broker: this host's Debian 12 `rabbitmq-server` (3.10, metadata in
/// Mnesia), one node of its own on `amqp_port` and `amqp_port + 10000`, fresh each time, with
/// `guest` (loopback only). Nothing but `cargo xtask bench --vhost-scaling` uses it: the stack,
/// the tests and the demo run the deployed broker in containers. Returns its management URL.
pub fn start_mnesia_node(dir: &Path, amqp_port: u16, say: &impl Fn(&str)) -> Result<String> {
    let management_port = amqp_port + 10000;
    if port_open(amqp_port) || port_open(management_port) {
        bail!("port {amqp_port} or {management_port} is taken; the comparison broker needs both");
    }
    if !Path::new(RABBITMQ_SERVER).exists() {
        procs::apt_install(dir, &["rabbitmq-server"], say)?;
        // Debian starts the system's own node on install: it would hold port 5672.
        let _ = procs::run_quiet(Command::new("service").args(["rabbitmq-server", "stop"]));
    }
    let base = dir.join("rabbitmq-mnesia");
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(base.join("mnesia"))?;
    fs::create_dir_all(base.join("log"))?;
    fs::write(base.join("enabled_plugins"), "[rabbitmq_management].\n")?;
    fs::write(
        base.join("rabbitmq.conf"),
        format!(
            "listeners.tcp.default = 127.0.0.1:{amqp_port}\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {management_port}\n"
        ),
    )?;
    say("starting Debian 12's RabbitMQ 3.10 (Mnesia) for comparison");
    procs::spawn(
        dir,
        MNESIA_NODE,
        Command::new(RABBITMQ_SERVER)
            .env(
                "RABBITMQ_NODENAME",
                format!("tgsearch-mnesia-{amqp_port}@localhost"),
            )
            .env("RABBITMQ_DIST_PORT", (amqp_port + 20000).to_string())
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", base.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq.conf"))
            // The Erlang cookie lives under HOME: keep ours apart from any system node.
            .env("HOME", &base),
    )?;
    procs::wait_for(dir, MNESIA_NODE, Duration::from_secs(120), || {
        port_open(management_port)
    })?;
    Ok(format!("http://127.0.0.1:{management_port}"))
}

/// The comparison node's service name (pid and log files).
pub const MNESIA_NODE: &str = "rabbitmq-mnesia";

/// Makes sure RabbitMQ has the stack's administrator, the bootstrap user is gone, and Secrets Manager holds
/// the credentials (moto forgets them when it restarts).
pub(super) async fn ensure_admin(
    dir: &Path,
    stack: &Stack,
    aws: &aws_config::SdkConfig,
    rabbit_fresh: bool,
) -> Result<()> {
    let base = stack.config().rabbitmq_management_url;
    ensure_admin_at(dir, stack, aws, rabbit_fresh, base, ADMIN_SECRET_ID).await
}

/// [`ensure_admin`] for the broker at `base`, its administrator in the secret `secret_id`.
pub(super) async fn ensure_admin_at(
    dir: &Path,
    stack: &Stack,
    aws: &aws_config::SdkConfig,
    rabbit_fresh: bool,
    base: tgsearch::config::Url,
    secret_id: &str,
) -> Result<()> {
    let secrets = SecretsManager::from_aws(aws, stack.var("USER_SECRET_PREFIX"));
    let http = http_client()?;
    let saved = dir.join("rabbitmq-admin.json");
    // The cluster's generated default user, as the Cluster Operator makes one.
    let bootstrap = ManagementClient::new(http.clone(), base.clone(), super::cluster::default_user(dir)?);
    // RabbitMQ answers on its port before it accepts logins: wait for it or our admin.
    let known: Option<AdminCredentials> = fs::read(&saved)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    for _ in 0..120 {
        if bootstrap.whoami().await.is_ok() {
            break;
        }
        if let Some(admin) = &known
            && bootstrap.with_credentials(admin.clone()).whoami().await.is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !rabbit_fresh
        && let Some(admin) = &known
        && bootstrap.with_credentials(admin.clone()).whoami().await.is_ok()
    {
        // The broker kept our admin; moto may have restarted and forgotten the secret.
        secrets
            .create_or_read_json(
                secret_id,
                admin,
                "TGSearch RabbitMQ administrator",
                &[],
                ADMIN_SECRET_SHAPE,
            )
            .await?;
        return Ok(());
    }
    bootstrap_rabbitmq(BootstrapRequest {
        bootstrap: &bootstrap,
        secrets: &secrets,
        admin_secret_id: secret_id,
        admin_user: ADMIN_USER,
    })
    .await
    .context("bootstrapping the stack's RabbitMQ administrator")?;
    let admin: AdminCredentials = secrets
        .read_json(secret_id, ADMIN_SECRET_SHAPE)
        .await?
        .context("the admin secret vanished right after bootstrap")?;
    fs::write(&saved, serde_json::to_vec(&admin)?)?;
    fs::set_permissions(&saved, fs::Permissions::from_mode(0o600))?;
    Ok(())
}
