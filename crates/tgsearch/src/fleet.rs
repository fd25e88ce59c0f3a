//! The whole fleet at a glance (`tgsearch status --all`): every tenant's state from the same
//! listings reconcile takes (a few paginated calls per system: the user pool, the tenant
//! secrets, the broker's vhosts, users and permissions, the labelled Kubernetes objects), never a
//! call per tenant, so thousands of tenants take seconds.
//!
//! From listings it sees what exists and whose it is, and the permissions: enough for
//! ready, provisioning, missing, orphaned, needs a person (a foreign resource in a tenant's way),
//! drift of the rights, and foreign resources. What needs each tenant's own reads (the password
//! against the stored one, the Kubernetes Secret's `AMQP_URI`, the Deployment's spec, the
//! volume) is `tgsearch status --sub`'s and reconcile's.

use std::collections::{BTreeMap, BTreeSet};

use crate::reconcile::{ForeignResource, Inventory};
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
    /// Every resource there, but its rights differ (reconcile repairs them).
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

/// Classifies every tenant of `inventory` (pure).
pub fn summarize(inventory: &Inventory) -> Fleet {
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
            Some(_) if inventory.permission_drift.contains(sub) => FleetState::Drift,
            Some(_) => FleetState::Ready,
        };
        fleet.tenants.entry(state).or_default().push(sub.to_owned());
    }
    fleet
}

/// The tenant a resource's name belongs to: the name itself, or with the prefixes and suffixes
/// tenants' resources carry (`tgsearch/users/<sub>`, `backend-<sub>`, `backend-<sub>-data`).
fn tenant_in(name: &str) -> Option<&str> {
    let start = name.len().checked_sub(36)?;
    [name, &name[start..]]
        .into_iter()
        .chain(name.strip_prefix("backend-").map(|n| n.trim_end_matches("-data")))
        .find(|candidate| TenantId::parse(candidate).is_ok())
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
        let fleet = summarize(&inv);
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
    }

    #[test]
    fn a_foreign_resource_is_matched_to_its_tenant_by_name() {
        let s = sub(9);
        assert_eq!(tenant_in(&s), Some(s.as_str()));
        assert_eq!(tenant_in(&format!("tgsearch/users/{s}")), Some(s.as_str()));
        assert_eq!(tenant_in(&format!("backend-{s}")), Some(s.as_str()));
        assert_eq!(tenant_in(&format!("backend-{s}-data")), Some(s.as_str()));
        assert_eq!(tenant_in("backend-template"), None);
    }
}
