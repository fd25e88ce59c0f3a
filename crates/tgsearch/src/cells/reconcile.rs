//! Reconcile across cells: the map says which tenants each cell should hold; each cell is
//! reconciled against them on its own, all cells at once, under the run's deadline. A cell that
//! cannot be inventoried (its broker down) is reported and nothing of it is changed; the others
//! go on. Users without a cell are placed first; the entries of users who are gone are removed
//! once their cell has torn them down; each cell's counter is set from the map.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use super::live::LiveCells;
use super::{CellHealth, CellId, CellRegistry, TenantCells, UNMAPPED};
use crate::ports::{DirectoryUser, PortError, UserDirectory};
use crate::reconcile::{Options, ReconcileError, Report, reconcile};
use crate::tenant::TenantId;

/// One cell's part of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CellRun {
    pub cell: String,
    pub state: &'static str,
    /// Tenants the map gives it.
    pub mapped: usize,
    pub capacity: u32,
    /// `Err`: why it was not reconciled (nothing of it was changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The counter as found and as set from the map, when they differed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_repaired: Option<(i64, u32)>,
}

/// What a run over every cell did: the sum of the cells' reports, and each cell's part.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CellsReport {
    #[serde(flatten)]
    pub total: Report,
    pub cells: Vec<CellRun>,
    /// Users who had no cell and were given one: `(sub, cell)`.
    pub placed: Vec<(String, String)>,
    /// Users who had no cell and could not be given one: `(sub, why)`.
    pub unplaced: Vec<(String, String)>,
    /// Map entries removed because their user is gone and their cell holds nothing of them.
    pub released: Vec<String>,
    /// What the registry refused or failed while the run released entries and repaired
    /// counters (the cells' own results stand; the next run tries again).
    pub registry_errors: Vec<String>,
}

impl CellsReport {
    /// Every cell reconciled cleanly and every user has a cell.
    pub fn is_clean(&self) -> bool {
        self.total.is_clean()
            && self.unplaced.is_empty()
            && self.registry_errors.is_empty()
            && self.cells.iter().all(|c| c.error.is_none())
    }
}

/// Users without a cell placed at once.
const PLACING_AT_ONCE: usize = 8;

/// Users as one listing answered them, served again to each cell's run; one user is asked of
/// the directory itself (reconcile asks again right before it removes anything, and a user who
/// confirmed during the run is not in the listing).
struct Listed<'a, D> {
    users: Vec<DirectoryUser>,
    directory: &'a D,
}

impl<D: UserDirectory> UserDirectory for Listed<'_, D> {
    async fn users(&self) -> Result<Vec<DirectoryUser>, PortError> {
        Ok(self.users.clone())
    }

    async fn user(&self, sub: &str) -> Result<Option<DirectoryUser>, PortError> {
        self.directory.user(sub).await
    }
}

fn registry_failed(source: PortError) -> ReconcileError {
    ReconcileError::Inventory {
        what: "cell registry",
        source,
    }
}

/// Adds one cell's report to the total.
fn absorb(total: &mut Report, part: Report) {
    total.users = part.users;
    total.tenants_seen += part.tenants_seen;
    total.plan.provision.extend(part.plan.provision);
    total.plan.check.extend(part.plan.check);
    total.plan.remove.extend(part.plan.remove);
    total.provisioned.extend(part.provisioned);
    total.repaired.extend(part.repaired);
    total.needs_person.extend(part.needs_person);
    total.removed.extend(part.removed);
    total.left_alone.extend(part.left_alone);
    total.kept.extend(part.kept);
    total.foreign.extend(part.foreign);
    total.failed.extend(part.failed);
    total.left_for_next_run.extend(part.left_for_next_run);
    if let Some(refused) = part.refused_removals {
        total.refused_removals = Some(match total.refused_removals.take() {
            Some(before) => format!("{before}; {refused}"),
            None => refused,
        });
    }
}

/// A tenant planned or removed by several cells' runs (a departed user's secret is in every
/// cell's inventory, the store being shared) is counted once in the total; `tenants_seen` is
/// then the tenants some cell planned for (each cell's own count would count the shared secrets
/// once per cell).
fn distinct(total: &mut Report) {
    for list in [
        &mut total.plan.provision,
        &mut total.plan.check,
        &mut total.plan.remove,
        &mut total.provisioned,
        &mut total.removed,
        &mut total.left_for_next_run,
    ] {
        let mut seen = BTreeSet::new();
        list.retain(|s| seen.insert(s.clone()));
    }
    let planned: BTreeSet<&String> = total
        .plan
        .provision
        .iter()
        .chain(&total.plan.check)
        .chain(&total.plan.remove)
        .collect();
    total.tenants_seen = planned.len();
}

/// One run over every cell (or over the deployment's own broker when no cell is registered).
pub async fn reconcile_cells<D: UserDirectory>(
    cells: &LiveCells,
    directory: &D,
    options: &Options,
) -> Result<CellsReport, ReconcileError> {
    let registered = match cells.registry() {
        Some(registry) => registry.cells().await.map_err(registry_failed)?,
        None => Vec::new(),
    };
    let Some(registry) = cells.registry().filter(|_| !registered.is_empty()) else {
        let report = reconcile(cells.default_provisioner(), directory, options).await?;
        return Ok(CellsReport {
            cells: vec![CellRun {
                cell: UNMAPPED.into(),
                state: "open",
                mapped: report.tenants_seen,
                capacity: 0,
                error: None,
                health: None,
                counter_repaired: None,
            }],
            total: report,
            ..Default::default()
        });
    };
    let users = directory
        .users()
        .await
        .map_err(|source| ReconcileError::Inventory {
            what: "user directory",
            source,
        })?;
    let mut homes: BTreeMap<String, CellId> = registry
        .assignments()
        .await
        .map_err(registry_failed)?
        .into_iter()
        .collect();
    let mut report = CellsReport::default();
    // Users without a cell get one (a signup that found no room, or one from before cells).
    let unmapped: Vec<&DirectoryUser> = users
        .iter()
        .filter(|u| u.confirmed && u.enabled && !homes.contains_key(&u.sub))
        .filter(|u| options.only.as_ref().is_none_or(|only| only.contains(&u.sub)))
        .collect();
    // A dry run places no one: each is planned in the cell placement would try first.
    let first_choice = super::placement::candidates(&registered)
        .first()
        .map(|c| c.id.clone());
    let deployment_cell = cells.deployment_cell(&registered).map(|c| &c.id);
    let placements: Vec<(String, Result<Option<CellId>, String>)> = futures::stream::iter(unmapped)
        .filter_map(|user| async move { TenantId::parse(&user.sub).ok().map(|t| (user, t)) })
        .map(|(user, tenant)| {
            let first_choice = &first_choice;
            async move {
                let sub = user.sub.clone();
                if options.deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return (sub, Err("not reached before the run's deadline".into()));
                }
                if options.dry_run {
                    return (
                        sub,
                        first_choice
                            .clone()
                            .map(Some)
                            .ok_or_else(|| "no open cell has room".into()),
                    );
                }
                // A tenant secret and no map entry: a tenant from before cells, on the
                // deployment's own broker. Mapped there when that broker is a registered cell
                // (as `tgsearch cells adopt` maps it), never moved.
                match crate::ports::CredentialStore::read(&cells.default_provisioner().store, &tenant).await {
                    Ok(crate::ports::Found::Absent) => {}
                    Ok(_) => {
                        let Some(home) = deployment_cell else {
                            return (
                                sub,
                                Err("it has a tenant from before cells: run `tgsearch cells adopt`".into()),
                            );
                        };
                        return match registry.assign(&tenant, home, false).await {
                            Ok(super::Assigned::Now) => (sub, Ok(Some(home.clone()))),
                            Ok(super::Assigned::Already(other)) => (sub, Ok(Some(other))),
                            Ok(super::Assigned::Refused) => (sub, Err(format!("cell {home} refused it"))),
                            Err(e) => (sub, Err(format!("mapping it to cell {home}: {e}"))),
                        };
                    }
                    Err(e) => return (sub, Err(format!("its tenant secret cannot be read: {e}"))),
                }
                match cells.place(&tenant).await {
                    Ok(at) => (sub, Ok(at.cell)),
                    Err(e) => (sub, Err(e.to_string())),
                }
            }
        })
        .buffer_unordered(PLACING_AT_ONCE)
        .collect()
        .await;
    for (sub, placed) in placements {
        match placed {
            Ok(Some(cell)) => {
                let shown = if options.dry_run {
                    format!("{cell} (dry run: not written)")
                } else {
                    cell.to_string()
                };
                report.placed.push((sub.clone(), shown));
                homes.insert(sub, cell);
            }
            Ok(None) => {}
            Err(why) => report.unplaced.push((sub, why)),
        }
    }
    let listed = Listed { users, directory };
    let runs = futures::future::join_all(registered.iter().map(|cell| {
        let elsewhere: BTreeSet<String> = homes
            .iter()
            .filter(|(_, home)| **home != cell.id)
            .map(|(sub, _)| sub.clone())
            .collect();
        let options = Options {
            elsewhere,
            ..options.clone()
        };
        let listed = &listed;
        async move {
            let health = cells.healthy(cell).await.err();
            let provisioner = cells.provisioner_of(cell).await.map_err(|e| e.to_string())?;
            let run = reconcile(&provisioner, listed, &options)
                .await
                .map_err(|e| e.to_string());
            Ok::<_, String>((run, health))
        }
    }))
    .await;
    let known: BTreeSet<&str> = listed.users.iter().map(|u| u.sub.as_str()).collect();
    let mut done: BTreeMap<&CellId, Report> = BTreeMap::new();
    for (cell, run) in registered.iter().zip(runs) {
        let mapped = homes.values().filter(|h| **h == cell.id).count();
        let (error, health) = match run {
            Err(e) => (Some(e), None),
            Ok((Err(e), health)) => (Some(e), health),
            Ok((Ok(part), health)) => {
                done.insert(&cell.id, part.clone());
                absorb(&mut report.total, part);
                (None, health)
            }
        };
        if let Some(e) = &error {
            tracing::error!(cell = %cell.id, error = %e, "cell not reconciled; nothing of it was changed");
        }
        report.cells.push(CellRun {
            cell: cell.id.to_string(),
            state: cell.state.as_str(),
            mapped,
            capacity: cell.capacity,
            error,
            health,
            counter_repaired: None,
        });
    }
    distinct(&mut report.total);
    if options.dry_run {
        return Ok(report);
    }
    // A gone user's entry goes once its cell's run tore it down (or found nothing of it), and
    // only when the directory, asked again now, still does not know them.
    for (sub, cell) in homes.iter().filter(|(sub, _)| !known.contains(sub.as_str())) {
        let Some(part) = done.get(cell) else { continue };
        let pending = part.failed.iter().any(|(s, _)| s == sub)
            || part.left_for_next_run.contains(sub)
            || (part.refused_removals.is_some() && part.plan.remove.contains(sub));
        let Ok(tenant) = TenantId::parse(sub) else {
            continue;
        };
        if pending || options.only.as_ref().is_some_and(|only| !only.contains(sub)) {
            continue;
        }
        match directory.user(sub).await {
            Ok(None) => {}
            Ok(Some(_)) => continue,
            Err(e) => {
                report
                    .registry_errors
                    .push(format!("{sub}: the directory did not answer: {e}"));
                continue;
            }
        }
        match registry.unassign(&tenant, cell).await {
            Ok(true) => report.released.push(sub.clone()),
            Ok(false) => {}
            Err(e) => report
                .registry_errors
                .push(format!("releasing {sub} from cell {cell}: {e}")),
        }
    }
    if let Err(e) = repair_counters(registry, &mut report).await {
        report
            .registry_errors
            .push(format!("repairing the cells' counters: {e}"));
    }
    Ok(report)
}

/// Sets each cell's counter from the map where they differ, unless a placement changed the
/// counter meanwhile (then the next run does it).
async fn repair_counters(
    registry: &crate::adapters::cell_registry::DynamoCells,
    report: &mut CellsReport,
) -> Result<(), ReconcileError> {
    let before = registry.cells().await.map_err(registry_failed)?;
    let mut counts: BTreeMap<CellId, u32> = BTreeMap::new();
    for (_, cell) in registry.assignments().await.map_err(registry_failed)? {
        *counts.entry(cell).or_default() += 1;
    }
    for cell in before {
        let actual = counts.get(&cell.id).copied().unwrap_or(0);
        if cell.counter == Some(i64::from(actual)) {
            continue;
        }
        if registry
            .repair_count(&cell.id, cell.counter, actual)
            .await
            .map_err(registry_failed)?
        {
            let was = cell.counter.unwrap_or(0);
            tracing::warn!(cell = %cell.id, was, now = actual, "cell counter repaired from the map");
            if let Some(run) = report.cells.iter_mut().find(|r| r.cell == cell.id.as_str()) {
                run.counter_repaired = Some((was, actual));
            }
        }
    }
    Ok(())
}
