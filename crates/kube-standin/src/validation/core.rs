//! Core kinds: pod templates, PersistentVolumeClaims (with their update rules), Secrets.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::field::{
    ErrorList, duplicate, forbidden, go_quote, go_scalar, invalid, not_found, not_supported, required,
    too_long,
};
use super::{labels, names, quantity};

fn items(v: &Value) -> impl Iterator<Item = (usize, &Value)> {
    v.as_array().into_iter().flatten().enumerate()
}

/// `ValidatePodTemplateSpec` (the parts a Deployment's template runs into).
pub fn pod_template(template: &Value, path: &str) -> ErrorList {
    let mut errs = labels(
        template["metadata"].get("labels"),
        &format!("{path}.metadata.labels"),
    );
    errs.extend(pod_spec(&template["spec"], &format!("{path}.spec")));
    errs
}

fn pod_spec(spec: &Value, path: &str) -> ErrorList {
    let mut errs = ErrorList::default();
    let mut volumes = BTreeSet::new();
    for (i, v) in items(&spec["volumes"]) {
        let vpath = format!("{path}.volumes[{i}]");
        match v["name"].as_str().filter(|n| !n.is_empty()) {
            None => errs.push(required(&format!("{vpath}.name"), "")),
            Some(name) => {
                for msg in names::dns1123_label(name) {
                    errs.push(invalid(&format!("{vpath}.name"), go_quote(name), &msg));
                }
                if !volumes.insert(name.to_owned()) {
                    errs.push(duplicate(&format!("{vpath}.name"), go_quote(name)));
                }
            }
        }
        let sources = v
            .as_object()
            .map_or(0, |m| m.keys().filter(|k| *k != "name").count());
        if sources == 0 {
            errs.push(required(&vpath, "must specify a volume type"));
        } else if sources > 1 {
            errs.push(forbidden(&vpath, "may not specify more than 1 volume type"));
        }
        if let Some(claim) = v.get("persistentVolumeClaim")
            && claim["claimName"].as_str().is_none_or(str::is_empty)
        {
            errs.push(required(&format!("{vpath}.persistentVolumeClaim.claimName"), ""));
        }
    }
    let containers = &spec["containers"];
    if containers.as_array().is_none_or(Vec::is_empty) {
        errs.push(required(&format!("{path}.containers"), ""));
    }
    let mut container_names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in items(&spec[list]) {
            errs.extend(container(
                c,
                &format!("{path}.{list}[{i}]"),
                &volumes,
                &mut container_names,
            ));
        }
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && policy != "Always"
    {
        errs.push(not_supported(
            &format!("{path}.restartPolicy"),
            go_quote(policy),
            &["Always"],
        ));
    }
    if spec.get("activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        errs.push(forbidden(
            &format!("{path}.activeDeadlineSeconds"),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errs
}

fn container(c: &Value, path: &str, volumes: &BTreeSet<String>, seen: &mut BTreeSet<String>) -> ErrorList {
    let mut errs = ErrorList::default();
    match c["name"].as_str().filter(|n| !n.is_empty()) {
        None => errs.push(required(&format!("{path}.name"), "")),
        Some(name) => {
            for msg in names::dns1123_label(name) {
                errs.push(invalid(&format!("{path}.name"), go_quote(name), &msg));
            }
            if !seen.insert(name.to_owned()) {
                errs.push(duplicate(&format!("{path}.name"), go_quote(name)));
            }
        }
    }
    if c["image"].as_str().is_none_or(str::is_empty) {
        errs.push(required(&format!("{path}.image"), ""));
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in items(&c["ports"]) {
        let ppath = format!("{path}.ports[{i}]");
        if let Some(name) = p["name"].as_str().filter(|n| !n.is_empty())
            && !port_names.insert(name.to_owned())
        {
            errs.push(duplicate(&format!("{ppath}.name"), go_quote(name)));
        }
        match p["containerPort"].as_i64() {
            None | Some(0) => errs.push(required(&format!("{ppath}.containerPort"), "")),
            Some(n) if !(1..=65535).contains(&n) => errs.push(invalid(
                &format!("{ppath}.containerPort"),
                n.to_string(),
                "must be between 1 and 65535, inclusive",
            )),
            _ => {}
        }
        if let Some(proto) = p["protocol"].as_str()
            && !["SCTP", "TCP", "UDP"].contains(&proto)
        {
            errs.push(not_supported(
                &format!("{ppath}.protocol"),
                go_quote(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    for (i, e) in items(&c["env"]) {
        let epath = format!("{path}.env[{i}]");
        match e["name"].as_str().filter(|n| !n.is_empty()) {
            None => errs.push(required(&format!("{epath}.name"), "")),
            Some(name) => {
                for msg in names::env_var_name(name) {
                    errs.push(invalid(&format!("{epath}.name"), go_quote(name), &msg));
                }
            }
        }
        if let Some(from) = e.get("valueFrom").and_then(Value::as_object) {
            let sources = ["fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"]
                .iter()
                .filter(|s| from.get(**s).is_some_and(|v| !v.is_null()))
                .count();
            let fpath = format!("{epath}.valueFrom");
            if sources == 0 {
                errs.push(invalid(
                    &fpath,
                    "\"\"".into(),
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                ));
            } else if e["value"].as_str().is_some_and(|v| !v.is_empty()) {
                errs.push(invalid(
                    &fpath,
                    "\"\"".into(),
                    "may not be specified when `value` is not empty",
                ));
            } else if sources > 1 {
                errs.push(invalid(
                    &fpath,
                    "\"\"".into(),
                    "may not have more than one field specified at a time",
                ));
            }
            if let Some(secret) = from.get("secretKeyRef") {
                for f in ["name", "key"] {
                    if secret[f].as_str().is_none_or(str::is_empty) {
                        errs.push(required(&format!("{fpath}.secretKeyRef.{f}"), ""));
                    }
                }
            }
        }
    }
    for (i, from) in items(&c["envFrom"]) {
        for source in ["secretRef", "configMapRef"] {
            if let Some(r) = from.get(source)
                && r["name"].as_str().is_none_or(str::is_empty)
            {
                errs.push(required(&format!("{path}.envFrom[{i}].{source}.name"), ""));
            }
        }
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in items(&c["volumeMounts"]) {
        let mpath = format!("{path}.volumeMounts[{i}]");
        let name = m["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            errs.push(required(&format!("{mpath}.name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(not_found(&format!("{mpath}.name"), go_quote(name)));
        }
        let mount_path = m["mountPath"].as_str().unwrap_or_default();
        if mount_path.is_empty() {
            errs.push(required(&format!("{mpath}.mountPath"), ""));
        }
        if !mount_paths.insert(mount_path.to_owned()) {
            errs.push(invalid(
                &format!("{mpath}.mountPath"),
                go_quote(mount_path),
                "must be unique",
            ));
        }
    }
    let requests = c["resources"]["requests"].as_object();
    let limits = c["resources"]["limits"].as_object();
    for (resource, request) in requests.into_iter().flatten() {
        let Some(limit) = limits.and_then(|l| l.get(resource)) else {
            continue;
        };
        let (Some(r), Some(l)) = (request.as_str(), limit.as_str()) else {
            continue;
        };
        if quantity::cmp_str(r, l) == Some(Ordering::Greater) {
            errs.push(invalid(
                &format!("{path}.resources.requests"),
                go_quote(r),
                &format!("must be less than or equal to {resource} limit of {l}"),
            ));
        }
    }
    errs
}

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
    if quantity::cmp_str(&size(new_spec), &size(old_spec)) == Some(Ordering::Less) {
        errs.push(forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        ));
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

    #[test]
    fn templates_need_images_and_mounted_volumes() {
        let spec = json!({"containers": [{"name": "web", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]});
        let errs = pod_spec(&spec, "spec.template.spec");
        assert_eq!(
            errs.aggregate().unwrap(),
            "[spec.template.spec.containers[0].image: Required value, spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\"]"
        );
        let limits = json!({"containers": [{"name": "web", "image": "x", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "500m"}}}]});
        assert_eq!(
            pod_spec(&limits, "spec").0[0].to_string(),
            "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"
        );
    }
}
