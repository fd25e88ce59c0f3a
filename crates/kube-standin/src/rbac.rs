//! RBAC authorization: Roles, ClusterRoles and their bindings loaded from YAML files, evaluated
//! as the API server's RBAC authorizer does; `system:masters` is allowed everything, and every
//! authenticated user may read discovery, `/version` and the health endpoints
//! (`system:discovery`, `system:public-info-viewer`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use serde_json::Value;

use crate::auth::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("cannot read RBAC file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("RBAC file {path} is not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("RBAC file {path}, document {index} ({kind}): {reason}")]
    Object {
        path: PathBuf,
        index: usize,
        kind: String,
        reason: String,
    },
}

/// What a request asks to do (`authorizer.Attributes`).
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: &'a str,
    pub resource_request: bool,
    pub path: &'a str,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Attributes<'_> {
    /// The message of a refusal (`forbiddenMessage`).
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.name;
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not allowed; the reason is empty unless a binding of the user's refers to a missing role.
    Deny(String),
}

#[derive(Debug, Default)]
pub struct Policy {
    roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: BTreeMap<String, Vec<PolicyRule>>,
    role_bindings: Vec<(String, RoleBinding)>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// Paths every authenticated user may GET.
const DISCOVERY: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/version",
    "/version/",
    "/healthz",
    "/livez",
    "/readyz",
    "/openapi",
    "/openapi/*",
];

fn matches_any(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

fn path_matches(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !matches_any(&rule.verbs, a.verb) {
        return false;
    }
    if !a.resource_request {
        return rule
            .non_resource_urls
            .iter()
            .flatten()
            .any(|u| path_matches(u, a.path));
    }
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    if !matches_any(groups, a.api_group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.to_owned()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = rule.resources.iter().flatten().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty()
                && r.len() == a.subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(a.subresource))
    });
    let names = rule.resource_names.as_deref().unwrap_or_default();
    resource_ok && (names.is_empty() || names.iter().any(|n| n == a.name))
}

fn applies_to(subjects: &[Subject], user: &UserInfo, binding_namespace: &str) -> bool {
    subjects.iter().any(|s| match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    })
}

fn parse<T: serde::de::DeserializeOwned>(doc: &Value, path: &Path, index: usize) -> Result<T, RbacError> {
    serde_json::from_value(doc.clone()).map_err(|e| RbacError::Object {
        path: path.to_owned(),
        index,
        kind: doc["kind"].as_str().unwrap_or("?").to_owned(),
        reason: e.to_string(),
    })
}

impl Policy {
    pub fn load(files: &[PathBuf]) -> Result<Policy, RbacError> {
        let mut policy = Policy::default();
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|source| RbacError::Read {
                path: path.clone(),
                source,
            })?;
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|source| RbacError::Yaml {
                path: path.clone(),
                source: Box::new(source),
            })?;
            for (index, doc) in docs.iter().enumerate() {
                policy.add(doc, path, index + 1)?;
            }
        }
        Ok(policy)
    }

    fn add(&mut self, doc: &Value, path: &Path, index: usize) -> Result<(), RbacError> {
        let namespace = || -> Result<String, RbacError> {
            doc["metadata"]["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| RbacError::Object {
                    path: path.to_owned(),
                    index,
                    kind: doc["kind"].as_str().unwrap_or("?").to_owned(),
                    reason: "metadata.namespace is required (the stand-in has no default namespace for RBAC files)".into(),
                })
        };
        let name = || doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        match doc["kind"].as_str().unwrap_or_default() {
            "Role" => {
                let role: Role = parse(doc, path, index)?;
                self.roles
                    .insert((namespace()?, name()), role.rules.unwrap_or_default());
            }
            "ClusterRole" => {
                let role: ClusterRole = parse(doc, path, index)?;
                self.cluster_roles.insert(name(), role.rules.unwrap_or_default());
            }
            "RoleBinding" => {
                let binding: RoleBinding = parse(doc, path, index)?;
                self.role_bindings.push((namespace()?, binding));
            }
            "ClusterRoleBinding" => {
                self.cluster_role_bindings.push(parse(doc, path, index)?);
            }
            "List" => {
                for (i, item) in doc["items"].as_array().into_iter().flatten().enumerate() {
                    self.add(item, path, index * 1000 + i)?;
                }
            }
            other => {
                tracing::info!(file = %path.display(), kind = other, "not an RBAC object; ignored");
            }
        }
        Ok(())
    }

    pub fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.groups.iter().any(|g| g == "system:masters") {
            return Decision::Allow;
        }
        if !a.resource_request && a.verb == "get" && DISCOVERY.iter().any(|p| path_matches(p, a.path)) {
            return Decision::Allow;
        }
        let mut errors = Vec::new();
        for binding in &self.cluster_role_bindings {
            if !applies_to(binding.subjects.as_deref().unwrap_or_default(), a.user, "") {
                continue;
            }
            match self.cluster_roles.get(&binding.role_ref.name) {
                Some(rules) if rules.iter().any(|r| rule_allows(r, a)) => return Decision::Allow,
                Some(_) => {}
                None => errors.push(format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    binding.role_ref.name
                )),
            }
        }
        if !a.namespace.is_empty() {
            for (ns, binding) in &self.role_bindings {
                if ns != a.namespace
                    || !applies_to(binding.subjects.as_deref().unwrap_or_default(), a.user, ns)
                {
                    continue;
                }
                let rules = match binding.role_ref.kind.as_str() {
                    "ClusterRole" => self.cluster_roles.get(&binding.role_ref.name),
                    _ => self.roles.get(&(ns.clone(), binding.role_ref.name.clone())),
                };
                match rules {
                    Some(rules) if rules.iter().any(|r| rule_allows(r, a)) => return Decision::Allow,
                    Some(_) => {}
                    None => errors.push(format!(
                        "{}.rbac.authorization.k8s.io {:?} not found",
                        binding.role_ref.kind.to_ascii_lowercase(),
                        binding.role_ref.name
                    )),
                }
            }
        }
        Decision::Deny(match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let file = std::env::temp_dir().join(format!("rbac-{}.yaml", rand::random::<u64>()));
        std::fs::write(
            &file,
            "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: writer, namespace: tgsearch}
rules:
  - apiGroups: [\"\"]
    resources: [secrets]
    verbs: [get, create, patch]
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [delete]
    resourceNames: [only-this]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: writer, namespace: tgsearch}
subjects: [{kind: Group, name: writers, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: Role, name: writer, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dangling, namespace: other}
subjects: [{kind: User, name: alice}]
roleRef: {kind: Role, name: missing, apiGroup: rbac.authorization.k8s.io}
",
        )
        .unwrap();
        let p = Policy::load(std::slice::from_ref(&file)).unwrap();
        let _ = std::fs::remove_file(file);
        p
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn attrs<'a>(
        user: &'a UserInfo,
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        ns: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            user,
            verb,
            resource_request: true,
            path: "",
            api_group: group,
            resource,
            subresource: "",
            namespace: ns,
            name,
        }
    }

    #[test]
    fn roles_grant_their_verbs_resources_and_names_only() {
        let p = policy();
        let w = user("arn:x", &["writers", "system:authenticated"]);
        assert_eq!(
            p.authorize(&attrs(&w, "create", "", "secrets", "tgsearch", "")),
            Decision::Allow
        );
        assert_eq!(
            p.authorize(&attrs(&w, "delete", "", "secrets", "tgsearch", "s")),
            Decision::Deny(String::new())
        );
        assert_ne!(
            p.authorize(&attrs(&w, "get", "", "secrets", "elsewhere", "s")),
            Decision::Allow
        );
        assert_ne!(
            p.authorize(&attrs(&w, "get", "", "configmaps", "tgsearch", "s")),
            Decision::Allow
        );
        assert_eq!(
            p.authorize(&attrs(
                &w,
                "delete",
                "apps",
                "deployments",
                "tgsearch",
                "only-this"
            )),
            Decision::Allow
        );
        assert_ne!(
            p.authorize(&attrs(&w, "delete", "apps", "deployments", "tgsearch", "other")),
            Decision::Allow
        );
        let denied = attrs(&w, "delete", "", "secrets", "tgsearch", "backend-x");
        assert_eq!(
            denied.forbidden_message(),
            "User \"arn:x\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"tgsearch\""
        );
    }

    #[test]
    fn masters_discovery_and_dangling_bindings() {
        let p = policy();
        let admin = user("admin", &["system:masters"]);
        assert_eq!(
            p.authorize(&attrs(&admin, "delete", "", "namespaces", "", "x")),
            Decision::Allow
        );
        let anyone = user("someone", &["system:authenticated"]);
        let discovery = Attributes {
            resource_request: false,
            path: "/apis/apps/v1",
            ..attrs(&anyone, "get", "", "", "", "")
        };
        assert_eq!(p.authorize(&discovery), Decision::Allow);
        let metrics = Attributes {
            path: "/metrics",
            ..discovery.clone()
        };
        assert_ne!(p.authorize(&metrics), Decision::Allow);
        assert_eq!(
            metrics.forbidden_message(),
            "User \"someone\" cannot get path \"/metrics\""
        );
        let alice = user("alice", &[]);
        assert_eq!(
            p.authorize(&attrs(&alice, "get", "", "secrets", "other", "x")),
            Decision::Deny("RBAC: role.rbac.authorization.k8s.io \"missing\" not found".into())
        );
    }
}
