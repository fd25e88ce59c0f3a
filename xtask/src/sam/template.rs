//! What `template.yml` says about its functions (logical id, the binary `rust-cargolambda`
//! builds, HTTP API routes), read with serde-saphyr; and the merge of per-function `sam build`
//! outputs into one built template.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// One function of the template, in template order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the workspace binary cargo-lambda builds.
    pub binary: String,
    /// `(method, path)` of every `HttpApi` event, for `sam local start-api`.
    pub http_routes: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Template {
    #[serde(rename = "Resources")]
    resources: Ordered<Value>,
}

/// A YAML mapping with its keys in file order (serde_json's map sorts them).
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

/// The functions `sam build` builds with cargo-lambda, in template order. CloudFormation's short
/// tags (`!Ref`, `!Sub`, ...) are read as their plain values; nothing here needs them.
pub fn functions(template_yaml: &str, origin: &Path) -> Result<Vec<Function>> {
    let template: Template = serde_saphyr::from_str(template_yaml)
        .with_context(|| format!("{} is not a template serde-saphyr can read", origin.display()))?;
    let mut functions = Vec::new();
    for (logical_id, resource) in template.resources.0 {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let metadata = &resource["Metadata"];
        if metadata["BuildMethod"] != "rust-cargolambda" {
            bail!(
                "{}: function {logical_id} is not built with `BuildMethod: rust-cargolambda`; `cargo xtask sam` builds only those",
                origin.display()
            );
        }
        let Some(binary) = metadata["BuildProperties"]["Binary"].as_str() else {
            bail!(
                "{}: function {logical_id} has no `Metadata.BuildProperties.Binary` naming its workspace binary",
                origin.display()
            );
        };
        let mut http_routes = Vec::new();
        if let Some(events) = resource["Properties"]["Events"].as_object() {
            for event in events.values() {
                if event["Type"] == "HttpApi"
                    && let (Some(method), Some(path)) = (
                        event["Properties"]["Method"].as_str(),
                        event["Properties"]["Path"].as_str(),
                    )
                {
                    http_routes.push((method.to_uppercase(), path.to_owned()));
                }
            }
        }
        http_routes.sort();
        functions.push(Function {
            logical_id,
            binary: binary.to_owned(),
            http_routes,
        });
    }
    if functions.is_empty() {
        bail!("{} declares no AWS::Serverless::Function", origin.display());
    }
    Ok(functions)
}

/// One built template for every function: SAM's output template of one per-function build (all
/// built templates are the same but for the `CodeUri` of the function they built), with each
/// built function's `CodeUri` pointing at its artifacts (relative to the merged template) and
/// every other function's at `unbuilt_code` (absolute). SAM writes plain YAML without tags;
/// the merge is written as JSON, which SAM reads as YAML.
pub fn merge_built(
    built_template_yaml: &str,
    built: &[(String, String)],
    unbuilt: &[String],
    unbuilt_code: &Path,
) -> Result<String> {
    let mut template: Value = serde_saphyr::from_str(built_template_yaml)
        .context("SAM's built template is not YAML serde-saphyr reads")?;
    let resources = template
        .get_mut("Resources")
        .and_then(Value::as_object_mut)
        .context("SAM's built template has no Resources")?;
    let mut set_code = |id: &str, code: String| -> Result<()> {
        let properties = resources
            .get_mut(id)
            .and_then(|r| r.get_mut("Properties"))
            .and_then(Value::as_object_mut)
            .with_context(|| format!("SAM's built template has no function {id}"))?;
        properties.insert("CodeUri".into(), Value::String(code));
        Ok(())
    };
    for (id, code) in built {
        set_code(id, code.clone())?;
    }
    for id in unbuilt {
        set_code(id, unbuilt_code.display().to_string())?;
    }
    Ok(serde_json::to_string_pretty(&template)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn reads_the_functions_of_template_yml_in_order() {
        let path = root().join("template.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        let functions = functions(&text, &path).unwrap();
        let ids: Vec<(&str, &str)> = functions
            .iter()
            .map(|f| (f.logical_id.as_str(), f.binary.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("PostConfirmationFunction", "post-confirmation"),
                ("ProvisionWorkerFunction", "provision-worker"),
                ("TeardownFunction", "teardown"),
                ("ReconcileFunction", "reconcile"),
                ("TenantCredentialsFunction", "tenant-credentials"),
                ("MailgunWebhookFunction", "mailgun-webhook"),
            ]
        );
        let api = functions
            .iter()
            .find(|f| f.binary == "tenant-credentials")
            .unwrap();
        assert_eq!(
            api.http_routes,
            [
                ("GET".to_owned(), "/tenant".to_owned()),
                ("POST".to_owned(), "/tenant/rotate".to_owned())
            ]
        );
        assert!(
            functions
                .iter()
                .filter(|f| f.binary != "tenant-credentials")
                .all(|f| f.http_routes.is_empty())
        );
    }

    #[test]
    fn a_function_without_a_binary_is_named_in_the_error() {
        let text = "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildMethod: rust-cargolambda\n    Properties:\n      CodeUri: !Ref Nowhere\n";
        let err = functions(text, Path::new("t.yml")).unwrap_err().to_string();
        assert!(
            err.contains("t.yml: function Fn has no `Metadata.BuildProperties.Binary`"),
            "{err}"
        );
    }

    #[test]
    fn merging_points_each_function_at_its_own_build() {
        let built = "Resources:\n  A:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: A\n      Handler: bootstrap\n  B:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: ../../src\n  Q:\n    Type: AWS::SQS::Queue\n";
        let merged = merge_built(
            built,
            &[("A".into(), "../functions/A/A".into())],
            &["B".into()],
            Path::new("/src"),
        )
        .unwrap();
        let merged: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(
            merged["Resources"]["A"]["Properties"]["CodeUri"],
            "../functions/A/A"
        );
        assert_eq!(merged["Resources"]["A"]["Properties"]["Handler"], "bootstrap");
        assert_eq!(merged["Resources"]["B"]["Properties"]["CodeUri"], "/src");
        assert_eq!(merged["Resources"]["Q"]["Type"], "AWS::SQS::Queue");
    }
}
