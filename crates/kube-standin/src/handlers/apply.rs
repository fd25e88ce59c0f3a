//! Server-side apply (`application/apply-patch+yaml`): the typed conversion of the applied
//! configuration (undeclared fields refused), structured-merge-diff's apply with conflicts,
//! then the same admission, strategy, validation and storage as other writes; an apply that
//! creates also needs `create`.

use serde_json::Value;

use super::write::{check_name, context, ensure_namespace, store_new, store_update, without_managed};
use super::{Ctx, Outcome, Target};
use crate::defaults;
use crate::fieldpath::path_string;
use crate::kinds::Kind;
use crate::lifecycle;
use crate::managed::{self, Conflicts, ManagerId};
use crate::options::{self, WriteOptions};
use crate::status::{ApiError, Cause};
use crate::strict::{self, Directive};
use crate::typed;

/// `apps/v1, Kind=Deployment`, `/v1, Kind=Secret`.
fn gvk(kind: &Kind) -> String {
    format!("{}/{}, Kind={}", kind.group, kind.version, kind.kind)
}

/// `errors.NewApplyConflict` with the message `getConflictMessage` writes.
fn conflict_error(conflicts: Conflicts) -> ApiError {
    let mut list = conflicts.0;
    list.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let causes: Vec<Cause> = list
        .iter()
        .map(|(id, path)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {}", id.describe()),
            field: path_string(path),
        })
        .collect();
    let message = if let [(id, path)] = list.as_slice() {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            id.describe(),
            path_string(path)
        )
    } else {
        let mut lines = Vec::new();
        let mut current: Option<&ManagerId> = None;
        for (id, path) in &list {
            if current != Some(id) {
                lines.push(format!("conflicts with {}:", id.describe()));
                current = Some(id);
            }
            lines.push(format!("- {}", path_string(path)));
        }
        format!("Apply failed with {} conflicts: {}", list.len(), lines.join("\n"))
    };
    ApiError::apply_conflict(causes, message)
}

/// Duplicate keys of an applied configuration, as the strict YAML decoder reports them.
fn apply_duplicates(text: &str) -> Option<String> {
    if text.trim_start().starts_with('{') {
        let (path, line) = strict::duplicate_fields(text).into_iter().next()?;
        let key = path.rsplit('.').next().unwrap_or(&path).to_owned();
        return Some(format!(
            "error converting YAML to JSON: yaml: unmarshal errors:\n  line {line}: key {key:?} already set in map"
        ));
    }
    match serde_saphyr::from_str::<Value>(text) {
        Err(e) if e.to_string().to_ascii_lowercase().contains("duplicate") => Some(format!(
            "error converting YAML to JSON: yaml: unmarshal errors:\n  {e}"
        )),
        _ => None,
    }
}

pub(super) fn apply(ctx: &Ctx, t: &Target) -> Outcome {
    let kind = t.kind;
    let opts = WriteOptions::parse(ctx.query, ctx.user_agent, "PatchOptions", true)?;
    let text = std::str::from_utf8(ctx.body)
        .map_err(|_| ApiError::bad_request("error decoding YAML: the body is not UTF-8"))?;
    let config = options::parse_text(text, "yaml")
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: json: cannot unmarshal array into Go value of type map[string]interface {}",
        ));
    }
    let version = config["apiVersion"].as_str().unwrap_or_default();
    if version != kind.api_version {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {}",
            kind.api_version
        )));
    }
    if let Some(k) = config["kind"].as_str()
        && k != kind.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({k}) does not match the kind of the resource ({})",
            kind.kind
        )));
    }
    if config["metadata"]
        .get("managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    // The conversion to structured-merge-diff's typed value refuses fields the schema does not
    // declare, whatever fieldValidation says; the API server returns that as a 500
    // (kubernetes/kubernetes#122480).
    let typed_error = |why: String| {
        ApiError::unclassified(format!(
            "failed to create typed patch object ({}/{}; {}): {why}",
            config["metadata"]["namespace"].as_str().unwrap_or_default(),
            config["metadata"]["name"].as_str().unwrap_or_default(),
            gvk(kind)
        ))
    };
    let mut smd_errors: Vec<String> = strict::unknown_fields(kind, &config)
        .map_err(typed_error)?
        .into_iter()
        .map(|u| format!("{}: field not declared in schema", u.smd_path))
        .collect();
    smd_errors.extend(typed::validate(&config, kind.ty));
    match smd_errors.len() {
        0 => {}
        1 => return Err(typed_error(smd_errors.remove(0))),
        _ => {
            let lines: Vec<String> = smd_errors.iter().map(|e| format!("  {e}")).collect();
            return Err(typed_error(format!("errors:\n{}", lines.join("\n"))));
        }
    }
    let mut tx = ctx.app.store.begin();
    let live = tx.get(kind, &t.ns, &t.name);
    let base = live
        .as_ref()
        .map(without_managed)
        .unwrap_or_else(|| lifecycle::skeleton(kind));
    let mut managers = live.as_ref().and_then(managed::decode).unwrap_or_default();
    let ignored = lifecycle::ignored_fields(kind);
    let now = lifecycle::now();
    let applied = managed::apply(
        &base,
        &config,
        &mut managers,
        &ManagerId::applier(&opts.manager),
        opts.force == Some(true),
        &context(kind, &ignored, &now),
    )
    .map_err(conflict_error)?;
    let mut warnings = Vec::new();
    if opts.validation != Directive::Ignore
        && let Some(dup) = apply_duplicates(text)
    {
        if opts.validation == Directive::Strict {
            return Err(ApiError::bad_request(format!(
                "error strict decoding YAML: {dup}"
            )));
        }
        warnings.push(dup);
    }
    let mut object = applied.object.unwrap_or_else(|| base.clone());
    check_name(&object, t)?;
    lifecycle::strip_nulls(&mut object);
    lifecycle::fold_string_data(kind, &mut object);
    defaults::apply(kind.kind, &mut object);
    match live {
        None => {
            ensure_namespace(&mut object, t)?;
            store_new(ctx, &mut tx, t, object, &managers, &opts, warnings, true)
        }
        Some(live) => store_update(ctx, &mut tx, t, object, &live, &managers, &opts, warnings),
    }
}
