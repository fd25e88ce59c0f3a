//! Pod templates (`ValidatePodTemplateSpec`, the parts a Deployment's template runs into).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value;

use super::field::{ErrorList, duplicate, forbidden, go_quote, invalid, not_found, not_supported, required};
use super::{labels, names, quantity};

fn items(v: &Value) -> impl Iterator<Item = (usize, &Value)> {
    v.as_array().into_iter().flatten().enumerate()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
