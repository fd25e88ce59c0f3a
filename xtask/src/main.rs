//! Project automation: `cargo xtask demo|test|bench|stack up|down|env|sam`.

use std::process::{Command, ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod debian_image;
mod demo;
mod demo_frontend;
mod demo_mailgun;
mod procs;
mod sam;
mod stack;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Bring the stack up, sign a new user up through the real post-confirmation Lambda, show
    /// what was provisioned, use it over AMQP, and tear it down.
    Demo {
        /// Keep the demo tenant instead of tearing it down.
        #[arg(long)]
        keep: bool,
        /// `mailgun`: a lost mail becomes one alert, its retry none. Default: a signup.
        #[arg(value_enum)]
        story: Option<Story>,
    },
    /// Bring the stack up (RabbitMQ as a 3-node cluster of containers behind HAProxy, as
    /// production runs it) and run every test.
    Test {
        /// Run against a single RabbitMQ node instead (the node-loss and partition tests then
        /// fail, saying so).
        #[arg(long)]
        single_node: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Release builds on the local stack: cold starts, warm latency with the per-step split,
    /// bursts with the hand-off, peak RSS, EKS tokens; a table, and JSON in <target>/bench/.
    Bench {
        /// Fresh signups measured one at a time (and again 20 in flight).
        #[arg(long, default_value_t = 100)]
        signups: usize,
        /// Bursts of confirmations at once.
        #[arg(long, value_delimiter = ',', default_value = "20,50,200")]
        burst: Vec<usize>,
        /// Also measure the vhost cost against 0 to 5,000 vhosts on the 3-node cluster, and
        /// against Debian 12's RabbitMQ 3.10 (Mnesia) for comparison (tens of minutes).
        #[arg(long)]
        vhost_scaling: bool,
        /// The scale curve alone: no function, burst or token benches.
        #[arg(long)]
        only_vhost_scaling: bool,
        /// The scale curve without Debian 12's 3.10 beside it.
        #[arg(long)]
        no_comparison: bool,
        /// The largest number of vhosts the scale curve reaches.
        #[arg(long, default_value_t = 5000)]
        vhosts: usize,
        /// Also cross-build the arm64 release bootstraps and report their zipped sizes.
        #[arg(long)]
        size: bool,
        /// Also time `tgsearch status --all` over a fleet of this many tenants (filled first,
        /// removed after).
        #[arg(long, default_value_t = 0)]
        fleet: usize,
        /// The fleet alone: no function, burst or token benches.
        #[arg(long)]
        only_fleet: bool,
        /// The cells alone: `--signups` signups on a fresh single cell, then into a cell holding
        /// `--cell-fill` tenants, into a fresh cell beside it, and on a single cell of that size;
        /// and `--placements` tenants placed over `--placement-cells` cells.
        #[arg(long)]
        cells: bool,
        #[arg(long, default_value_t = 2000)]
        cell_fill: usize,
        #[arg(long, default_value_t = 100_000)]
        placements: usize,
        #[arg(long, default_value_t = 50)]
        placement_cells: usize,
    },
    /// Draws a chart (SVG) from series written down as JSON (see `bench::plot::from_json`).
    #[command(hide = true)]
    BenchPlot {
        input: std::path::PathBuf,
        output: std::path::PathBuf,
    },
    /// The local stack: RabbitMQ, moto, and the Lambda emulator.
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// The functions built by `sam build` and run in containers by `sam local` against the
    /// local stack (default: all of it, `sam all`).
    Sam {
        #[command(subcommand)]
        action: Option<sam::SamAction>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Story {
    /// A new user is provisioned, uses the broker, and is torn down (the default).
    Signup,
    /// The Mailgun webhook: one alert per mail lost for good.
    Mailgun,
}

#[derive(Subcommand)]
enum StackAction {
    /// Start what is not running (idempotent; fast when all runs).
    Up {
        /// Leave the Lambda emulator stopped (to run your own `cargo lambda watch`).
        #[arg(long)]
        no_emulator: bool,
        /// One RabbitMQ node instead of the 3-node cluster.
        #[arg(long)]
        single_node: bool,
        /// Also install the tools only tests use (the AWS CLI, the Kubernetes linters, SAM CLI).
        #[arg(long)]
        test_tools: bool,
        /// Cells: 1 (the stack's broker and stand-in, cell `a`) or 2 (and cell `b`: a second
        /// RabbitMQ and a second Kubernetes API stand-in, with their own ports and CA).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=2))]
        cells: u16,
    },
    /// Stop everything the stack started.
    Down {
        /// Also remove the stack's state directory and the images it built (a first run
        /// again).
        #[arg(long)]
        purge: bool,
    },
    /// Print `export NAME=value` lines: `eval "$(cargo xtask stack env)"`.
    Env,
    /// The provisioning queue's event source (run by `stack up` in the background).
    #[command(hide = true)]
    Poll,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Task::Stack {
            action:
                StackAction::Up {
                    no_emulator,
                    single_node,
                    test_tools,
                    cells,
                },
        } => {
            stack::up_with(stack::Options {
                emulator: !no_emulator,
                nodes: nodes(single_node),
                test_tools,
                cells,
                ..Default::default()
            })
            .await?;
            eprintln!("stack: point your shell at it with: eval \"$(cargo xtask stack env)\"");
        }
        Task::Stack {
            action: StackAction::Down { purge: false },
        } => stack::down()?,
        Task::Stack {
            action: StackAction::Down { purge: true },
        } => stack::purge()?,
        Task::Stack {
            action: StackAction::Env,
        } => stack::print_env(),
        Task::Stack {
            action: StackAction::Poll,
        } => stack::poller::run().await?,
        Task::Demo {
            story: Some(Story::Mailgun),
            ..
        } => demo_mailgun::run().await?,
        Task::Demo { keep, .. } => demo::run(keep).await?,
        Task::Test { single_node, args } => {
            stack::up_with(stack::Options {
                nodes: nodes(single_node),
                test_tools: true,
                // Cell `b` runs for the cell tests (which register cells in tables of their
                // own); in the stack's registry it takes no one, so that every other test finds
                // its tenants on the stack's own broker.
                cells: 2,
                second_cell_draining: true,
                ..Default::default()
            })
            .await?;
            return cargo_with_stack(&["test", "--workspace", "--no-fail-fast"], &args);
        }
        Task::Bench {
            signups,
            burst,
            vhost_scaling,
            only_vhost_scaling,
            no_comparison,
            vhosts,
            size,
            fleet,
            only_fleet,
            cells,
            cell_fill,
            placements,
            placement_cells,
        } => {
            bench::run(bench::Options {
                cells: cells.then_some(bench::cells::Options {
                    fill: cell_fill,
                    signups,
                    placements,
                    placement_cells,
                }),
                signups,
                bursts: burst,
                vhost_scaling,
                only_vhost_scaling,
                comparison: !no_comparison,
                vhosts,
                size,
                fleet,
                only_fleet,
            })
            .await?
        }
        Task::Sam { action } => sam::run(action).await?,
        Task::BenchPlot { input, output } => bench::plot::from_json(&input, &output)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn nodes(single_node: bool) -> u16 {
    if single_node { 1 } else { testkit::cluster::NODES }
}

/// Runs cargo with the stack's environment, passing its exit code through.
fn cargo_with_stack(base: &[&str], extra: &[String]) -> Result<ExitCode> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(stack::workspace_root()).args(base);
    if !extra.is_empty() {
        cargo.arg("--").args(extra);
    }
    stack::with_env(&mut cargo);
    let status = cargo.status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
