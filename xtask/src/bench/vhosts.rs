//! The broker's own floor (a bare vhost PUT on the management API) and the scale curve: how
//! the cost of a vhost, of a whole signup, of reconcile's listing and of memory grows with the
//! vhosts already on the broker. On the deployed broker (the stack's 3-node cluster, metadata in
//! Khepri) and, in the same run, on Debian 12's RabbitMQ 3.10 (one node, Mnesia) for comparison.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::{Value, json};
use testkit::cluster::Cluster;
use testkit::stack::Stack;
use testkit::{events, fresh_tenant};
use tgsearch::TenantId;
use tgsearch::adapters::rabbitmq::ManagementClient;

use super::functions::{TIMEOUT, expect_ok, instance_with, warm_up};
use super::plot::{Chart, Series};
use super::stats::{Report, Stats, header, ms};

/// Vhosts created at once while filling (and removed at once afterwards).
const AT_ONCE: usize = 20;
/// Timed operations per level.
const SAMPLES: usize = 20;

fn bench_vhost() -> String {
    format!("bench-{}", fresh_tenant())
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

/// Deletes `names`, [`AT_ONCE`] at a time; returns vhosts per second.
async fn remove_all(broker: &ManagementClient, names: Vec<String>) -> f64 {
    let n = names.len();
    let started = Instant::now();
    futures::stream::iter(names)
        .for_each_concurrent(AT_ONCE, |name| async move {
            let _ = broker.delete_vhost(&name).await;
        })
        .await;
    n as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// `n` bare vhost PUTs, one after the other, on the same broker as the signups.
pub async fn put_floor(broker: &ManagementClient, n: usize, report: &mut Report) -> Result<Stats> {
    let mut made = Vec::new();
    let times = timed_puts(broker, n, &mut made).await?;
    remove_all(broker, made).await;
    report.sample("vhost PUT, bare (the floor)", &times);
    let stats = Stats::of(times).expect("n > 0");
    header("The broker's floor");
    println!("{}", stats.row("vhost PUT, bare (management API, sequential)"));
    report.put("vhost_put", stats.json());
    Ok(stats)
}

/// Memory in use per node, bytes: the management API's `mem_used` where the broker collects
/// statistics (3.10), else each container's `rabbitmqctl status` (the deployed settings turn
/// the management plugin's collector off, and `/api/nodes` then reports no memory).
async fn memory(subject: &Subject<'_>) -> Result<Vec<(String, u64)>> {
    let reported: Vec<(String, u64)> = subject
        .broker
        .node_memory()
        .await?
        .into_iter()
        .filter_map(|n| Some((n.name, n.mem_used?)))
        .collect();
    let Some(cluster) = subject.cluster.filter(|_| reported.is_empty()) else {
        return Ok(reported);
    };
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        cluster
            .nodes
            .iter()
            .map(|node| {
                let status: Value = serde_json::from_str(&node.ctl(&["status", "--formatter", "json"])?)?;
                let bytes = status["memory"]["total"]["rss"]
                    .as_u64()
                    .context("rabbitmqctl status reports no memory.total.rss")?;
                Ok((node.name.clone(), bytes))
            })
            .collect()
    })
    .await?
}

/// A level's vhosts, its PUT times and its whole signups' (the stack's cluster only).
type Point = (usize, Stats, Option<Stats>);

/// One level of the curve.
struct Level {
    vhosts: usize,
    put: Stats,
    signup: Option<Stats>,
    listing: Stats,
}

/// A broker to measure, and how to sign a tenant up on it and read its nodes' memory (the
/// stack's cluster only).
pub struct Subject<'a> {
    pub label: &'a str,
    pub broker: &'a ManagementClient,
    pub stack: Option<&'a Stack>,
    pub cluster: Option<&'a Cluster>,
}

/// The curve on one broker: levels of vhosts, filled [`AT_ONCE`] at a time; at each level
/// [`SAMPLES`] sequential vhost PUTs, whole signups (when the subject has a stack), and the
/// listing reconcile uses; memory per vhost per node from the first level to the last; delete
/// throughput at the end. Returns the JSON of it, and the series to plot.
pub async fn curve(subject: &Subject<'_>, levels: &[usize]) -> Result<(Value, Vec<Point>)> {
    let broker = subject.broker;
    let existing = broker.list_vhosts().await?.len();
    let mut made: Vec<String> = Vec::new();
    let mut rows: Vec<Level> = Vec::new();
    let mut fill_time = Duration::ZERO;
    let mut filled = 0usize;
    let memory_before = memory(subject).await.unwrap_or_default();
    let signer = match subject.stack {
        Some(stack) => {
            // The whole signup, synchronously: no hand-off caps what is measured.
            let f = instance_with(stack, "post-confirmation", &[("PROVISION_SYNC_MS", "4500")]);
            let warm = fresh_tenant();
            warm_up(&f, &warm).await?;
            Some((f, warm))
        }
        None => None,
    };
    let mut signed_up: Vec<TenantId> = Vec::new();
    let mut stopped: Option<String> = None;
    println!(
        "\n{}: {SAMPLES} sequential PUTs per level, filled {AT_ONCE} at a time",
        subject.label
    );
    println!(
        "  {:>7}  {:>9}  {:>9}  {:>11}  {:>11}  {:>10}",
        "vhosts", "PUT p50", "PUT p99", "signup p50", "signup p99", "listing"
    );
    for &level in levels {
        let missing = level.saturating_sub(existing + made.len());
        let filler: Vec<String> = (0..missing).map(|_| bench_vhost()).collect();
        let started = Instant::now();
        let failures = futures::stream::iter(filler.clone())
            .map(|name| async move {
                broker
                    .put_vhost(&name, "tgsearch bench filler", &[])
                    .await
                    .is_err()
            })
            .buffer_unordered(AT_ONCE)
            .filter(|failed| futures::future::ready(*failed))
            .count()
            .await;
        if missing > 0 {
            fill_time += started.elapsed();
            filled += missing;
        }
        made.extend(filler);
        if failures > 0 {
            eprintln!("bench: {failures} filler vhosts failed at level {level} (descriptors or memory?)");
        }
        // A broker that cannot keep up ends its curve here, with what it measured so far.
        let put = match timed_puts(broker, SAMPLES, &mut made).await {
            Ok(times) => Stats::of(times).expect("samples"),
            Err(e) => {
                println!("  the curve stops at {level} vhosts: {e}");
                stopped = Some(format!("at {level} vhosts: {e}"));
                break;
            }
        };
        let signup = match &signer {
            Some((f, _)) => {
                let mut times = Vec::new();
                for _ in 0..SAMPLES / 2 {
                    let tenant = fresh_tenant();
                    let outcome = f.invoke(&events::signup_for(&tenant), TIMEOUT).await;
                    expect_ok(&outcome, "signup", f)?;
                    times.push(outcome.elapsed);
                    signed_up.push(tenant);
                }
                Stats::of(times)
            }
            None => None,
        };
        let mut listings = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            broker.list_vhosts().await.context("the listing reconcile uses")?;
            listings.push(started.elapsed());
        }
        let listing = Stats::of(listings).expect("5");
        let total = existing + made.len() + signed_up.len();
        println!(
            "  {:>7}  {:>9}  {:>9}  {:>11}  {:>11}  {:>10}",
            total,
            ms(put.p50),
            ms(put.p99),
            signup.as_ref().map_or("-".into(), |s| ms(s.p50)),
            signup.as_ref().map_or("-".into(), |s| ms(s.p99)),
            ms(listing.p50),
        );
        rows.push(Level {
            vhosts: level,
            put,
            signup,
            listing,
        });
    }
    let memory_after = memory(subject).await.unwrap_or_default();
    let grown = (existing + made.len()).saturating_sub(existing).max(1);
    let per_vhost: Vec<Value> = memory_after
        .iter()
        .filter_map(|(node, after)| {
            let before = memory_before.iter().find(|(n, _)| n == node)?.1;
            let mib = after.saturating_sub(before) as f64 / grown as f64 / (1024.0 * 1024.0);
            Some(json!({"node": node, "mib_per_vhost": mib}))
        })
        .collect();
    let create_rate = filled as f64 / fill_time.as_secs_f64().max(1e-9);
    for entry in &per_vhost {
        println!(
            "  memory on {}: {:.3} MiB per vhost",
            entry["node"].as_str().unwrap_or("?"),
            entry["mib_per_vhost"].as_f64().unwrap_or(0.0)
        );
    }
    println!("  creation, {AT_ONCE} at once: {create_rate:.1} vhosts/s");
    if let Some(stack) = subject.stack {
        let app = stack.app().await;
        let deadline = tgsearch::deadline::Deadline::new(Duration::from_secs(600), None);
        for tenant in &signed_up {
            let _ = app.provisioner.teardown(tenant, &deadline).await;
        }
    }
    println!("  removing the {} bench vhosts, {AT_ONCE} at once", made.len());
    let delete_rate = remove_all(broker, made).await;
    println!("  deletion, {AT_ONCE} at once: {delete_rate:.1} vhosts/s");
    let series = rows.iter().map(|r| (r.vhosts, r.put, r.signup)).collect();
    let json = json!({
        "broker": subject.label,
        "levels": rows.iter().map(|r| json!({
            "vhosts": r.vhosts,
            "put": r.put.json(),
            "signup": r.signup.as_ref().map(Stats::json),
            "listing": r.listing.json(),
        })).collect::<Vec<_>>(),
        "memory_per_vhost": per_vhost,
        "create_per_second_at_once": create_rate,
        "delete_per_second_at_once": delete_rate,
        "stopped": stopped,
    });
    Ok((json, series))
}

/// The scale curve on the stack's cluster and on the comparison broker, with the target (PUT
/// p50 at 2,000 vhosts within 1.5x of p50 on an empty cluster), a table and a plot.
pub async fn scaling(
    stack: &Stack,
    cluster: &ManagementClient,
    mnesia: Option<&ManagementClient>,
    top: usize,
    report: &mut Report,
) -> Result<()> {
    header("Vhost scale curve");
    let nodes = Cluster::running(&testkit::stack::dir())?;
    let levels: Vec<usize> = [0, 1000, 2000, 3000, 4000, 5000]
        .into_iter()
        .filter(|l| *l < top)
        .chain([top])
        .collect();
    let (khepri_json, khepri) = curve(
        &Subject {
            label: "RabbitMQ 4 (Khepri), 3 nodes",
            broker: cluster,
            stack: Some(stack),
            cluster: Some(&nodes),
        },
        &levels,
    )
    .await?;
    let p50_at = |series: &[Point], n: usize| series.iter().find(|(v, _, _)| *v == n).map(|(_, s, _)| s.p50);
    if let (Some(empty), Some(at_2k)) = (p50_at(&khepri, 0), p50_at(&khepri, 2000)) {
        report.target(
            "vhost PUT p50 at 2,000 vhosts within 1.5x of p50 on an empty cluster",
            at_2k.as_secs_f64() <= 1.5 * empty.as_secs_f64(),
            format!(
                "{} vs {} ({:.2}x)",
                ms(at_2k),
                ms(empty),
                at_2k.as_secs_f64() / empty.as_secs_f64()
            ),
        );
    }
    let mut curves = vec![khepri_json];
    let mut chart = Chart::new(
        "Vhost PUT and whole signup against the vhosts on the broker",
        "vhosts already on the broker",
        "milliseconds",
    );
    let points = |series: &[Point], pick: fn(&Point) -> Option<Duration>| {
        series
            .iter()
            .filter_map(|p| Some((p.0 as f64, pick(p)?.as_secs_f64() * 1000.0)))
            .collect::<Vec<_>>()
    };
    chart.add(Series::new(
        "4.3 Khepri: vhost PUT p50",
        points(&khepri, |p| Some(p.1.p50)),
    ));
    chart.add(Series::new("4.3 Khepri: vhost PUT p99", points(&khepri, |p| Some(p.1.p99))).dashed());
    chart.add(Series::new(
        "4.3 Khepri: whole signup p50",
        points(&khepri, |p| p.2.as_ref().map(|s| s.p50)),
    ));
    if let Some(mnesia) = mnesia {
        let mnesia_levels: Vec<usize> = levels.iter().copied().filter(|l| *l <= 2000).collect();
        let (json, series) = curve(
            &Subject {
                label: "RabbitMQ 3.10 (Mnesia), 1 node",
                broker: mnesia,
                stack: None,
                cluster: None,
            },
            &mnesia_levels,
        )
        .await?;
        curves.push(json);
        chart.add(Series::new(
            "3.10 Mnesia: vhost PUT p50",
            points(&series, |p| Some(p.1.p50)),
        ));
    }
    report.put("vhost_scaling", json!(curves));
    let dir = crate::stack::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("vhost-scaling.svg");
    std::fs::write(&file, chart.svg())?;
    println!("\n  plot: {}", file.display());
    Ok(())
}
