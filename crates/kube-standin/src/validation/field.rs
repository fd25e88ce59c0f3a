//! Field errors as k8s.io/apimachinery/pkg/util/validation/field formats them:
//! `spec.selector: Invalid value: <value>: field is immutable`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::status::Cause;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
}

impl ErrorType {
    /// The text in messages.
    fn text(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
        }
    }

    /// The `reason` of a cause.
    fn cause(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    /// The bad value as Go prints it (`"abc"`, `3`, `v1.LabelSelector{...}`).
    pub value: String,
    pub detail: String,
}

impl FieldError {
    /// The message without the field (`ErrorBody`).
    pub fn body(&self) -> String {
        let mut s = match self.kind {
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong => self.kind.text().to_owned(),
            _ => format!("{}: {}", self.kind.text(), self.value),
        };
        if !self.detail.is_empty() {
            s = format!("{s}: {}", self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

pub fn required(field: &str, detail: &str) -> FieldError {
    FieldError {
        kind: ErrorType::Required,
        field: field.into(),
        value: "\"\"".into(),
        detail: detail.into(),
    }
}

pub fn forbidden(field: &str, detail: &str) -> FieldError {
    FieldError {
        kind: ErrorType::Forbidden,
        field: field.into(),
        value: "\"\"".into(),
        detail: detail.into(),
    }
}

/// `value` is already formatted the way Go prints it.
pub fn invalid(field: &str, value: String, detail: &str) -> FieldError {
    FieldError {
        kind: ErrorType::Invalid,
        field: field.into(),
        value,
        detail: detail.into(),
    }
}

pub fn duplicate(field: &str, value: String) -> FieldError {
    FieldError {
        kind: ErrorType::Duplicate,
        field: field.into(),
        value,
        detail: String::new(),
    }
}

pub fn not_found(field: &str, value: String) -> FieldError {
    FieldError {
        kind: ErrorType::NotFound,
        field: field.into(),
        value,
        detail: String::new(),
    }
}

pub fn not_supported(field: &str, value: String, supported: &[&str]) -> FieldError {
    let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    FieldError {
        kind: ErrorType::NotSupported,
        field: field.into(),
        value,
        detail: if supported.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        },
    }
}

pub fn too_long(field: &str, max: usize) -> FieldError {
    FieldError {
        kind: ErrorType::TooLong,
        field: field.into(),
        value: String::new(),
        detail: format!("must have at most {max} bytes"),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorList(pub Vec<FieldError>);

impl ErrorList {
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    pub fn extend(&mut self, other: ErrorList) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `ToAggregate().Error()`: one message, or `[a, b]`, duplicates dropped.
    pub fn aggregate(&self) -> Option<String> {
        let mut seen = Vec::<String>::new();
        for e in &self.0 {
            let msg = e.to_string();
            if !seen.contains(&msg) {
                seen.push(msg);
            }
        }
        match seen.len() {
            0 => None,
            1 => seen.pop(),
            _ => Some(format!("[{}]", seen.join(", "))),
        }
    }

    pub fn causes(&self) -> Vec<Cause> {
        self.0
            .iter()
            .map(|e| Cause {
                reason: e.kind.cause().into(),
                message: e.body(),
                field: e.field.clone(),
            })
            .collect()
    }
}

/// Go's `strconv.Quote` (`%q`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON scalar as Go prints a field of that type (`%v` of numbers and bools, `%q` of strings).
pub fn go_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// `%#v` of a `map[string]string`.
pub fn go_string_map(m: Option<&serde_json::Map<String, Value>>) -> String {
    let Some(m) = m else {
        return "map[string]string(nil)".into();
    };
    let sorted: BTreeMap<&String, String> = m
        .iter()
        .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
        .collect();
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    format!("map[string]string{{{}}}", parts.join(", "))
}

/// `%#v` of a `[]string`.
fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| go_quote(i.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", parts.join(", "))
        }
    }
}

/// `%#v` of a `metav1.LabelSelector`, as immutability errors print it.
pub fn go_label_selector(selector: Option<&Value>) -> String {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return "null".into();
    };
    let labels = go_string_map(sel.get("matchLabels").and_then(Value::as_object));
    let expressions = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(exprs) => {
            let parts: Vec<String> = exprs
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(e["key"].as_str().unwrap_or_default()),
                        go_quote(e["operator"].as_str().unwrap_or_default()),
                        go_string_slice(e.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

/// `%v` of a decoded JSON value (`map[a:1 b:[x y]]`), as strategic-merge-patch errors print
/// the patch.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_read_like_the_api_servers() {
        let e = invalid(
            "spec.selector",
            go_label_selector(Some(&json!({"matchLabels": {"b": "2", "a": "1"}}))),
            "field is immutable",
        );
        assert_eq!(
            e.to_string(),
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"1\", \"b\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
        let f = forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        );
        assert_eq!(f.body(), "Forbidden: field can not be less than previous value");
        assert_eq!(
            required("spec.selector", "").to_string(),
            "spec.selector: Required value"
        );
        let list = ErrorList(vec![f.clone(), f.clone(), required("x", "")]);
        assert_eq!(
            list.aggregate().unwrap(),
            "[spec.resources.requests.storage: Forbidden: field can not be less than previous value, x: Required value]"
        );
        assert_eq!(list.causes()[2].reason, "FieldValueRequired");
        assert_eq!(
            not_supported(
                "propagationPolicy",
                go_quote("Sometimes"),
                &["Foreground", "Background"]
            )
            .to_string(),
            "propagationPolicy: Unsupported value: \"Sometimes\": supported values: \"Foreground\", \"Background\""
        );
        assert_eq!(
            go_value(&json!({"spec": {"a": [1, "x"]}})),
            "map[spec:map[a:[1 x]]]"
        );
    }
}
