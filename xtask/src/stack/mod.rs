//! `cargo xtask stack up|down|env`: RabbitMQ (a cluster of containers built from Debian's
//! archive, behind HAProxy), moto's standalone server, the Kubernetes API stand-in, and cargo-lambda's emulator serving
//! this workspace's Lambdas. One module per service.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use testkit::stack::{self, Stack};

use crate::procs;

mod broker_image;
mod cluster;
mod kube;
mod lambda;
mod moto;
pub mod poller;
pub mod rabbitmq;
mod venvs;

/// The functions the emulator serves, built before it starts so the first invoke is fast.
pub const FUNCTIONS: &[&str] = &[
    "post-confirmation",
    "teardown",
    "reconcile",
    "mailgun-webhook",
    "provision-worker",
    "tenant-credentials",
];

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

/// How `stack up` runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// No progress lines.
    pub quiet: bool,
    /// Run the Lambda emulator (`false`: developers who run their own `cargo lambda watch`).
    pub emulator: bool,
    /// RabbitMQ nodes behind HAProxy (a different count restarts RabbitMQ).
    pub nodes: u16,
    /// The Kubernetes API stand-in's release build (the bench: EKS's API server is no debug
    /// build either).
    pub release_standin: bool,
    /// Also the tools only tests use (the AWS CLI, the Kubernetes linters, SAM CLI).
    pub test_tools: bool,
    /// Cells: 1 (the stack's broker and stand-in, registered as cell `a`) or 2 (and cell `b`,
    /// a broker and a stand-in of its own).
    pub cells: u16,
    /// Register cell `b` draining (its broker and stand-in run, it takes no one): the test
    /// suite's state, where only the cell tests, with registries of their own, place in `b`.
    pub second_cell_draining: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            quiet: false,
            emulator: true,
            nodes: testkit::cluster::NODES,
            release_standin: false,
            test_tools: false,
            cells: 1,
            second_cell_draining: false,
        }
    }
}

/// Brings the stack up with the 3-node RabbitMQ cluster and the Lambda emulator.
pub async fn up() -> Result<Stack> {
    up_with(Options::default()).await
}

/// Brings the stack up as `options` say.
pub async fn up_with(options: Options) -> Result<Stack> {
    let Options {
        quiet,
        emulator,
        nodes,
        release_standin,
        test_tools,
        cells,
        second_cell_draining,
    } = options;
    let dir = stack::dir();
    fs::create_dir_all(&dir)?;
    let say = |msg: &str| {
        if !quiet {
            eprintln!("stack: {msg}");
        }
    };
    venvs::ensure_venvs(&dir, test_tools, &say)?;
    let rabbit_fresh = cluster::ensure_cluster(&dir, nodes, &say)?;
    moto::ensure_moto(&dir, &say)?;
    build_binaries()?;
    let mut kube_fresh = kube::ensure_kube_standin(&dir, &say, release_standin)?;
    kube::write_kubeconfig()?;
    let second = &stack::local_cells()[1];
    let mut second_fresh = false;
    if cells >= 2 {
        fs::create_dir_all(&second.dir)?;
        second_fresh = cluster::ensure_cluster_at(&second.dir, second.amqp_port, 1, &say)?;
        kube_fresh |= kube::ensure_kube_standin_at(
            &second.dir,
            second.kube_port,
            second.cluster_name,
            &say,
            release_standin,
        )?;
    }
    let stack = Stack::require();
    // One AWS configuration for every moto call below.
    let aws = stack.aws().await;
    rabbitmq::ensure_admin(&dir, &stack, &aws, rabbit_fresh).await?;
    if cells >= 2 {
        let base = tgsearch::config::parse_url("cell b", &second.management_url(), &["http"])?;
        rabbitmq::ensure_admin_at(
            &second.dir,
            &stack,
            &aws,
            second_fresh,
            base,
            second.admin_secret_id,
        )
        .await?;
    }
    say("RabbitMQ administrator in place (the default user removed), credentials in Secrets Manager");
    let cells_changed = register_cells(&aws, cells, second_cell_draining).await?;
    say(&format!(
        "cells registered: {}",
        stack::local_cells()
            .iter()
            .take(cells.into())
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let pool_changed = moto::ensure_user_pool(&aws).await?;
    let client_changed = moto::ensure_frontend_client(&aws).await?;
    moto::ensure_alerting(&aws).await?;
    let queue_changed = moto::ensure_provision_queue(&aws).await?;
    // The Lambdas hold the cluster CA in their environment: a new stand-in means new Lambdas.
    if emulator {
        lambda::ensure_lambda_emulator(
            &dir,
            &say,
            kube_fresh || second_fresh || cells_changed || pool_changed || client_changed || queue_changed,
        )?;
        poller::ensure_poller(&dir, &say)?;
    } else {
        if procs::stop(&dir, "lambda")? {
            say("stopped the stack's Lambda emulator: run your own `cargo lambda watch`");
        }
        procs::stop(&dir, "poller")?;
    }
    say(&format!("up; state and logs in {}", dir.display()));
    // Read again: the user pool, its app client and the queue exist only now.
    Ok(Stack::require())
}

/// The stack's cell registry: cell `a` (the stack's own broker and stand-in) and, with two
/// cells, `b`; a cell not asked for is removed. States are set anew (open, or `b` draining),
/// counters kept. Returns `true` when the tables were created now (moto restarted).
async fn register_cells(aws: &aws_config::SdkConfig, cells: u16, second_draining: bool) -> Result<bool> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let existed = dynamodb
        .describe_table()
        .table_name(stack::CELLS_TABLE)
        .send()
        .await
        .is_ok();
    testkit::cells::create_tables(aws, stack::CELLS_TABLE, stack::TENANT_CELLS_TABLE).await?;
    for (i, cell) in stack::local_cells().iter().enumerate() {
        if i < usize::from(cells) {
            let mut fields = cell.fields(1000);
            if i == 1 && second_draining {
                fields.insert("state".into(), "draining".into());
            }
            testkit::cells::register(aws, stack::CELLS_TABLE, &fields).await?;
        } else {
            testkit::cells::unregister(aws, stack::CELLS_TABLE, cell.name).await?;
        }
    }
    Ok(!existed)
}

pub fn down() -> Result<()> {
    let dir = stack::dir();
    let second = &stack::local_cells()[1];
    if second.dir.exists() {
        if cluster::stop(&second.dir)? {
            eprintln!("stack: stopped cell b's RabbitMQ");
        }
        if procs::stop(&second.dir, "kube")? {
            eprintln!("stack: stopped cell b's Kubernetes API stand-in");
        }
    }
    if cluster::stop(&dir)? {
        eprintln!("stack: stopped the RabbitMQ cluster");
    }
    for name in ["poller", "lambda", "kube", "moto", rabbitmq::MNESIA_NODE] {
        if procs::stop(&dir, name)? {
            eprintln!("stack: stopped {name}");
        }
    }
    Ok(())
}

/// `stack down --purge`: also the stack's state directory and the images it built, as on a
/// machine that never ran it.
pub fn purge() -> Result<()> {
    down()?;
    let dir = stack::dir();
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
        eprintln!("stack: removed {}", dir.display());
    }
    for repository in [testkit::cluster::IMAGE_REPOSITORY, crate::sam::image::REPOSITORY] {
        for image in crate::debian_image::remove_all(repository)? {
            eprintln!("stack: removed the image {image}");
        }
    }
    Ok(())
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds what the stack runs: the Lambdas (so the emulator's first invocation does not wait
/// for a compile), the stand-in, and the CLI (kubectl's exec plugin).
pub(crate) fn build_binaries() -> Result<()> {
    let mut build = Command::new("cargo");
    build.current_dir(workspace_root()).args(["build", "--quiet"]);
    for package in FUNCTIONS.iter().chain(&["tgsearch-cli", "kube-standin"]) {
        build.args(["--package", package]);
    }
    procs::run(&mut build)
}
