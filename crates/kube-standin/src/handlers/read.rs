//! `get` and `list` (with label and field selectors, and Tables for kubectl).

use serde_json::{Value, json};

use super::{Ctx, Outcome, Reply, Target};
use crate::selector;
use crate::status::ApiError;
use crate::tables;

fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

pub fn get(ctx: &Ctx, t: &Target) -> Outcome {
    let tx = ctx.app.store.begin();
    let object = tx
        .get(t.kind, &t.ns, &t.name)
        .ok_or_else(|| ApiError::not_found(t.kind, &t.name))?;
    Ok(Reply::new(
        200,
        if wants_table(ctx.accept) {
            tables::table(t.kind, std::slice::from_ref(&object), tx.resource_version())
        } else {
            object
        },
    ))
}

/// `metadata.name` and `metadata.namespace` field selectors; others select everything.
fn field_selected(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            let (field, negate, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, false, v)
            } else {
                return true;
            };
            let actual = match field.trim() {
                "metadata.name" => object["metadata"]["name"].as_str(),
                "metadata.namespace" => object["metadata"]["namespace"].as_str(),
                _ => return true,
            };
            (actual == Some(value.trim())) != negate
        })
}

pub fn list(ctx: &Ctx, t: &Target) -> Outcome {
    if ctx.query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(ApiError::method_not_allowed("watch"));
    }
    let labels = ctx.query.get("labelSelector").unwrap_or_default();
    let fields = ctx.query.get("fieldSelector").unwrap_or_default();
    let tx = ctx.app.store.begin();
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let items: Vec<Value> = tx
        .list(t.kind, ns)
        .into_iter()
        .filter(|o| selector::matches(o["metadata"]["labels"].as_object(), labels))
        .filter(|o| field_selected(o, fields))
        .collect();
    let rv = tx.resource_version();
    Ok(Reply::new(
        200,
        if wants_table(ctx.accept) {
            tables::table(t.kind, &items, rv)
        } else {
            json!({
                "kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version,
                "metadata": {"resourceVersion": rv.to_string()}, "items": items
            })
        },
    ))
}
