//! Errors as the API server sends them: `Status` objects with the real reasons, codes,
//! messages and details (k8s.io/apimachinery/pkg/api/errors).

use serde_json::{Map, Value, json};

use crate::kinds::Kind;
use crate::validation::field::ErrorList;

/// One entry of `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The kind (Invalid) or the resource (NotFound, Conflict, Forbidden), as the API server
    /// fills it.
    pub kind: String,
    pub uid: String,
    pub causes: Vec<Cause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    /// Empty for errors the API server reports without a reason (500s).
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Details>>,
}

/// `resource` or `resource.group`, as `GroupResource.String()` prints it.
pub fn qualified_resource(kind: &Kind) -> String {
    if kind.group.is_empty() {
        kind.plural.to_owned()
    } else {
        format!("{}.{}", kind.plural, kind.group)
    }
}

/// `Kind` or `Kind.group`, as `GroupKind.String()` prints it.
pub fn qualified_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

fn resource_details(kind: &Kind, name: &str) -> Details {
    Details {
        name: name.to_owned(),
        group: kind.group.to_owned(),
        kind: kind.plural.to_owned(),
        ..Details::default()
    }
}

impl ApiError {
    pub fn not_found(kind: &Kind, name: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{} {name:?} not found", qualified_resource(kind)),
            details: Some(Box::new(resource_details(kind, name))),
        }
    }

    pub fn already_exists(kind: &Kind, name: &str) -> Self {
        Self {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} {name:?} already exists", qualified_resource(kind)),
            details: Some(Box::new(resource_details(kind, name))),
        }
    }

    /// `errors.NewConflict`: `Operation cannot be fulfilled on secrets "x": <why>`.
    pub fn conflict(kind: &Kind, name: &str, why: &str) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                qualified_resource(kind)
            ),
            details: Some(Box::new(resource_details(kind, name))),
        }
    }

    /// The optimistic-concurrency conflict of an update with a stale resourceVersion.
    pub fn stale(kind: &Kind, name: &str) -> Self {
        Self::conflict(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `errors.NewApplyConflict`.
    pub fn apply_conflict(causes: Vec<Cause>, message: String) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message,
            details: Some(Box::new(Details {
                causes,
                ..Details::default()
            })),
        }
    }

    /// `errors.NewInvalid`: `Deployment.apps "x" is invalid: <field errors>`.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &ErrorList) -> Self {
        let qualified = qualified_kind(group, kind);
        let message = match errors.aggregate() {
            Some(all) => format!("{qualified} {name:?} is invalid: {all}"),
            None => format!("{qualified} {name:?} is invalid"),
        };
        Self {
            code: 422,
            reason: "Invalid",
            message,
            details: Some(Box::new(Details {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: kind.to_owned(),
                causes: errors.causes(),
                ..Details::default()
            })),
        }
    }

    /// `errors.NewForbidden`: `secrets "x" is forbidden: <why>`.
    pub fn forbidden(kind: &Kind, name: &str, why: &str) -> Self {
        Self::forbidden_resource(kind.group, kind.plural, name, why)
    }

    pub fn forbidden_resource(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let message = if name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} {name:?} is forbidden: {why}")
        };
        Self {
            code: 403,
            reason: "Forbidden",
            message,
            details: Some(Box::new(Details {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: resource.to_owned(),
                ..Details::default()
            })),
        }
    }

    /// A refusal of a non-resource path (`User "x" cannot get path "/foo"`).
    pub fn forbidden_path(why: &str) -> Self {
        Self {
            code: 403,
            reason: "Forbidden",
            message: format!("forbidden: {why}"),
            details: Some(Box::default()),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    /// An error the API server does not classify (`ErrorToAPIStatus`' default): 500, no reason.
    pub fn unclassified(message: impl Into<String>) -> Self {
        Self {
            code: 500,
            reason: "",
            message: message.into(),
            details: None,
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!("limit is {limit}"),
            details: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".into(),
            details: None,
        }
    }

    pub fn not_found_path(path: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
            details: Some(Box::default()),
        }
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("the server does not allow this method on the requested resource ({method})"),
            details: Some(Box::default()),
        }
    }

    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
            details: None,
        }
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            status["reason"] = self.reason.into();
        }
        if let Some(d) = &self.details {
            let mut details = Map::new();
            for (k, v) in [
                ("name", &d.name),
                ("group", &d.group),
                ("kind", &d.kind),
                ("uid", &d.uid),
            ] {
                if !v.is_empty() {
                    details.insert(k.into(), v.clone().into());
                }
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d
                    .causes
                    .iter()
                    .map(|c| {
                        let mut m = Map::new();
                        m.insert("reason".into(), c.reason.clone().into());
                        m.insert("message".into(), c.message.clone().into());
                        if !c.field.is_empty() {
                            m.insert("field".into(), c.field.clone().into());
                        }
                        Value::Object(m)
                    })
                    .collect();
                details.insert("causes".into(), causes.into());
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}
