//! Repairing drift between who exists (the user directory) and what exists (tenants' resources):
//! confirmed users that lack anything are provisioned; resources of users that no longer exist
//! are removed. Both use the same idempotent code as post-confirmation and teardown.
//!
//! Safety first, since removal deletes data: the inventory must be complete (any listing that
//! fails aborts the run before any decision), users that are merely unconfirmed or disabled keep
//! what they have, and more removals than `max_removals` in one run are refused (an empty or
//! wrong user pool must not wipe every tenant).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;

use crate::app::LiveProvisioner;
use crate::deadline::Deadline;
use crate::ports::{DirectoryUser, PortError, UserDirectory};
use crate::tenant::TenantId;

/// Removals one run may make before it stops and asks a person.
pub const DEFAULT_MAX_REMOVALS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot take the inventory ({what}), so nothing was changed: {source}")]
    Inventory {
        what: &'static str,
        #[source]
        source: PortError,
    },
}

/// Who exists and what exists, each resource set by tenant `sub`.
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
}

impl Inventory {
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
    /// Confirmed, enabled users missing at least one resource.
    pub provision: Vec<String>,
    /// Owners of resources who are not in the directory at all.
    pub remove: Vec<String>,
}

/// Decides, without side effects.
pub fn plan(inventory: &Inventory) -> Plan {
    let known: BTreeSet<&str> = inventory.users.iter().map(|u| u.sub.as_str()).collect();
    let provision = inventory
        .users
        .iter()
        .filter(|u| u.confirmed && u.enabled && TenantId::parse(&u.sub).is_ok())
        .filter(|u| inventory.resource_sets().iter().any(|set| !set.contains(&u.sub)))
        .map(|u| u.sub.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let owned: BTreeSet<&String> = inventory.resource_sets().into_iter().flatten().collect();
    let remove = owned
        .into_iter()
        .filter(|sub| !known.contains(sub.as_str()) && TenantId::parse(sub).is_ok())
        .cloned()
        .collect();
    Plan { provision, remove }
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dry_run: false,
            max_removals: DEFAULT_MAX_REMOVALS,
            budget: Duration::from_secs(30),
            concurrency: 4,
            only: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub users: usize,
    pub tenants_seen: usize,
    pub plan: Plan,
    pub dry_run: bool,
    pub provisioned: Vec<String>,
    pub removed: Vec<String>,
    /// `(sub, error)` for tenants that failed; the next run tries again.
    pub failed: Vec<(String, String)>,
    /// Set when removals were refused for exceeding the limit.
    pub refused_removals: Option<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.refused_removals.is_none()
    }
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
        store.list_names_with_prefix(&prefix),
        rabbit.list_vhosts(),
        rabbit.list_users(),
        rabbit.list_permissions(),
        provisioner.backend.tenants(),
    );
    let fail = |what: &'static str| move |e: PortError| ReconcileError::Inventory { what, source: e };
    let is_tenant = |name: &str| TenantId::parse(name).is_ok();
    let users = users.map_err(fail("user directory"))?;
    let secrets = secrets
        .map_err(|e| fail("Secrets Manager")(e.into()))?
        .into_iter()
        .filter_map(|n| n.strip_prefix(&prefix).map(String::from))
        .filter(|n| is_tenant(n))
        .collect();
    let vhosts = vhosts
        .map_err(|e| fail("RabbitMQ vhosts")(e.into()))?
        .into_iter()
        .filter(|v| {
            v.tags
                .iter()
                .any(|t| t == crate::adapters::rabbitmq::TENANT_VHOST_TAG)
                && is_tenant(&v.name)
        })
        .map(|v| v.name)
        .collect();
    let rabbit_users = rabbit_users
        .map_err(|e| fail("RabbitMQ users")(e.into()))?
        .into_iter()
        .filter(|u| u.tags.is_empty() && is_tenant(&u.name))
        .map(|u| u.name)
        .collect();
    let permissions = permissions
        .map_err(|e| fail("RabbitMQ permissions")(e.into()))?
        .into_iter()
        .filter(|p| p.user == p.vhost && is_tenant(&p.user))
        .map(|p| p.user)
        .collect();
    let (kube_secrets, volumes, deployments) = kube.map_err(|e| fail("Kubernetes")(e.into()))?;
    Ok(Inventory {
        users,
        secrets,
        vhosts,
        rabbit_users,
        permissions,
        kube_secrets,
        volumes,
        deployments,
    })
}

/// One run: inventory, plan, then provision and remove (unless `dry_run`).
pub async fn reconcile<D: UserDirectory>(
    provisioner: &LiveProvisioner,
    directory: &D,
    options: &Options,
) -> Result<Report, ReconcileError> {
    let inventory = take_inventory(provisioner, directory).await?;
    let mut plan = plan(&inventory);
    if let Some(only) = &options.only {
        plan.provision.retain(|s| only.contains(s));
        plan.remove.retain(|s| only.contains(s));
    }
    let owned: BTreeSet<&String> = inventory.resource_sets().into_iter().flatten().collect();
    let mut report = Report {
        users: inventory.users.len(),
        tenants_seen: owned.len(),
        plan: plan.clone(),
        dry_run: options.dry_run,
        ..Default::default()
    };
    tracing::info!(
        users = report.users,
        tenants = report.tenants_seen,
        provision = plan.provision.len(),
        remove = plan.remove.len(),
        dry_run = options.dry_run,
        "reconcile plan"
    );
    if options.dry_run {
        return Ok(report);
    }
    let provisions = for_each_tenant(&plan.provision, options, |tenant, deadline| async move {
        provisioner.provision(&tenant, &deadline).await.map(drop)
    })
    .await;
    for (sub, outcome) in provisions {
        match outcome {
            Ok(()) => report.provisioned.push(sub),
            Err(e) => report.failed.push((sub, e)),
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
        return Ok(report);
    }
    let removals = for_each_tenant(&plan.remove, options, |tenant, deadline| async move {
        provisioner.teardown(&tenant, &deadline).await.map(drop)
    })
    .await;
    for (sub, outcome) in removals {
        match outcome {
            Ok(()) => report.removed.push(sub),
            Err(e) => report.failed.push((sub, e)),
        }
    }
    report.provisioned.sort();
    report.removed.sort();
    Ok(report)
}

/// Runs `work` for each planned tenant, `options.concurrency` at a time, each under its own
/// deadline; returns every tenant's outcome.
async fn for_each_tenant<F, Fut>(
    subs: &[String],
    options: &Options,
    work: F,
) -> Vec<(String, Result<(), String>)>
where
    F: Fn(TenantId, Deadline) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::deadline::StepError>>,
{
    futures::stream::iter(subs)
        .map(|sub| {
            let tenant = TenantId::parse(sub).expect("planned subs are tenant ids");
            let outcome = work(tenant, Deadline::new(options.budget, None));
            async move { (sub.clone(), outcome.await.map_err(|e| e.to_string())) }
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
    fn confirmed_users_missing_anything_are_provisioned() {
        let mut inv = Inventory {
            users: vec![user(A, true, true), user(B, true, true), user(C, true, true)],
            ..Default::default()
        };
        complete(&mut inv, A);
        complete(&mut inv, B);
        inv.deployments.remove(B); // B lost its Deployment
        assert_eq!(plan(&inv).provision, vec![B.to_string(), C.to_string()]);
        assert!(plan(&inv).remove.is_empty());
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
            p.provision.is_empty(),
            "unconfirmed and disabled users are not provisioned"
        );
    }
}
