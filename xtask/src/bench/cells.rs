//! `cargo xtask bench --cells`: whether a signup's latency depends on its cell's fill or on the
//! number of tenants, and placement at scale.
//!
//! 1. Signups through the release post-confirmation binary, each into a known cell (the other
//!    draining), over registries of the bench's own:
//!    - on a fresh single cell (no registry: the function's own broker and cluster, cell `b`'s);
//!    - after cell `a` is filled with `fill` tenants: into `a`, into the fresh cell `b`, and on a
//!      single-cell deployment of the same size (no registry, `a`'s broker and cluster).
//! 2. Placement alone: `placements` tenants over `placement_cells` cells with the real placement
//!    code against the real table (moto's DynamoDB), 50 at a time: the fullest cell against its
//!    capacity, the spread of fill across the cells as they fill, the time per placement.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use testkit::stack::{LocalCell, Stack, local_cells};
use testkit::{events, fresh_tenant};
use tgsearch::TenantId;
use tgsearch::adapters::cell_registry::DynamoCells;
use tgsearch::app::{AppContext, http_client};
use tgsearch::cells::{Cell, CellHealth, CellRegistry, CellState, TenantCells, placement};
use tgsearch::config::CellTables;
use tgsearch::deadline::Deadline;

use super::functions::{TIMEOUT, expect_ok, instance_with};
use super::plot::{Chart, Series};
use super::stats::{Report, Stats, ms};

pub struct Options {
    pub fill: usize,
    pub signups: usize,
    pub placements: usize,
    pub placement_cells: usize,
}

/// Tenants provisioned at once while filling, and placements at once.
const AT_ONCE: usize = 8;
const PLACING_AT_ONCE: usize = 50;

fn deadline() -> Deadline {
    Deadline::new(Duration::from_secs(60), None)
}

/// Fresh tables with the stack's two cells registered (`a` and `b` in the given states).
async fn tables(aws: &aws_config::SdkConfig, cells: &[LocalCell; 2], capacity: u32) -> Result<CellTables> {
    let id = fresh_tenant();
    let tables = CellTables {
        cells: format!("bench-cells-{}", &id.as_str()[..8]),
        map: format!("bench-tenant-cells-{}", &id.as_str()[..8]),
    };
    testkit::cells::create_tables(aws, &tables.cells, &tables.map).await?;
    for cell in cells {
        testkit::cells::register(aws, &tables.cells, &cell.fields(capacity)).await?;
    }
    Ok(tables)
}

async fn set_state(registry: &DynamoCells, cell: &str, state: CellState) -> Result<()> {
    registry
        .set_state(
            &tgsearch::cells::CellId::parse(cell).map_err(anyhow::Error::msg)?,
            state,
        )
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

/// `n` warm signups through the release post-confirmation binary with these settings; returns
/// their latencies and the tenants (for the teardown).
async fn signups(
    stack: &Stack,
    settings: &[(&str, &str)],
    n: usize,
) -> Result<(Vec<Duration>, Vec<TenantId>)> {
    let mut all: Vec<(&str, &str)> = settings.to_vec();
    // Synchronously: a hand-off would time the queue, not the cell.
    all.push(("PROVISION_SYNC_MS", "4000"));
    let f = instance_with(stack, "post-confirmation", &all);
    let mut tenants = Vec::new();
    // The first signups open the connections a warm container holds.
    for _ in 0..3 {
        let t = fresh_tenant();
        expect_ok(
            &f.invoke(&events::signup_for(&t), TIMEOUT).await,
            "warm-up signup",
            &f,
        )?;
        tenants.push(t);
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = fresh_tenant();
        let outcome = f.invoke(&events::signup_for(&t), TIMEOUT).await;
        expect_ok(&outcome, "signup", &f)?;
        times.push(outcome.elapsed);
        tenants.push(t);
    }
    f.stop().await;
    Ok((times, tenants))
}

async fn remove(app: &AppContext, tenants: &[TenantId]) {
    futures::stream::iter(tenants)
        .for_each_concurrent(AT_ONCE, |t| async move {
            if let Ok(at) = app.cells.locate(t).await {
                let _ = at.provisioner.teardown(t, &deadline()).await;
                if let Some(cell) = &at.cell {
                    let _ = app.cells.forget(t, cell).await;
                }
            }
        })
        .await;
}

/// Tenant vhosts a cell's broker holds now (the fill as the broker sees it, whoever made it).
async fn vhosts_of(app: &AppContext, cell: &str) -> Result<usize> {
    let p = app
        .cells
        .provisioner_named(&tgsearch::cells::CellId::parse(cell).map_err(anyhow::Error::msg)?)
        .await?;
    let vhosts = p.broker.list_vhosts().await?;
    Ok(vhosts.iter().filter(|v| v.is_tenant_vhost()).count())
}

/// The environment of a deployment without cells on `cell`'s broker and cluster.
fn single_cell(cell: &LocalCell) -> Vec<(&'static str, String)> {
    let ca = cell.fields(0).remove("eks_ca").unwrap_or_default();
    vec![
        ("CELLS_TABLE", String::new()),
        ("TENANT_CELLS_TABLE", String::new()),
        ("RABBITMQ_MANAGEMENT_URL", cell.management_url()),
        ("RABBITMQ_AMQP_URL", cell.amqp_url()),
        ("RABBITMQ_ADMIN_SECRET_ID", cell.admin_secret_id.to_owned()),
        ("EKS_CLUSTER_NAME", cell.cluster_name.to_owned()),
        ("EKS_CLUSTER_ENDPOINT", cell.kube_endpoint()),
        ("EKS_CLUSTER_CA", ca),
    ]
}

fn borrowed<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub async fn run(stack: &Stack, options: &Options, report: &mut Report) -> Result<()> {
    let aws = stack.aws().await;
    let cells = local_cells();
    let tables = tables(&aws, &cells, 100_000).await?;
    let mut config = stack.config();
    config.cell_tables = Some(tables.clone());
    let app = AppContext::new(config, &aws, http_client()?).await?;
    let registry = app.cells.registry().context("the bench's registry")?;
    let with_tables = [
        ("CELLS_TABLE", tables.cells.as_str()),
        ("TENANT_CELLS_TABLE", tables.map.as_str()),
    ];
    let n = options.signups;

    eprintln!("bench: {n} signups on a fresh single cell (cell b's broker and cluster, no registry)");
    let (fresh_single, made) = signups(stack, &borrowed(&single_cell(&cells[1])), n).await?;
    // Not in the map: removed with cell b's provisioner.
    let b = app
        .cells
        .provisioner_named(&tgsearch::cells::CellId::parse("b").map_err(anyhow::Error::msg)?)
        .await?;
    futures::stream::iter(&made)
        .for_each_concurrent(AT_ONCE, |t| {
            let b = b.clone();
            async move {
                let _ = b.teardown(t, &deadline()).await;
            }
        })
        .await;

    eprintln!(
        "bench: filling cell a with {} tenants ({AT_ONCE} at once)",
        options.fill
    );
    set_state(registry, "b", CellState::Draining).await?;
    let started = Instant::now();
    let filled: Vec<TenantId> = futures::stream::iter(0..options.fill)
        .map(|_| {
            let app = &app;
            async move {
                let t = fresh_tenant();
                let at = app.cells.place(&t).await?;
                at.provisioner
                    .provision(&t, &deadline())
                    .await
                    .with_context(|| format!("provisioning {t}"))?;
                anyhow::Ok(t)
            }
        })
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await?;
    let fill_time = started.elapsed();
    let held_a = vhosts_of(&app, "a").await?;
    let held_b = vhosts_of(&app, "b").await?;
    eprintln!("bench: cell a's broker holds {held_a} tenant vhosts, cell b's {held_b}");

    eprintln!("bench: {n} signups into the filled cell a");
    let (into_a, made_a) = signups(stack, &with_tables, n).await?;
    set_state(registry, "a", CellState::Draining).await?;
    set_state(registry, "b", CellState::Open).await?;
    eprintln!(
        "bench: {n} signups into the fresh cell b, {} tenants in a",
        options.fill
    );
    let (into_b, made_b) = signups(stack, &with_tables, n).await?;
    eprintln!("bench: {n} signups on a single cell of the same size (cell a's broker, no registry)");
    let (filled_single, made_single) = signups(stack, &borrowed(&single_cell(&cells[0])), n).await?;

    let rows = [
        ("fresh single cell", &fresh_single),
        ("single cell holding the fill", &filled_single),
        ("cells: into a, holding the fill", &into_a),
        ("cells: into fresh b, the fill in a", &into_b),
    ];
    println!(
        "\nSignups by where they land (cell a's broker holding {held_a} tenants, {} of them made now in {:.0} s; cell b's {held_b}; release post-confirmation, warm, one at a time)",
        options.fill,
        fill_time.as_secs_f64()
    );
    println!(
        "  {:<46} {:>5}  {:>9}  {:>9}  {:>9}  {:>9}",
        "", "n", "p50", "p95", "p99", "max"
    );
    let mut stats = serde_json::Map::new();
    let mut chart = Chart::new(
        "Signup latency by where the tenant lands",
        "latency (ms)",
        "share of signups at most that latency",
    );
    for (name, sample) in rows {
        let s = Stats::of(sample.clone()).context("no signups")?;
        println!("{}", s.row(name));
        stats.insert(name.into(), s.json());
        report.sample(&format!("cells: {name}"), sample);
        let ms_sample: Vec<f64> = sample.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        chart.add(Series::new(name, super::plot::cumulative(&ms_sample)).without_markers());
    }
    let p99 = |s: &Vec<Duration>| Stats::of(s.clone()).map(|s| s.p99).unwrap_or_default();
    let (b, fresh) = (p99(&into_b), p99(&fresh_single));
    report.target(
        format!(
            "signup p99 in a fresh cell with {held_a} tenants in another within 10% of a fresh single cell's"
        ),
        b.as_secs_f64() <= 1.1 * fresh.as_secs_f64(),
        format!(
            "{} vs {} ({:.2}x)",
            ms(b),
            ms(fresh),
            b.as_secs_f64() / fresh.as_secs_f64()
        ),
    );
    report.put(
        "cells_signups",
        json!({"fill_made": options.fill, "fill_seconds": fill_time.as_secs_f64(), "cell_a_vhosts": held_a, "cell_b_vhosts": held_b, "stats": stats}),
    );
    let dir = super::out_dir();
    std::fs::write(dir.join("cells-latency.svg"), chart.svg())?;

    placement_at_scale(&aws, options, report).await?;
    // Written before the clean-up, which takes long (vhost deletion on the 3-node cluster).
    super::write(report)?;
    eprintln!(
        "bench: removing the tenants made (the fill last; interrupting leaves them, `stack down` then `up` starts fresh)"
    );
    remove(&app, &made_a).await;
    remove(&app, &made_b).await;
    remove(&app, &made_single).await;
    remove(&app, &filled).await;
    Ok(())
}

/// All healthy: placement's own cost is measured, not the probes'.
struct Healthy;

impl CellHealth for Healthy {
    async fn healthy(&self, _: &Cell) -> Result<(), String> {
        Ok(())
    }
}

async fn placement_at_scale(
    aws: &aws_config::SdkConfig,
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    let (n, k) = (options.placements, options.placement_cells);
    let capacity = n.div_ceil(k) as u32;
    let id = fresh_tenant();
    let tables = CellTables {
        cells: format!("bench-placement-{}", &id.as_str()[..8]),
        map: format!("bench-placement-map-{}", &id.as_str()[..8]),
    };
    testkit::cells::create_tables(aws, &tables.cells, &tables.map).await?;
    let template = local_cells()[0].fields(capacity);
    for i in 0..k {
        let mut fields = template.clone();
        fields.insert("cell".into(), format!("cell-{i:02}"));
        testkit::cells::register(aws, &tables.cells, &fields).await?;
    }
    let registry = DynamoCells::new(aws, &tables.cells, &tables.map);
    eprintln!("bench: placing {n} tenants over {k} cells of {capacity} ({PLACING_AT_ONCE} at once)");
    let mut times = Vec::with_capacity(n);
    let mut spread = Vec::new();
    let checkpoint = (n / 20).max(1);
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let batch = checkpoint.min(n - done);
        let took: Vec<Duration> = futures::stream::iter(0..batch)
            .map(|_| {
                let registry = &registry;
                async move {
                    let t = fresh_tenant();
                    let at = Instant::now();
                    placement::place(registry, &Healthy, &t).await?;
                    anyhow::Ok(at.elapsed())
                }
            })
            .buffer_unordered(PLACING_AT_ONCE)
            .try_collect()
            .await?;
        times.extend(took);
        done += batch;
        let cells = registry.cells().await.map_err(|e| anyhow::anyhow!(e))?;
        let fills: Vec<f64> = cells.iter().map(|c| 100.0 * c.fill()).collect();
        let max = fills.iter().copied().fold(0.0, f64::max);
        let min = fills.iter().copied().fold(f64::MAX, f64::min);
        spread.push((done as f64, min, max));
        if cells.iter().any(|c| c.tenants > c.capacity) {
            bail!(
                "a cell went over its capacity: {:?}",
                cells
                    .iter()
                    .map(|c| (c.id.to_string(), c.tenants))
                    .collect::<Vec<_>>()
            );
        }
    }
    let total = started.elapsed();
    let cells = registry.cells().await.map_err(|e| anyhow::anyhow!(e))?;
    let placed: u32 = cells.iter().map(|c| c.tenants).sum();
    let fullest = cells.iter().map(|c| c.tenants).max().unwrap_or(0);
    let s = Stats::of(times.clone()).context("no placements")?;
    let widest = spread.iter().map(|(_, lo, hi)| hi - lo).fold(0.0, f64::max);
    println!(
        "\nPlacement of {n} tenants over {k} cells of {capacity}: {placed} placed in {:.0} s ({:.0}/s), fullest cell {fullest}/{capacity}, widest fill spread {widest:.1} points",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    println!("{}", s.row("time per placement"));
    report.target(
        format!("{n} placements over {k} cells: none over capacity"),
        fullest <= capacity && placed as usize == n,
        format!("fullest {fullest}/{capacity}, {placed} placed"),
    );
    report.put(
        "cells_placement",
        json!({"tenants": n, "cells": k, "capacity": capacity, "seconds": total.as_secs_f64(), "fullest": fullest, "placed": placed, "per_placement": s.json(), "spread": spread}),
    );
    let mut chart = Chart::new(
        &format!("Fill of {k} cells while {n} tenants are placed, {PLACING_AT_ONCE} at a time"),
        "tenants placed",
        "cell fill (%)",
    );
    chart.add(Series::new(
        "fullest cell",
        spread.iter().map(|(x, _, hi)| (*x, *hi)).collect(),
    ));
    chart.add(
        Series::new(
            "emptiest cell",
            spread.iter().map(|(x, lo, _)| (*x, *lo)).collect(),
        )
        .dashed(),
    );
    std::fs::write(super::out_dir().join("cells-placement.svg"), chart.svg())?;
    Ok(())
}
