//! Deployments (`pkg/apis/apps/validation` and the apps/v1 strategy's selector rule).

use serde_json::Value;

use super::field::{
    ErrorList, forbidden, go_label_selector, go_quote, go_string_map, invalid, not_supported, required,
};
use super::pod::pod_template;
use super::{labels, names};
use crate::selector;

fn non_negative(errs: &mut ErrorList, spec: &Value, field: &str) {
    if let Some(n) = spec[field].as_i64()
        && n < 0
    {
        errs.push(invalid(
            &format!("spec.{field}"),
            n.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

fn label_selector(sel: &Value, path: &str) -> ErrorList {
    let mut errs = labels(sel.get("matchLabels"), &format!("{path}.matchLabels"));
    for (i, e) in sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let epath = format!("{path}.matchExpressions[{i}]");
        let values = e["values"].as_array().map_or(0, Vec::len);
        match e["operator"].as_str().unwrap_or_default() {
            "In" | "NotIn" if values == 0 => errs.push(required(
                &format!("{epath}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if values > 0 => errs.push(forbidden(
                &format!("{epath}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(invalid(
                &format!("{epath}.operator"),
                go_quote(other),
                "not a valid selector operator",
            )),
        }
        let key = e["key"].as_str().unwrap_or_default();
        for msg in names::qualified_name(key) {
            errs.push(invalid(&format!("{epath}.key"), go_quote(key), &msg));
        }
    }
    errs
}

/// `ValidateDeployment` (after defaulting).
pub fn deployment(object: &Value) -> ErrorList {
    let spec = &object["spec"];
    let mut errs = ErrorList::default();
    non_negative(&mut errs, spec, "replicas");
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None => errs.push(required("spec.selector", "")),
        Some(sel) => {
            errs.extend(label_selector(sel, "spec.selector"));
            let terms = sel["matchLabels"].as_object().map_or(0, |m| m.len())
                + sel["matchExpressions"].as_array().map_or(0, Vec::len);
            if terms == 0 {
                errs.push(invalid(
                    "spec.selector",
                    go_label_selector(Some(sel)),
                    "empty selector is invalid for deployment",
                ));
            }
        }
    }
    let template = &spec["template"];
    let template_labels = template["metadata"]["labels"].as_object();
    let selects_nothing = selector.is_none();
    let empty = selector.is_some_and(|s| {
        s["matchLabels"].as_object().is_none_or(|m| m.is_empty())
            && s["matchExpressions"].as_array().is_none_or(Vec::is_empty)
    });
    if selects_nothing || (!empty && !selector::matches_label_selector(selector.unwrap(), template_labels)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            go_string_map(template_labels),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(pod_template(template, "spec.template"));
    match spec["strategy"]["type"].as_str().unwrap_or_default() {
        "Recreate" => {
            if spec["strategy"]
                .get("rollingUpdate")
                .is_some_and(|r| !r.is_null())
            {
                errs.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            if spec["strategy"].get("rollingUpdate").is_none_or(Value::is_null) {
                errs.push(required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                ));
            }
        }
        other => errs.push(not_supported(
            "spec.strategy",
            format!("apps.DeploymentStrategy{{Type:{}}}", go_quote(other)),
            &["Recreate", "RollingUpdate"],
        )),
    }
    non_negative(&mut errs, spec, "minReadySeconds");
    non_negative(&mut errs, spec, "revisionHistoryLimit");
    if let Some(deadline) = spec["progressDeadlineSeconds"].as_i64() {
        let min_ready = spec["minReadySeconds"].as_i64().unwrap_or(0);
        if deadline <= min_ready {
            errs.push(invalid(
                "spec.progressDeadlineSeconds",
                deadline.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// The apps/v1 strategy: the selector is immutable.
pub fn deployment_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    let (n, o) = (new["spec"].get("selector"), old["spec"].get("selector"));
    if !selector::same_selector(n, o) {
        errs.push(invalid(
            "spec.selector",
            go_label_selector(n),
            "field is immutable",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(selector: Value, labels: Value) -> Value {
        json!({"spec": {
            "replicas": 1, "selector": selector, "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "x"}], "restartPolicy": "Always"}}
        }})
    }

    #[test]
    fn the_selector_must_select_the_template() {
        assert!(
            deployment(&dep(
                json!({"matchLabels": {"app": "web"}}),
                json!({"app": "web", "x": "y"})
            ))
            .is_empty()
        );
        let errs = deployment(&dep(
            json!({"matchLabels": {"app": "api"}}),
            json!({"app": "web"}),
        ));
        assert_eq!(
            errs.aggregate().unwrap(),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn the_selector_is_immutable() {
        let old = dep(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        let new = dep(
            json!({"matchLabels": {"app": "web", "v": "2"}}),
            json!({"app": "web", "v": "2"}),
        );
        assert_eq!(
            deployment_update(&new, &old).aggregate().unwrap(),
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
        assert!(deployment_update(&old, &old).is_empty());
    }

    #[test]
    fn recreate_refuses_a_rolling_update_block() {
        let mut d = dep(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%"});
        assert_eq!(
            deployment(&d).aggregate().unwrap(),
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
        );
    }
}
