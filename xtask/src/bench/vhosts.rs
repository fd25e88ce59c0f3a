//! The broker's own floor: a bare vhost PUT on the management API, and how it grows with the
//! number of vhosts already on the broker.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use serde_json::json;
use tgsearch::adapters::rabbitmq::ManagementClient;

use super::stats::{Report, Stats, header};

fn bench_vhost() -> String {
    format!("bench-{}", testkit::fresh_tenant())
}

async fn timed_puts(broker: &ManagementClient, n: usize, made: &mut Vec<String>) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let name = bench_vhost();
        let started = Instant::now();
        broker.put_vhost(&name, "tgsearch bench", &[]).await?;
        times.push(started.elapsed());
        made.push(name);
    }
    Ok(times)
}

async fn remove_all(broker: &ManagementClient, names: Vec<String>) {
    futures::stream::iter(names)
        .for_each_concurrent(8, |name| async move {
            let _ = broker.delete_vhost(&name).await;
        })
        .await;
}

/// `n` bare vhost PUTs, one after the other, on the same broker as the signups.
pub async fn put_floor(broker: &ManagementClient, n: usize, report: &mut Report) -> Result<Stats> {
    let mut made = Vec::new();
    let times = timed_puts(broker, n, &mut made).await?;
    remove_all(broker, made).await;
    let stats = Stats::of(times).expect("n > 0");
    header("The broker's floor");
    println!("{}", stats.row("vhost PUT, bare (management API, sequential)"));
    report.put("vhost_put", stats.json());
    Ok(stats)
}

/// Vhost creation cost against the vhosts already on the broker (0 to 2,000): where one broker
/// stops being enough.
pub async fn scaling(broker: &ManagementClient, report: &mut Report) -> Result<()> {
    const LEVELS: [usize; 6] = [0, 250, 500, 1000, 1500, 2000];
    let existing = broker.list_vhosts().await?.len();
    let mut made: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    println!("\nVhost creation against the vhosts on the broker (10 sequential PUTs per level; one node)");
    println!(
        "  {:>8}  {:>9}  {:>9}  {:>12}",
        "vhosts", "p50", "max", "vhosts/s"
    );
    for level in LEVELS {
        let missing = level.saturating_sub(existing + made.len());
        let filler: Vec<String> = (0..missing).map(|_| bench_vhost()).collect();
        futures::stream::iter(filler.clone())
            .for_each_concurrent(8, |name| async move {
                let _ = broker.put_vhost(&name, "tgsearch bench filler", &[]).await;
            })
            .await;
        made.extend(filler);
        let times = timed_puts(broker, 10, &mut made).await?;
        let stats = Stats::of(times).expect("10");
        let total = existing + made.len();
        println!(
            "  {:>8}  {:>9}  {:>9}  {:>12.1}",
            total,
            super::stats::ms(stats.p50),
            super::stats::ms(stats.max),
            1.0 / stats.p50.as_secs_f64()
        );
        rows.push(json!({"vhosts": total, "put": stats.json()}));
    }
    println!("  removing the {} bench vhosts", made.len());
    remove_all(broker, made).await;
    report.put("vhost_scaling", json!(rows));
    Ok(())
}
