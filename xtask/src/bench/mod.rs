//! `cargo xtask bench`: release builds on the local stack, measured as a user (Cognito, Mailgun)
//! and an operator would; printed as tables and written as JSON to `<target>/bench/`.
//!
//! - the broker's floor: a bare vhost PUT on the same broker, in the same run (the targets are
//!   ratios to it, since it grows with the vhosts on the node);
//! - every function under the Lambda Runtime API: cold start (process start to first answer),
//!   warm post-confirmation one at a time and 20 in flight with the per-step split, teardown,
//!   the webhook, peak RSS;
//! - bursts of N confirmations at once (`--burst 20,50,200`) with the hand-off to the worker;
//! - optionally the scale curve (`--vhost-scaling`): vhost PUT, whole signup, reconcile's listing,
//!   memory, creation and deletion throughput against 0 to 5,000 vhosts on the 3-node cluster,
//!   with Debian 12's RabbitMQ 3.10 (Mnesia) beside it, as a table and an SVG plot; and the
//!   zipped arm64 bootstraps (`--size`);
//! - `tgsearch eks-token` against `aws eks get-token`, and the criterion benches.
//!
//! Speed goals live here, never as timed assertions in tests.

mod burst;
pub mod cells;
mod fleet;
mod functions;
pub mod plot;
mod size;
mod stats;
mod tokens;
mod vhosts;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::stack;
use stats::Report;

pub struct Options {
    pub signups: usize,
    pub bursts: Vec<usize>,
    pub vhost_scaling: bool,
    /// The scale curve alone (no function, burst or token benches).
    pub only_vhost_scaling: bool,
    /// Debian 12's 3.10 beside the scale curve.
    pub comparison: bool,
    pub vhosts: usize,
    pub size: bool,
    /// Tenants of the `status --all` fleet (0: none).
    pub fleet: usize,
    /// The fleet alone: no function, burst or token benches.
    pub only_fleet: bool,
    /// The cells alone (`--cells`): signups by where they land, and placement at scale.
    pub cells: Option<cells::Options>,
}

/// Where the report and the plots go: `<target>/bench/`.
pub fn out_dir() -> std::path::PathBuf {
    let dir = stack::target_dir().join("bench");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Builds the release binaries the bench runs.
fn build_release() -> Result<()> {
    let mut build = std::process::Command::new("cargo");
    build
        .current_dir(stack::workspace_root())
        .args(["build", "--quiet", "--release"]);
    for package in size::FUNCTIONS.iter().chain(&["tgsearch-cli"]) {
        build.args(["--package", package]);
    }
    eprintln!("bench: building the release binaries (a few minutes the first time)");
    crate::procs::run(&mut build)
}

/// Debian 12's RabbitMQ 3.10 on one node of its own, for the scale curve's comparison.
fn mnesia_broker() -> Result<tgsearch::adapters::rabbitmq::ManagementClient> {
    use tgsearch::adapters::rabbitmq::{AdminCredentials, ManagementClient};
    let url =
        stack::rabbitmq::start_mnesia_node(&testkit::stack::dir(), testkit::stack::amqp_port() + 28, &|m| {
            eprintln!("bench: {m}")
        })?;
    // guest logs in over loopback, which is where this node listens.
    Ok(ManagementClient::new(
        tgsearch::app::http_client()?,
        url.parse()?,
        AdminCredentials {
            username: "guest".into(),
            password: tgsearch::credentials::Password::new("guest"),
        },
    ))
}

pub async fn run(options: Options) -> Result<()> {
    // The deployed broker: the floor and the ratios are measured on the cluster the signups use. The
    // Kubernetes stand-in runs its release build, as EKS's API server is no debug build.
    build_release()?;
    let stack = stack::up_with(stack::Options {
        quiet: true,
        release_standin: true,
        // Cell b only where the cells are measured: it takes no one otherwise.
        cells: if options.cells.is_some() { 2 } else { 1 },
        second_cell_draining: true,
        ..Default::default()
    })
    .await?;
    let app = stack.app().await;
    let mut report = Report::default();
    report.put(
        "machine",
        json!({"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "profile": "release"}),
    );
    if let Some(cells) = &options.cells {
        // It writes the report itself, before its long clean-up.
        return cells::run(&stack, cells, &mut report).await;
    }
    if options.only_fleet {
        fleet::run(&stack, &app, options.fleet.max(1), &mut report).await?;
        return write(&report);
    }
    if options.only_vhost_scaling {
        scale_curve(&stack, &app, &options, &mut report).await?;
        return write(&report);
    }

    let floor = vhosts::put_floor(&app.provisioner.broker, options.signups, &mut report).await?;
    let (_, warm) = functions::run(&stack, options.signups, &mut report).await?;
    report.target(
        "warm post-confirmation p50 at most 1.2x the bare vhost PUT's",
        warm.p50.as_secs_f64() <= 1.2 * floor.p50.as_secs_f64(),
        format!(
            "{} vs {} ({:.2}x)",
            stats::ms(warm.p50),
            stats::ms(floor.p50),
            warm.p50.as_secs_f64() / floor.p50.as_secs_f64()
        ),
    );
    report.target(
        "warm post-confirmation p99 at most 1.5x the bare vhost PUT's",
        warm.p99.as_secs_f64() <= 1.5 * floor.p99.as_secs_f64(),
        format!(
            "{} vs {} ({:.2}x)",
            stats::ms(warm.p99),
            stats::ms(floor.p99),
            warm.p99.as_secs_f64() / floor.p99.as_secs_f64()
        ),
    );
    for n in &options.bursts {
        burst::run(&stack, &app, *n, &mut report).await?;
    }
    if options.vhost_scaling {
        let mnesia = mnesia_broker()?;
        let outcome = vhosts::scaling(
            &stack,
            &app.provisioner.broker,
            Some(&mnesia),
            options.vhosts,
            &mut report,
        )
        .await;
        crate::procs::stop(&testkit::stack::dir(), stack::rabbitmq::MNESIA_NODE)?;
        outcome?;
    }
    if options.fleet > 0 {
        fleet::run(&stack, &app, options.fleet, &mut report).await?;
    }
    println!();
    tokens::eks_token_processes(20, &mut report)?;
    if options.size {
        size::zips(&mut report)?;
    } else {
        println!(
            "\nzipped arm64 bootstraps: `cargo xtask bench --size` (cross-builds for arm64, ~9 min cold)"
        );
    }
    tokens::criterion_benches()?;
    write(&report)
}

/// The scale curve on the stack's cluster, with Debian 12's 3.10 started beside it and stopped
/// after.
async fn scale_curve(
    stack: &testkit::stack::Stack,
    app: &tgsearch::app::AppContext,
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    let mnesia = if options.comparison {
        Some(mnesia_broker()?)
    } else {
        None
    };
    let outcome = vhosts::scaling(
        stack,
        &app.provisioner.broker,
        mnesia.as_ref(),
        options.vhosts,
        report,
    )
    .await;
    crate::procs::stop(&testkit::stack::dir(), stack::rabbitmq::MNESIA_NODE)?;
    outcome
}

/// The report as JSON in `<target>/bench/`, stamped and as `latest.json`.
pub(crate) fn write(report: &Report) -> Result<()> {
    report.print_targets();
    let dir = stack::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let text = serde_json::to_string_pretty(&report.json())?;
    let file = dir.join(format!("bench-{stamp}.json"));
    std::fs::write(&file, &text).with_context(|| format!("writing {}", file.display()))?;
    std::fs::write(dir.join("latest.json"), &text)?;
    println!("\nwritten to {} (and latest.json)", file.display());
    for (name, chart) in plots(report) {
        let path = dir.join(name);
        std::fs::write(&path, chart.svg()).with_context(|| format!("writing {}", path.display()))?;
        println!("plotted {}", path.display());
    }
    Ok(())
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf", "#7f7f7f",
];

/// The run's pictures: the latency distributions of what was measured one by one, and the
/// bursts (Cognito's answer and the time until every tenant was complete, against the burst's
/// size). The scale curve draws its own (`vhost-scaling.svg`).
fn plots(report: &Report) -> Vec<(&'static str, plot::Chart)> {
    let mut charts = Vec::new();
    let singles: Vec<&(String, Vec<f64>)> = report
        .samples
        .iter()
        .filter(|(what, _)| !what.ends_with("at once"))
        .collect();
    if !singles.is_empty() {
        let mut chart = plot::Chart::new(
            "Latency distributions (release builds, local stack)",
            "milliseconds",
            "% of requests at or below",
        );
        for (i, (what, sample)) in singles.iter().enumerate() {
            let series = plot::Series::new(what, plot::cumulative(sample))
                .without_markers()
                .coloured(PALETTE[i % PALETTE.len()]);
            chart.add(if what.contains("floor") {
                series.dashed()
            } else {
                series
            });
        }
        charts.push(("latency-distribution.svg", chart));
    }
    let mut bursts: Vec<(f64, &Value)> = report
        .results
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("burst_")?.parse().ok()?, v)))
        .collect();
    bursts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !bursts.is_empty() {
        let mut chart = plot::Chart::new(
            "Bursts of confirmations at once",
            "confirmations at once",
            "seconds",
        );
        let line = |name: &str, pick: &dyn Fn(&Value) -> Option<f64>, colour| {
            let points = bursts
                .iter()
                .filter_map(|(n, v)| Some((*n, pick(v)? / 1000.0)))
                .collect();
            plot::Series::new(name, points).coloured(colour)
        };
        chart.add(line(
            "Cognito's answer, p50",
            &|v| v["answers"]["p50_ms"].as_f64(),
            PALETTE[0],
        ));
        chart.add(line(
            "Cognito's answer, p99",
            &|v| v["answers"]["p99_ms"].as_f64(),
            PALETTE[1],
        ));
        chart.add(
            line(
                "every tenant complete",
                &|v| v["all_complete_ms"].as_f64(),
                PALETTE[2],
            )
            .dashed(),
        );
        charts.push(("bursts.svg", chart));
    }
    charts
}
