//! `tgsearch eks-token` against `aws eks get-token`, and the criterion micro-benchmarks.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::stats::{Report, ms};
use crate::stack;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `tgsearch eks-token` against `aws eks get-token`, each a whole process, same machine, same
/// credentials, no network for either.
pub fn eks_token_processes(runs: usize, report: &mut Report) -> Result<()> {
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
    let ratio = b.as_secs_f64() / a.as_secs_f64();
    println!("  ratio: {ratio:.0}x faster");
    report.put(
        "eks_token",
        json!({"tgsearch_ms": super::stats::ms_f(a), "aws_cli_ms": super::stats::ms_f(b), "ratio": ratio.round()}),
    );
    report.target(
        "tgsearch eks-token at least 100x faster than aws eks get-token",
        ratio >= 100.0,
        format!("{ratio:.0}x"),
    );
    Ok(())
}

/// The in-process micro-benchmarks (criterion).
pub fn criterion_benches() -> Result<()> {
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
