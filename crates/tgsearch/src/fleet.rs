//! The whole fleet at a glance (`tgsearch status --all`): every tenant's state from the same
//! listings reconcile takes (a few paginated calls per system: the user pool, the tenant
//! secrets, the broker's vhosts, users and permissions, the labelled Kubernetes objects), never a
//! call per tenant, so thousands of tenants take seconds.
//!
//! From listings it sees what exists and whose it is, the rights, and the credentials: every
//! tenant secret's current value (BatchGetSecretValue, 20 a call) against the broker users'
//! password hashes (one listing) and against what it must name. That gives ready,
//! provisioning, missing, orphaned, needs a person (a foreign resource in a tenant's way), drift
//! of the password, the stored secret or the rights, and foreign resources. What only each
//! tenant's own reads show (the Kubernetes Secret's `AMQP_URI`, the Deployment's spec, the
//! volume, the broker limits) is `tgsearch status --sub`'s and reconcile's.

use std::collections::{BTreeMap, BTreeSet};

use crate::app::LiveProvisioner;
use crate::credentials::TenantCredentials;
use crate::reconcile::{ForeignResource, Inventory, ReconcileError};
use crate::tenant::TenantId;

/// Where one tenant stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetState {
    /// A confirmed, enabled user with every resource, provably ours, rights exact.
    Ready,
    /// A confirmed, enabled user with some of its resources (the worker or reconcile completes it).
    Provisioning,
    /// A confirmed, enabled user with none (reconcile creates it within 15 minutes).
    Missing,
    /// Every resource there, but the broker user's password is not the stored one, the stored
    /// secret names another user, vhost or broker, or the rights differ (reconcile repairs it).
    Drift,
    /// A foreign resource with the tenant's name stands in its way.
    NeedsPerson,
    /// Resources of a user who is not in the pool (reconcile removes them).
    Orphaned,
    /// Resources of a user who is disabled or unconfirmed (kept until the user is deleted).
    Inactive,
}

impl FleetState {
    pub const ALL: [FleetState; 7] = [
        FleetState::Ready,
        FleetState::Provisioning,
        FleetState::Missing,
        FleetState::Drift,
        FleetState::NeedsPerson,
        FleetState::Orphaned,
        FleetState::Inactive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FleetState::Ready => "ready",
            FleetState::Provisioning => "provisioning",
            FleetState::Missing => "missing",
            FleetState::Drift => "drift",
            FleetState::NeedsPerson => "needs_person",
            FleetState::Orphaned => "orphaned",
            FleetState::Inactive => "inactive",
        }
    }
}

/// The fleet by state.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Fleet {
    /// Users in the pool, and of them confirmed and enabled.
    pub users: usize,
    pub active_users: usize,
    /// Tenants by state (their `sub`s, sorted).
    pub tenants: BTreeMap<FleetState, Vec<String>>,
    /// For tenants being provisioned: how many lack each resource.
    pub lacking: BTreeMap<&'static str, usize>,
    /// What drifted, per tenant in drift.
    pub drift: BTreeMap<String, String>,
    pub foreign: Vec<ForeignResource>,
}

impl Fleet {
    pub fn count(&self, state: FleetState) -> usize {
        self.tenants.get(&state).map_or(0, Vec::len)
    }

    /// Every active user's tenant ready, nothing orphaned, nothing foreign.
    pub fn is_clean(&self) -> bool {
        FleetState::ALL
            .iter()
            .filter(|s| **s != FleetState::Ready && **s != FleetState::Inactive)
            .all(|s| self.count(*s) == 0)
            && self.foreign.is_empty()
    }
}

/// Each tenant whose stored credentials and broker user disagree, and how: from the tenant
/// secrets' current values (in batches) and the broker's users listing, never a call per tenant.
pub async fn credential_drift(
    provisioner: &LiveProvisioner,
    inventory: &Inventory,
) -> Result<BTreeMap<String, String>, ReconcileError> {
    let prefix = provisioner.store.tenant_prefix();
    let names: Vec<String> = inventory.secrets.iter().map(|s| format!("{prefix}{s}")).collect();
    let (values, users) = tokio::join!(
        provisioner.store.current_strings(&names),
        provisioner.broker.list_users()
    );
    let fail =
        |what: &'static str| move |e: crate::ports::PortError| ReconcileError::Inventory { what, source: e };
    let values = values.map_err(|e| fail("Secrets Manager (tenant secrets)")(e.into()))?;
    let users: BTreeMap<String, _> = users
        .map_err(|e| fail("RabbitMQ users")(e.into()))?
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    let mut drift = BTreeMap::new();
    for (name, text) in values {
        let Some(tenant) = name.strip_prefix(prefix).and_then(|s| TenantId::parse(s).ok()) else {
            continue;
        };
        let why = match serde_json::from_str::<TenantCredentials>(&text) {
            Err(_) => Some("the stored secret is not the credentials JSON".to_owned()),
            Ok(stored) => {
                let expected =
                    TenantCredentials::new(&tenant, stored.password.clone(), &provisioner.amqp_url);
                match stored.drift_from(&expected) {
                    Some(why) => Some(format!("the stored secret: {why}")),
                    None => users
                        .get(tenant.as_str())
                        .filter(|user| !user.has_password(&stored.password))
                        .map(|_| "the broker user's password is not the stored one".to_owned()),
                }
            }
        };
        if let Some(why) = why {
            drift.insert(tenant.to_string(), why);
        }
    }
    Ok(drift)
}

/// Classifies every tenant of `inventory` (pure); `credentials` is [`credential_drift`]'s.
pub fn summarize(inventory: &Inventory, credentials: &BTreeMap<String, String>) -> Fleet {
    let sets: [(&'static str, &BTreeSet<String>); 7] = [
        ("secret", &inventory.secrets),
        ("vhost", &inventory.vhosts),
        ("user", &inventory.rabbit_users),
        ("permission", &inventory.permissions),
        ("kube-secret", &inventory.kube_secrets),
        ("volume", &inventory.volumes),
        ("deployment", &inventory.deployments),
    ];
    let mut fleet = Fleet {
        users: inventory.users.len(),
        foreign: inventory.foreign.clone(),
        ..Fleet::default()
    };
    let users: BTreeMap<&str, _> = inventory.users.iter().map(|u| (u.sub.as_str(), u)).collect();
    let blocked: BTreeSet<&str> = inventory
        .foreign
        .iter()
        .filter_map(|f| tenant_in(&f.name))
        .collect();
    let owners: BTreeSet<&str> = sets
        .iter()
        .flat_map(|(_, set)| set.iter().map(String::as_str))
        .collect();
    let mut subs: BTreeSet<&str> = owners.clone();
    for user in &inventory.users {
        if user.confirmed && user.enabled && TenantId::parse(&user.sub).is_ok() {
            fleet.active_users += 1;
            subs.insert(user.sub.as_str());
        }
    }
    for sub in subs {
        let held: Vec<&str> = sets
            .iter()
            .filter(|(_, set)| set.contains(sub))
            .map(|(name, _)| *name)
            .collect();
        let state = match users.get(sub) {
            None => FleetState::Orphaned,
            Some(u) if !(u.confirmed && u.enabled) => FleetState::Inactive,
            Some(_) if blocked.contains(sub) => FleetState::NeedsPerson,
            Some(_) if held.is_empty() => FleetState::Missing,
            Some(_) if held.len() < sets.len() => {
                for (name, set) in &sets {
                    if !set.contains(sub) {
                        *fleet.lacking.entry(name).or_default() += 1;
                    }
                }
                FleetState::Provisioning
            }
            Some(_) if credentials.contains_key(sub) => {
                fleet.drift.insert(sub.to_owned(), credentials[sub].clone());
                FleetState::Drift
            }
            Some(_) if inventory.permission_drift.contains(sub) => {
                fleet.drift.insert(
                    sub.to_owned(),
                    "its rights are not exactly `.*` on its own vhost".to_owned(),
                );
                FleetState::Drift
            }
            Some(_) => FleetState::Ready,
        };
        fleet.tenants.entry(state).or_default().push(sub.to_owned());
    }
    fleet
}

/// The tenant a resource's name belongs to: the name itself, or with the prefixes and suffixes
/// tenants' resources carry (`tgsearch/users/<sub>`, `backend-<sub>`, `backend-<sub>-data`).
fn tenant_in(name: &str) -> Option<&str> {
    let name = name.strip_suffix("-data").unwrap_or(name);
    // The last 36 bytes, where they begin a character (a name may hold any UTF-8).
    let tail = name.get(name.len().checked_sub(36)?..)?;
    TenantId::parse(tail).is_ok().then_some(tail)
}

/// Users as one listing answered them, for each cell's inventory.
struct Listed(Vec<crate::ports::DirectoryUser>);

impl crate::ports::UserDirectory for Listed {
    async fn users(&self) -> Result<Vec<crate::ports::DirectoryUser>, crate::ports::PortError> {
        Ok(self.0.clone())
    }

    async fn user(&self, sub: &str) -> Result<Option<crate::ports::DirectoryUser>, crate::ports::PortError> {
        Ok(self.0.iter().find(|u| u.sub == sub).cloned())
    }
}

/// Adds one cell's fleet to the whole.
fn merge(total: &mut Fleet, part: &Fleet) {
    // Each user is in exactly one cell's part.
    total.users += part.users;
    total.active_users += part.active_users;
    for (state, subs) in &part.tenants {
        total
            .tenants
            .entry(*state)
            .or_default()
            .extend(subs.iter().cloned());
    }
    for (what, n) in &part.lacking {
        *total.lacking.entry(what).or_default() += n;
    }
    total.drift.extend(part.drift.clone());
    total.foreign.extend(part.foreign.iter().cloned());
}

/// `status --all` over every cell: each registered cell's listings, restricted to the tenants
/// the map gives it (tenants without an entry count in the deployment's own cell, or the first),
/// then merged. What a cell holds of another cell's tenant is reported as foreign. Without a
/// registered cell: the deployment's broker and cluster, as before cells. Returns the whole and
/// each cell's part.
pub async fn survey<D: crate::ports::UserDirectory>(
    cells: &crate::cells::live::LiveCells,
    directory: &D,
) -> Result<(Fleet, Vec<(String, Fleet)>), ReconcileError> {
    use crate::cells::CellRegistry;
    let registry_failed = |source| ReconcileError::Inventory {
        what: "cell registry",
        source,
    };
    let registered = match cells.registry() {
        Some(registry) => registry.cells().await.map_err(registry_failed)?,
        None => Vec::new(),
    };
    let (Some(registry), Some(first)) = (cells.registry(), registered.first()) else {
        let provisioner = cells.default_provisioner();
        let inventory = crate::reconcile::take_inventory(provisioner, directory).await?;
        let credentials = credential_drift(provisioner, &inventory).await?;
        return Ok((summarize(&inventory, &credentials), Vec::new()));
    };
    let homes: BTreeMap<String, crate::cells::CellId> = registry
        .assignments()
        .await
        .map_err(registry_failed)?
        .into_iter()
        .collect();
    let fallback = cells.deployment_cell(&registered).unwrap_or(first).id.clone();
    let listed = Listed(
        directory
            .users()
            .await
            .map_err(|source| ReconcileError::Inventory {
                what: "user directory",
                source,
            })?,
    );
    let mut total = Fleet::default();
    let mut parts = Vec::new();
    for cell in &registered {
        let provisioner = cells
            .provisioner_of(cell)
            .await
            .map_err(|e| ReconcileError::Inventory {
                what: "a cell's broker and cluster",
                source: e.into(),
            })?;
        let mut inventory = crate::reconcile::take_inventory(&provisioner, &listed).await?;
        let mine = |sub: &str| {
            homes
                .get(sub)
                .map_or(cell.id == fallback, |home| *home == cell.id)
        };
        inventory.users.retain(|u| mine(&u.sub));
        let strays: BTreeSet<String> = inventory
            .held_by_cell()
            .into_iter()
            .flatten()
            .filter(|sub| !mine(sub))
            .cloned()
            .collect();
        for set in [
            &mut inventory.secrets,
            &mut inventory.vhosts,
            &mut inventory.rabbit_users,
            &mut inventory.permissions,
            &mut inventory.kube_secrets,
            &mut inventory.volumes,
            &mut inventory.deployments,
            &mut inventory.permission_drift,
        ] {
            set.retain(|sub| mine(sub));
        }
        inventory
            .foreign
            .extend(strays.into_iter().map(|sub| ForeignResource {
                kind: "tenant of another cell".into(),
                reason: format!(
                "cell {} holds it, the map places it {}",
                cell.id,
                homes.get(&sub).map_or("nowhere".to_owned(), |h| format!("in cell {h}"))
            ),
                name: sub,
            }));
        let credentials = credential_drift(&provisioner, &inventory).await?;
        let part = summarize(&inventory, &credentials);
        merge(&mut total, &part);
        parts.push((cell.id.to_string(), part));
    }
    for subs in total.tenants.values_mut() {
        subs.sort();
    }
    Ok((total, parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::DirectoryUser;

    fn sub(n: u8) -> String {
        format!("00000000-0000-4000-8000-0000000000{n:02}")
    }

    fn user(n: u8, confirmed: bool, enabled: bool) -> DirectoryUser {
        DirectoryUser {
            sub: sub(n),
            confirmed,
            enabled,
        }
    }

    fn with_all(inventory: &mut Inventory, n: u8) {
        for set in [
            &mut inventory.secrets,
            &mut inventory.vhosts,
            &mut inventory.rabbit_users,
            &mut inventory.permissions,
            &mut inventory.kube_secrets,
            &mut inventory.volumes,
            &mut inventory.deployments,
        ] {
            set.insert(sub(n));
        }
    }

    #[test]
    fn each_tenant_gets_one_state() {
        let mut inv = Inventory {
            users: vec![
                user(1, true, true),
                user(2, true, true),
                user(3, true, true),
                user(4, true, true),
                user(5, true, true),
                user(7, true, false),
                user(8, false, true),
            ],
            ..Inventory::default()
        };
        with_all(&mut inv, 1); // ready
        inv.secrets.insert(sub(2)); // provisioning: a secret only
        // 3: missing
        with_all(&mut inv, 4);
        inv.permission_drift.insert(sub(4)); // drift
        inv.foreign.push(ForeignResource {
            kind: "vhost".into(),
            name: sub(5),
            reason: "it has no `tgsearch` tag".into(),
        }); // needs a person
        with_all(&mut inv, 6); // orphaned: not in the pool
        with_all(&mut inv, 7); // inactive: disabled
        // 8: unconfirmed, nothing: not a tenant
        let fleet = summarize(&inv, &BTreeMap::new());
        let of = |s: FleetState| fleet.tenants.get(&s).cloned().unwrap_or_default();
        assert_eq!(of(FleetState::Ready), vec![sub(1)]);
        assert_eq!(of(FleetState::Provisioning), vec![sub(2)]);
        assert_eq!(of(FleetState::Missing), vec![sub(3)]);
        assert_eq!(of(FleetState::Drift), vec![sub(4)]);
        assert_eq!(of(FleetState::NeedsPerson), vec![sub(5)]);
        assert_eq!(of(FleetState::Orphaned), vec![sub(6)]);
        assert_eq!(of(FleetState::Inactive), vec![sub(7)]);
        assert_eq!(fleet.users, 7);
        assert_eq!(fleet.active_users, 5);
        assert_eq!(fleet.lacking["vhost"], 1);
        assert!(!fleet.lacking.contains_key("secret"));
        assert!(!fleet.is_clean());
        assert!(fleet.drift[&sub(4)].contains("rights"));
        // A password that differs is drift too.
        with_all(&mut inv, 9);
        inv.users.push(user(9, true, true));
        let credentials = BTreeMap::from([(
            sub(9),
            "the broker user's password is not the stored one".to_owned(),
        )]);
        let fleet = summarize(&inv, &credentials);
        assert_eq!(fleet.tenants[&FleetState::Drift], vec![sub(4), sub(9)]);
        assert!(fleet.drift[&sub(9)].contains("password"));
    }

    #[test]
    fn a_foreign_resource_is_matched_to_its_tenant_by_name() {
        let s = sub(9);
        assert_eq!(tenant_in(&s), Some(s.as_str()));
        assert_eq!(tenant_in(&format!("tgsearch/users/{s}")), Some(s.as_str()));
        assert_eq!(tenant_in(&format!("backend-{s}")), Some(s.as_str()));
        assert_eq!(tenant_in(&format!("backend-{s}-data")), Some(s.as_str()));
        assert_eq!(tenant_in("backend-template"), None);
        // A name of any UTF-8 is read without slicing inside a character.
        assert_eq!(tenant_in(&format!("€{}", "a".repeat(35))), None);
        assert_eq!(tenant_in(&format!("é{s}")), Some(s.as_str()));
    }
}
