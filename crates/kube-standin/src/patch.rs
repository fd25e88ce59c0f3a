//! JSON merge patch (RFC 7386) and strategic merge patch, as far as the kinds served need:
//! lists with a `patchMergeKey` merged item by item, `$patch: delete|replace`,
//! `$retainKeys`, `$deleteFromPrimitiveList/...`, `$setElementOrder/...` (accepted, order
//! kept as merged).

use serde_json::{Map, Value};

/// JSON merge patch: maps merge, `null` removes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    let slot = t.entry(k.clone()).or_insert(Value::Null);
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    merge_patch(slot, v);
                }
            }
        }
        (t, p) => *t = strip_nulls_of_new(p),
    }
}

/// Objects placed by a merge patch lose their `null` members (they delete nothing).
fn strip_nulls_of_new(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls_of_new(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `patchMergeKey` of a list field (`patchStrategy: merge`), by field name.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "claims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Primitive lists merged as sets (`patchStrategy: merge` without a key).
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

#[derive(Debug, PartialEq, Eq)]
pub struct PatchError(pub String);

/// Strategic merge patch of `patch` into `target`.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) else {
        *target = patch.clone();
        return Ok(());
    };
    merge_map(t, p)
}

fn merge_map(t: &mut Map<String, Value>, p: &Map<String, Value>) -> Result<(), PatchError> {
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *t = p
                .iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return Ok(());
        }
        Some("delete") => {
            t.clear();
            return Ok(());
        }
        Some(other) => return Err(PatchError(format!("Unknown patch type: {other} in map: {p:?}"))),
        None => {}
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<&Value> = v.as_array().into_iter().flatten().collect();
            if let Some(Value::Array(items)) = t.get_mut(field) {
                items.retain(|i| !remove.contains(&i));
            }
            continue;
        }
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Object(tm)), Value::Object(pm)) => merge_map(tm, pm)?,
            (Some(Value::Array(ta)), Value::Array(pa)) if merge_key(k).is_some() => {
                merge_keyed_list(ta, pa, merge_key(k).expect("checked"))?;
            }
            (Some(Value::Array(ta)), Value::Array(pa)) if merges_primitives(k) => {
                for item in pa {
                    if !ta.contains(item) {
                        ta.push(item.clone());
                    }
                }
            }
            (_, Value::Object(pm)) => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, pm)?;
                t.insert(k.clone(), Value::Object(fresh));
            }
            (_, Value::Array(pa)) if merge_key(k).is_some() => {
                let mut fresh = Vec::new();
                merge_keyed_list(&mut fresh, pa, merge_key(k).expect("checked"))?;
                t.insert(k.clone(), Value::Array(fresh));
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_keyed_list(target: &mut Vec<Value>, patch: &[Value], key: &str) -> Result<(), PatchError> {
    if patch.iter().any(|i| {
        i.as_object()
            .and_then(|m| m.get("$patch"))
            .and_then(Value::as_str)
            == Some("replace")
    }) {
        *target = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(());
    }
    for item in patch {
        let Some(map) = item.as_object() else {
            target.push(item.clone());
            continue;
        };
        let Some(k) = map.get(key) else {
            return Err(PatchError(format!(
                "map: {map:?} does not contain declared merge key: {key}"
            )));
        };
        let existing = target.iter().position(|t| t.get(key) == Some(k));
        if map.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = existing {
                target.remove(i);
            }
            continue;
        }
        match existing {
            Some(i) => {
                if let Value::Object(tm) = &mut target[i] {
                    merge_map(tm, map)?;
                }
            }
            None => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, map)?;
                target.push(Value::Object(fresh));
            }
        }
    }
    Ok(())
}

/// JSON patch (RFC 6902): `add`, `remove`, `replace`, `move`, `copy`, `test`.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops = ops.as_array().ok_or_else(|| {
        PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch".into())
    })?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        match op["op"].as_str().unwrap_or_default() {
            "add" => add(target, path, op["value"].clone())?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, op["value"].clone())?;
            }
            "move" => {
                let v = remove(target, op["from"].as_str().unwrap_or_default())?;
                add(target, path, v)?;
            }
            "copy" => {
                let v = target
                    .pointer(op["from"].as_str().unwrap_or_default())
                    .cloned()
                    .ok_or_else(|| {
                        PatchError(format!(
                            "copy operation does not apply: doc is missing from path: {path}"
                        ))
                    })?;
                add(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(PatchError(format!("testing value {path} failed")));
                }
            }
            other => return Err(PatchError(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), PatchError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| PatchError(format!("invalid JSON pointer: {path}")))?;
    Ok((parent.to_owned(), last.replace("~1", "/").replace("~0", "~")))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let (parent, key) = split_pointer(path)?;
    let missing = || {
        PatchError(format!(
            "add operation does not apply: doc is missing path: {path}"
        ))
    };
    match target.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(key, value);
        }
        Value::Array(items) if key == "-" => items.push(value),
        Value::Array(items) => {
            let i: usize = key.parse().map_err(|_| missing())?;
            if i > items.len() {
                return Err(missing());
            }
            items.insert(i, value);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, key) = split_pointer(path)?;
    let missing = || {
        PatchError(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        ))
    };
    match target.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(&key).ok_or_else(missing),
        Value::Array(items) => {
            let i: usize = key.parse().map_err(|_| missing())?;
            (i < items.len()).then(|| items.remove(i)).ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"a": {"b": null, "d": 3}, "l": [3], "n": {"x": null, "y": 1}}),
        );
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3], "n": {"y": 1}}));
    }

    #[test]
    fn json_patch_applies_operations_in_order() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "replace", "path": "/spec/list/0", "value": 9},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "test", "path": "/spec/list/2", "value": 3}
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"list": [9, 2, 3]}})
        );
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn strategic_merge_patch_merges_containers_by_name() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}
        ]}}}});
        strategic_merge_patch(
            &mut d,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "b", "image": "b:2"}, {"name": "a", "$patch": "delete"}, {"name": "c", "image": "c:1"}
            ]}}}}),
        )
        .unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}])
        );
        let mut labels = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        strategic_merge_patch(
            &mut labels,
            &json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        )
        .unwrap();
        assert_eq!(labels, json!({"metadata": {"labels": {"c": "3"}}}));
    }
}
