//! cargo-lambda's emulator (`cargo lambda watch`) serving the workspace's functions.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use testkit::stack::{self, LAMBDA_PORT};

use super::{FUNCTIONS, target_dir, with_env, workspace_root};
use crate::procs::{self, port_open};

pub(super) fn ensure_lambda_emulator(dir: &Path, say: &impl Fn(&str), force_restart: bool) -> Result<()> {
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
