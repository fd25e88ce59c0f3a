//! Label selectors: the `labelSelector` query string of lists, and `metav1.LabelSelector`
//! objects (Deployment selectors).

use serde_json::{Map, Value};

fn label<'a>(labels: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    labels.and_then(|l| l.get(key)).and_then(Value::as_str)
}

/// Splits `a in (x,y),b` at the commas outside parentheses.
fn terms(selector: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&selector[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn set_values(list: &str) -> Vec<&str> {
    list.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .collect()
}

/// Does `labels` satisfy a selector string (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`)?
pub fn matches(labels: Option<&Map<String, Value>>, selector: &str) -> bool {
    terms(selector).into_iter().all(|term| {
        if let Some((k, list)) = term.split_once(" notin ") {
            label(labels, k.trim()).is_none_or(|v| !set_values(list).contains(&v))
        } else if let Some((k, list)) = term.split_once(" in ") {
            label(labels, k.trim()).is_some_and(|v| set_values(list).contains(&v))
        } else if let Some((k, v)) = term.split_once("!=") {
            label(labels, k.trim()) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            label(labels, k.trim()) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            label(labels, k.trim()).is_none()
        } else {
            label(labels, term).is_some()
        }
    })
}

/// Does `labels` satisfy a `metav1.LabelSelector`?
pub fn matches_label_selector(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(labels, k) == v.as_str());
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let value = label(labels, key);
            match e["operator"].as_str().unwrap_or_default() {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        });
    by_labels && by_expressions
}

/// Semantic equality of two selectors (absent, null and empty collections are equal).
pub fn same_selector(a: Option<&Value>, b: Option<&Value>) -> bool {
    let norm = |v: Option<&Value>| -> Option<(Map<String, Value>, Vec<Value>)> {
        let v = v.filter(|v| !v.is_null())?;
        Some((
            v["matchLabels"].as_object().cloned().unwrap_or_default(),
            v["matchExpressions"].as_array().cloned().unwrap_or_default(),
        ))
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_strings_match_like_the_api_server() {
        let labels = json!({"a": "1", "b": "2"});
        let l = labels.as_object();
        assert!(matches(l, ""));
        assert!(matches(l, "a=1,b==2"));
        assert!(matches(l, "a, c!=3, !c"));
        assert!(matches(l, "a in (1,3),b notin (3)"));
        assert!(!matches(l, "a notin (1)"));
        assert!(!matches(l, "a=2"));
        assert!(!matches(l, "c"));
        assert!(!matches(None, "a"));
    }

    #[test]
    fn label_selectors_match_and_compare() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]});
        assert!(matches_label_selector(
            &sel,
            json!({"app": "web", "tier": "a"}).as_object()
        ));
        assert!(!matches_label_selector(&sel, json!({"app": "web"}).as_object()));
        assert!(same_selector(
            Some(&json!({"matchLabels": {"a": "1"}, "matchExpressions": []})),
            Some(&json!({"matchLabels": {"a": "1"}}))
        ));
        assert!(!same_selector(Some(&json!({"matchLabels": {"a": "1"}})), None));
    }
}
