//! Field validation (`fieldValidation=Strict|Warn|Ignore`): unknown fields, found by decoding
//! into the typed `k8s-openapi` objects and comparing what comes back out, and duplicate
//! fields, found in the request's text.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::fieldpath::{Pe, path_string};
use crate::kinds::Kind;
use crate::schema::Ty;
use crate::typed::item_pe;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    Ignore,
    Warn,
    Strict,
}

impl Directive {
    /// The query parameter's value; the default (1.27+) is `Warn`.
    pub fn parse(value: Option<&str>) -> Result<Directive, String> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(Directive::Warn),
            "Ignore" => Ok(Directive::Ignore),
            "Strict" => Ok(Directive::Strict),
            other => Err(other.to_owned()),
        }
    }
}

/// A field the kind does not have, as the JSON decoder names it (`spec.foo`,
/// `spec.containers[0].foo`) and as structured-merge-diff names it
/// (`.spec.containers[name="x"].foo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub json_path: String,
    pub smd_path: String,
}

fn round_trip<T: DeserializeOwned + Serialize>(object: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// The fields of `object` that `kind` does not know, or why `object` cannot be decoded as one.
pub fn unknown_fields(kind: &Kind, object: &Value) -> Result<Vec<Unknown>, String> {
    let mut input = object.clone();
    if let Some(map) = input.as_object_mut() {
        map.insert("apiVersion".into(), kind.api_version.into());
        map.insert("kind".into(), kind.kind.into());
    }
    let output = match kind.plural {
        "deployments" => round_trip::<Deployment>(&input)?,
        "secrets" => round_trip::<Secret>(&input)?,
        "persistentvolumeclaims" => round_trip::<PersistentVolumeClaim>(&input)?,
        "namespaces" => round_trip::<Namespace>(&input)?,
        "storageclasses" => round_trip::<StorageClass>(&input)?,
        _ => return Ok(Vec::new()),
    };
    let mut found = Vec::new();
    diff(
        &input,
        &output,
        kind.ty,
        &mut String::new(),
        &mut Vec::new(),
        &mut found,
    );
    Ok(found)
}

fn diff(
    input: &Value,
    output: &Value,
    ty: &Ty,
    json: &mut String,
    smd: &mut Vec<Pe>,
    found: &mut Vec<Unknown>,
) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let saved = json.len();
                if !json.is_empty() {
                    json.push('.');
                }
                json.push_str(k);
                smd.push(Pe::Field(k.clone()));
                match o.get(k) {
                    // A null field the decoder dropped may be known or not; it sets nothing.
                    None if v.is_null() => {}
                    None => found.push(Unknown {
                        json_path: json.clone(),
                        smd_path: path_string(smd),
                    }),
                    Some(w) => diff(v, w, ty.field(k), json, smd, found),
                }
                smd.pop();
                json.truncate(saved);
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (v, w)) in i.iter().zip(o).enumerate() {
                let saved = json.len();
                json.push_str(&format!("[{n}]"));
                smd.push(match ty {
                    Ty::Keyed(..) => item_pe(ty, v).unwrap_or(Pe::Index(n)),
                    _ => Pe::Index(n),
                });
                diff(v, w, ty.item(), json, smd, found);
                smd.pop();
                json.truncate(saved);
            }
        }
        _ => {}
    }
}

/// Fields given twice in a JSON text, with the line of the second one.
pub fn duplicate_fields(text: &str) -> Vec<(String, usize)> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
        line: 1,
        found: Vec::new(),
    };
    s.value("");
    s.found
}

/// A minimal JSON walker (the text has already been parsed, so it is well formed).
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    found: Vec<(String, usize)>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.i += 1;
        }
    }

    fn string(&mut self) -> String {
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            match c {
                b'\\' => self.i += 2,
                b'"' => break,
                _ => self.i += 1,
            }
        }
        let raw = String::from_utf8_lossy(&self.b[start..self.i.min(self.b.len())]).into_owned();
        self.i += 1;
        serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or(raw)
    }

    fn value(&mut self, path: &str) {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut keys = std::collections::BTreeSet::new();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'"') => {}
                        Some(b'}') => {
                            self.i += 1;
                            return;
                        }
                        _ => return,
                    }
                    let key = self.string();
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    if !keys.insert(key) {
                        self.found.push((child.clone(), self.line));
                    }
                    self.ws();
                    if self.peek() != Some(b':') {
                        return;
                    }
                    self.i += 1;
                    self.value(&child);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut n = 0;
                loop {
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return;
                    }
                    self.value(&format!("{path}[{n}]"));
                    n += 1;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.i += 1;
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_with_both_path_styles() {
        let d = json!({
            "metadata": {"name": "web", "labels": {"anything": "goes"}},
            "spec": {
                "replicas": 1, "foo": 1,
                "template": {"spec": {"containers": [{"name": "web", "image": "x", "imagePullPolicyy": "Always"}], "enableServicelinks": false}}
            }
        });
        let found = unknown_fields(&kinds::DEPLOYMENTS, &d).unwrap();
        let json: Vec<&str> = found.iter().map(|u| u.json_path.as_str()).collect();
        assert_eq!(
            json,
            [
                "spec.foo",
                "spec.template.spec.containers[0].imagePullPolicyy",
                "spec.template.spec.enableServicelinks"
            ]
        );
        assert_eq!(
            found[1].smd_path,
            ".spec.template.spec.containers[name=\"web\"].imagePullPolicyy"
        );
        let secret = json!({"metadata": {"name": "s"}, "data": {"K": "dg=="}, "stringData": {"x": "y"}, "type": "Opaque"});
        assert!(unknown_fields(&kinds::SECRETS, &secret).unwrap().is_empty());
        let bad = json!({"spec": {"replicas": "two"}});
        assert!(unknown_fields(&kinds::DEPLOYMENTS, &bad).is_err());
    }

    #[test]
    fn duplicate_fields_are_found_with_their_line() {
        let text = "{\"spec\": {\"replicas\": 1,\n \"replicas\": 2, \"list\": [{\"a\": 1, \"a\": 2}]}}";
        assert_eq!(
            duplicate_fields(text),
            [
                ("spec.replicas".to_string(), 2),
                ("spec.list[0].a".to_string(), 2)
            ]
        );
        assert!(duplicate_fields("{\"a\": {\"b\": 1}, \"c\": {\"b\": 2}}").is_empty());
    }
}
