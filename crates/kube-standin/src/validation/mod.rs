//! The API server's validation of the kinds served (the strategies' `Validate` and
//! `ValidateUpdate`), with its field errors and messages. A subset: the rules a provisioner or
//! an operator editing the backend template can run into.

pub mod field;
pub mod names;
pub mod quantity;

mod apps;
mod core;
mod pod;
mod storage;

use serde_json::Value;

use crate::kinds::{self, Kind};
use field::{ErrorList, go_quote, invalid, required};

/// Which name rule a kind's `metadata.name` follows.
fn name_rule(kind: &Kind) -> fn(&str) -> Vec<String> {
    if *kind == kinds::NAMESPACES {
        names::dns1123_label
    } else {
        names::dns1123_subdomain
    }
}

/// `ValidateObjectMeta`: the name, labels and annotation keys.
fn object_meta(kind: &Kind, object: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    let meta = &object["metadata"];
    match meta["name"].as_str().filter(|n| !n.is_empty()) {
        None => errs.push(required("metadata.name", "name or generateName is required")),
        Some(name) => {
            for msg in name_rule(kind)(name) {
                errs.push(invalid("metadata.name", go_quote(name), &msg));
            }
        }
    }
    errs.extend(labels(meta.get("labels"), "metadata.labels"));
    if let Some(annotations) = meta["annotations"].as_object() {
        for key in annotations.keys() {
            for msg in names::qualified_name(&key.to_ascii_lowercase()) {
                errs.push(invalid("metadata.annotations", go_quote(key), &msg));
            }
        }
    }
    errs
}

/// `ValidateLabels`.
pub fn labels(labels: Option<&Value>, path: &str) -> ErrorList {
    let mut errs = ErrorList::default();
    for (k, v) in labels.and_then(Value::as_object).into_iter().flatten() {
        for msg in names::qualified_name(k) {
            errs.push(invalid(path, go_quote(k), &msg));
        }
        let value = v.as_str().unwrap_or_default();
        for msg in names::label_value(value) {
            errs.push(invalid(path, go_quote(value), &msg));
        }
    }
    errs
}

pub fn validate_create(kind: &Kind, object: &Value) -> ErrorList {
    let mut errs = object_meta(kind, object);
    errs.extend(match kind.plural {
        "deployments" => apps::deployment(object),
        "persistentvolumeclaims" => core::pvc(object),
        "secrets" => core::secret(object),
        "storageclasses" => storage::storage_class(object),
        _ => ErrorList::default(),
    });
    errs
}

pub fn validate_update(kind: &Kind, new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_create(kind, new);
    errs.extend(match kind.plural {
        "deployments" => apps::deployment_update(new, old),
        "persistentvolumeclaims" => core::pvc_update(new, old),
        "secrets" => core::secret_update(new, old),
        "storageclasses" => storage::storage_class_update(new, old),
        _ => ErrorList::default(),
    });
    errs
}

/// Quantities that do not parse are decoding errors (400), not validation errors.
pub fn bad_quantity(object: &Value) -> Option<String> {
    const MSG: &str =
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    let mut maps: Vec<&Value> = vec![
        &object["spec"]["resources"]["requests"],
        &object["spec"]["resources"]["limits"],
    ];
    let pod = &object["spec"]["template"]["spec"];
    for list in ["containers", "initContainers"] {
        for c in pod[list].as_array().into_iter().flatten() {
            maps.push(&c["resources"]["requests"]);
            maps.push(&c["resources"]["limits"]);
        }
    }
    let bad = maps
        .into_iter()
        .filter_map(Value::as_object)
        .flat_map(|m| m.values())
        .any(|q| match q {
            Value::String(s) => quantity::Quantity::parse(s).is_none(),
            Value::Number(_) => false,
            _ => true,
        });
    bad.then(|| MSG.to_owned())
}
