//! `delete` and `deletecollection`: `DeleteOptions` (preconditions, propagationPolicy,
//! dryRun), finalizers (a claim in use stays, marked for deletion), and the response shapes
//! (a `Status` for objects gone at once, the object for those still being deleted).

use serde_json::{Value, json};

use super::{Ctx, Outcome, Reply, Target};
use crate::kinds::{self, Kind};
use crate::lifecycle::{self, PVC_PROTECTION};
use crate::options::DeleteOptions;
use crate::status::ApiError;
use crate::store::Tx;

/// The etcd key the precondition error names.
fn storage_key(kind: &Kind, ns: &str, name: &str) -> String {
    if kind.namespaced {
        format!("/registry/{}/{ns}/{name}", kind.plural)
    } else {
        format!("/registry/{}/{name}", kind.plural)
    }
}

fn check_preconditions(
    kind: &Kind,
    ns: &str,
    name: &str,
    live: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let failed = |field: &str, wanted: &str, actual: &str| {
        ApiError::conflict(
            kind,
            name,
            &format!(
                "StorageError: invalid object, Code: 4, Key: {}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {actual}",
                storage_key(kind, ns, name)
            ),
        )
    };
    let meta = &live["metadata"];
    if let Some(uid) = &opts.uid {
        let actual = meta["uid"].as_str().unwrap_or_default();
        if uid != actual {
            return Err(failed("UID", uid, actual));
        }
    }
    if let Some(rv) = &opts.resource_version {
        let actual = meta["resourceVersion"].as_str().unwrap_or_default();
        if rv != actual {
            return Err(failed("ResourceVersion", rv, actual));
        }
    }
    Ok(())
}

/// Deletes one object; the reply body is what the API server answers.
fn delete_one(tx: &mut Tx, kind: &Kind, ns: &str, name: &str, live: Value, dry_run: bool) -> (u16, Value) {
    let mut marked = live.clone();
    let mut finalizers: Vec<Value> = live["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The pvc-protection controller drops its finalizer at once when nothing mounts the claim.
    if *kind == kinds::PVCS && !lifecycle::claim_in_use(tx, ns, name) {
        finalizers.retain(|f| f != PVC_PROTECTION);
    }
    if marked["metadata"].get("deletionTimestamp").is_none() {
        marked["metadata"]["deletionTimestamp"] = lifecycle::now().into();
        marked["metadata"]["deletionGracePeriodSeconds"] = 0.into();
    }
    if *kind == kinds::NAMESPACES {
        marked["status"]["phase"] = "Terminating".into();
        if !dry_run {
            tx.remove_namespace_contents(name);
            tx.remove(kind, ns, name);
        }
        return (200, marked);
    }
    if !finalizers.is_empty() {
        // Still finalizing: the object stays, marked, until its finalizers are gone.
        if dry_run {
            return (200, marked);
        }
        let stored = tx.put(kind, ns, name, marked);
        return (200, stored);
    }
    let had_finalizers = live["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if !dry_run {
        tx.remove(kind, ns, name);
    }
    if had_finalizers {
        return (200, marked);
    }
    let mut details = json!({"name": name, "kind": kind.plural, "uid": live["metadata"]["uid"]});
    if !kind.group.is_empty() {
        details["group"] = kind.group.into();
    }
    (
        200,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
    )
}

pub fn delete(ctx: &Ctx, t: &Target) -> Outcome {
    let opts = DeleteOptions::parse(ctx.query, ctx.body)?;
    let mut tx = ctx.app.store.begin();
    let live = tx
        .get(t.kind, &t.ns, &t.name)
        .ok_or_else(|| ApiError::not_found(t.kind, &t.name))?;
    check_preconditions(t.kind, &t.ns, &t.name, &live, &opts)?;
    let (code, body) = delete_one(&mut tx, t.kind, &t.ns, &t.name, live, opts.dry_run);
    if !opts.dry_run {
        lifecycle::reconcile(&mut tx, &t.ns);
    }
    Ok(Reply::new(code, body))
}

pub fn delete_collection(ctx: &Ctx, t: &Target) -> Outcome {
    let opts = DeleteOptions::parse(ctx.query, ctx.body)?;
    let selector = ctx.query.get("labelSelector").unwrap_or_default();
    let mut tx = ctx.app.store.begin();
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let mut items = Vec::new();
    for object in tx.list(t.kind, ns) {
        if !crate::selector::matches(object["metadata"]["labels"].as_object(), selector) {
            continue;
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let object_ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (_, _) = delete_one(&mut tx, t.kind, &object_ns, &name, object.clone(), opts.dry_run);
        items.push(object);
    }
    if !opts.dry_run && !t.ns.is_empty() {
        lifecycle::reconcile(&mut tx, &t.ns);
    }
    Ok(Reply::new(
        200,
        json!({
            "kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version,
            "metadata": {"resourceVersion": tx.resource_version().to_string()}, "items": items
        }),
    ))
}
