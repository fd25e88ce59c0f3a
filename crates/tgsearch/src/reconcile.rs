//! Repairing drift between who exists (the user directory) and what exists (tenants' resources).
//!
//! One run: an inventory of the user pool and of every resource (each classified as provably the
//! provisioner's or foreign), a pure [`plan`] over it, then actions, each reported:
//! - every confirmed, enabled user's tenant is converged with the same code as post-confirmation
//!   (what is missing is created; what drifted from the stored secret and the template is
//!   repaired: the RabbitMQ password, the permissions, the Kubernetes Secret, the stored
//!   `amqp_uri`, the Deployment's spec; what needs a person, such as a volume that would have to
//!   shrink, is reported);
//! - the resources of users that are not in the directory are removed with the teardown code,
//!   after the directory is asked once more about that one user (a user confirmed while the
//!   listings ran keeps their tenant).
//!
//! Safety first, since removal deletes data: the inventory must be complete (any listing that
//! fails aborts the run before any decision), users that are merely unconfirmed or disabled keep
//! what they have, foreign resources are never touched, and more removals than `max_removals`
//! in one run are refused (an empty or wrong user pool must not wipe every tenant). The run works
//! until the time it needs to report, and says what it left for the next run.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use rand::seq::SliceRandom;
use tokio::time::Instant;

use crate::adapters::rabbitmq::TENANT_VHOST_TAG;
use crate::app::LiveProvisioner;
use crate::deadline::{Deadline, Step};
use crate::ports::{Converged, DirectoryUser, PortError, UserDirectory};
use crate::provision::SecretFirst;
use crate::tenant::TenantId;

/// Removals one run may make before it stops and asks a person.
pub use crate::config::DEFAULT_MAX_REMOVALS;
/// Time kept back at the end of a run to write the report.
pub const REPORT_MARGIN: Duration = Duration::from_secs(5);
/// A tenant is not started with less time than this left.
const MIN_TENANT_TIME: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot take the inventory ({what}), so nothing was changed: {source}")]
    Inventory {
        what: &'static str,
        #[source]
        source: PortError,
    },
    #[error("the inventory did not finish within {0:?}, so nothing was changed")]
    InventoryTimedOut(Duration),
}

/// Something named like a tenant's resource that the provisioner cannot prove it wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForeignResource {
    pub kind: String,
    pub name: String,
    pub reason: String,
}

impl std::fmt::Display for ForeignResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "foreign {} {}, left alone: {}",
            self.kind, self.name, self.reason
        )
    }
}

/// Who exists and what exists: each resource set holds the tenants (`sub`) that have one
/// provably theirs.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub users: Vec<DirectoryUser>,
    pub secrets: BTreeSet<String>,
    pub vhosts: BTreeSet<String>,
    pub rabbit_users: BTreeSet<String>,
    pub permissions: BTreeSet<String>,
    pub kube_secrets: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub deployments: BTreeSet<String>,
    pub foreign: Vec<ForeignResource>,
    /// Tenant users whose rights differ from exactly configure/write/read `.*` on their own
    /// vhost (a right elsewhere, or a narrower one), from the permissions listing.
    pub permission_drift: BTreeSet<String>,
}

impl Inventory {
    /// What a cell's own broker and cluster hold, by tenant (the secret is in the shared store).
    pub fn held_by_cell(&self) -> [&BTreeSet<String>; 5] {
        [
            &self.vhosts,
            &self.rabbit_users,
            &self.kube_secrets,
            &self.volumes,
            &self.deployments,
        ]
    }

    fn resource_sets(&self) -> [&BTreeSet<String>; 7] {
        [
            &self.secrets,
            &self.vhosts,
            &self.rabbit_users,
            &self.permissions,
            &self.kube_secrets,
            &self.volumes,
            &self.deployments,
        ]
    }
}

/// What a run would do.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// Confirmed, enabled users missing at least one resource (converged first).
    pub provision: Vec<String>,
    /// Confirmed, enabled users whose tenant looks complete: checked for drift.
    pub check: Vec<String>,
    /// Owners of resources who are not in the directory at all.
    pub remove: Vec<String>,
}

/// Decides, without side effects.
pub fn plan(inventory: &Inventory) -> Plan {
    let known: BTreeSet<&str> = inventory.users.iter().map(|u| u.sub.as_str()).collect();
    let active: BTreeSet<&str> = inventory
        .users
        .iter()
        .filter(|u| u.confirmed && u.enabled && TenantId::parse(&u.sub).is_ok())
        .map(|u| u.sub.as_str())
        .collect();
    let (provision, check): (Vec<&str>, Vec<&str>) = active
        .into_iter()
        .partition(|sub| inventory.resource_sets().iter().any(|set| !set.contains(*sub)));
    let owned: BTreeSet<&String> = inventory.resource_sets().into_iter().flatten().collect();
    let remove = owned
        .into_iter()
        .filter(|sub| !known.contains(sub.as_str()) && TenantId::parse(sub).is_ok())
        .cloned()
        .collect();
    Plan {
        provision: provision.into_iter().map(String::from).collect(),
        check: check.into_iter().map(String::from).collect(),
        remove,
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    pub max_removals: usize,
    /// Time for each tenant's provisioning or teardown.
    pub budget: Duration,
    /// Tenants handled at once.
    pub concurrency: usize,
    /// Act on these tenants only (the plan still covers everything).
    pub only: Option<BTreeSet<String>>,
    /// When the whole run must have reported (the Lambda's deadline); `None`: no limit.
    pub deadline: Option<Instant>,
    /// Tenants whose home is another cell: neither provisioned nor checked here (what this
    /// cell holds of them is reported, not removed, while their user exists).
    pub elsewhere: BTreeSet<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dry_run: false,
            max_removals: DEFAULT_MAX_REMOVALS,
            budget: Duration::from_secs(30),
            concurrency: 4,
            only: None,
            deadline: None,
            elsewhere: BTreeSet::new(),
        }
    }
}

/// One resource of one tenant, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub sub: String,
    pub resource: Step,
    pub detail: String,
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub users: usize,
    pub tenants_seen: usize,
    pub plan: Plan,
    pub dry_run: bool,
    /// Tenants that got a resource they lacked.
    pub provisioned: Vec<String>,
    /// Drift repaired, per resource.
    pub repaired: Vec<Change>,
    /// Differences the provisioner must not resolve on its own.
    pub needs_person: Vec<Change>,
    /// Tenants whose resources were removed.
    pub removed: Vec<String>,
    /// Resources of removed tenants that were not provably theirs.
    pub left_alone: Vec<Change>,
    /// Removal candidates whose user turned out to exist after all (with their state).
    pub kept: Vec<Change>,
    pub foreign: Vec<ForeignResource>,
    /// `(sub, error)` for tenants that failed; the next run tries again.
    pub failed: Vec<(String, String)>,
    /// Set when removals were refused for exceeding the limit.
    pub refused_removals: Option<String>,
    /// Tenants not reached before the run's deadline.
    pub left_for_next_run: Vec<String>,
}

impl Report {
    /// Nothing failed, nothing was refused, nothing needs a person.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.refused_removals.is_none() && self.needs_person.is_empty()
    }
}

fn is_tenant(name: &str) -> bool {
    TenantId::parse(name).is_ok()
}

/// Lists everything, concurrently. Any failure aborts: decisions need the whole picture.
pub async fn take_inventory<D: UserDirectory>(
    provisioner: &LiveProvisioner,
    directory: &D,
) -> Result<Inventory, ReconcileError> {
    let store = &provisioner.store;
    let rabbit = &provisioner.broker;
    let prefix = store.tenant_prefix().to_owned();
    let (users, secrets, vhosts, rabbit_users, permissions, kube) = tokio::join!(
        directory.users(),
        store.list_with_prefix(&prefix),
        rabbit.list_vhosts(),
        rabbit.list_users(),
        rabbit.list_permissions(),
        provisioner.backend.inventory(),
    );
    let fail = |what: &'static str| move |e: PortError| ReconcileError::Inventory { what, source: e };
    let mut inventory = Inventory {
        users: users.map_err(fail("user directory"))?,
        ..Default::default()
    };
    let mut foreign = |kind: &str, name: &str, reason: String| {
        inventory.foreign.push(ForeignResource {
            kind: kind.into(),
            name: name.into(),
            reason,
        })
    };
    let mut ours_secrets = BTreeSet::new();
    for (name, tags) in secrets.map_err(|e| fail("Secrets Manager")(e.into()))? {
        let Some(tenant) = name.strip_prefix(&prefix).and_then(|s| TenantId::parse(s).ok()) else {
            continue;
        };
        match crate::adapters::secrets_manager::foreign_reason(&tenant, &tags) {
            None => {
                ours_secrets.insert(tenant.to_string());
            }
            Some(why) => foreign("secret", &name, why),
        }
    }
    let mut tagged_vhosts = BTreeSet::new();
    for v in vhosts.map_err(|e| fail("RabbitMQ vhosts")(e.into()))? {
        if !is_tenant(&v.name) {
            continue;
        }
        if v.is_tenant_vhost() {
            tagged_vhosts.insert(v.name);
        } else {
            foreign("vhost", &v.name, format!("it has no `{TENANT_VHOST_TAG}` tag"));
        }
    }
    let permissions = permissions.map_err(|e| fail("RabbitMQ permissions")(e.into()))?;
    let own_permission: BTreeSet<String> = permissions
        .iter()
        .filter(|p| p.user == p.vhost && is_tenant(&p.user) && tagged_vhosts.contains(&p.vhost))
        .map(|p| p.user.clone())
        .collect();
    let permission_drift = permissions
        .iter()
        .filter(|p| is_tenant(&p.user))
        .filter(|p| p.vhost != p.user || [&p.configure, &p.write, &p.read].iter().any(|r| *r != ".*"))
        .map(|p| p.user.clone())
        .collect();
    let mut rabbit_owned = BTreeSet::new();
    for u in rabbit_users.map_err(|e| fail("RabbitMQ users")(e.into()))? {
        if !is_tenant(&u.name) {
            continue;
        }
        if !u.tags.is_empty() {
            foreign(
                "RabbitMQ user",
                &u.name,
                format!("it has tags ({}); tenant users never do", u.tags.join(",")),
            );
        } else if own_permission.contains(&u.name) || ours_secrets.contains(&u.name) {
            // Provably ours by the README's rule (its password is checked against the secret
            // before anything is done to it).
            rabbit_owned.insert(u.name);
        } else {
            foreign(
                "RabbitMQ user",
                &u.name,
                "no tenant secret and no permission on a tagged vhost of its name".into(),
            );
        }
    }
    let kube = kube.map_err(|e| fail("Kubernetes")(e.into()))?;
    for (kind, name, reason) in kube.foreign {
        foreign(kind, &name, reason);
    }
    inventory.secrets = ours_secrets;
    inventory.vhosts = tagged_vhosts;
    inventory.rabbit_users = rabbit_owned;
    inventory.permissions = own_permission;
    inventory.kube_secrets = kube.secrets;
    inventory.volumes = kube.volumes;
    inventory.deployments = kube.deployments;
    inventory.permission_drift = permission_drift;
    Ok(inventory)
}

/// One run: inventory, plan, then converge and remove (unless `dry_run`).
pub async fn reconcile<D: UserDirectory>(
    provisioner: &LiveProvisioner,
    directory: &D,
    options: &Options,
) -> Result<Report, ReconcileError> {
    let inventory_time = options
        .deadline
        .map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(REPORT_MARGIN)
        })
        .unwrap_or(Duration::from_secs(120));
    let inventory = tokio::time::timeout(inventory_time, take_inventory(provisioner, directory))
        .await
        .map_err(|_| ReconcileError::InventoryTimedOut(inventory_time))??;
    let mut plan = plan(&inventory);
    let mut inventory = inventory;
    if !options.elsewhere.is_empty() {
        let elsewhere = &options.elsewhere;
        plan.provision.retain(|s| !elsewhere.contains(s));
        plan.check.retain(|s| !elsewhere.contains(s));
        // A departed user's tenant is removed by its own cell (the secret is shared: another
        // cell removing it would leave the home cell's part without it while that cell is down).
        plan.remove.retain(|s| !elsewhere.contains(s));
        // What this cell holds of a tenant whose home is another cell (the secret is shared).
        let held: BTreeSet<&String> = inventory
            .held_by_cell()
            .into_iter()
            .flatten()
            .filter(|s| elsewhere.contains(*s))
            .collect();
        let strays: Vec<ForeignResource> = held
            .into_iter()
            .map(|sub| ForeignResource {
                kind: "tenant of another cell".into(),
                name: sub.clone(),
                reason: "the map places this tenant in another cell; left for a person".into(),
            })
            .collect();
        inventory.foreign.extend(strays);
    }
    if let Some(only) = &options.only {
        plan.provision.retain(|s| only.contains(s));
        plan.check.retain(|s| only.contains(s));
        plan.remove.retain(|s| only.contains(s));
    }
    let owned: BTreeSet<&String> = inventory.resource_sets().into_iter().flatten().collect();
    let mut report = Report {
        users: inventory.users.len(),
        tenants_seen: owned.len(),
        plan: plan.clone(),
        dry_run: options.dry_run,
        foreign: inventory.foreign.clone(),
        ..Default::default()
    };
    tracing::info!(
        users = report.users,
        tenants = report.tenants_seen,
        provision = plan.provision.len(),
        check = plan.check.len(),
        remove = plan.remove.len(),
        foreign = report.foreign.len(),
        dry_run = options.dry_run,
        "reconcile plan"
    );
    if options.dry_run {
        return Ok(report);
    }

    // Those missing something first; the others in a new order each run, so that a run cut
    // short by its deadline does not always leave the same tenants unchecked.
    let mut order = plan.provision.clone();
    let mut check = plan.check.clone();
    check.shuffle(&mut rand::rng());
    order.extend(check);
    let known_secrets = &inventory.secrets;
    let outcomes = for_each_tenant(&order, options, |tenant, deadline| async move {
        let first = if known_secrets.contains(tenant.as_str()) {
            SecretFirst::Read
        } else {
            SecretFirst::Create
        };
        provisioner
            .converge(&tenant, &deadline, first)
            .await
            .map(|done| done.changes)
            .map_err(|e| e.to_string())
    })
    .await;
    for (sub, outcome) in outcomes {
        match outcome {
            None => report.left_for_next_run.push(sub),
            Some(Err(e)) => report.failed.push((sub, e)),
            Some(Ok(changes)) => {
                if changes.iter().any(|(_, c)| *c == Converged::Created) {
                    report.provisioned.push(sub.clone());
                }
                for (resource, outcome) in changes {
                    let change = |detail: String| Change {
                        sub: sub.clone(),
                        resource,
                        detail,
                    };
                    match outcome {
                        Converged::Repaired(detail) => report.repaired.push(change(detail)),
                        Converged::NeedsPerson(detail) => report.needs_person.push(change(detail)),
                        Converged::Created | Converged::Unchanged => {}
                    }
                }
            }
        }
    }

    if plan.remove.len() > options.max_removals {
        let why = format!(
            "refusing to remove {} tenants in one run (limit {}); check the user pool, then run `tgsearch reconcile --max-removals {}`",
            plan.remove.len(),
            options.max_removals,
            plan.remove.len()
        );
        tracing::warn!(remove = plan.remove.len(), limit = options.max_removals, "{why}");
        report.refused_removals = Some(why);
    } else {
        let removals = for_each_tenant(&plan.remove, options, |tenant, deadline| async move {
            // Asked again right before removing: a user confirmed while the listings ran must
            // keep their tenant.
            match directory.user(tenant.as_str()).await {
                Err(e) => return Err(format!("cannot ask the user directory: {e}")),
                Ok(Some(user)) => return Ok(Err(user)),
                Ok(None) => {}
            }
            provisioner
                .teardown(&tenant, &deadline)
                .await
                .map(Ok)
                .map_err(|e| e.to_string())
        })
        .await;
        for (sub, outcome) in removals {
            match outcome {
                None => report.left_for_next_run.push(sub),
                Some(Err(e)) => report.failed.push((sub, e)),
                Some(Ok(Err(user))) => report.kept.push(Change {
                    sub: sub.clone(),
                    resource: Step::Secret,
                    detail: format!(
                        "the user is in the directory after all ({}, {}): kept",
                        if user.confirmed {
                            "confirmed"
                        } else {
                            "unconfirmed"
                        },
                        if user.enabled { "enabled" } else { "disabled" }
                    ),
                }),
                Some(Ok(Ok(done))) => {
                    for (resource, why) in done.left_alone() {
                        report.left_alone.push(Change {
                            sub: sub.clone(),
                            resource,
                            detail: why,
                        });
                    }
                    if done.deleted().is_empty() && done.left_alone().is_empty() {
                        continue;
                    }
                    report.removed.push(sub);
                }
            }
        }
    }
    for list in [
        &mut report.provisioned,
        &mut report.removed,
        &mut report.left_for_next_run,
    ] {
        list.sort();
    }
    Ok(report)
}

/// Runs `work` for each tenant, `options.concurrency` at a time, each under its own deadline
/// (cut short by the run's); a tenant for which too little time is left is not started
/// (`None`).
async fn for_each_tenant<T, F, Fut>(
    subs: &[String],
    options: &Options,
    work: F,
) -> Vec<(String, Option<Result<T, String>>)>
where
    F: Fn(TenantId, Deadline) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    futures::stream::iter(subs)
        .map(|sub| {
            let tenant = TenantId::parse(sub).expect("planned subs are tenant ids");
            let work = &work;
            async move {
                let left = options.deadline.map(|d| {
                    d.saturating_duration_since(Instant::now())
                        .saturating_sub(REPORT_MARGIN)
                });
                if left.is_some_and(|left| left < MIN_TENANT_TIME) {
                    return (sub.clone(), None);
                }
                let budget = left.map_or(options.budget, |left| left.min(options.budget));
                (sub.clone(), Some(work(tenant, Deadline::new(budget, None)).await))
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0a000000-0000-4000-8000-000000000001";
    const B: &str = "0b000000-0000-4000-8000-000000000002";
    const C: &str = "0c000000-0000-4000-8000-000000000003";
    const D: &str = "0d000000-0000-4000-8000-000000000004";

    fn user(sub: &str, confirmed: bool, enabled: bool) -> DirectoryUser {
        DirectoryUser {
            sub: sub.into(),
            confirmed,
            enabled,
        }
    }

    fn complete(inv: &mut Inventory, sub: &str) {
        for set in [
            &mut inv.secrets,
            &mut inv.vhosts,
            &mut inv.rabbit_users,
            &mut inv.permissions,
            &mut inv.kube_secrets,
            &mut inv.volumes,
            &mut inv.deployments,
        ] {
            set.insert(sub.into());
        }
    }

    #[test]
    fn confirmed_users_missing_anything_come_first_and_the_rest_are_checked() {
        let mut inv = Inventory {
            users: vec![user(A, true, true), user(B, true, true), user(C, true, true)],
            ..Default::default()
        };
        complete(&mut inv, A);
        complete(&mut inv, B);
        inv.deployments.remove(B); // B lost its Deployment
        let p = plan(&inv);
        assert_eq!(p.provision, vec![B.to_string(), C.to_string()]);
        assert_eq!(p.check, vec![A.to_string()]);
        assert!(p.remove.is_empty());
    }

    #[test]
    fn only_resources_of_users_gone_from_the_directory_are_removed() {
        let mut inv = Inventory {
            users: vec![user(A, false, true), user(B, true, false)],
            ..Default::default()
        };
        complete(&mut inv, A); // unconfirmed but has resources: kept
        complete(&mut inv, B); // disabled: kept
        inv.vhosts.insert(C.into()); // deleted user's leftover
        inv.kube_secrets.insert(D.into());
        inv.rabbit_users.insert("not-a-tenant".into()); // never touched
        let p = plan(&inv);
        assert_eq!(p.remove, vec![C.to_string(), D.to_string()]);
        assert!(
            p.provision.is_empty() && p.check.is_empty(),
            "unconfirmed and disabled users are not provisioned"
        );
    }
}
