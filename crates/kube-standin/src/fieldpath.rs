//! Field paths and field sets as structured-merge-diff defines them, and their wire format,
//! `FieldsV1` (`f:name`, `k:{"name":"x"}`, `v:"value"`, `i:0`, `.` for "this node itself").

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a path: a field of a map or struct, an item of an associative list (by its
/// key fields), an item of a set (by its value), or a list index.
#[derive(Clone, Debug)]
pub enum Pe {
    Field(String),
    /// Key fields sorted by name.
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(usize),
}

impl Pe {
    fn rank(&self) -> u8 {
        match self {
            Pe::Field(_) => 0,
            Pe::Key(_) => 1,
            Pe::Value(_) => 2,
            Pe::Index(_) => 3,
        }
    }

    /// The `FieldsV1` key of this element.
    pub fn encode(&self) -> String {
        match self {
            Pe::Field(name) => format!("f:{name}"),
            Pe::Key(fields) => {
                let object: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(object))
            }
            Pe::Value(v) => format!("v:{v}"),
            Pe::Index(i) => format!("i:{i}"),
        }
    }

    pub fn decode(s: &str) -> Result<Pe, String> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| format!("missing colon: {s}"))?;
        match kind {
            "f" => Ok(Pe::Field(rest.to_owned())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(fields)) => Ok(Pe::Key(fields.into_iter().collect())),
                _ => Err(format!("invalid key element: {s}")),
            },
            "v" => serde_json::from_str(rest)
                .map(Pe::Value)
                .map_err(|e| format!("invalid value element {s}: {e}")),
            "i" => rest
                .parse()
                .map(Pe::Index)
                .map_err(|e| format!("invalid index element {s}: {e}")),
            _ => Err("unknown path element type".into()),
        }
    }
}

/// How structured-merge-diff prints a value inside a path (`value.ToString`).
fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

impl std::fmt::Display for Pe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pe::Field(name) => write!(f, ".{name}"),
            Pe::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            Pe::Value(v) => write!(f, "[={}]", value_to_string(v)),
            Pe::Index(i) => write!(f, "[{i}]"),
        }
    }
}

impl PartialEq for Pe {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pe {}
impl PartialOrd for Pe {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pe {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Pe::Field(a), Pe::Field(b)) => a.cmp(b),
            (Pe::Index(a), Pe::Index(b)) => a.cmp(b),
            (a, b) if a.rank() == b.rank() => a.encode().cmp(&b.encode()),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

pub type Path = Vec<Pe>;

/// A path as structured-merge-diff prints it: `.spec.template.spec.containers[name="x"].image`.
pub fn path_string(path: &[Pe]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of paths, as a tree: the members of this node and the sets below each child.
/// Children are never empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<Pe>,
    children: BTreeMap<Pe, Set>,
}

impl Set {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a [Pe]>) -> Self {
        let mut set = Set::new();
        for p in paths {
            set.insert(p);
        }
        set
    }

    pub fn insert(&mut self, path: &[Pe]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    #[cfg(test)]
    pub fn has(&self, path: &[Pe]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// The set below one element (empty when there is none).
    pub fn with_prefix(&self, pe: &Pe) -> Set {
        self.children.get(pe).cloned().unwrap_or_default()
    }

    pub fn is_member(&self, pe: &Pe) -> bool {
        self.members.contains(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Paths of `self` that are not paths of `other` (a member of `other` does not remove
    /// what lies below it in `self`).
    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// Like `difference`, but a member of `other` also removes everything below it.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let rest = match other.children.get(pe) {
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// Every member path, members of a node before its children, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Pe> {
        self.members.iter()
    }

    pub fn children(&self) -> impl Iterator<Item = (&Pe, &Set)> {
        self.children.iter()
    }

    pub(crate) fn add_member(&mut self, pe: Pe) {
        self.members.insert(pe);
    }

    pub(crate) fn set_child(&mut self, pe: Pe, child: Set) {
        if child.is_empty() {
            self.children.remove(&pe);
        } else {
            self.children.insert(pe, child);
        }
    }

    /// The `FieldsV1` form: `{"f:spec": {"f:replicas": {}}, "f:labels": {".": {}, ...}}`.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        for m in &self.members {
            if !self.children.contains_key(m) {
                out.insert(m.encode(), Value::Object(Map::new()));
            }
        }
        for (pe, child) in &self.children {
            out.insert(pe.encode(), Value::Object(child.emit(self.members.contains(pe))));
        }
        out
    }

    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(map) = v else {
            return Err("FieldsV1 is not an object".into());
        };
        let mut set = Set::new();
        for (key, inner) in map {
            if key == "." {
                continue;
            }
            let pe = Pe::decode(key)?;
            let Value::Object(inner_map) = inner else {
                return Err(format!("FieldsV1 entry {key} is not an object"));
            };
            if inner_map.is_empty() || inner_map.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let child = Set::from_fields_v1(inner)?;
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok(set)
    }
}

/// `f:a.f:b...` path of plain field names, for tables of ignored fields and tests.
pub fn fields(names: &[&str]) -> Path {
    names.iter().map(|n| Pe::Field((*n).to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> Pe {
        Pe::Key(vec![("name".into(), json!(name))])
    }

    #[test]
    fn fields_v1_round_trips_with_members_and_children() {
        let mut set = Set::new();
        set.insert(&fields(&["metadata", "labels", "app"]));
        set.insert(&fields(&["metadata", "labels"]));
        let mut containers = fields(&["spec", "containers"]);
        containers.push(key("web"));
        set.insert(&containers);
        let mut image = containers.clone();
        image.push(Pe::Field("image".into()));
        set.insert(&image);
        let wire = set.to_fields_v1();
        assert_eq!(
            wire,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}
            })
        );
        assert_eq!(Set::from_fields_v1(&wire).unwrap(), set);
        assert_eq!(path_string(&image), ".spec.containers[name=\"web\"].image");
    }

    #[test]
    fn set_algebra_follows_structured_merge_diff() {
        let a = Set::from_paths([
            fields(&["spec", "replicas"]).as_slice(),
            fields(&["spec", "selector"]).as_slice(),
        ]);
        let b = Set::from_paths([fields(&["spec", "replicas"]).as_slice()]);
        assert_eq!(a.difference(&b).paths(), vec![fields(&["spec", "selector"])]);
        assert_eq!(a.intersection(&b), b);
        assert_eq!(b.union(&a), a);
        let deep = Set::from_paths([fields(&["spec", "selector", "matchLabels"]).as_slice()]);
        let member = Set::from_paths([fields(&["spec", "selector"]).as_slice()]);
        assert_eq!(
            deep.difference(&member),
            deep,
            "difference keeps what is below a member"
        );
        assert!(deep.recursive_difference(&member).is_empty());
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn keys_with_several_fields_print_like_structured_merge_diff() {
        let pe = Pe::Key(vec![
            ("containerPort".into(), json!(80)),
            ("protocol".into(), json!("TCP")),
        ]);
        assert_eq!(pe.encode(), "k:{\"containerPort\":80,\"protocol\":\"TCP\"}");
        assert_eq!(pe.to_string(), "[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(Pe::decode(&pe.encode()).unwrap(), pe);
        assert_eq!(Pe::Value(json!("x")).encode(), "v:\"x\"");
    }
}
