//! What a request is about, derived from its method and path as the API server's
//! `RequestInfoFactory` derives it: resource or not, group, version, resource, subresource,
//! namespace, name, and the verb RBAC checks.

use http::Method;

/// The query string, decoded (`application/x-www-form-urlencoded`: `+` is a space).
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

impl Query {
    pub fn parse(query: &str) -> Self {
        Self(
            query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(kv), String::new()),
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub resource_request: bool,
    pub path: String,
    pub verb: &'static str,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl RequestInfo {
    pub fn new(method: &Method, path: &str, query: &Query) -> RequestInfo {
        let non_resource = |verb| RequestInfo {
            resource_request: false,
            path: path.to_owned(),
            verb,
            api_group: String::new(),
            api_version: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        let plain_verb = match *method {
            Method::POST => "post",
            Method::PUT => "put",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            Method::HEAD => "head",
            _ => "get",
        };
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return non_resource(plain_verb),
        };
        let mut info = RequestInfo {
            resource_request: true,
            path: path.to_owned(),
            verb: "",
            api_group: group.to_owned(),
            api_version: version.to_owned(),
            ..non_resource("")
        };
        let mut rest = rest;
        if rest[0] == "namespaces" && rest.len() > 1 {
            info.namespace = rest[1].to_owned();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        info.resource = rest[0].to_owned();
        info.name = rest.get(1).map(|s| (*s).to_owned()).unwrap_or_default();
        info.subresource = rest.get(2).map(|s| (*s).to_owned()).unwrap_or_default();
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        info.verb = match (method.clone(), info.name.is_empty()) {
            (Method::POST, _) => "create",
            (Method::PUT, _) => "update",
            (Method::PATCH, _) => "patch",
            (Method::DELETE, true) => "deletecollection",
            (Method::DELETE, false) => "delete",
            (_, _) if watch => "watch",
            (_, true) => "list",
            (_, false) => "get",
        };
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str, query: &str) -> RequestInfo {
        RequestInfo::new(&method, path, &Query::parse(query))
    }

    #[test]
    fn verbs_and_scopes_follow_the_request_info_factory() {
        let i = info(
            Method::DELETE,
            "/api/v1/namespaces/tgsearch/secrets/backend-x",
            "",
        );
        assert_eq!(
            (i.verb, i.resource.as_str(), i.namespace.as_str(), i.name.as_str()),
            ("delete", "secrets", "tgsearch", "backend-x")
        );
        assert_eq!(
            info(Method::GET, "/apis/apps/v1/namespaces/tgsearch/deployments", "").verb,
            "list"
        );
        assert_eq!(
            info(Method::GET, "/apis/apps/v1/deployments", "watch=true").verb,
            "watch"
        );
        assert_eq!(
            info(Method::DELETE, "/api/v1/namespaces/t/secrets", "").verb,
            "deletecollection"
        );
        let ns = info(Method::GET, "/api/v1/namespaces/tgsearch", "");
        assert_eq!(
            (ns.resource.as_str(), ns.name.as_str(), ns.namespace.as_str()),
            ("namespaces", "tgsearch", "tgsearch")
        );
        let sub = info(
            Method::PUT,
            "/api/v1/namespaces/t/persistentvolumeclaims/c/status",
            "",
        );
        assert_eq!((sub.verb, sub.subresource.as_str()), ("update", "status"));
        let d = info(Method::GET, "/apis/apps/v1", "");
        assert!(!d.resource_request);
        assert_eq!(d.verb, "get");
        assert_eq!(
            Query::parse("labelSelector=a%3Db+c&x").get("labelSelector"),
            Some("a=b c")
        );
    }
}
