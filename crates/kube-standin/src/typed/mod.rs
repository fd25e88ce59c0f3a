//! The operations structured-merge-diff performs on objects, on JSON values described by a
//! [`Ty`]: the set of fields a value sets, the comparison of two values, the merge of an
//! applied configuration into a live object, and the removal of a set of fields.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value};

use crate::fieldpath::{Path, Pe, Set};
use crate::schema::Ty;

mod validate;
pub use validate::validate;

/// What changed between two values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub removed: Set,
    pub modified: Set,
    pub added: Set,
}

impl Comparison {
    pub fn exclude(&mut self, ignored: &Set) {
        self.removed = self.removed.recursive_difference(ignored);
        self.modified = self.modified.recursive_difference(ignored);
        self.added = self.added.recursive_difference(ignored);
    }
}

/// How a node is walked.
enum Node<'a> {
    Leaf,
    Map(Option<&'a Map<String, Value>>, Option<&'a Map<String, Value>>),
    List(Option<&'a Vec<Value>>, Option<&'a Vec<Value>>),
}

fn node<'a>(ty: &Ty, lhs: Option<&'a Value>, rhs: Option<&'a Value>) -> Node<'a> {
    let obj = |v: Option<&'a Value>| v.and_then(Value::as_object);
    let arr = |v: Option<&'a Value>| v.and_then(Value::as_array);
    let any_obj = obj(lhs).is_some() || obj(rhs).is_some();
    let any_arr = arr(lhs).is_some() || arr(rhs).is_some();
    // A value of the wrong shape on one side makes the node a leaf (replaced as a whole).
    let mismatched = |is: fn(&Value) -> bool| {
        [lhs, rhs]
            .iter()
            .any(|v| v.is_some_and(|v| !v.is_null() && !is(v)))
    };
    match ty {
        Ty::Atomic => Node::Leaf,
        Ty::Struct(_) | Ty::Map(_) | Ty::Inferred if any_obj && !mismatched(Value::is_object) => {
            let (l, r) = (obj(lhs), obj(rhs));
            if l.is_none_or(Map::is_empty) && r.is_none_or(Map::is_empty) {
                Node::Leaf
            } else {
                Node::Map(l, r)
            }
        }
        Ty::Keyed(..) | Ty::Set if any_arr && !mismatched(Value::is_array) => {
            let (l, r) = (arr(lhs), arr(rhs));
            if l.is_none_or(Vec::is_empty) && r.is_none_or(Vec::is_empty) {
                Node::Leaf
            } else {
                Node::List(l, r)
            }
        }
        _ => Node::Leaf,
    }
}

/// The path element of a list item: its key fields (associative lists) or its value (sets).
pub fn item_pe(ty: &Ty, item: &Value) -> Result<Pe, String> {
    match ty {
        Ty::Keyed(keys, _) => {
            let mut fields = Vec::new();
            for key in keys.iter() {
                match item.get(key.name) {
                    Some(v) if !v.is_null() => fields.push((key.name.to_owned(), v.clone())),
                    _ => match key.default {
                        Some(d) => fields.push((key.name.to_owned(), Value::String(d.into()))),
                        None => {
                            return Err(format!(
                                "associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                                key.name
                            ));
                        }
                    },
                }
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Pe::Key(fields))
        }
        _ => Ok(Pe::Value(item.clone())),
    }
}

/// Items of a list by path element, first occurrence wins; duplicates reported.
struct Indexed<'a> {
    order: Vec<Pe>,
    by_pe: BTreeMap<Pe, &'a Value>,
    duplicates: BTreeSet<Pe>,
}

fn index<'a>(ty: &Ty, items: Option<&'a Vec<Value>>) -> Indexed<'a> {
    let mut out = Indexed {
        order: Vec::new(),
        by_pe: BTreeMap::new(),
        duplicates: BTreeSet::new(),
    };
    for item in items.into_iter().flatten() {
        let Ok(pe) = item_pe(ty, item) else { continue };
        if out.by_pe.contains_key(&pe) {
            out.duplicates.insert(pe);
        } else {
            out.by_pe.insert(pe.clone(), item);
            out.order.push(pe);
        }
    }
    out
}

/// The fields a value sets (`ToFieldSet`).
pub fn field_set(value: &Value, ty: &Ty) -> Set {
    let mut set = Set::new();
    walk_set(value, ty, &mut Vec::new(), &mut set);
    set
}

fn walk_set(value: &Value, ty: &Ty, path: &mut Path, set: &mut Set) {
    match node(ty, Some(value), None) {
        Node::Leaf => {
            // An empty associative list or set sets nothing; anything else is a leaf.
            let empty_granular_list = value.is_array() && matches!(ty, Ty::Keyed(..) | Ty::Set);
            if !empty_granular_list {
                set.insert(path);
            }
        }
        Node::Map(Some(map), _) => {
            for (k, v) in map {
                path.push(Pe::Field(k.clone()));
                walk_set(v, ty.field(k), path, set);
                let empty_map = v.as_object().is_some_and(Map::is_empty);
                if v.is_null() || empty_map || !ty.is_struct() {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Node::List(Some(items), _) => {
            let indexed = index(ty, Some(items));
            for pe in &indexed.duplicates {
                path.push(pe.clone());
                set.insert(path);
                path.pop();
            }
            for pe in &indexed.order {
                if indexed.duplicates.contains(pe) {
                    continue;
                }
                path.push(pe.clone());
                walk_set(indexed.by_pe[pe], ty.item(), path, set);
                set.insert(path);
                path.pop();
            }
        }
        _ => {}
    }
}

/// What changed from `lhs` to `rhs` (`Compare`).
pub fn compare(lhs: Option<&Value>, rhs: Option<&Value>, ty: &Ty) -> Comparison {
    let mut out = Comparison::default();
    walk_compare(lhs, rhs, ty, &mut Vec::new(), &mut out);
    out
}

fn walk_compare(lhs: Option<&Value>, rhs: Option<&Value>, ty: &Ty, path: &mut Path, out: &mut Comparison) {
    match node(ty, lhs, rhs) {
        Node::Leaf => {
            match (lhs, rhs) {
                (None, Some(_)) => out.added.insert(path),
                (Some(_), None) => out.removed.insert(path),
                (Some(l), Some(r)) if l != r => out.modified.insert(path),
                _ => {}
            }
            return;
        }
        Node::Map(l, r) => {
            let keys: BTreeSet<&String> = l
                .into_iter()
                .flat_map(Map::keys)
                .chain(r.into_iter().flat_map(Map::keys))
                .collect();
            for k in keys {
                path.push(Pe::Field(k.clone()));
                walk_compare(
                    l.and_then(|m| m.get(k)),
                    r.and_then(|m| m.get(k)),
                    ty.field(k),
                    path,
                    out,
                );
                path.pop();
            }
        }
        Node::List(l, r) => {
            let (li, ri) = (index(ty, l), index(ty, r));
            let mut all = li.order.clone();
            all.extend(ri.order.iter().filter(|pe| !li.by_pe.contains_key(pe)).cloned());
            for pe in all {
                path.push(pe.clone());
                walk_compare(
                    li.by_pe.get(&pe).copied(),
                    ri.by_pe.get(&pe).copied(),
                    ty.item(),
                    path,
                    out,
                );
                path.pop();
            }
        }
    }
    if lhs.is_none() {
        out.added.insert(path);
    } else if rhs.is_none() {
        out.removed.insert(path);
    }
}

/// `rhs` merged into `lhs`: granular maps and associative lists item by item, the rest
/// replaced (`Merge`).
pub fn merge(lhs: Option<&Value>, rhs: Option<&Value>, ty: &Ty) -> Option<Value> {
    match (lhs, rhs) {
        (None, None) => None,
        (Some(l), None) => Some(l.clone()),
        (None, Some(r)) => Some(r.clone()),
        (Some(l), Some(r)) => Some(match node(ty, Some(l), Some(r)) {
            Node::Leaf => r.clone(),
            Node::Map(lm, rm) => {
                let mut out = lm.cloned().unwrap_or_default();
                for (k, rv) in rm.into_iter().flatten() {
                    if let Some(v) = merge(out.get(k), Some(rv), ty.field(k)) {
                        out.insert(k.clone(), v);
                    }
                }
                Value::Object(out)
            }
            Node::List(la, ra) => Value::Array(merge_list(la, ra, ty)),
        }),
    }
}

/// structured-merge-diff's list merge: items of both sides merged by key, the live order kept
/// for items only the live list has, the applied order for the others.
fn merge_list(lhs: Option<&Vec<Value>>, rhs: Option<&Vec<Value>>, ty: &Ty) -> Vec<Value> {
    let (l, r) = (index(ty, lhs), index(ty, rhs));
    let mut shared: VecDeque<&Pe> = r.order.iter().filter(|pe| l.by_pe.contains_key(pe)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs = BTreeSet::new();
    let mut out = Vec::new();
    let item = ty.item();
    let (mut li, mut ri) = (0, 0);
    while li < l.order.len() || ri < r.order.len() {
        if li < l.order.len() && ri < r.order.len() {
            let pe = &l.order[li];
            if *pe == r.order[ri] {
                merged_rhs.insert(pe.clone());
                out.extend(merge(l.by_pe.get(pe).copied(), r.by_pe.get(pe).copied(), item));
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if r.by_pe.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < l.order.len() {
            let pe = &l.order[li];
            if !r.by_pe.contains_key(pe) {
                out.extend(merge(l.by_pe.get(pe).copied(), None, item));
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r.order.len() {
            let pe = &r.order[ri];
            merged_rhs.insert(pe.clone());
            out.extend(merge(l.by_pe.get(pe).copied(), r.by_pe.get(pe).copied(), item));
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// `value` without the fields and items of `set` (`RemoveItems`). `None` when nothing is
/// left of a map or list.
pub fn remove_items(value: &Value, set: &Set, ty: &Ty) -> Option<Value> {
    if set.is_empty() {
        return Some(value.clone());
    }
    match node(ty, Some(value), None) {
        Node::Leaf => Some(value.clone()),
        Node::Map(Some(map), _) => {
            let mut out = Map::new();
            for (k, v) in map {
                let pe = Pe::Field(k.clone());
                if set.is_member(&pe) {
                    continue;
                }
                let below = set.with_prefix(&pe);
                if below.is_empty() {
                    out.insert(k.clone(), v.clone());
                } else if let Some(kept) = remove_items(v, &below, ty.field(k)) {
                    out.insert(k.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Node::List(Some(items), _) => {
            let mut out = Vec::new();
            for item in items {
                let Ok(pe) = item_pe(ty, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.is_member(&pe) {
                    continue;
                }
                let below = set.with_prefix(&pe);
                if below.is_empty() {
                    out.push(item.clone());
                } else if let Some(kept) = remove_items(item, &below, ty.item()) {
                    out.push(kept);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(value.clone()),
    }
}

/// `set` plus, as members, the named struct fields it reaches into
/// (`EnsureNamedFieldsAreMembers`), so that pruning can remove a whole struct field.
pub fn ensure_named_fields(set: &Set, ty: &Ty) -> Set {
    let mut out = Set::new();
    for m in set.members() {
        out.add_member(m.clone());
    }
    for (pe, child) in set.children() {
        let child_ty = match pe {
            Pe::Field(name) => {
                if ty.is_struct() {
                    out.add_member(pe.clone());
                }
                ty.field(name)
            }
            _ => ty.item(),
        };
        out.set_child(pe.clone(), ensure_named_fields(child, child_ty));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldpath::{fields, path_string};
    use crate::schema::DEPLOYMENT;
    use serde_json::json;

    fn deployment(containers: Value) -> Value {
        json!({"spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn the_field_set_keys_list_items_and_marks_maps() {
        let d = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
            }
        });
        let set = field_set(&d, &DEPLOYMENT);
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn merge_keeps_live_items_and_replaces_atomic_values() {
        let live = deployment(json!([
            {"name": "a", "image": "a:1", "args": ["x"]},
            {"name": "b", "image": "b:1"}
        ]));
        let applied = deployment(json!([{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]));
        let merged = merge(Some(&live), Some(&applied), &DEPLOYMENT).unwrap();
        let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][1]["image"],
            "b:2"
        );
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["x"])
        );
        let selector = merge(
            Some(&json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}})),
            Some(&json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}})),
            &DEPLOYMENT,
        )
        .unwrap();
        assert_eq!(
            selector["spec"]["selector"],
            json!({"matchLabels": {"a": "1"}}),
            "the selector is atomic: replaced, not merged"
        );
    }

    #[test]
    fn compare_reports_added_modified_and_removed_paths() {
        let old = deployment(json!([{"name": "a", "image": "a:1"}]));
        let mut new = deployment(json!([{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}]));
        new["spec"].as_object_mut().unwrap().remove("replicas");
        let c = compare(Some(&old), Some(&new), &DEPLOYMENT);
        assert_eq!(c.removed.paths(), vec![fields(&["spec", "replicas"])]);
        assert_eq!(
            c.modified
                .paths()
                .iter()
                .map(|p| path_string(p))
                .collect::<Vec<_>>(),
            [".spec.template.spec.containers[name=\"a\"].image"]
        );
        let added: Vec<String> = c.added.paths().iter().map(|p| path_string(p)).collect();
        assert!(added.contains(&".spec.template.spec.containers[name=\"b\"]".to_string()));
        assert!(added.contains(&".spec.template.spec.containers[name=\"b\"].image".to_string()));
    }

    #[test]
    fn remove_items_drops_fields_and_items_and_empties() {
        let d = deployment(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
        let mut set = Set::new();
        set.insert(&fields(&["spec", "replicas"]));
        let mut b = fields(&["spec", "template", "spec", "containers"]);
        b.push(Pe::Key(vec![("name".into(), json!("b"))]));
        set.insert(&b);
        let left = remove_items(&d, &set, &DEPLOYMENT).unwrap();
        assert_eq!(
            left,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}})
        );
    }
}
