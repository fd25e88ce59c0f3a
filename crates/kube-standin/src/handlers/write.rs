//! `create` (POST), `update` (PUT) and `patch` (merge, strategic merge, JSON patch and
//! server-side apply), in the API server's order: options, decoding with field validation,
//! the patch or apply, field management, mutating admission, the strategy, validation,
//! validating admission (and, for an apply that creates, authorization to create), storage.
//! `dryRun=All` runs everything but the storage.

use serde_json::{Value, json};

use super::{Ctx, Outcome, Reply, Target};
use crate::defaults;
use crate::fieldpath::Set;
use crate::kinds::Kind;
use crate::lifecycle;
use crate::managed::{self, Context, ManagerId, Managers};
use crate::options::{self, WriteOptions};
use crate::patch;
use crate::rbac::{Attributes, Decision};
use crate::status::ApiError;
use crate::store::Tx;
use crate::strict::{self, Directive};
use crate::validation;
use crate::validation::field::{ErrorList, go_quote, go_value, invalid};

pub(super) fn without_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    v
}

/// The managers of a write (`decodeLiveOrNew`): a request that resets managedFields (an empty
/// list) clears them, a readable non-empty list replaces them, otherwise the live ones stay.
fn managers_from(request: &Value, live: Option<&Value>) -> Managers {
    let from_live = || live.and_then(managed::decode).unwrap_or_default();
    match request.pointer("/metadata/managedFields") {
        Some(Value::Array(list)) if list.is_empty() || (list.len() == 1 && list[0] == json!({})) => {
            Managers::new()
        }
        Some(v) if !v.is_null() => match managed::decode(request) {
            Some(m) if !m.is_empty() => m,
            _ => from_live(),
        },
        _ => from_live(),
    }
}

/// `checkName`: the object's name and namespace must be the URL's.
pub(super) fn check_name(object: &Value, t: &Target) -> Result<(), ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if name != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
    if t.kind.namespaced && !ns.is_empty() && ns != t.ns {
        return Err(ApiError::bad_request(format!(
            "the namespace of the object ({ns}) does not match the namespace on the request ({})",
            t.ns
        )));
    }
    Ok(())
}

/// `EnsureObjectNamespaceMatchesRequestNamespace`.
pub(super) fn ensure_namespace(object: &mut Value, t: &Target) -> Result<(), ApiError> {
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if t.kind.namespaced && !ns.is_empty() && ns != t.ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if let Some(m) = object["metadata"].as_object_mut() {
        if t.kind.namespaced {
            m.insert("namespace".into(), t.ns.clone().into());
        } else {
            m.remove("namespace");
        }
    }
    Ok(())
}

pub(super) fn context<'a>(kind: &'a Kind, ignored: &'a Set, now: &'a str) -> Context<'a> {
    Context {
        ty: kind.ty,
        api_version: kind.api_version,
        ignored,
        now,
    }
}

/// Field management of an update-like write (create, update, patch).
fn record(kind: &Kind, old: &Value, new: &Value, managers: &mut Managers, manager: &str) {
    let ignored = lifecycle::ignored_fields(kind);
    let now = lifecycle::now();
    let id = ManagerId::updater(manager, kind.api_version, "");
    managed::record_update(old, new, managers, &id, &context(kind, &ignored, &now));
}

fn set_managed_fields(object: &mut Value, managers: &Managers) {
    if managers.is_empty() {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = managed::encode(managers);
    }
}

fn reply(code: u16, body: Value, warnings: Vec<String>) -> Outcome {
    Ok(Reply { code, body, warnings })
}

/// Admission, strategy, validation and storage of a new object.
#[allow(clippy::too_many_arguments)]
pub(super) fn store_new(
    ctx: &Ctx,
    tx: &mut Tx,
    t: &Target,
    mut object: Value,
    managers: &Managers,
    opts: &WriteOptions,
    warnings: Vec<String>,
    authorize_create: bool,
) -> Outcome {
    let kind = t.kind;
    lifecycle::admit_create(
        tx,
        kind,
        &t.ns,
        &mut object,
        ctx.app.default_storage_class.as_deref(),
    )?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    lifecycle::prepare_create(kind, &t.ns, &name, &mut object);
    let errs = validation::validate_create(kind, &object);
    if !errs.is_empty() {
        return Err(ApiError::invalid(kind.group, kind.kind, &name, &errs));
    }
    if authorize_create {
        let attrs = Attributes {
            user: ctx.user,
            verb: "create",
            resource_request: true,
            path: "",
            api_group: kind.group,
            resource: kind.plural,
            subresource: "",
            namespace: &t.ns,
            name: &name,
        };
        if let Decision::Deny(reason) = ctx.app.policy.authorize(&attrs) {
            return Err(ApiError::forbidden(kind, &name, &reason));
        }
    }
    if tx.get(kind, &t.ns, &name).is_some() {
        return Err(ApiError::already_exists(kind, &name));
    }
    set_managed_fields(&mut object, managers);
    lifecycle::strip_nulls(&mut object);
    if opts.dry_run {
        return reply(201, object, warnings);
    }
    let stored = tx.put(kind, &t.ns, &name, object);
    lifecycle::reconcile(tx, &t.ns);
    reply(201, stored, warnings)
}

fn without_resource_version(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    v
}

/// Strategy, validation, admission and storage of a changed object.
#[allow(clippy::too_many_arguments)]
pub(super) fn store_update(
    ctx: &Ctx,
    tx: &mut Tx,
    t: &Target,
    mut object: Value,
    live: &Value,
    managers: &Managers,
    opts: &WriteOptions,
    warnings: Vec<String>,
) -> Outcome {
    let _ = ctx;
    let kind = t.kind;
    lifecycle::prepare_update(kind, &mut object, live);
    let errs = validation::validate_update(kind, &object, live);
    if !errs.is_empty() {
        return Err(ApiError::invalid(kind.group, kind.kind, &t.name, &errs));
    }
    lifecycle::admit_update(tx, kind, &object, live)?;
    set_managed_fields(&mut object, managers);
    lifecycle::strip_nulls(&mut object);
    object["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
    if without_resource_version(&object) == without_resource_version(live) {
        return reply(200, live.clone(), warnings);
    }
    if opts.dry_run {
        return reply(200, object, warnings);
    }
    let finalized = object["metadata"].get("deletionTimestamp").is_some()
        && object["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
    let stored = if finalized {
        tx.remove(kind, &t.ns, &t.name);
        object
    } else {
        tx.put(kind, &t.ns, &t.name, object)
    };
    lifecycle::reconcile(tx, &t.ns);
    reply(200, stored, warnings)
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn create(ctx: &Ctx, t: &Target) -> Outcome {
    if t.kind.namespaced && t.ns.is_empty() {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let opts = WriteOptions::parse(ctx.query, ctx.user_agent, "CreateOptions", false)?;
    let (mut object, warnings) = options::decode_object(t.kind, ctx.body, ctx.content_type, opts.validation)?;
    if object["metadata"]["name"].as_str().is_none_or(str::is_empty)
        && let Some(prefix) = object["metadata"]["generateName"]
            .as_str()
            .filter(|p| !p.is_empty())
    {
        object["metadata"]["name"] = format!("{prefix}{}", random_suffix()).into();
    }
    ensure_namespace(&mut object, t)?;
    lifecycle::strip_nulls(&mut object);
    lifecycle::fold_string_data(t.kind, &mut object);
    defaults::apply(t.kind.kind, &mut object);
    let mut managers = managers_from(&object, None);
    let object = without_managed(&object);
    record(
        t.kind,
        &lifecycle::skeleton(t.kind),
        &object,
        &mut managers,
        &opts.manager,
    );
    let mut tx = ctx.app.store.begin();
    store_new(ctx, &mut tx, t, object, &managers, &opts, warnings, false)
}

pub fn update(ctx: &Ctx, t: &Target) -> Outcome {
    let opts = WriteOptions::parse(ctx.query, ctx.user_agent, "UpdateOptions", false)?;
    let (mut object, warnings) = options::decode_object(t.kind, ctx.body, ctx.content_type, opts.validation)?;
    check_name(&object, t)?;
    ensure_namespace(&mut object, t)?;
    lifecycle::strip_nulls(&mut object);
    lifecycle::fold_string_data(t.kind, &mut object);
    defaults::apply(t.kind.kind, &mut object);
    let mut tx = ctx.app.store.begin();
    let live = tx
        .get(t.kind, &t.ns, &t.name)
        .ok_or_else(|| ApiError::not_found(t.kind, &t.name))?;
    if let Some(rv) = object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
        && Some(rv) != live["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::stale(t.kind, &t.name));
    }
    let mut managers = managers_from(&object, Some(&live));
    let object = without_managed(&object);
    record(
        t.kind,
        &without_managed(&live),
        &object,
        &mut managers,
        &opts.manager,
    );
    store_update(ctx, &mut tx, t, object, &live, &managers, &opts, warnings)
}

const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
    "application/strategic-merge-patch+json",
];

pub fn patch(ctx: &Ctx, t: &Target) -> Outcome {
    let content_type = ctx.content_type.split(';').next().unwrap_or_default().trim();
    match content_type {
        "application/apply-patch+yaml" => super::apply::apply(ctx, t),
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => patch_update(ctx, t, content_type),
        _ => Err(ApiError::unsupported_media_type(&PATCH_TYPES)),
    }
}

/// The 422 a patch gets when the patched object does not decode (`patch: Invalid value`).
fn patch_invalid(shown: &str, why: &str) -> ApiError {
    let mut errs = ErrorList::default();
    errs.push(invalid("patch", go_quote(shown), why));
    ApiError::invalid("", "", "", &errs)
}

fn patch_update(ctx: &Ctx, t: &Target, content_type: &str) -> Outcome {
    let opts = WriteOptions::parse(ctx.query, ctx.user_agent, "PatchOptions", false)?;
    let text = std::str::from_utf8(ctx.body).map_err(|_| ApiError::bad_request("the patch is not UTF-8"))?;
    let patch_value: Value = serde_json::from_str(text).map_err(|e| match content_type {
        "application/merge-patch+json" => ApiError::bad_request("Invalid JSON Patch"),
        _ => ApiError::bad_request(e.to_string()),
    })?;
    let mut problems: Vec<String> = Vec::new();
    if opts.validation != Directive::Ignore {
        for (path, _) in strict::duplicate_fields(text) {
            problems.push(match content_type {
                "application/json-patch+json" => format!("json patch duplicate field {path:?}"),
                _ => format!("duplicate field {path:?}"),
            });
        }
    }
    let mut tx = ctx.app.store.begin();
    let live = tx
        .get(t.kind, &t.ns, &t.name)
        .ok_or_else(|| ApiError::not_found(t.kind, &t.name))?;
    let mut patched = live.clone();
    match content_type {
        "application/merge-patch+json" => patch::merge_patch(&mut patched, &patch_value),
        "application/strategic-merge-patch+json" => {
            if !patch_value.is_object() {
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                    if patch_value.is_array() { "array" } else { "value" }
                )));
            }
            patch::strategic_merge_patch(&mut patched, &patch_value)
                .map_err(|e| ApiError::bad_request(e.0))?;
        }
        _ => patch::json_patch(&mut patched, &patch_value).map_err(|e| ApiError {
            code: 422,
            reason: "Invalid",
            message: e.0,
            details: None,
        })?,
    }
    // What the errors show of the patch: the patched object, or (strategic merge) the patch;
    // unlike the API server, never a Secret's values.
    let shown = match content_type {
        "application/strategic-merge-patch+json" => go_value(&redact_secret(t.kind, &patch_value)),
        _ => serde_json::to_string(&redact_secret(t.kind, &patched)).unwrap_or_default(),
    };
    let findings = options::find_problems(t.kind, &patched, None).map_err(|e| patch_invalid(&shown, &e))?;
    if let Some(q) = validation::bad_quantity(&patched) {
        return Err(patch_invalid(&shown, &q));
    }
    if opts.validation != Directive::Ignore {
        problems.extend(findings.problems);
    }
    let mut warnings = Vec::new();
    if !problems.is_empty() {
        match opts.validation {
            Directive::Strict => {
                return Err(patch_invalid(
                    &shown,
                    &format!("strict decoding error: {}", problems.join(", ")),
                ));
            }
            Directive::Warn => warnings = problems,
            Directive::Ignore => {}
        }
    }
    check_name(&patched, t)?;
    lifecycle::strip_nulls(&mut patched);
    lifecycle::fold_string_data(t.kind, &mut patched);
    defaults::apply(t.kind.kind, &mut patched);
    let mut managers = managers_from(&patched, Some(&live));
    let object = without_managed(&patched);
    record(
        t.kind,
        &without_managed(&live),
        &object,
        &mut managers,
        &opts.manager,
    );
    store_update(ctx, &mut tx, t, object, &live, &managers, &opts, warnings)
}

/// A Secret with its values replaced, for error messages.
fn redact_secret(kind: &Kind, object: &Value) -> Value {
    let mut object = object.clone();
    if kind.plural == "secrets" {
        for field in ["data", "stringData"] {
            if let Some(values) = object.get_mut(field).and_then(Value::as_object_mut) {
                values.values_mut().for_each(|v| *v = "<redacted>".into());
            }
        }
    }
    object
}
