//! `cargo xtask bench`: post-confirmation latency on the warm local stack, and the size of the
//! release bootstrap.
//!
//! End-to-end numbers go through the real binary under the Lambda emulator (what Cognito would
//! wait for, minus the network to AWS); the per-step split runs the same provisioning code
//! in-process, where each step is timed.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use testkit::lambda::invoke;
use testkit::{events, fresh_tenant};
use tgsearch::deadline::{Deadline, Step};

use crate::stack;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(signups: usize, size: bool) -> Result<()> {
    let stack = stack::up(true, true).await?;
    let app = stack.app().await;
    let http = reqwest::Client::new();
    let endpoint = stack.lambda_endpoint().to_owned();

    // Warm-up: the first invocation starts the function (cold start) and opens connections.
    let warm = fresh_tenant();
    invoke(&http, &endpoint, "post-confirmation", &events::signup_for(&warm))
        .await?
        .unwrap_ok();
    let mut tenants = vec![warm];

    let mut end_to_end = Vec::with_capacity(signups);
    for _ in 0..signups {
        let tenant = fresh_tenant();
        let started = Instant::now();
        invoke(
            &http,
            &endpoint,
            "post-confirmation",
            &events::signup_for(&tenant),
        )
        .await?
        .unwrap_ok();
        end_to_end.push(started.elapsed());
        tenants.push(tenant);
    }
    end_to_end.sort();

    let mut per_step: Vec<(Step, Vec<Duration>)> = [
        Step::Secret,
        Step::Vhost,
        Step::Volume,
        Step::User,
        Step::KubeSecret,
        Step::Permission,
        Step::Deployment,
    ]
    .map(|s| (s, Vec::new()))
    .into();
    let mut in_process = Vec::with_capacity(signups);
    for _ in 0..signups {
        let tenant = fresh_tenant();
        let started = Instant::now();
        let done = app
            .provisioner
            .provision(&tenant, &Deadline::new(Duration::from_secs(5), None))
            .await?;
        in_process.push(started.elapsed());
        for t in done.timings {
            if let Some((_, v)) = per_step.iter_mut().find(|(s, _)| *s == t.step) {
                v.push(Duration::from_micros(t.micros));
            }
        }
        tenants.push(tenant);
    }
    in_process.sort();

    println!("post-confirmation, warm, {signups} fresh signups each");
    println!(
        "  end to end through the Lambda emulator: p50 {}  p99 {}  max {}   (goal: p50 < 100 ms, p99 < 250 ms)",
        ms(percentile(&end_to_end, 50.0)),
        ms(percentile(&end_to_end, 99.0)),
        ms(*end_to_end.last().unwrap())
    );
    println!(
        "  provisioning in-process:                p50 {}  p99 {}",
        ms(percentile(&in_process, 50.0)),
        ms(percentile(&in_process, 99.0))
    );
    println!(
        "  per step (secret ∥ vhost ∥ volume; user ∥ kube-secret after secret; then permission ∥ deployment):"
    );
    for (step, mut times) in per_step {
        times.sort();
        println!(
            "    {:<11} p50 {:>9}  p99 {:>9}",
            step.as_str(),
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0))
        );
    }

    let deadline = Deadline::new(Duration::from_secs(30), None);
    for tenant in &tenants {
        app.provisioner.teardown(tenant, &deadline).await?;
    }

    eks_token_processes(20)?;
    criterion_benches()?;

    if size {
        release_size()?;
    } else {
        println!(
            "release bootstrap size: run `cargo xtask bench --size` (cross-builds for arm64, ~9 min cold)"
        );
    }
    Ok(())
}

/// Builds the arm64 release bootstrap as `sam build` would and reports it zipped.
fn release_size() -> Result<()> {
    let root = stack::workspace_root();
    let mut build = std::process::Command::new("cargo");
    build.current_dir(&root).args([
        "lambda",
        "build",
        "--release",
        "--arm64",
        "--output-format",
        "zip",
        "--package",
        "post-confirmation",
    ]);
    stack::with_env(&mut build);
    crate::procs::run(&mut build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let zip = target.join("lambda/post-confirmation/bootstrap.zip");
    let Ok(meta) = std::fs::metadata(&zip) else {
        bail!("{} was not built", zip.display())
    };
    let mb = meta.len() as f64 / 1_000_000.0;
    println!(
        "release bootstrap (arm64, zipped): {mb:.2} MB   (goal: < 5 MB)   {}",
        zip.display()
    );
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `tgsearch eks-token` against `aws eks get-token`, each a whole process, same machine, same
/// credentials, no network for either.
fn eks_token_processes(runs: usize) -> Result<()> {
    let root = stack::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // A whole-process comparison is about start-up: measure the build users install.
    let mut build = std::process::Command::new("cargo");
    build
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "--package", "tgsearch-cli"]);
    crate::procs::run(&mut build)?;
    let ours = target.join("release/tgsearch");
    let aws = testkit::stack::awscli_bin().join("aws");
    let time = |program: &std::path::Path, args: &[&str]| -> Result<Duration> {
        let started = Instant::now();
        let out = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("HOME", "/nonexistent")
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()?;
        let took = started.elapsed();
        if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("k8s-aws-v1.") {
            bail!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    };
    let args = ["--cluster-name", "tgsearch", "--region", "eu-west-1"];
    let ours_args: Vec<&str> = ["eks-token"].iter().chain(&args).copied().collect();
    let aws_args: Vec<&str> = ["eks", "get-token"].iter().chain(&args).copied().collect();
    // One untimed run each, so both start from a warm page cache.
    time(&ours, &ours_args)?;
    time(&aws, &aws_args)?;
    let ours_times = (0..runs)
        .map(|_| time(&ours, &ours_args))
        .collect::<Result<Vec<_>>>()?;
    let aws_times = (0..runs)
        .map(|_| time(&aws, &aws_args))
        .collect::<Result<Vec<_>>>()?;
    let (a, b) = (median(ours_times), median(aws_times));
    println!("EKS token as a whole process, median of {runs} runs");
    println!("  tgsearch eks-token (release build): {}", ms(a));
    println!("  aws eks get-token (AWS CLI v1):      {}", ms(b));
    println!(
        "  ratio: {:.0}x faster   (goal: at least 100x)",
        b.as_secs_f64() / a.as_secs_f64()
    );
    Ok(())
}

/// The in-process micro-benchmarks (criterion).
fn criterion_benches() -> Result<()> {
    let mut bench = std::process::Command::new("cargo");
    bench.current_dir(stack::workspace_root()).args([
        "bench",
        "--quiet",
        "--package",
        "tgsearch",
        "--bench",
        "eks_token",
    ]);
    crate::procs::run(&mut bench)
}
