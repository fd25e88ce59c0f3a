//! `cargo xtask sam`: the functions built by `sam build` and run by `sam local` in containers on
//! this machine's Docker engine, against the local stack, with no registry (the base image is
//! built here from Debian's packages).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stack::{self, workspace_root};

mod build;
pub mod image;
mod local;
mod template;

use build::Built;
use local::{Local, Server};

/// Ports of the function containers on the host's network (two each), unless
/// `TGSEARCH_SAM_PORTS` says otherwise: next to SAM's own 3000 (start-api) and 3001
/// (start-lambda), away from the stack's.
const CONTAINER_PORTS: &str = "3002-3019";

#[derive(Subcommand)]
pub enum SamAction {
    /// `sam build` of every function in template.yml whose binary is in the workspace
    /// (this machine's architecture; debug unless --release).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build the Lambda base image from Debian's packages (once; cached by a content tag).
    Image,
    /// `sam local invoke` a function with an event, or every function with its fixture.
    Invoke {
        /// Logical id, e.g. PostConfirmationFunction. Default: every built function.
        function: Option<String>,
        /// Event file. Default: the function's fixture in tests/events/.
        #[arg(short, long)]
        event: Option<PathBuf>,
    },
    /// `sam local start-lambda` (the Lambda invoke API, for `aws lambda invoke --endpoint-url`).
    StartLambda {
        #[arg(long, default_value_t = 3001)]
        port: u16,
    },
    /// `sam local start-api` (the HTTP API's routes).
    StartApi {
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// Everything: bring the stack up, build, image, invoke every function, a round trip through
    /// start-lambda with the AWS CLI, and start-api where the template has routes.
    All {
        #[arg(long)]
        release: bool,
        /// Port of start-lambda (start-api takes the one below it).
        #[arg(long, default_value_t = 3001)]
        port: u16,
    },
}

/// The architecture local runs build and run: this machine's, so no emulation is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    pub fn host() -> Result<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Arch::X86_64),
            "aarch64" => Ok(Arch::Arm64),
            other => bail!("Lambda runs x86_64 and arm64; this machine is {other}"),
        }
    }

    /// As the template's `Architecture` parameter and SAM name it.
    pub fn sam(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// As Debian names it.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// The stack's own folder for SAM's files (env-vars file, server logs, image stamp).
fn state_dir() -> Result<PathBuf> {
    let dir = testkit::stack::dir().join("sam");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// SAM from the stack's `venv-sam`, through `xtask/sam/samcli_local.py` (its two fixes for the
/// host's network and undeclared variables), with the stack's PATH (cargo-lambda) and no
/// telemetry.
pub(crate) fn sam_command() -> Command {
    let root = workspace_root();
    let mut sam = Command::new(testkit::stack::dir().join("venv-sam/bin/python"));
    sam.arg(root.join("xtask/sam/samcli_local.py"))
        .current_dir(&root)
        .env("PATH", stack::path_with_venv())
        .env("SAM_CLI_TELEMETRY", "0")
        .env(
            "TGSEARCH_SAM_PORTS",
            std::env::var("TGSEARCH_SAM_PORTS").unwrap_or_else(|_| CONTAINER_PORTS.into()),
        );
    sam
}

fn require_venv_sam() -> Result<()> {
    if !testkit::stack::dir().join("venv-sam/bin/sam").exists() {
        bail!(
            "the AWS SAM CLI (venv-sam) is not installed: run `cargo xtask stack up --test-tools` (or `cargo xtask test`), which installs it"
        );
    }
    Ok(())
}

fn say(msg: &str) {
    eprintln!("sam: {msg}");
}

/// The fixture a function is invoked with by default: `tests/events/<binary>.json`, these
/// three, or the first `tests/events/<binary>-*.json` by name.
fn fixture(binary: &str) -> Option<PathBuf> {
    let events = workspace_root().join("tests/events");
    let named = match binary {
        "post-confirmation" => "post-confirmation-signup.json",
        "reconcile" => "reconcile-schedule.json",
        "mailgun-webhook" => "mailgun-webhook-url.json",
        _ => "",
    };
    for name in [format!("{binary}.json"), named.to_owned()] {
        if !name.is_empty() && events.join(&name).exists() {
            return Some(events.join(name));
        }
    }
    let mut others: Vec<PathBuf> = fs::read_dir(&events)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{binary}-")) && n.ends_with(".json"))
        })
        .collect();
    others.sort();
    others.into_iter().next()
}

/// Reconcile acts on every tenant of the stack (it removes those without a user in the pool),
/// so invoking every function leaves it out: invoke it by name.
const ONLY_BY_NAME: &[&str] = &["reconcile"];

pub async fn run(action: Option<SamAction>) -> Result<()> {
    let action = action.unwrap_or(SamAction::All {
        release: false,
        port: 3001,
    });
    let arch = Arch::host()?;
    match action {
        SamAction::Build { release } => {
            require_venv_sam()?;
            let built = build::build(arch, release, &say)?;
            say(&format!("built template: {}", built.template.display()));
        }
        SamAction::Image => {
            let reference = image::ensure(&state_dir()?, arch, &say)?;
            println!("{reference}");
        }
        SamAction::Invoke { function, event } => {
            let (built, image) = ready(arch)?;
            let local = local_for(&built, &image)?;
            match function {
                Some(function) => {
                    let event = match event {
                        Some(event) => event,
                        None => default_event(&function)?,
                    };
                    let answer = local.invoke(&function, &event)?;
                    println!("{answer}");
                    if answer.get("errorType").is_some() {
                        bail!("{function} answered with an error");
                    }
                }
                None => invoke_every_function(&local, &built)?,
            }
        }
        SamAction::StartLambda { port } => {
            let (built, image) = ready(arch)?;
            say(&format!(
                "serving {} at http://127.0.0.1:{port}: aws lambda invoke --endpoint-url http://127.0.0.1:{port} --function-name <id> ...",
                built.functions.join(", ")
            ));
            local_for(&built, &image)?.serve(Server::Lambda, port)?;
        }
        SamAction::StartApi { port } => {
            let (built, image) = ready(arch)?;
            require_routes(&built)?;
            local_for(&built, &image)?.serve(Server::Api, port)?;
        }
        SamAction::All { release, port } => all(arch, release, port).await?,
    }
    Ok(())
}

/// The last build (of this architecture) and the base image, for `sam local`.
fn ready(arch: Arch) -> Result<(Built, String)> {
    require_venv_sam()?;
    let built = build::last()?;
    if built.arch != arch {
        bail!(
            "the last build is for {}: run `cargo xtask sam build`",
            built.arch.sam()
        );
    }
    let image = image::ensure(&state_dir()?, arch, &say)?;
    local::require_stack()?;
    Ok((built, image))
}

fn local_for<'a>(built: &'a Built, image: &'a str) -> Result<Local<'a>> {
    Ok(Local {
        built,
        image,
        env_vars: local::write_env_vars(&state_dir()?)?,
    })
}

fn default_event(function: &str) -> Result<PathBuf> {
    let functions = build::template_functions()?;
    let Some(f) = functions.iter().find(|f| f.logical_id == function) else {
        bail!("template.yml has no function {function}");
    };
    fixture(&f.binary).ok_or_else(|| {
        anyhow::anyhow!(
            "no fixture for {function} in tests/events/ ({}.json or {0}-*.json): pass one with --event",
            f.binary
        )
    })
}

/// Every built function with its fixture, in template order (the signup before the teardown of
/// the same tenant). Fails when a function answers with an error.
fn invoke_every_function(local: &Local, built: &Built) -> Result<()> {
    let mut failed = Vec::new();
    for f in build::template_functions()? {
        if !built.functions.contains(&f.logical_id) {
            continue;
        }
        if ONLY_BY_NAME.contains(&f.binary.as_str()) {
            say(&format!(
                "not invoking {}: it acts on every tenant of the stack; `cargo xtask sam invoke {0}` does",
                f.logical_id
            ));
            continue;
        }
        let Some(event) = fixture(&f.binary) else {
            say(&format!("no fixture for {} in tests/events/", f.logical_id));
            continue;
        };
        let started = Instant::now();
        let answer = local.invoke(&f.logical_id, &event)?;
        println!(
            "{} ({}, {:.1}s): {}",
            f.logical_id,
            event.file_name().unwrap_or_default().to_string_lossy(),
            started.elapsed().as_secs_f64(),
            short(&answer)
        );
        if answer.get("errorType").is_some() {
            failed.push(f.logical_id);
        }
    }
    if !failed.is_empty() {
        bail!("answered with an error: {}", failed.join(", "));
    }
    Ok(())
}

fn short(answer: &Value) -> String {
    let text = answer.to_string();
    if text.chars().count() > 240 {
        format!("{}...", text.chars().take(240).collect::<String>())
    } else {
        text
    }
}

fn require_routes(built: &Built) -> Result<Vec<(String, String)>> {
    let routes: Vec<(String, String)> = build::template_functions()?
        .into_iter()
        .filter(|f| built.functions.contains(&f.logical_id))
        .flat_map(|f| f.http_routes)
        .collect();
    if routes.is_empty() {
        bail!(
            "no built function has an HttpApi route (the tenant API's tenant-credentials is not in this workspace yet?)"
        );
    }
    Ok(routes)
}

async fn all(arch: Arch, release: bool, port: u16) -> Result<()> {
    let started = Instant::now();
    stack::up_with(stack::Options {
        test_tools: true,
        ..Default::default()
    })
    .await?;
    let dir = state_dir()?;
    let step = Instant::now();
    let built = build::build(arch, release, &say)?;
    say(&format!("sam build: {:.1}s", step.elapsed().as_secs_f64()));
    let step = Instant::now();
    let image = image::ensure(&dir, arch, &say)?;
    say(&format!(
        "base image {image}: {:.1}s",
        step.elapsed().as_secs_f64()
    ));
    let local = local_for(&built, &image)?;

    let step = Instant::now();
    invoke_every_function(&local, &built)?;
    say(&format!(
        "sam local invoke, every function: {:.1}s",
        step.elapsed().as_secs_f64()
    ));

    let step = Instant::now();
    let endpoint = format!("http://127.0.0.1:{port}");
    {
        let _server = local.start(Server::Lambda, port, &dir.join("start-lambda.log"))?;
        for (function, event) in [
            (
                "PostConfirmationFunction",
                default_event("PostConfirmationFunction")?,
            ),
            ("TeardownFunction", default_event("TeardownFunction")?),
        ] {
            built.require(function)?;
            let (status, answer) = local::aws_lambda_invoke(&endpoint, function, &event, &dir)?;
            println!(
                "aws lambda invoke {function} --endpoint-url {endpoint}: {status} {}",
                short(&answer)
            );
            if status.get("FunctionError").is_some() {
                bail!("{function} failed through start-lambda: {answer}");
            }
        }
    }
    say(&format!(
        "sam local start-lambda + AWS CLI: {:.1}s",
        step.elapsed().as_secs_f64()
    ));

    match require_routes(&built) {
        Ok(routes) => {
            let api_port = port - 1;
            let _server = local.start(Server::Api, api_port, &dir.join("start-api.log"))?;
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?;
            for (method, path) in routes {
                let url = format!("http://127.0.0.1:{api_port}{path}");
                let response = http
                    .request(reqwest::Method::from_bytes(method.as_bytes())?, &url)
                    .send()
                    .await?;
                println!("{method} {url}: {}", response.status());
            }
        }
        Err(e) => say(&format!("start-api skipped: {e}")),
    }
    say(&format!("done in {:.1}s", started.elapsed().as_secs_f64()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_existing_function_has_a_fixture() {
        for (binary, file) in [
            ("post-confirmation", "post-confirmation-signup.json"),
            ("teardown", "teardown.json"),
            ("reconcile", "reconcile-schedule.json"),
            ("mailgun-webhook", "mailgun-webhook-url.json"),
        ] {
            assert_eq!(
                fixture(binary).unwrap(),
                workspace_root().join("tests/events").join(file)
            );
        }
        assert_eq!(fixture("no-such-function"), None);
    }

    #[test]
    fn the_container_ports_are_a_range() {
        let (first, last) = CONTAINER_PORTS.split_once('-').unwrap();
        assert!(first.parse::<u16>().unwrap() < last.parse::<u16>().unwrap());
    }
}
