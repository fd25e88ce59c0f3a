//! Server-side printing (`as=Table`), the columns kubectl shows for each kind.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::kinds::Kind;

fn age(object: &Value) -> String {
    let created = object["metadata"]["creationTimestamp"].as_str().unwrap_or("");
    let amz = created.replace(['-', ':'], "");
    let Some(at) = tgsearch::eks::verify::parse_amz_date(&amz) else {
        return "<unknown>".into();
    };
    let secs = SystemTime::now()
        .duration_since(at)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn access_modes(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn text(v: &Value) -> Value {
    v.as_str().unwrap_or("").into()
}

/// How one object becomes a Table row.
type Cells = fn(&Value) -> Vec<Value>;

fn layout(kind: &Kind) -> (&'static [&'static str], Cells) {
    match kind.plural {
        "deployments" => (&["Name", "Ready", "Up-to-date", "Available", "Age"], |o| {
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            vec![
                o["metadata"]["name"].clone(),
                format!("0/{want}").into(),
                0.into(),
                0.into(),
                age(o).into(),
            ]
        }),
        "secrets" => (&["Name", "Type", "Data", "Age"], |o| {
            let n = o["data"].as_object().map_or(0, |d| d.len());
            vec![
                o["metadata"]["name"].clone(),
                o["type"].as_str().unwrap_or("Opaque").into(),
                n.into(),
                age(o).into(),
            ]
        }),
        "persistentvolumeclaims" => (
            &[
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
            ],
            |o| {
                let phase = if o["metadata"].get("deletionTimestamp").is_some() {
                    "Terminating".into()
                } else {
                    text(&o["status"]["phase"])
                };
                vec![
                    o["metadata"]["name"].clone(),
                    phase,
                    text(&o["spec"]["volumeName"]),
                    text(&o["status"]["capacity"]["storage"]),
                    access_modes(&o["status"]["accessModes"]).into(),
                    o["spec"]["storageClassName"].as_str().unwrap_or("<unset>").into(),
                    o["spec"]["volumeAttributesClassName"]
                        .as_str()
                        .unwrap_or("<unset>")
                        .into(),
                    age(o).into(),
                ]
            },
        ),
        "storageclasses" => (
            &[
                "Name",
                "Provisioner",
                "ReclaimPolicy",
                "VolumeBindingMode",
                "AllowVolumeExpansion",
                "Age",
            ],
            |o| {
                let mut name = o["metadata"]["name"].as_str().unwrap_or("").to_owned();
                if o["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true" {
                    name.push_str(" (default)");
                }
                vec![
                    name.into(),
                    text(&o["provisioner"]),
                    text(&o["reclaimPolicy"]),
                    text(&o["volumeBindingMode"]),
                    o["allowVolumeExpansion"].as_bool().unwrap_or(false).into(),
                    age(o).into(),
                ]
            },
        ),
        "namespaces" => (&["Name", "Status", "Age"], |o| {
            vec![
                o["metadata"]["name"].clone(),
                text(&o["status"]["phase"]),
                age(o).into(),
            ]
        }),
        _ => (&["Name", "Age"], |o| {
            vec![o["metadata"]["name"].clone(), age(o).into()]
        }),
    }
}

pub fn table(kind: &Kind, items: &[Value], resource_version: u64) -> Value {
    let (columns, cells) = layout(kind);
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c, "type": "string", "format": if *c == "Name" { "name" } else { "" }, "description": c, "priority": 0}))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cells(o),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
            })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": column_definitions, "rows": rows
    })
}
