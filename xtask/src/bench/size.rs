//! The zipped arm64 release `bootstrap` of every function, as `sam build` deploys it.

use anyhow::{Result, bail};
use serde_json::json;

use super::stats::Report;
use crate::stack;

/// The functions `template.yml` deploys.
pub const FUNCTIONS: &[&str] = &[
    "post-confirmation",
    "provision-worker",
    "teardown",
    "reconcile",
    "mailgun-webhook",
    "tenant-credentials",
];

/// Cross-builds each function for arm64 (release, zipped, as cargo-lambda packs it for Lambda)
/// and reports the zip sizes.
pub fn zips(report: &mut Report) -> Result<()> {
    let root = stack::workspace_root();
    let target = stack::target_dir();
    println!("\nZipped arm64 release bootstrap (cargo lambda build --release --arm64)");
    let mut sizes = serde_json::Map::new();
    for function in FUNCTIONS {
        let mut build = std::process::Command::new("cargo");
        build.current_dir(&root).args([
            "lambda",
            "build",
            "--release",
            "--arm64",
            "--output-format",
            "zip",
            "--package",
            function,
        ]);
        stack::with_env(&mut build);
        crate::procs::run(&mut build)?;
        let zip = target.join("lambda").join(function).join("bootstrap.zip");
        let Ok(meta) = std::fs::metadata(&zip) else {
            bail!("{} was not built", zip.display())
        };
        let mb = meta.len() as f64 / 1_000_000.0;
        println!("  {function:<20} {mb:.2} MB");
        sizes.insert((*function).into(), json!((mb * 100.0).round() / 100.0));
        report.target(
            format!("{function}: zipped bootstrap under 4.5 MB"),
            mb < 4.5,
            format!("{mb:.2} MB"),
        );
    }
    report.put("zipped_bootstrap_mb", json!(sizes));
    Ok(())
}
