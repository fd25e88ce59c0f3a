//! Our own RabbitMQ node (Debian's package, own node name and data dir) and its administrator.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use testkit::stack::{self, ADMIN_SECRET_ID, ADMIN_USER, Stack};
use tgsearch::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use tgsearch::adapters::secrets_manager::SecretsManager;
use tgsearch::app::{ADMIN_SECRET_SHAPE, http_client};
use tgsearch::bootstrap::{BootstrapRequest, bootstrap_rabbitmq};
use tgsearch::credentials::Password;

use crate::procs::{self, port_open};

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// Starts our own RabbitMQ node unless it runs. Returns `true` when it started fresh (with the
/// default `guest` user, which bootstrap then replaces).
pub(super) fn ensure_rabbitmq(dir: &Path, say: &impl Fn(&str)) -> Result<bool> {
    let (amqp_port, management_port) = (stack::amqp_port(), stack::management_port());
    if port_open(management_port) {
        return Ok(false);
    }
    if port_open(amqp_port) {
        bail!(
            "port {amqp_port} is taken by a broker without the management API on {management_port}; stop it (e.g. `service rabbitmq-server stop`) and run again"
        );
    }
    ensure_installed(say)?;
    let base = dir.join("rabbitmq");
    // A fresh node each start: tenants of earlier runs are gone, and guest is back for bootstrap.
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
    say("starting RabbitMQ");
    procs::spawn(
        dir,
        "rabbitmq",
        Command::new(RABBITMQ_SERVER)
            .env("RABBITMQ_NODENAME", node_name(amqp_port))
            .env("RABBITMQ_DIST_PORT", (amqp_port + 20000).to_string())
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", base.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq.conf"))
            // The Erlang cookie lives under HOME: keep ours apart from any system node.
            .env("HOME", &base),
    )?;
    procs::wait_for(dir, "rabbitmq", Duration::from_secs(120), || {
        port_open(management_port)
    })?;
    Ok(true)
}

/// `tgsearch@localhost`, or with the port in it when the stack's ports were moved.
fn node_name(amqp_port: u16) -> String {
    if amqp_port == stack::AMQP_PORT {
        "tgsearch@localhost".into()
    } else {
        format!("tgsearch-{amqp_port}@localhost")
    }
}

/// Installs Debian's rabbitmq-server when missing (as root; otherwise says how).
pub(super) fn ensure_installed(say: &impl Fn(&str)) -> Result<()> {
    if Path::new(RABBITMQ_SERVER).exists() {
        return Ok(());
    }
    if !procs::is_root() {
        bail!("RabbitMQ is not installed: run `sudo apt-get install rabbitmq-server` and try again");
    }
    say("installing Debian's rabbitmq-server (once)");
    procs::run(Command::new("apt-get").args(["update", "-qq"]))?;
    procs::run(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "rabbitmq-server",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Makes sure RabbitMQ has the stack's administrator, guest is gone, and Secrets Manager holds
/// the credentials (moto forgets them when it restarts).
pub(super) async fn ensure_admin(
    dir: &Path,
    stack: &Stack,
    aws: &aws_config::SdkConfig,
    rabbit_fresh: bool,
) -> Result<()> {
    let secrets = SecretsManager::from_aws(aws, stack.var("USER_SECRET_PREFIX"));
    let base = stack.config().rabbitmq_management_url;
    let http = http_client()?;
    let saved = dir.join("rabbitmq-admin.json");
    let guest = ManagementClient::new(
        http.clone(),
        base.clone(),
        AdminCredentials {
            username: "guest".into(),
            password: Password::new("guest"),
        },
    );
    // RabbitMQ answers on its port before it accepts logins: wait for guest or our admin.
    let known: Option<AdminCredentials> = fs::read(&saved)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    for _ in 0..120 {
        if guest.whoami().await.is_ok() {
            break;
        }
        if let Some(admin) = &known
            && guest.with_credentials(admin.clone()).whoami().await.is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !rabbit_fresh
        && let Some(admin) = &known
        && guest.with_credentials(admin.clone()).whoami().await.is_ok()
    {
        // The broker kept our admin; moto may have restarted and forgotten the secret.
        secrets
            .create_or_read_json(
                ADMIN_SECRET_ID,
                admin,
                "TGSearch RabbitMQ administrator",
                &[],
                ADMIN_SECRET_SHAPE,
            )
            .await?;
        return Ok(());
    }
    bootstrap_rabbitmq(BootstrapRequest {
        bootstrap: &guest,
        secrets: &secrets,
        admin_secret_id: ADMIN_SECRET_ID,
        admin_user: ADMIN_USER,
    })
    .await
    .context("bootstrapping the stack's RabbitMQ administrator")?;
    let admin: AdminCredentials = secrets
        .read_json(ADMIN_SECRET_ID, ADMIN_SECRET_SHAPE)
        .await?
        .context("the admin secret vanished right after bootstrap")?;
    fs::write(&saved, serde_json::to_vec(&admin)?)?;
    fs::set_permissions(&saved, fs::Permissions::from_mode(0o600))?;
    Ok(())
}
