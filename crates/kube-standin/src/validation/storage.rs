//! StorageClasses (`pkg/apis/storage/validation`).

use serde_json::Value;

use super::field::{ErrorList, forbidden, go_quote, invalid, not_supported, required};

pub fn storage_class(object: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    if object["provisioner"].as_str().is_none_or(str::is_empty) {
        errs.push(required("provisioner", ""));
    }
    if let Some(policy) = object["reclaimPolicy"].as_str()
        && !["Delete", "Retain"].contains(&policy)
    {
        errs.push(not_supported(
            "reclaimPolicy",
            go_quote(policy),
            &["Delete", "Retain"],
        ));
    }
    if let Some(mode) = object["volumeBindingMode"].as_str()
        && !["Immediate", "WaitForFirstConsumer"].contains(&mode)
    {
        errs.push(not_supported(
            "volumeBindingMode",
            go_quote(mode),
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
    errs
}

pub fn storage_class_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    if new.get("parameters") != old.get("parameters") {
        errs.push(forbidden("parameters", "updates to parameters are forbidden."));
    }
    if new.get("provisioner") != old.get("provisioner") {
        errs.push(forbidden("provisioner", "updates to provisioner are forbidden."));
    }
    if new.get("reclaimPolicy") != old.get("reclaimPolicy") {
        errs.push(forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if new.get("volumeBindingMode") != old.get("volumeBindingMode") {
        errs.push(invalid(
            "volumeBindingMode",
            new["volumeBindingMode"].as_str().map_or("null".into(), go_quote),
            "field is immutable",
        ));
    }
    errs
}
