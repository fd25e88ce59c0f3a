//! Core kinds: PersistentVolumeClaims (with their update rules) and Secrets.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::field::{ErrorList, forbidden, go_quote, go_scalar, invalid, not_supported, required, too_long};
use super::{names, quantity};

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn pvc_spec(spec: &Value, path: &str) -> ErrorList {
    let mut errs = ErrorList::default();
    let modes: Vec<&str> = spec["accessModes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if modes.is_empty() {
        errs.push(required(
            &format!("{path}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for mode in &modes {
        if !ACCESS_MODES.contains(mode) {
            errs.push(not_supported(
                &format!("{path}.accessModes"),
                go_quote(mode),
                &ACCESS_MODES,
            ));
        }
    }
    if modes.contains(&"ReadWriteOncePod")
        && modes
            .iter()
            .any(|m| *m != "ReadWriteOncePod" && ACCESS_MODES.contains(m))
    {
        errs.push(forbidden(
            &format!("{path}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    let storage_path = format!("{path}.resources[storage]");
    match spec["resources"]["requests"]["storage"].as_str() {
        None => errs.push(required(&storage_path, "")),
        Some(q) => {
            if !quantity::Quantity::parse(q).is_some_and(|q| q.is_positive()) {
                errs.push(invalid(&storage_path, go_quote(q), "must be greater than zero"));
            }
        }
    }
    if let Some(class) = spec["storageClassName"].as_str().filter(|c| !c.is_empty()) {
        for msg in names::dns1123_subdomain(class) {
            errs.push(invalid(
                &format!("{path}.storageClassName"),
                go_quote(class),
                &msg,
            ));
        }
    }
    if let Some(mode) = spec["volumeMode"].as_str()
        && !["Block", "Filesystem"].contains(&mode)
    {
        errs.push(not_supported(
            &format!("{path}.volumeMode"),
            go_quote(mode),
            &["Block", "Filesystem"],
        ));
    }
    errs
}

pub fn pvc(object: &Value) -> ErrorList {
    pvc_spec(&object["spec"], "spec")
}

/// Equality of two values where resource quantities compare by value (`Semantic.DeepEqual`).
fn semantic_eq(a: &Value, b: &Value, in_resources: bool) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if in_resources => {
            x == y || quantity::cmp_str(x, y) == Some(Ordering::Equal)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.get(k)
                        .is_some_and(|w| semantic_eq(v, w, in_resources || k == "requests" || k == "limits"))
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| semantic_eq(v, w, in_resources))
        }
        _ => a == b,
    }
}

/// The fields of `core.PersistentVolumeClaimSpec` in Go order, with their JSON names.
const PVC_SPEC_FIELDS: [(&str, &str); 9] = [
    ("AccessModes", "accessModes"),
    ("Selector", "selector"),
    ("Resources", "resources"),
    ("VolumeName", "volumeName"),
    ("StorageClassName", "storageClassName"),
    ("VolumeMode", "volumeMode"),
    ("DataSource", "dataSource"),
    ("DataSourceRef", "dataSourceRef"),
    ("VolumeAttributesClassName", "volumeAttributesClassName"),
];

fn go_field(go: &str, v: Option<&Value>) -> String {
    let pointer = matches!(
        go,
        "StorageClassName" | "VolumeMode" | "VolumeAttributesClassName"
    );
    match v {
        None | Some(Value::Null) if go == "VolumeName" => "\"\"".into(),
        None | Some(Value::Null) => "nil".into(),
        Some(v @ Value::String(_)) if pointer => format!("&{}", go_scalar(v)),
        Some(v @ Value::String(_)) => go_scalar(v),
        Some(v) => go_struct_like(v),
    }
}

fn go_struct_like(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(go_struct_like).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", go_quote(k), go_struct_like(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => go_scalar(other),
    }
}

/// A diff of two claim specs in the shape of go-cmp's report (which the API server appends
/// to the immutability error; go-cmp deliberately varies its whitespace, so clients cannot
/// parse it).
pub fn pvc_spec_diff(old: &Map<String, Value>, new: &Map<String, Value>) -> String {
    let mut lines = vec!["  core.PersistentVolumeClaimSpec{".to_owned()];
    let mut identical = 0;
    let flush = |lines: &mut Vec<String>, identical: &mut usize| {
        if *identical > 0 {
            lines.push(format!("  \t... // {identical} identical fields"));
            *identical = 0;
        }
    };
    for (go, json) in PVC_SPEC_FIELDS {
        let (o, n) = (old.get(json), new.get(json));
        let same = match (o, n) {
            (Some(a), Some(b)) => semantic_eq(a, b, json == "resources"),
            (None, None) => true,
            (Some(Value::Null), None) | (None, Some(Value::Null)) => true,
            _ => false,
        };
        if same {
            identical += 1;
            continue;
        }
        flush(&mut lines, &mut identical);
        lines.push(format!("- \t{go}: {},", go_field(go, o)));
        lines.push(format!("+ \t{go}: {},", go_field(go, n)));
    }
    flush(&mut lines, &mut identical);
    lines.push("  }".into());
    lines.join("\n")
}

/// `ValidatePersistentVolumeClaimUpdate`. `new` carries the old status (as after
/// `PrepareForUpdate`).
pub fn pvc_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    let empty = Map::new();
    let new_spec = new["spec"].as_object().unwrap_or(&empty);
    let old_spec = old["spec"].as_object().unwrap_or(&empty);
    let mut new_clone = new_spec.clone();
    let mut old_clone = old_spec.clone();
    if old_spec
        .get("volumeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        match new_clone.get("volumeName") {
            Some(v) => old_clone.insert("volumeName".into(), v.clone()),
            None => old_clone.remove("volumeName"),
        };
    }
    let class = |m: &Map<String, Value>| {
        m.get("storageClassName")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let beta = old["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str();
    // A claim without a class may be given one (retroactive default StorageClass assignment).
    if let (Some(new_class), None) = (class(new_spec), class(old_spec))
        && beta.is_none_or(|b| b == new_class)
    {
        new_clone.remove("storageClassName");
        old_clone.remove("storageClassName");
    }
    let bound = new["status"]["phase"].as_str() == Some("Bound");
    if bound
        && let Some(requests) = new_clone
            .get_mut("resources")
            .and_then(|r| r.get_mut("requests"))
            .and_then(Value::as_object_mut)
    {
        match old_spec
            .get("resources")
            .and_then(|r| r["requests"].get("storage"))
        {
            Some(s) => requests.insert("storage".into(), s.clone()),
            None => requests.remove("storage"),
        };
    }
    for m in [&mut new_clone, &mut old_clone] {
        m.remove("volumeAttributesClassName");
    }
    if !semantic_eq(
        &Value::Object(new_clone.clone()),
        &Value::Object(old_clone.clone()),
        false,
    ) {
        errs.push(forbidden(
            "spec",
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                pvc_spec_diff(&old_clone, &new_clone)
            ),
        ));
    }
    let size = |spec: &Map<String, Value>| {
        spec.get("resources")
            .and_then(|r| r["requests"]["storage"].as_str())
            .unwrap_or("0")
            .to_owned()
    };
    // RecoverVolumeExpansionFailure (GA since 1.34): a request may come back down after an
    // expansion that failed, but never to the volume's size or below it.
    if quantity::cmp_str(&size(new_spec), &size(old_spec)) == Some(Ordering::Less) {
        let capacity = old["status"]["capacity"]["storage"].as_str();
        let above_capacity =
            capacity.is_some_and(|c| quantity::cmp_str(&size(new_spec), c) == Some(Ordering::Greater));
        if !above_capacity {
            errs.push(forbidden(
                "spec.resources.requests.storage",
                if capacity.is_some() {
                    "field can not be less than status.capacity"
                } else {
                    "field can not be less than previous value"
                },
            ));
        }
    }
    if new_spec.get("volumeMode") != old_spec.get("volumeMode") {
        errs.push(invalid(
            "volumeMode",
            new_spec.get("volumeMode").map_or("null".into(), go_scalar),
            "field is immutable",
        ));
    }
    errs
}

const MAX_SECRET_SIZE: usize = 1024 * 1024;

pub fn secret(object: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    let mut total = 0;
    for (key, value) in object["data"].as_object().into_iter().flatten() {
        for msg in names::config_map_key(key) {
            errs.push(invalid(&format!("data[{key}]"), go_quote(key), &msg));
        }
        total += value.as_str().map_or(0, |v| v.len() * 3 / 4);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long("data", MAX_SECRET_SIZE));
    }
    errs
}

pub fn secret_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    let type_of = |o: &Value| o["type"].as_str().unwrap_or("Opaque").to_owned();
    if type_of(new) != type_of(old) {
        errs.push(invalid("type", go_quote(&type_of(new)), "field is immutable"));
    }
    if old["immutable"].as_bool() == Some(true) {
        if new["immutable"].as_bool() != Some(true) {
            errs.push(forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        if new.get("data") != old.get("data") {
            errs.push(forbidden("data", "field is immutable when `immutable` is set"));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(size: &str, class: Option<&str>, bound: bool) -> Value {
        let mut c = json!({
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "volumeMode": "Filesystem"},
            "status": {"phase": if bound { "Bound" } else { "Pending" }}
        });
        if let Some(class) = class {
            c["spec"]["storageClassName"] = class.into();
        }
        c
    }

    fn fields(errs: &ErrorList) -> Vec<&str> {
        errs.0.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_request_may_come_back_down_after_a_failed_expansion_but_not_to_the_capacity() {
        // Asked for 10Gi, the volume is still 1Gi: the expansion failed (RecoverVolumeExpansionFailure).
        let mut old = claim("10Gi", Some("gp3"), true);
        old["status"]["capacity"] = json!({"storage": "1Gi"});
        assert!(pvc_update(&claim("2Gi", Some("gp3"), true), &old).is_empty());
        let to_capacity = pvc_update(&claim("1Gi", Some("gp3"), true), &old);
        assert_eq!(
            to_capacity.0[0].to_string(),
            "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
        );
    }

    #[test]
    fn a_bound_claim_may_only_grow() {
        let old = claim("1Gi", Some("gp3"), true);
        assert!(pvc_update(&claim("2Gi", Some("gp3"), true), &old).is_empty());
        assert!(
            pvc_update(&claim("1024Mi", Some("gp3"), true), &old).is_empty(),
            "same size in other units"
        );
        let shrink = pvc_update(&claim("512Mi", Some("gp3"), true), &old);
        assert_eq!(fields(&shrink), ["spec.resources.requests.storage"]);
        assert_eq!(
            shrink.0[0].to_string(),
            "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
        );
        let reclass = pvc_update(&claim("1Gi", Some("gp2"), true), &old);
        assert_eq!(fields(&reclass), ["spec"]);
        let text = reclass.0[0].to_string();
        assert!(text.starts_with("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"), "{text}");
        assert!(
            text.contains("- \tStorageClassName: &\"gp3\",\n+ \tStorageClassName: &\"gp2\","),
            "{text}"
        );
    }

    #[test]
    fn an_unbound_claim_may_not_grow_but_may_get_a_class() {
        let old = claim("1Gi", None, false);
        assert_eq!(fields(&pvc_update(&claim("2Gi", None, false), &old)), ["spec"]);
        assert!(pvc_update(&claim("1Gi", Some("gp3"), false), &old).is_empty());
    }
}
