//! The checks structured-merge-diff makes when it converts an object to a typed value: list
//! items with their keys, no duplicate keys, values of the right shape.

use std::collections::BTreeSet;

use serde_json::Value;

use super::item_pe;
use crate::fieldpath::{Path, Pe, path_string};
use crate::schema::Ty;

/// Problems structured-merge-diff reports when it converts an object (`path: message`).
pub fn validate(value: &Value, ty: &Ty) -> Vec<String> {
    let mut errors = Vec::new();
    validate_at(value, ty, &mut Vec::new(), &mut errors);
    errors
}

fn validate_at(value: &Value, ty: &Ty, path: &mut Path, errors: &mut Vec<String>) {
    match (ty, value) {
        (Ty::Keyed(..) | Ty::Set, Value::Array(items)) => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                match item_pe(ty, item) {
                    Err(e) => {
                        path.push(Pe::Index(i));
                        errors.push(format!("{}: {e}", path_string(path)));
                        path.pop();
                    }
                    Ok(pe) => {
                        if !seen.insert(pe.clone()) {
                            errors.push(format!("{}: duplicate entries for key {pe}", path_string(path)));
                            continue;
                        }
                        path.push(pe);
                        validate_at(item, ty.item(), path, errors);
                        path.pop();
                    }
                }
            }
        }
        (Ty::Keyed(..) | Ty::Set, v) if !v.is_null() => {
            errors.push(format!("{}: expected list, got {}", path_string(path), short(v)))
        }
        (Ty::Struct(_) | Ty::Map(_), Value::Object(map)) => {
            for (k, v) in map {
                path.push(Pe::Field(k.clone()));
                validate_at(v, ty.field(k), path, errors);
                path.pop();
            }
        }
        (Ty::Struct(_) | Ty::Map(_), v) if !v.is_null() => {
            errors.push(format!("{}: expected map, got {}", path_string(path), short(v)))
        }
        (Ty::Inferred, Value::Object(map)) => {
            for (k, v) in map {
                path.push(Pe::Field(k.clone()));
                validate_at(v, ty.field(k), path, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 40 {
        format!("{}...", &text[..40])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::DEPLOYMENT;
    use serde_json::json;

    fn deployment(containers: Value) -> Value {
        json!({"spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn validation_reports_missing_keys_and_duplicates() {
        let bad = deployment(json!([{"image": "x"}, {"name": "a"}, {"name": "a"}]));
        let errors = validate(&bad, &DEPLOYMENT);
        assert_eq!(
            errors,
            [
                ".spec.template.spec.containers[0]: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)",
                ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
            ]
        );
    }
}
