//! The request as the function reads it: its route, its path behind API Gateway's stages, its
//! one bearer token.

use lambda_http::http::Method;
use lambda_http::http::header::{AUTHORIZATION, HeaderMap};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::cognito_jwt::Rejection;

/// The routes this function serves. A new route (`POST /tenant/rotate`) is one variant here, one
/// line in [`route`], and one arm in [`handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    GetTenant,
    Rotate,
}

/// Why a request has no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoute {
    NotFound,
    MethodNotAllowed { allow: &'static str },
}

/// The route of `method` on `path` (a path without stage and without query).
pub fn route(method: &Method, path: &str) -> Result<Route, NoRoute> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    match (path, method) {
        ("/tenant", &Method::GET) => Ok(Route::GetTenant),
        ("/tenant", _) => Err(NoRoute::MethodNotAllowed { allow: "GET" }),
        ("/tenant/rotate", &Method::POST) => Ok(Route::Rotate),
        ("/tenant/rotate", _) => Err(NoRoute::MethodNotAllowed { allow: "POST" }),
        _ => Err(NoRoute::NotFound),
    }
}

/// The request's path as the client wrote it after the API's base: API Gateway's named stages
/// (`/prod/tenant`) are stripped; `$default` stages and function URLs have none.
pub fn request_path(raw_path: &str, stage: Option<&str>) -> String {
    let path = match stage {
        Some(stage) if stage != "$default" => {
            let prefix = format!("/{stage}");
            match raw_path.strip_prefix(&prefix) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                _ => raw_path,
            }
        }
        _ => raw_path,
    };
    if path.is_empty() { "/".into() } else { path.into() }
}

pub(super) fn path_of(request: &Request) -> String {
    let raw = match request.raw_http_path() {
        "" => request.uri().path(),
        raw => raw,
    };
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.as_deref(),
        _ => None,
    };
    request_path(raw, stage)
}

/// The one bearer token of the request. Two Authorization headers, or values API Gateway joined
/// with a comma, are refused rather than guessed at.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(Rejection::Missing)?;
    if values.next().is_some() {
        return Err(Rejection::NotBearer);
    }
    let value = value.to_str().map_err(|_| Rejection::NotBearer)?;
    let (scheme, token) = value.trim_start().split_once(' ').ok_or(Rejection::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    // A JWT is three base64url parts: anything else (a comma, a space, a second token) is not one.
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Rejection::NotBearer);
    }
    Ok(token)
}
