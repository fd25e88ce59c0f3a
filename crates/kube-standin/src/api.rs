//! Routing: discovery, the resource paths kubectl and kube-rs use, and the verbs on them.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::auth::Authenticator;
use crate::status::ApiError;
use crate::store::{KINDS, Kind, Store, kind_of};

pub struct App {
    pub store: Store,
    pub auth: Authenticator,
}

type Reply = Response<Full<Bytes>>;

fn json_reply(code: StatusCode, body: &Value) -> Reply {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).unwrap_or_default(),
        )))
        .expect("a valid response")
}

fn error_reply(e: &ApiError) -> Reply {
    json_reply(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

pub async fn handle<B>(app: Arc<App>, request: Request<B>) -> Result<Reply, std::convert::Infallible>
where
    B: hyper::body::Body,
    B::Error: std::fmt::Display,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let auth_header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = match app.auth.verify(auth_header, SystemTime::now()) {
        Ok(identity) => identity,
        Err(why) => {
            tracing::info!(method = %parts.method, path, reason = %why, "401");
            return Ok(error_reply(&ApiError::unauthorized()));
        }
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_reply(&ApiError::bad_request(format!(
                "cannot read the body: {e}"
            ))));
        }
    };
    let query = parts.uri.query().unwrap_or("");
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let outcome = route(&app, &parts.method, &path, query, accept, content_type, &body);
    let reply = match &outcome {
        Ok((code, value)) => json_reply(*code, value),
        Err(e) => error_reply(e),
    };
    tracing::info!(user = %identity.arn, method = %parts.method, path, code = reply.status().as_u16(), "request");
    Ok(reply)
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

/// A query value as sent (`application/x-www-form-urlencoded`: `+` is a space).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_body(body: &Bytes, content_type: &str) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty".into()));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8".into()))?;
    let parsed = if content_type.contains("yaml") {
        serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
    };
    let value = parsed.map_err(|e| ApiError::bad_request(format!("the body cannot be decoded: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body is not an object".into()));
    }
    Ok(value)
}

type Outcome = Result<(StatusCode, Value), ApiError>;

fn route(
    app: &App,
    method: &Method,
    path: &str,
    query: &str,
    accept: &str,
    content_type: &str,
    body: &Bytes,
) -> Outcome {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => Ok((StatusCode::OK, version())),
        ["api"] => Ok((
            StatusCode::OK,
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )),
        ["apis"] => Ok((StatusCode::OK, api_groups())),
        ["api", "v1"] => Ok((StatusCode::OK, resource_list("v1"))),
        ["apis", "apps", "v1"] => Ok((StatusCode::OK, resource_list("apps/v1"))),
        ["api", "v1", rest @ ..] => resource(app, "v1", rest, method, query, accept, content_type, body),
        ["apis", "apps", "v1", rest @ ..] => {
            resource(app, "apps/v1", rest, method, query, accept, content_type, body)
        }
        _ => Err(ApiError::not_found_path(path)),
    }
}

#[allow(clippy::too_many_arguments)]
fn resource(
    app: &App,
    gv: &str,
    rest: &[&str],
    method: &Method,
    query: &str,
    accept: &str,
    content_type: &str,
    body: &Bytes,
) -> Outcome {
    let unknown = || ApiError::not_found_path(&format!("/{gv}/{}", rest.join("/")));
    // (kind, namespace, name); namespace None = every namespace (or cluster-scoped).
    let (kind, ns, name): (&Kind, Option<&str>, Option<&str>) = match rest {
        [plural] => (kind_of(gv, plural).ok_or_else(unknown)?, None, None),
        ["namespaces", name] if gv == "v1" => (kind_of("v1", "namespaces").unwrap(), None, Some(*name)),
        [plural, name] => {
            let kind = kind_of(gv, plural).ok_or_else(unknown)?;
            if kind.namespaced {
                return Err(unknown());
            }
            (kind, None, Some(*name))
        }
        ["namespaces", ns, plural] => (
            kind_of(gv, plural).filter(|k| k.namespaced).ok_or_else(unknown)?,
            Some(*ns),
            None,
        ),
        ["namespaces", ns, plural, name] => (
            kind_of(gv, plural).filter(|k| k.namespaced).ok_or_else(unknown)?,
            Some(*ns),
            Some(*name),
        ),
        _ => return Err(unknown()),
    };
    let ns_str = ns.unwrap_or("");
    let table = accept.contains("as=Table");
    let writes = !matches!(*method, Method::GET);
    if writes && kind.read_only {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    match (method.clone(), name) {
        (Method::GET, None) => {
            if query_param(query, "watch").as_deref() == Some("true") {
                return Err(ApiError::method_not_allowed("watch"));
            }
            let selector = query_param(query, "labelSelector").unwrap_or_default();
            let (items, rv) = app.store.list(kind, ns, &selector);
            Ok((
                StatusCode::OK,
                if table {
                    to_table(kind, &items, rv)
                } else {
                    list(kind, items, rv)
                },
            ))
        }
        (Method::GET, Some(name)) => {
            let object = app.store.get(kind, ns_str, name)?;
            Ok((
                StatusCode::OK,
                if table {
                    to_table(kind, std::slice::from_ref(&object), 0)
                } else {
                    object
                },
            ))
        }
        (Method::POST, None) => {
            if kind.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed("POST"));
            }
            let object = parse_body(body, content_type)?;
            Ok((StatusCode::CREATED, app.store.create(kind, ns_str, object)?))
        }
        (Method::PUT, Some(name)) => {
            let object = parse_body(body, content_type)?;
            Ok((StatusCode::OK, app.store.replace(kind, ns_str, name, object)?))
        }
        (Method::PATCH, Some(name)) => {
            let patch = parse_body(body, content_type)?;
            let upsert = if content_type.starts_with("application/apply-patch") {
                true
            } else if content_type.starts_with("application/merge-patch+json")
                || content_type.starts_with("application/strategic-merge-patch+json")
            {
                false
            } else {
                return Err(ApiError::unsupported_media_type(content_type));
            };
            if upsert && query_param(query, "fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::bad_request(
                    "fieldManager is required for apply requests".into(),
                ));
            }
            let (object, created) = app.store.patch(kind, ns_str, name, patch, upsert)?;
            Ok((
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                object,
            ))
        }
        (Method::DELETE, Some(name)) => {
            let removed = app.store.delete(kind, ns_str, name)?;
            Ok((
                StatusCode::OK,
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "kind": kind.plural, "uid": removed["metadata"]["uid"]}
                }),
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "31", "gitVersion": "v1.31.0-tgsearch-standin", "gitCommit": "0000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a",
        "compiler": "rustc", "platform": "linux/amd64"
    })
}

fn api_groups() -> Value {
    json!({
        "kind": "APIGroupList", "apiVersion": "v1",
        "groups": [{
            "name": "apps",
            "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}
        }]
    })
}

fn resource_list(gv: &str) -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group_version == gv)
        .map(|k| {
            let verbs: &[&str] = if k.read_only {
                &["get", "list"]
            } else {
                &["create", "delete", "get", "list", "patch", "update"]
            };
            let short: &[&str] = match k.plural {
                "namespaces" => &["ns"],
                "persistentvolumeclaims" => &["pvc"],
                "deployments" => &["deploy"],
                "replicasets" => &["rs"],
                "events" => &["ev"],
                "pods" => &["po"],
                _ => &[],
            };
            json!({
                "name": k.plural, "singularName": k.kind.to_ascii_lowercase(), "namespaced": k.namespaced,
                "kind": k.kind, "verbs": verbs, "shortNames": short
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn list(kind: &Kind, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": format!("{}List", kind.kind), "apiVersion": kind.group_version,
        "metadata": {"resourceVersion": rv.to_string()}, "items": items
    })
}

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

/// How one object becomes a Table row.
type Cells = fn(&Value) -> Vec<Value>;

/// The server-side printing kubectl asks for (`as=Table`).
fn to_table(kind: &Kind, items: &[Value], rv: u64) -> Value {
    let (columns, cells): (&[&str], Cells) = match kind.plural {
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
            let n = o["data"].as_object().map_or(0, |d| d.len())
                + o["stringData"].as_object().map_or(0, |d| d.len());
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
                "Capacity",
                "Access Modes",
                "StorageClass",
                "Age",
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    "Pending".into(),
                    o["spec"]["resources"]["requests"]["storage"].clone(),
                    o["spec"]["accessModes"][0]
                        .as_str()
                        .unwrap_or("")
                        .replace("ReadWriteOnce", "RWO")
                        .into(),
                    o["spec"]["storageClassName"]
                        .as_str()
                        .unwrap_or("<default>")
                        .into(),
                    age(o).into(),
                ]
            },
        ),
        "namespaces" => (&["Name", "Status", "Age"], |o| {
            vec![o["metadata"]["name"].clone(), "Active".into(), age(o).into()]
        }),
        _ => (&["Name", "Age"], |o| {
            vec![o["metadata"]["name"].clone(), age(o).into()]
        }),
    };
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
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": column_definitions, "rows": rows
    })
}
