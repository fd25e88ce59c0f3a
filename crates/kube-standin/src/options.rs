//! The options of writes (`dryRun`, `fieldManager`, `fieldValidation`, `force`,
//! `DeleteOptions`), validated with the API server's messages, and the decoding of request
//! bodies with field validation.

use serde_json::Value;

use crate::kinds::Kind;
use crate::request::Query;
use crate::status::ApiError;
use crate::strict::{self, Directive};
use crate::validation;
use crate::validation::field::{ErrorList, go_quote, invalid, not_supported, too_long};

const FIELD_MANAGER_MAX: usize = 128;

pub struct WriteOptions {
    pub dry_run: bool,
    /// The manager the write is recorded for: `fieldManager`, else the User-Agent's product.
    pub manager: String,
    pub validation: Directive,
    pub force: Option<bool>,
}

/// `prefixFromUserAgent`: what precedes the first `/`, printable characters only, at most
/// 128 bytes.
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let product = user_agent.split('/').next().unwrap_or_default();
    let mut out = String::new();
    for c in product.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX {
            break;
        }
        out.push(c);
    }
    out
}

fn go_string_slice(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

fn dry_run_errors(query: &Query) -> (bool, ErrorList) {
    let values = query.all("dryRun");
    let mut errs = ErrorList::default();
    if values.iter().any(|v| *v != "All") {
        errs.push(not_supported("dryRun", go_string_slice(&values), &["All"]));
    }
    (!values.is_empty(), errs)
}

impl WriteOptions {
    /// `options_kind` is `CreateOptions`, `UpdateOptions` or `PatchOptions`.
    pub fn parse(query: &Query, user_agent: &str, options_kind: &str, apply: bool) -> Result<Self, ApiError> {
        let (dry_run, mut errs) = dry_run_errors(query);
        let explicit = query.get("fieldManager").unwrap_or_default();
        let force = match query.get("force") {
            None => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0" | "") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "force: invalid boolean value {other:?}"
                )));
            }
        };
        if options_kind == "PatchOptions" {
            if apply && explicit.is_empty() {
                errs.push(crate::validation::field::required(
                    "fieldManager",
                    "is required for apply patch",
                ));
            }
            if !apply && force.is_some() {
                errs.push(crate::validation::field::forbidden(
                    "force",
                    "may not be specified for non-apply patch",
                ));
            }
        }
        if explicit.len() > FIELD_MANAGER_MAX {
            errs.push(too_long("fieldManager", FIELD_MANAGER_MAX));
        }
        if let Some((i, c)) = explicit.chars().enumerate().find(|(_, c)| c.is_control()) {
            errs.push(invalid(
                "fieldManager",
                go_quote(explicit),
                &format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
        let validation = match Directive::parse(query.get("fieldValidation")) {
            Ok(d) => d,
            Err(other) => {
                errs.push(not_supported(
                    "fieldValidation",
                    go_quote(&other),
                    &["", "Ignore", "Strict", "Warn"],
                ));
                Directive::Warn
            }
        };
        if !errs.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", options_kind, "", &errs));
        }
        Ok(Self {
            dry_run,
            manager: if explicit.is_empty() {
                manager_from_user_agent(user_agent)
            } else {
                explicit.to_owned()
            },
            validation,
            force,
        })
    }
}

/// `DeleteOptions`, from the body (kubectl, kube-rs) or the query.
pub struct DeleteOptions {
    pub dry_run: bool,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    pub fn parse(query: &Query, body: &[u8]) -> Result<Self, ApiError> {
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        let (mut dry_run, mut errs) = dry_run_errors(query);
        if let Some(values) = options["dryRun"].as_array() {
            let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            if values.iter().any(|v| *v != "All") {
                errs.push(not_supported("dryRun", go_string_slice(&values), &["All"]));
            }
            dry_run |= !values.is_empty();
        }
        let policy = options["propagationPolicy"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| query.get("propagationPolicy").map(str::to_owned));
        if let Some(p) = &policy
            && !["Foreground", "Background", "Orphan"].contains(&p.as_str())
        {
            errs.push(not_supported(
                "propagationPolicy",
                go_quote(p),
                &["Foreground", "Background", "Orphan", "nil"],
            ));
        }
        if options.get("orphanDependents").is_some_and(|o| !o.is_null()) && policy.is_some() {
            errs.push(invalid(
                "propagationPolicy",
                go_quote(policy.as_deref().unwrap_or_default()),
                "orphanDependents and deletionPropagation cannot be both set",
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", "DeleteOptions", "", &errs));
        }
        let precondition = |f: &str| {
            options["preconditions"][f]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok(Self {
            dry_run,
            uid: precondition("uid"),
            resource_version: precondition("resourceVersion"),
        })
    }
}

/// What field validation found in a body.
#[derive(Default)]
pub struct Findings {
    /// `unknown field "spec.foo"`, `duplicate field "spec.replicas"`.
    pub problems: Vec<String>,
}

impl Findings {
    pub fn strict_error(&self) -> String {
        format!("strict decoding error: {}", self.problems.join(", "))
    }

    /// The `Warning` headers for `Warn`.
    pub fn warnings(&self, directive: Directive) -> Vec<String> {
        if directive == Directive::Warn {
            self.problems.clone()
        } else {
            Vec::new()
        }
    }
}

/// Unknown and duplicate fields of an object (duplicates need the JSON text).
pub fn find_problems(kind: &Kind, object: &Value, text: Option<&str>) -> Result<Findings, String> {
    let mut findings = Findings::default();
    for u in strict::unknown_fields(kind, object)? {
        findings.problems.push(format!("unknown field {:?}", u.json_path));
    }
    if let Some(text) = text {
        for (path, _) in strict::duplicate_fields(text) {
            findings.problems.push(format!("duplicate field {path:?}"));
        }
    }
    Ok(findings)
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Parses a body: JSON, or YAML when the content type says so and the text is not JSON.
pub fn parse_text(text: &str, content_type: &str) -> Result<Value, String> {
    if content_type.contains("yaml") && !looks_like_json(text) {
        let mut options = serde_saphyr::Options::default();
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
        serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| e.to_string())
    } else {
        serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
    }
}

/// A create or update body: the object, decoded with field validation. Errors are the
/// decoder's 400s (`Deployment in version "v1" cannot be handled as a Deployment: ...`).
pub fn decode_object(
    kind: &Kind,
    body: &[u8],
    content_type: &str,
    directive: Directive,
) -> Result<(Value, Vec<String>), ApiError> {
    let cannot = |why: String| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {why}",
            kind.kind, kind.version, kind.kind
        ))
    };
    let text = std::str::from_utf8(body).map_err(|_| cannot("the body is not UTF-8".into()))?;
    let object = parse_text(text, content_type).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e}",
            kind.kind
        ))
    })?;
    if !object.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: not an object",
            kind.kind
        )));
    }
    if let Some(api_version) = object["apiVersion"].as_str().filter(|v| !v.is_empty())
        && api_version != kind.api_version
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            kind.api_version
        )));
    }
    if let Some(k) = object["kind"].as_str().filter(|k| !k.is_empty())
        && k != kind.kind
    {
        return Err(cannot(format!(
            "no kind {k:?} is registered for version {:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\"",
            kind.api_version
        )));
    }
    let findings = find_problems(kind, &object, looks_like_json(text).then_some(text)).map_err(cannot)?;
    if let Some(q) = validation::bad_quantity(&object) {
        return Err(cannot(q));
    }
    if directive == Directive::Strict && !findings.problems.is_empty() {
        return Err(cannot(findings.strict_error()));
    }
    Ok((object, findings.warnings(directive)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;

    #[test]
    fn the_field_manager_comes_from_the_user_agent_when_not_given() {
        assert_eq!(
            manager_from_user_agent("kubectl/v1.31.0 (linux/amd64) kubernetes/abc"),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent("kube-rs/5.0"), "kube-rs");
        let q = Query::parse("fieldManager=tgsearch-provisioner&dryRun=All&fieldValidation=Strict");
        let o = WriteOptions::parse(&q, "x/1", "PatchOptions", true).unwrap();
        assert!(o.dry_run);
        assert_eq!(o.manager, "tgsearch-provisioner");
        assert_eq!(o.validation, Directive::Strict);
    }

    #[test]
    fn bad_options_are_refused_with_the_api_servers_messages() {
        let e = WriteOptions::parse(&Query::parse(""), "kube-rs/5", "PatchOptions", true)
            .err()
            .unwrap();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let e = WriteOptions::parse(
            &Query::parse("dryRun=Some&fieldValidation=Loud"),
            "",
            "CreateOptions",
            false,
        )
        .err()
        .unwrap();
        assert_eq!(
            e.message,
            "CreateOptions.meta.k8s.io \"\" is invalid: [dryRun: Unsupported value: []string{\"Some\"}: supported values: \"All\", fieldValidation: Unsupported value: \"Loud\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"]"
        );
        let e = DeleteOptions::parse(&Query::default(), br#"{"propagationPolicy":"Sometimes"}"#)
            .err()
            .unwrap();
        assert!(e.message.starts_with(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sometimes\""
        ));
        let d = DeleteOptions::parse(
            &Query::default(),
            br#"{"preconditions":{"uid":"u1"},"propagationPolicy":"Foreground"}"#,
        )
        .unwrap();
        assert_eq!(d.uid.as_deref(), Some("u1"));
    }

    #[test]
    fn strict_decoding_refuses_unknown_and_duplicate_fields() {
        let body = br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"foo":1,"type":"Opaque","type":"Opaque"}"#;
        let e = decode_object(&kinds::SECRETS, body, "application/json", Directive::Strict)
            .err()
            .unwrap();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Secret in version \"v1\" cannot be handled as a Secret: strict decoding error: unknown field \"foo\", duplicate field \"type\""
        );
        let (_, warnings) =
            decode_object(&kinds::SECRETS, body, "application/json", Directive::Warn).unwrap();
        assert_eq!(warnings, ["unknown field \"foo\"", "duplicate field \"type\""]);
        let (_, none) = decode_object(&kinds::SECRETS, body, "application/json", Directive::Ignore).unwrap();
        assert!(none.is_empty());
    }
}
