//! Field management: `metadata.managedFields` and the server-side apply algorithm of
//! structured-merge-diff's `Updater` as the API server wires it (strip of system metadata,
//! reset fields such as `status`, one `Apply` entry per applier and one `Update` entry per
//! manager and version, conflicts unless forced, pruning of fields an applier stopped
//! applying).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::fieldpath::{Path, Set, fields};
use crate::schema::Ty;
use crate::typed::{self, Comparison};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// A manager as the API server identifies it: appliers by name alone, updaters by name and
/// API version (`BuildManagerIdentifier`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerId {
    pub fn applier(manager: &str) -> Self {
        Self {
            manager: manager.to_owned(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: String::new(),
        }
    }

    pub fn updater(manager: &str, api_version: &str, subresource: &str) -> Self {
        Self {
            manager: manager.to_owned(),
            operation: Operation::Update,
            api_version: api_version.to_owned(),
            subresource: subresource.to_owned(),
        }
    }

    /// How conflicts name a manager: `"kubectl"`, `"kubectl-edit" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub set: Set,
    pub api_version: String,
    pub time: Option<String>,
}

pub type Managers = BTreeMap<ManagerId, Entry>;

/// Fields no manager ever owns (`stripMetaManager`).
fn strip_set() -> Set {
    let paths: Vec<Path> = vec![
        fields(&["apiVersion"]),
        fields(&["kind"]),
        fields(&["metadata"]),
        fields(&["metadata", "name"]),
        fields(&["metadata", "namespace"]),
        fields(&["metadata", "creationTimestamp"]),
        fields(&["metadata", "selfLink"]),
        fields(&["metadata", "uid"]),
        fields(&["metadata", "clusterName"]),
        fields(&["metadata", "generation"]),
        fields(&["metadata", "managedFields"]),
        fields(&["metadata", "resourceVersion"]),
    ];
    Set::from_paths(paths.iter().map(Vec::as_slice))
}

/// `metadata.managedFields` of an object; entries that cannot be read make the whole list
/// unreadable (`None`), as `DecodeManagedFields` fails.
pub fn decode(object: &Value) -> Option<Managers> {
    let entries = match object.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => return Some(Managers::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return None,
    };
    let mut out = Managers::new();
    for e in entries {
        let operation = match e["operation"].as_str()? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let api_version = e["apiVersion"].as_str().filter(|v| !v.is_empty())?.to_owned();
        if e["fieldsType"].as_str() != Some("FieldsV1") {
            return None;
        }
        let set = match e.get("fieldsV1") {
            Some(f) if !f.is_null() => Set::from_fields_v1(f).ok()?,
            _ => Set::new(),
        };
        let manager = e["manager"].as_str().unwrap_or_default();
        let subresource = e["subresource"].as_str().unwrap_or_default();
        let id = match operation {
            Operation::Apply => ManagerId {
                subresource: subresource.to_owned(),
                ..ManagerId::applier(manager)
            },
            Operation::Update => ManagerId::updater(manager, &api_version, subresource),
        };
        out.insert(
            id,
            Entry {
                set,
                api_version,
                time: e["time"].as_str().map(str::to_owned),
            },
        );
    }
    Some(out)
}

/// The wire form, sorted as the API server sorts it (operation, time, manager, version).
pub fn encode(managers: &Managers) -> Value {
    let mut entries: Vec<(&ManagerId, &Entry)> = managers.iter().collect();
    entries.sort_by(|(a, ea), (b, eb)| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| {
                ea.time
                    .as_deref()
                    .unwrap_or("")
                    .cmp(eb.time.as_deref().unwrap_or(""))
            })
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| ea.api_version.cmp(&eb.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    Value::Array(
        entries
            .into_iter()
            .map(|(id, e)| {
                let mut m = Map::new();
                m.insert("manager".into(), id.manager.clone().into());
                m.insert("operation".into(), id.operation.as_str().into());
                m.insert("apiVersion".into(), e.api_version.clone().into());
                if let Some(t) = &e.time {
                    m.insert("time".into(), t.clone().into());
                }
                m.insert("fieldsType".into(), "FieldsV1".into());
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !id.subresource.is_empty() {
                    m.insert("subresource".into(), id.subresource.clone().into());
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// An apply that would take fields other managers own with other values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<(ManagerId, Path)>);

/// What a write needs to know about the kind.
pub struct Context<'a> {
    pub ty: &'a Ty,
    pub api_version: &'a str,
    /// Fields the main resource never manages (`status`).
    pub ignored: &'a Set,
    pub now: &'a str,
}

/// The core of `Updater.update`: managers lose what the change removed, and, when forced,
/// what it took from them; unforced, those are conflicts.
fn update_managers(
    old: &Value,
    new: &Value,
    managers: &mut Managers,
    workflow: &ManagerId,
    force: bool,
    cx: &Context,
) -> Result<Comparison, Conflicts> {
    let mut cmp = typed::compare(Some(old), Some(new), cx.ty);
    cmp.exclude(cx.ignored);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts: Vec<(ManagerId, Set)> = Vec::new();
    for (id, entry) in managers.iter() {
        if id == workflow {
            continue;
        }
        let taken = entry.set.intersection(&changed);
        if !taken.is_empty() {
            conflicts.push((id.clone(), taken));
        }
    }
    if !force && !conflicts.is_empty() {
        let mut list = Vec::new();
        for (id, set) in conflicts {
            for path in set.paths() {
                list.push((id.clone(), path));
            }
        }
        return Err(Conflicts(list));
    }
    for (id, taken) in &conflicts {
        if let Some(e) = managers.get_mut(id) {
            e.set = e.set.difference(taken);
        }
    }
    if !cmp.removed.is_empty() {
        for (id, e) in managers.iter_mut() {
            if id != workflow {
                e.set = e.set.difference(&cmp.removed);
            }
        }
    }
    managers.retain(|_, e| !e.set.is_empty());
    Ok(cmp)
}

/// A create, update or patch by `manager`: it owns what it changed
/// (`FieldManager.Update`). `managers` is updated in place; nothing is recorded when the
/// write changed nothing.
pub fn record_update(old: &Value, new: &Value, managers: &mut Managers, manager: &ManagerId, cx: &Context) {
    let current = ManagerId::updater("current-operation", cx.api_version, "");
    let cmp = update_managers(old, new, managers, &current, true, cx).expect("forced updates never conflict");
    let set = cmp
        .modified
        .union(&cmp.added)
        .recursive_difference(cx.ignored)
        .difference(&strip_set());
    if set.is_empty() {
        return;
    }
    let entry = managers.entry(manager.clone()).or_insert_with(|| Entry {
        set: Set::new(),
        api_version: cx.api_version.to_owned(),
        time: None,
    });
    entry.set = entry.set.union(&set);
    entry.api_version = cx.api_version.to_owned();
    entry.time = Some(cx.now.to_owned());
}

/// The outcome of an apply.
pub struct Applied {
    /// The new object (without managed fields), or `None` when the apply changed nothing.
    pub object: Option<Value>,
}

/// Server-side apply of `config` by `applier` onto `live` (`Updater.Apply`).
pub fn apply(
    live: &Value,
    config: &Value,
    managers: &mut Managers,
    applier: &ManagerId,
    force: bool,
    cx: &Context,
) -> Result<Applied, Conflicts> {
    let merged = typed::merge(Some(live), Some(config), cx.ty).unwrap_or_else(|| json!({}));
    let last = managers.get(applier).map(|e| e.set.clone());
    let set = typed::field_set(config, cx.ty).recursive_difference(cx.ignored);
    managers.insert(
        applier.clone(),
        Entry {
            set,
            api_version: cx.api_version.to_owned(),
            time: managers.get(applier).and_then(|e| e.time.clone()),
        },
    );
    let pruned = match &last {
        Some(last) if !last.is_empty() => prune(&merged, managers, last, cx.ty),
        _ => merged,
    };
    update_managers(live, &pruned, managers, applier, force, cx)?;
    if let Some(e) = managers.get_mut(applier) {
        e.set = e.set.difference(&strip_set());
    }
    managers.retain(|_, e| !e.set.is_empty());
    if &pruned == live {
        return Ok(Applied { object: None });
    }
    if let Some(e) = managers.get_mut(applier) {
        e.time = Some(cx.now.to_owned());
    }
    Ok(Applied { object: Some(pruned) })
}

/// Removes what the applier applied last time and no longer applies, unless another
/// manager (or the applier's new configuration) still claims it.
fn prune(merged: &Value, managers: &Managers, last: &Set, ty: &Ty) -> Value {
    let named = |s: &Set| typed::ensure_named_fields(s, ty);
    let remove = |s: &Set| typed::remove_items(merged, s, ty).unwrap_or_else(|| json!({}));
    let first = remove(&named(last));
    // Add back what someone owns.
    let managed = managers.values().fold(Set::new(), |acc, e| acc.union(&e.set));
    let merged_set = named(&typed::field_set(merged, ty));
    let kept = named(&typed::field_set(&first, ty)).union(&named(&managed));
    let owned_back = remove(&merged_set.difference(&kept));
    // Remove only what the applier owned before (dangling items stay).
    let dropped = merged_set
        .difference(&named(&typed::field_set(&owned_back, ty)))
        .intersection(&named(last));
    remove(&dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldpath::path_string;
    use crate::schema::DEPLOYMENT;

    fn cx<'a>(ignored: &'a Set) -> Context<'a> {
        Context {
            ty: &DEPLOYMENT,
            api_version: "apps/v1",
            ignored,
            now: "2026-01-01T00:00:00Z",
        }
    }

    fn dep(replicas: Option<i64>, image: &str) -> Value {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}
        });
        if let Some(r) = replicas {
            d["spec"]["replicas"] = r.into();
        }
        d
    }

    fn status_set() -> Set {
        Set::from_paths([fields(&["status"]).as_slice()])
    }

    #[test]
    fn an_applier_owns_what_it_applied_and_loses_what_it_omits() {
        let ignored = status_set();
        let cx = cx(&ignored);
        let mut managers = Managers::new();
        let me = ManagerId::applier("tgsearch-provisioner");
        let first = apply(&json!({}), &dep(Some(2), "a:1"), &mut managers, &me, false, &cx)
            .unwrap()
            .object
            .unwrap();
        assert_eq!(first["spec"]["replicas"], 2);
        let owned = managers[&me].set.paths();
        assert!(owned.contains(&fields(&["spec", "replicas"])));
        assert!(
            !owned.contains(&fields(&["metadata", "name"])),
            "system metadata is never owned"
        );
        // Applied again without replicas: the field goes.
        let second = apply(&first, &dep(None, "a:1"), &mut managers, &me, false, &cx)
            .unwrap()
            .object
            .unwrap();
        assert!(second["spec"].get("replicas").is_none(), "{second}");
        // Applied again unchanged: nothing to write.
        assert!(
            apply(&second, &dep(None, "a:1"), &mut managers, &me, false, &cx)
                .unwrap()
                .object
                .is_none()
        );
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced_and_shared_fields_stay() {
        let ignored = status_set();
        let cx = cx(&ignored);
        let mut managers = Managers::new();
        let kubectl = ManagerId::updater("kubectl-client-side-apply", "apps/v1", "");
        let live = dep(Some(3), "a:1");
        record_update(&json!({}), &live, &mut managers, &kubectl, &cx);
        let me = ManagerId::applier("tgsearch-provisioner");
        let err = apply(
            &live,
            &dep(Some(1), "a:1"),
            &mut managers.clone(),
            &me,
            false,
            &cx,
        )
        .err()
        .unwrap();
        assert_eq!(err.0.len(), 1);
        assert_eq!(
            err.0[0].0.describe(),
            "\"kubectl-client-side-apply\" using apps/v1"
        );
        assert_eq!(path_string(&err.0[0].1), ".spec.replicas");
        // Same values: no conflict, both own them.
        let mut shared = managers.clone();
        apply(&live, &dep(Some(3), "a:1"), &mut shared, &me, false, &cx).unwrap();
        assert!(shared[&kubectl].set.has(&fields(&["spec", "replicas"])));
        assert!(shared[&me].set.has(&fields(&["spec", "replicas"])));
        // Forced: the applier takes the field.
        let forced = apply(&live, &dep(Some(1), "a:1"), &mut managers, &me, true, &cx)
            .unwrap()
            .object
            .unwrap();
        assert_eq!(forced["spec"]["replicas"], 1);
        assert!(!managers[&kubectl].set.has(&fields(&["spec", "replicas"])));
        // A field another manager still owns is not pruned when the applier drops it.
        let mut both = Managers::new();
        let first = apply(&json!({}), &dep(Some(2), "a:1"), &mut both, &me, false, &cx)
            .unwrap()
            .object
            .unwrap();
        let other = ManagerId::applier("someone-else");
        let mut replicas_only = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        apply(&first, &replicas_only, &mut both, &other, false, &cx).unwrap();
        let after = apply(&first, &dep(None, "a:1"), &mut both, &me, false, &cx)
            .unwrap()
            .object;
        assert!(after.is_none(), "replicas stays: someone-else applies it");
        replicas_only["spec"]["replicas"] = 5.into();
        assert!(apply(&first, &replicas_only, &mut both, &other, false, &cx).is_ok());
    }

    #[test]
    fn managed_fields_round_trip_in_the_wire_format() {
        let ignored = status_set();
        let cx = cx(&ignored);
        let mut managers = Managers::new();
        apply(
            &json!({}),
            &dep(Some(1), "a:1"),
            &mut managers,
            &ManagerId::applier("kubectl"),
            false,
            &cx,
        )
        .unwrap();
        record_update(
            &dep(Some(1), "a:1"),
            &dep(Some(1), "a:2"),
            &mut managers,
            &ManagerId::updater("kubectl-edit", "apps/v1", ""),
            &cx,
        );
        let wire = encode(&managers);
        assert_eq!(wire[0]["manager"], "kubectl");
        assert_eq!(wire[0]["operation"], "Apply");
        assert_eq!(wire[1]["operation"], "Update");
        assert_eq!(wire[1]["apiVersion"], "apps/v1");
        assert_eq!(wire[1]["fieldsType"], "FieldsV1");
        assert_eq!(
            wire[1]["fieldsV1"],
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {"f:image": {}}}}}}})
        );
        let object = json!({"metadata": {"managedFields": wire}});
        assert_eq!(decode(&object).unwrap(), managers);
    }
}
