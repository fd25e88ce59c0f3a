//! `tgsearch status --all` over a fleet: `n` confirmed users in a pool of their own, each with a
//! complete tenant, and the release CLI timed over them (its listings see every tenant of the
//! stack, as on a real deployment), then the tenants removed.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use testkit::cognito::{find_or_create_client, find_or_create_pool, sign_up_confirmed};
use testkit::stack::{self, Stack};
use tgsearch::app::AppContext;
use tgsearch::deadline::Deadline;

use super::functions::release_binary;
use super::stats::{Report, ms};

/// Signups and provisionings at once while filling.
const AT_ONCE: usize = 8;
/// Timed runs of the CLI.
const RUNS: usize = 3;

fn deadline() -> Deadline {
    Deadline::new(Duration::from_secs(60), None)
}

pub async fn run(stack: &Stack, app: &AppContext, n: usize, report: &mut Report) -> Result<()> {
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&stack.aws().await);
    let pool = find_or_create_pool(
        &cognito,
        &format!("fleet-{}", &testkit::fresh_tenant().as_str()[..8]),
    )
    .await?;
    let client = find_or_create_client(&cognito, &pool, "fleet").await?;
    eprintln!("bench: filling a fleet of {n} tenants ({AT_ONCE} at once)");
    let started = Instant::now();
    let tenants: Vec<tgsearch::TenantId> = futures::stream::iter(0..n)
        .map(|_| {
            let (cognito, pool, client) = (&cognito, &pool, &client);
            async move {
                let user = sign_up_confirmed(cognito, pool, client, "fleet").await?;
                app.provisioner
                    .provision(&user.tenant, &deadline())
                    .await
                    .with_context(|| format!("provisioning {}", user.tenant))?;
                anyhow::Ok(user.tenant)
            }
        })
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await?;
    let filled = started.elapsed();
    let cli = release_binary("tgsearch");
    let mut times = Vec::new();
    let mut counts = Value::Null;
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = Command::new(&cli)
            .args(["--json", "status", "--all"])
            .envs(stack::exports())
            .env("USER_POOL_ID", &pool)
            .output()?;
        times.push(started.elapsed());
        let fleet: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("status --all: {}", String::from_utf8_lossy(&out.stderr)))?;
        counts = fleet["counts"].clone();
    }
    let ready = counts["ready"].as_u64().unwrap_or(0) as usize;
    eprintln!("bench: removing the fleet");
    futures::stream::iter(&tenants)
        .for_each_concurrent(AT_ONCE, |t| async move {
            let _ = app.provisioner.teardown(t, &deadline()).await;
        })
        .await;
    let _ = cognito.delete_user_pool().user_pool_id(&pool).send().await;
    if ready < n {
        bail!("status --all saw {ready} ready tenants of the {n} provisioned: {counts}");
    }
    let best = *times.iter().min().expect("runs");
    println!(
        "\n`tgsearch status --all` over {n} tenants (filled in {:.0} s): {} per run (best of {RUNS}: {}); counts {counts}",
        filled.as_secs_f64(),
        times.iter().map(|t| ms(*t)).collect::<Vec<_>>().join(", "),
        ms(best)
    );
    report.target(
        format!("`tgsearch status --all` over {n} tenants under 10 s"),
        best < Duration::from_secs(10),
        ms(best),
    );
    report.put(
        "status_all",
        json!({"tenants": n, "runs_ms": times.iter().map(|t| t.as_secs_f64() * 1000.0).collect::<Vec<_>>(), "counts": counts}),
    );
    Ok(())
}
