//! `cargo xtask stack up|down|env`: RabbitMQ (Debian's package, our own node and data dir),
//! moto's standalone server, and cargo-lambda's emulator serving this workspace's Lambdas.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use testkit::stack::{
    self, ADMIN_SECRET_ID, ADMIN_USER, AMQP_PORT, CLUSTER_NAME, KUBE_PORT, LAMBDA_PORT, MANAGEMENT_PORT,
    MOTO_PORT, NAMESPACE, REGION, Stack,
};
use tgsearch::adapters::rabbitmq::{AdminCredentials, ManagementClient};
use tgsearch::adapters::secrets_manager::SecretsManager;
use tgsearch::app::{ADMIN_SECRET_SHAPE, http_client};
use tgsearch::bootstrap::{BootstrapRequest, bootstrap_rabbitmq};
use tgsearch::credentials::Password;

use crate::procs::{self, port_open};

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The functions the emulator serves, built before it starts so the first invoke is fast.
pub const FUNCTIONS: &[&str] = &["post-confirmation", "teardown", "reconcile", "mailgun-webhook"];
/// The stack's Cognito user pool in moto, for the reconcile function.
const USER_POOL_NAME: &str = "tgsearch-local";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// PATH with the stack's venv first, so `cargo lambda`, `moto_server` and `cfn-lint` resolve.
pub fn path_with_venv() -> String {
    format!(
        "{}:{}",
        stack::venv_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `export NAME=value` lines for a shell.
pub fn print_env() {
    println!("export PATH=\"{}\"", path_with_venv());
    for (name, value) in stack::exports() {
        println!("export {name}=\"{value}\"");
    }
}

/// Applies the stack's environment to a command.
pub fn with_env(command: &mut Command) -> &mut Command {
    command.env("PATH", path_with_venv()).envs(stack::exports())
}

/// Brings the stack up. `emulator: false` leaves the Lambda emulator stopped, for developers who
/// run their own `cargo lambda watch`.
pub async fn up(quiet: bool, emulator: bool) -> Result<Stack> {
    let dir = stack::dir();
    fs::create_dir_all(&dir)?;
    let say = |msg: &str| {
        if !quiet {
            eprintln!("stack: {msg}");
        }
    };
    ensure_venvs(&dir, &say)?;
    let rabbit_fresh = ensure_rabbitmq(&dir, &say)?;
    ensure_moto(&dir, &say)?;
    build_binaries()?;
    let kube_fresh = ensure_kube_standin(&dir, &say)?;
    write_kubeconfig()?;
    let stack = Stack::require();
    // One AWS configuration for every moto call below.
    let aws = stack.aws().await;
    ensure_admin(&dir, &stack, &aws, rabbit_fresh).await?;
    say("RabbitMQ administrator in place (guest removed), credentials in Secrets Manager");
    let pool_changed = ensure_user_pool(&aws).await?;
    ensure_alerting(&aws).await?;
    // The Lambdas hold the cluster CA in their environment: a new stand-in means new Lambdas.
    if emulator {
        ensure_lambda_emulator(&dir, &say, kube_fresh || pool_changed)?;
    } else if procs::stop(&dir, "lambda")? {
        say("stopped the stack's Lambda emulator: run your own `cargo lambda watch`");
    }
    say(&format!("up; state and logs in {}", dir.display()));
    Ok(stack)
}

pub fn down() -> Result<()> {
    let dir = stack::dir();
    for name in ["lambda", "kube", "moto", "rabbitmq"] {
        if procs::stop(&dir, name)? {
            eprintln!("stack: stopped {name}");
        }
    }
    Ok(())
}

/// The stack's Python venvs: name, requirements file, a program that proves it is installed.
const VENVS: &[(&str, &str, &str)] = &[
    ("venv", "xtask/stack-requirements.txt", "moto_server"),
    ("venv-awscli", "xtask/awscli-requirements.txt", "aws"),
    ("venv-k8s-lint", "xtask/k8s-lint-requirements.txt", "checkov"),
];

fn ensure_venvs(dir: &Path, say: &impl Fn(&str)) -> Result<()> {
    for (name, requirements, program) in VENVS {
        let venv = dir.join(name);
        let requirements = workspace_root().join(requirements);
        let stamp = venv.join(".requirements");
        let wanted = fs::read_to_string(&requirements)?;
        if venv.join("bin").join(program).exists()
            && fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
        {
            continue;
        }
        say(&format!(
            "installing {} into the stack's {name} (once)",
            requirements.display()
        ));
        procs::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 with the venv module is needed: apt-get install python3-venv")?;
        procs::run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
        )?;
        fs::write(stamp, wanted)?;
    }
    Ok(())
}

/// Starts our own RabbitMQ node unless it runs. Returns `true` when it started fresh (with the
/// default `guest` user, which bootstrap then replaces).
fn ensure_rabbitmq(dir: &Path, say: &impl Fn(&str)) -> Result<bool> {
    if port_open(MANAGEMENT_PORT) {
        return Ok(false);
    }
    if port_open(AMQP_PORT) {
        bail!(
            "port {AMQP_PORT} is taken by a broker without the management API on {MANAGEMENT_PORT}; stop it (e.g. `service rabbitmq-server stop`) and run again"
        );
    }
    if !Path::new(RABBITMQ_SERVER).exists() {
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
        )?;
    }
    let base = dir.join("rabbitmq");
    // A fresh node each start: tenants of earlier runs are gone, and guest is back for bootstrap.
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(base.join("mnesia"))?;
    fs::create_dir_all(base.join("log"))?;
    fs::write(base.join("enabled_plugins"), "[rabbitmq_management].\n")?;
    fs::write(
        base.join("rabbitmq.conf"),
        format!(
            "listeners.tcp.default = 127.0.0.1:{AMQP_PORT}\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {MANAGEMENT_PORT}\n"
        ),
    )?;
    say("starting RabbitMQ");
    procs::spawn(
        dir,
        "rabbitmq",
        Command::new(RABBITMQ_SERVER)
            .env("RABBITMQ_NODENAME", "tgsearch@localhost")
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", base.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq.conf"))
            // The Erlang cookie lives under HOME: keep ours apart from any system node.
            .env("HOME", &base),
    )?;
    procs::wait_for(dir, "rabbitmq", Duration::from_secs(120), || {
        port_open(MANAGEMENT_PORT)
    })?;
    Ok(true)
}

fn ensure_moto(dir: &Path, say: &impl Fn(&str)) -> Result<()> {
    if port_open(MOTO_PORT) {
        return Ok(());
    }
    say("starting moto");
    procs::spawn(
        dir,
        "moto",
        Command::new(stack::venv_bin().join("moto_server")).args([
            "-H",
            "127.0.0.1",
            "-p",
            &MOTO_PORT.to_string(),
        ]),
    )?;
    procs::wait_for(dir, "moto", Duration::from_secs(60), || port_open(MOTO_PORT))
}

/// Makes sure RabbitMQ has the stack's administrator, guest is gone, and Secrets Manager holds
/// the credentials (moto forgets them when it restarts).
async fn ensure_admin(
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

/// Finds or creates the stack's user pool in moto (moto forgets it when it restarts) and
/// records its id for `stack env`. Returns whether the id changed.
async fn ensure_user_pool(aws: &aws_config::SdkConfig) -> Result<bool> {
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(aws);
    let pools = cognito.list_user_pools().max_results(60).send().await?;
    let existing = pools
        .user_pools()
        .iter()
        .find(|p| p.name() == Some(USER_POOL_NAME))
        .and_then(|p| p.id().map(String::from));
    let id = match existing {
        Some(id) => id,
        None => cognito
            .create_user_pool()
            .pool_name(USER_POOL_NAME)
            .send()
            .await?
            .user_pool()
            .and_then(|p| p.id())
            .context("moto created a user pool without an id")?
            .to_owned(),
    };
    let file = stack::user_pool_file();
    let changed = fs::read_to_string(&file).ok().as_deref() != Some(id.as_str());
    if changed {
        fs::write(&file, &id)?;
    }
    Ok(changed)
}

/// The alert topic and a Mailgun signing key, in moto (which forgets them when it restarts).
async fn ensure_alerting(aws: &aws_config::SdkConfig) -> Result<()> {
    use tgsearch::credentials::generate_password;
    let sns = aws_sdk_sns::Client::new(aws);
    sns.create_topic().name(stack::ALERT_TOPIC).send().await?;
    let secrets = SecretsManager::from_aws(aws, "");
    secrets
        .create_or_read_json(
            stack::MAILGUN_KEY_SECRET_ID,
            &serde_json::json!({ "signing_key": format!("key-{}", generate_password().expose().to_lowercase()) }),
            "Mailgun HTTP webhook signing key (local stack)",
            &[],
            r#"{"signing_key"}"#,
        )
        .await?;
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds what the stack runs: the Lambdas (so the emulator's first invocation does not wait
/// for a compile), the stand-in, and the CLI (kubectl's exec plugin).
fn build_binaries() -> Result<()> {
    let mut build = Command::new("cargo");
    build.current_dir(workspace_root()).args(["build", "--quiet"]);
    for package in FUNCTIONS.iter().chain(&["tgsearch-cli", "kube-standin"]) {
        build.args(["--package", package]);
    }
    procs::run(&mut build)
}

/// Starts the Kubernetes API stand-in unless it runs. Returns `true` when it started (with a
/// new CA).
fn ensure_kube_standin(dir: &Path, say: &impl Fn(&str)) -> Result<bool> {
    let binary = target_dir().join("debug/kube-standin");
    let started = fs::metadata(dir.join("kube.pid")).and_then(|m| m.modified()).ok();
    let built = fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let rebuilt = matches!((built, started), (Some(b), Some(s)) if b > s);
    if port_open(KUBE_PORT) && !rebuilt && stack::kube_ca_file().exists() {
        return Ok(false);
    }
    procs::stop(dir, "kube")?;
    if port_open(KUBE_PORT) {
        bail!("port {KUBE_PORT} is taken by another process (a local cluster?); stop it and run again");
    }
    say("starting the Kubernetes API stand-in");
    let _ = fs::remove_file(stack::kube_ca_file());
    let mut standin = Command::new(&binary);
    standin
        .args([
            "--listen",
            &format!("127.0.0.1:{KUBE_PORT}"),
            "--cluster-name",
            CLUSTER_NAME,
        ])
        .arg("--dir")
        .arg(dir.join("kube"));
    with_env(&mut standin);
    procs::spawn(dir, "kube", &mut standin)?;
    procs::wait_for(dir, "kube", Duration::from_secs(30), || {
        port_open(KUBE_PORT) && stack::kube_ca_file().exists()
    })?;
    Ok(true)
}

/// A kubeconfig for plain kubectl, whose user runs `tgsearch eks-token` exactly as an EKS
/// kubeconfig runs `aws eks get-token`.
fn write_kubeconfig() -> Result<()> {
    let tgsearch = target_dir().join("debug/tgsearch");
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CLUSTER_NAME}
  cluster:
    server: https://127.0.0.1:{KUBE_PORT}
    certificate-authority: {ca}
contexts:
- name: {CLUSTER_NAME}
  context:
    cluster: {CLUSTER_NAME}
    user: {CLUSTER_NAME}
    namespace: {NAMESPACE}
current-context: {CLUSTER_NAME}
users:
- name: {CLUSTER_NAME}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {tgsearch}
      args: [eks-token, --cluster-name, {CLUSTER_NAME}, --region, {REGION}]
      interactiveMode: Never
",
        ca = stack::kube_ca_file().display(),
        tgsearch = tgsearch.display(),
    );
    fs::write(stack::kubeconfig_file(), kubeconfig)?;
    Ok(())
}

fn ensure_lambda_emulator(dir: &Path, say: &impl Fn(&str), force_restart: bool) -> Result<()> {
    let root = workspace_root();
    let marker = dir.join("lambda.workspace");
    let serving = fs::read_to_string(&marker).ok();
    // Warm instances keep running old code: restart the emulator when a binary is newer.
    let started = fs::metadata(&marker).and_then(|m| m.modified()).ok();
    let target = target_dir();
    let rebuilt = force_restart
        || FUNCTIONS.iter().any(|f| {
            let built = fs::metadata(target.join("debug").join(f))
                .and_then(|m| m.modified())
                .ok();
            matches!((built, started), (Some(b), Some(s)) if b > s)
        });
    if port_open(LAMBDA_PORT) && !rebuilt && serving.as_deref() == Some(root.to_string_lossy().as_ref()) {
        return Ok(());
    }
    procs::stop(dir, "lambda")?;
    if port_open(LAMBDA_PORT) {
        bail!(
            "port {LAMBDA_PORT} is taken by another process; stop it (another `cargo lambda watch`?) and run again"
        );
    }
    say("starting the Lambda emulator (cargo lambda watch)");
    let mut watch = Command::new(stack::venv_bin().join("cargo-lambda"));
    watch
        .current_dir(&root)
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--quiet",
            "--concurrency",
            "3",
        ])
        .args(["--invoke-port", &LAMBDA_PORT.to_string()])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    with_env(&mut watch);
    procs::spawn(dir, "lambda", &mut watch)?;
    procs::wait_for(dir, "lambda", Duration::from_secs(60), || port_open(LAMBDA_PORT))?;
    fs::write(marker, root.to_string_lossy().as_bytes())?;
    Ok(())
}
