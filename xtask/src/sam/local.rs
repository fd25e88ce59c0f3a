//! `sam local invoke|start-lambda|start-api` against the local stack: the functions run in
//! containers of the Debian-built base image on the host's network, with the stack's settings
//! passed through `--env-vars` (SAM resolves the template's `Fn::ImportValue`s to empty strings
//! and would otherwise hand the functions nothing of the stack).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use testkit::stack::{self, AMQP_PORT, KUBE_PORT, LAMBDA_ENDPOINT_VAR, MANAGEMENT_PORT, MOTO_PORT};

use super::build::Built;
use super::sam_command;
use crate::procs::port_open;

/// Stack variables that mean nothing inside a container (host paths, the emulator's address).
const HOST_ONLY: &[&str] = &["KUBECONFIG", LAMBDA_ENDPOINT_VAR];

/// Fails with how to start the stack when one of its services does not answer.
pub fn require_stack() -> Result<()> {
    for (what, port) in [
        ("RabbitMQ", MANAGEMENT_PORT),
        ("RabbitMQ", AMQP_PORT),
        ("moto", MOTO_PORT),
        ("the Kubernetes API stand-in", KUBE_PORT),
    ] {
        if !port_open(port) {
            bail!(
                "{what} does not answer on 127.0.0.1:{port}: start the local stack with `cargo xtask stack up`"
            );
        }
    }
    Ok(())
}

/// The `--env-vars` file: every setting of the stack (as `cargo xtask stack env` prints it; the
/// process environment wins, as in tests), for every function. Written afresh before each SAM
/// run, since the stand-in's CA changes whenever the stack restarts it.
pub fn write_env_vars(dir: &Path) -> Result<PathBuf> {
    let mut vars: Map<String, Value> = stack::exports()
        .into_iter()
        .filter(|(name, _)| !HOST_ONLY.contains(name))
        .map(|(name, value)| {
            (
                name.to_owned(),
                Value::String(std::env::var(name).unwrap_or(value)),
            )
        })
        .collect();
    vars.insert(
        "RUST_LOG".into(),
        Value::String(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
    );
    let path = dir.join("env-vars.json");
    // The stack's (test) AWS credentials are in it: readable by this user only.
    fs::write(&path, b"")?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    fs::write(
        &path,
        serde_json::to_vec_pretty(&serde_json::json!({ "Parameters": vars }))?,
    )?;
    Ok(path)
}

/// What every `sam local` command here shares.
pub struct Local<'a> {
    pub built: &'a Built,
    pub image: &'a str,
    pub env_vars: PathBuf,
}

impl Local<'_> {
    /// `sam local <subcommand> [function]` with the shared options (which must follow the
    /// function: `--parameter-overrides` takes every word after it).
    fn command(&self, subcommand: &str, function: Option<&str>) -> Command {
        let mut sam = sam_command();
        sam.args(["local", subcommand])
            .args(function)
            .arg("--template-file")
            .arg(&self.built.template)
            .arg("--env-vars")
            .arg(&self.env_vars)
            .args([
                "--docker-network",
                "host",
                "--invoke-image",
                self.image,
                "--skip-pull-image",
            ])
            .args([
                "--parameter-overrides",
                &format!("Architecture={}", self.built.arch.sam()),
            ]);
        sam
    }

    /// `sam local invoke FUNCTION -e EVENT`: the function's answer (SAM prints the function's
    /// logs and its own on stderr, which passes through).
    pub fn invoke(&self, function: &str, event: &Path) -> Result<Value> {
        self.built.require(function)?;
        let mut sam = self.command("invoke", Some(function));
        sam.arg("--event").arg(event).stderr(Stdio::inherit());
        let out = sam.output().context("cannot run sam local invoke")?;
        let answer = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("sam local invoke {function} failed ({}): {answer}", out.status);
        }
        let answer = answer.trim();
        serde_json::from_str(answer).or_else(|_| Ok(Value::String(answer.to_owned())))
    }

    /// `sam local start-lambda` or `start-api` in the foreground, until interrupted.
    pub fn serve(&self, server: Server, port: u16) -> Result<()> {
        let status = self
            .server_command(server, port)
            .status()
            .with_context(|| format!("cannot run sam local {}", server.subcommand()))?;
        if !status.success() {
            bail!("sam local {} ended with {status}", server.subcommand());
        }
        Ok(())
    }

    fn server_command(&self, server: Server, port: u16) -> Command {
        let mut sam = self.command(server.subcommand(), None);
        sam.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        sam
    }

    /// Starts a server in the background (its own process group, output to `log`) and waits
    /// until it listens.
    pub fn start(&self, server: Server, port: u16, log: &Path) -> Result<Background> {
        if port_open(port) {
            bail!("port {port} is taken: pick another with --port");
        }
        let out = fs::File::create(log)?;
        let child = self
            .server_command(server, port)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run sam local {}", server.subcommand()))?;
        let mut background = Background { child };
        let started = Instant::now();
        while !port_open(port) {
            if let Some(status) = background.child.try_wait()? {
                bail!(
                    "sam local {} ended with {status} before it listened; see {}",
                    server.subcommand(),
                    log.display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "sam local {} did not listen on {port} within 60 s; see {}",
                    server.subcommand(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(background)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Server {
    Lambda,
    Api,
}

impl Server {
    fn subcommand(self) -> &'static str {
        match self {
            Server::Lambda => "start-lambda",
            Server::Api => "start-api",
        }
    }
}

/// A SAM server started by [`Local::start`]; stopped (with its containers) when dropped.
pub struct Background {
    child: Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        // SAM stops its containers on SIGINT, as after Ctrl-C.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// `aws lambda invoke --endpoint-url` (the AWS CLI of the stack's `venv-awscli`): the function's
/// answer, or its error as the CLI reports it.
pub fn aws_lambda_invoke(
    endpoint: &str,
    function: &str,
    payload: &Path,
    dir: &Path,
) -> Result<(Value, Value)> {
    let answer_file = dir.join(format!("{function}.answer.json"));
    let out = Command::new(stack::awscli_bin().join("aws"))
        .args([
            "lambda",
            "invoke",
            "--endpoint-url",
            endpoint,
            "--function-name",
            function,
        ])
        .arg("--payload")
        .arg(format!("file://{}", payload.display()))
        .arg(&answer_file)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", stack::REGION)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .context("cannot run the AWS CLI (venv-awscli, installed by `cargo xtask stack up --test-tools`)")?;
    if !out.status.success() {
        bail!(
            "aws lambda invoke {function} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status: Value = serde_json::from_slice(&out.stdout).context("the AWS CLI printed no JSON status")?;
    let answer = fs::read(&answer_file).with_context(|| format!("reading {}", answer_file.display()))?;
    let _ = fs::remove_file(&answer_file);
    let answer = serde_json::from_slice(&answer)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer).into()));
    Ok((status, answer))
}
