//! The HTTP side: authentication, the request's attributes, RBAC, then discovery or the
//! resource handlers, and the replies (JSON, `Status` errors, `Warning` headers).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::auth::{Authenticator, UserInfo};
use crate::handlers::{self, Ctx, Outcome, Reply, Target};
use crate::kinds;
use crate::rbac::{Attributes, Decision, Policy};
use crate::request::{Query, RequestInfo};
use crate::status::ApiError;
use crate::store::Store;

pub struct App {
    pub store: Store,
    pub auth: Authenticator,
    pub policy: Policy,
    /// The class the DefaultStorageClass admission plugin gives claims without one (none on
    /// EKS 1.30+).
    pub default_storage_class: Option<String>,
}

type HttpReply = Response<Full<Bytes>>;

/// The API server's default limit on request bodies (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

fn json_reply(code: u16, body: &Value, warnings: &[String]) -> HttpReply {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    for w in warnings {
        // RFC 7234 warn-text: a quoted string.
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response = response.header("Warning", v);
        }
    }
    response
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).unwrap_or_default(),
        )))
        .expect("a valid response")
}

fn error_reply(e: &ApiError) -> HttpReply {
    json_reply(e.code, &e.to_status(), &[])
}

fn header_str(parts: &http::request::Parts, name: header::HeaderName) -> &str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub async fn handle<B>(app: Arc<App>, request: Request<B>) -> Result<HttpReply, std::convert::Infallible>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let user = match app.auth.verify(
        parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        SystemTime::now(),
    ) {
        Ok(user) => user,
        Err(why) => {
            tracing::info!(method = %parts.method, path, reason = %why, "401");
            return Ok(error_reply(&ApiError::unauthorized()));
        }
    };
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(error_reply(&ApiError::too_large(MAX_BODY)));
        }
        Err(e) => {
            return Ok(error_reply(&ApiError::bad_request(format!(
                "cannot read the body: {e}"
            ))));
        }
    };
    let query = Query::parse(parts.uri.query().unwrap_or(""));
    let info = RequestInfo::new(&parts.method, &path, &query);
    let ctx = Ctx {
        app: &app,
        user: &user,
        query: &query,
        content_type: header_str(&parts, header::CONTENT_TYPE),
        accept: header_str(&parts, header::ACCEPT),
        user_agent: header_str(&parts, header::USER_AGENT),
        body: &body,
    };
    let outcome = authorize(&app.policy, &user, &info).and_then(|()| route(&ctx, &parts.method, &info));
    let reply = match &outcome {
        Ok(r) => json_reply(r.code, &r.body, &r.warnings),
        Err(e) => error_reply(e),
    };
    tracing::info!(user = %user.name, verb = info.verb, path, code = reply.status().as_u16(), "request");
    Ok(reply)
}

fn authorize(policy: &Policy, user: &UserInfo, info: &RequestInfo) -> Result<(), ApiError> {
    let attrs = Attributes {
        user,
        verb: info.verb,
        resource_request: info.resource_request,
        path: &info.path,
        api_group: &info.api_group,
        resource: &info.resource,
        subresource: &info.subresource,
        namespace: &info.namespace,
        name: &info.name,
    };
    let Decision::Deny(reason) = policy.authorize(&attrs) else {
        return Ok(());
    };
    let message = if reason.is_empty() {
        attrs.forbidden_message()
    } else {
        format!("{}: {reason}", attrs.forbidden_message())
    };
    if !info.resource_request {
        return Err(ApiError::forbidden_path(&message));
    }
    // The refusal names the resource as requested, served or not.
    Err(ApiError::forbidden_resource(
        &info.api_group,
        &info.resource,
        &info.name,
        &message,
    ))
}

fn discovery(info: &RequestInfo) -> Option<Value> {
    let parts: Vec<&str> = info
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match parts.as_slice() {
        ["version"] => Some(kinds::version()),
        ["api"] => Some(kinds::api_versions()),
        ["apis"] => Some(kinds::api_groups()),
        ["api", "v1"] => Some(kinds::resource_list("", "v1")),
        ["apis", group] => kinds::api_group(group),
        ["apis", group, version] if kinds::served_group_version(group, version) => {
            Some(kinds::resource_list(group, version))
        }
        ["openapi", "v3"] => Some(kinds::openapi_v3_index()),
        ["openapi", "v3", rest @ ..] => kinds::openapi_v3_document(&rest.join("/")),
        _ => None,
    }
}

fn route(ctx: &Ctx, method: &Method, info: &RequestInfo) -> Outcome {
    let unknown = || ApiError::not_found_path(&info.path);
    if !info.resource_request {
        if *method != Method::GET {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        return discovery(info).map(|v| Reply::new(200, v)).ok_or_else(unknown);
    }
    let kind = kinds::kind_of(&info.api_group, &info.api_version, &info.resource).ok_or_else(unknown)?;
    if !info.subresource.is_empty() {
        return Err(unknown());
    }
    // A namespace's own URL carries its name as the namespace; a cluster-scoped kind has none.
    let ns = if kind.namespaced {
        info.namespace.clone()
    } else {
        String::new()
    };
    if !kind.namespaced && !info.namespace.is_empty() && *kind != kinds::NAMESPACES {
        return Err(unknown());
    }
    let target = Target {
        kind,
        ns,
        name: info.name.clone(),
    };
    let collection = info.name.is_empty();
    if kind.read_only && *method != Method::GET {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    match (method.clone(), collection) {
        (Method::GET, true) => handlers::list(ctx, &target),
        (Method::GET, false) => handlers::get(ctx, &target),
        (Method::POST, true) => handlers::create(ctx, &target),
        (Method::PUT, false) => handlers::update(ctx, &target),
        (Method::PATCH, false) => handlers::patch(ctx, &target),
        (Method::DELETE, false) => handlers::delete(ctx, &target),
        (Method::DELETE, true) => handlers::delete_collection(ctx, &target),
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}
