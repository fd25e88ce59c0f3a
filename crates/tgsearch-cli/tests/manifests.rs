//! Every manifest an operator applies (`manifests/cluster/`, `manifests/broker/`,
//! `manifests/secrets/`) and the objects `tgsearch render` prints (what provisioning applies)
//! validate strictly against the Kubernetes 1.31-1.34 schemas (kubernetes-validate) and, for the
//! custom resources kubernetes-validate has no schema for, against their CRDs' schemas
//! (`validate_custom_resources.py`); a security scanner finds nothing that is not explained in
//! the file; and the folders are laid out so that `kubectl apply -f <folder>` is safe.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The folders an operator applies, in the README's order.
const FOLDERS: [&str; 3] = ["cluster", "broker", "secrets"];
const KUBERNETES_VERSIONS: [&str; 4] = ["1.31.0", "1.32.0", "1.33.0", "1.34.0"];

fn repo_manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

fn lint_tool(name: &str) -> PathBuf {
    let tool = testkit::stack::k8s_lint_bin().join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `cargo xtask stack up --test-tools` (or `cargo xtask test`), which installs it",
        tool.display()
    );
    tool
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// The rendered objects of a fresh tenant plus every operator manifest, in one folder.
fn manifests() -> PathBuf {
    let tenant = testkit::fresh_tenant();
    let dir = std::env::temp_dir().join(format!("tgsearch-manifests-{tenant}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tgsearch"))
        .args(["render", "--sub", tenant.as_str()])
        .env_clear()
        .env("BACKEND_IMAGE", "ghcr.io/tgsearch/core:1.4")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("tenant.yaml"), &out.stdout).unwrap();
    for folder in FOLDERS {
        for file in yaml_files(&repo_manifests().join(folder)) {
            let name = format!("{folder}-{}", file.file_name().unwrap().to_string_lossy());
            std::fs::copy(&file, dir.join(name)).unwrap();
        }
    }
    dir
}

/// (apiVersion, kind) of every custom-resource schema in `tests/crd-schemas/`.
fn custom_resource_schemas() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crd-schemas");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let schema: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (
                schema["apiVersion"].as_str().unwrap().to_owned(),
                schema["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn manifests_validate_strictly_against_kubernetes_1_31_to_1_34() {
    let dir = manifests();
    let files = yaml_files(&dir);
    let custom = custom_resource_schemas();
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(lint_tool("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        assert!(out.status.success(), "Kubernetes {version}:\n{}", report(&out));
        // kubernetes-validate only warns about kinds it has no schema for: each must be a custom
        // resource that the next test checks against its CRD.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let unchecked = line
                .split_once("Couldn't find schema for kind ")
                .and_then(|(_, rest)| rest.split_once(" with api version "))
                .and_then(|(kind, rest)| {
                    rest.split_once(" for kubernetes version")
                        .map(|(api, _)| (api.to_owned(), kind.to_owned()))
                });
            match unchecked {
                Some(key) => assert!(
                    custom.contains(&key),
                    "Kubernetes {version}: nothing validates {key:?} ({line})"
                ),
                None => panic!("Kubernetes {version}: unexpected output: {line}"),
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn validate_custom_resources(files: &[PathBuf]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_custom_resources.py");
    Command::new(lint_tool("python"))
        .arg(script)
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn custom_resources_validate_strictly_against_their_crds() {
    let dir = manifests();
    let out = validate_custom_resources(&yaml_files(&dir));
    assert!(out.status.success(), "{}", report(&out));
    let checked: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .filter_map(|l| l.rsplit_once(" against ").map(|(_, kind)| kind.to_owned()))
        .collect();
    for kind in [
        "rabbitmq.com/v1beta1 RabbitmqCluster",
        "cert-manager.io/v1 Issuer",
        "cert-manager.io/v1 Certificate",
        "elbv2.k8s.aws/v1beta1 TargetGroupBinding",
        "external-secrets.io/v1 SecretStore",
        "external-secrets.io/v1 ExternalSecret",
    ] {
        assert!(checked.contains(kind), "no {kind} was checked:\n{}", report(&out));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_custom_resource_with_an_unknown_field_is_refused() {
    let dir = std::env::temp_dir().join(format!("tgsearch-bad-cr-{}", testkit::fresh_tenant()));
    std::fs::create_dir_all(&dir).unwrap();
    let broker = std::fs::read_to_string(repo_manifests().join("broker/rabbitmq.yaml")).unwrap();
    let typo = broker.replacen("  replicas: 3", "  replica: 3", 1);
    assert_ne!(
        typo, broker,
        "manifests/broker/rabbitmq.yaml no longer sets `replicas: 3`"
    );
    let file = dir.join("rabbitmq.yaml");
    std::fs::write(&file, typo).unwrap();
    let out = validate_custom_resources(&[file]);
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        !out.status.success(),
        "a misspelt field passed:\n{}",
        report(&out)
    );
    assert!(
        report(&out).contains("'replica' was unexpected"),
        "the error does not name the field:\n{}",
        report(&out)
    );
}

#[test]
fn the_security_scanner_finds_nothing_unexplained() {
    let dir = manifests();
    let out = Command::new(lint_tool("checkov"))
        .arg("-d")
        .arg(&dir)
        .args(["--framework", "kubernetes", "--skip-download", "--output", "json"])
        .env("HOME", &dir)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["resource"]))
        .collect();
    assert!(failed.is_empty(), "unexplained findings:\n{}", failed.join("\n"));
    let passed = results["passed_checks"].as_array().unwrap().len();
    assert!(passed > 50, "only {passed} checks ran");
    let mut skipped: Vec<&str> = results["skipped_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check_id"].as_str().unwrap())
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        ["CKV_K8S_35", "CKV_K8S_43"],
        "every skip is explained in the template"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `kubectl apply -f manifests/<folder>/` applies files in name order: a folder that creates a
/// namespace must do so in its first file, and everything in it stays in the namespaces the
/// README's order has created by then. Nothing an operator applies sits beside the backend
/// template (the provisioner renders it; applied as is, it would make a broken Deployment).
#[test]
fn each_folder_creates_its_namespace_first_and_the_template_stands_alone() {
    let top: Vec<String> = yaml_files(&repo_manifests())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["backend-deployment.yaml"]);
    // The admission policy of manifests/cluster/ refuses the template's own name.
    let template = std::fs::read_to_string(repo_manifests().join("backend-deployment.yaml")).unwrap();
    let name = template
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .expect("the backend template has no metadata.name");
    let guard = std::fs::read_to_string(repo_manifests().join("cluster/template-guard.yaml")).unwrap();
    assert!(
        guard.contains(&format!("object.metadata.name != '{name}'")),
        "manifests/cluster/template-guard.yaml does not refuse the template's name `{name}`"
    );
    // (folder, the namespace it creates, the namespace its objects live in)
    for (folder, creates, lives_in) in [
        ("cluster", Some("tgsearch"), "tgsearch"),
        ("broker", Some("tgsearch-broker"), "tgsearch-broker"),
        ("secrets", None, "tgsearch"),
    ] {
        let files = yaml_files(&repo_manifests().join(folder));
        assert!(!files.is_empty(), "manifests/{folder}/ is empty");
        if let Some(namespace) = creates {
            let first = std::fs::read_to_string(&files[0]).unwrap();
            assert!(
                first.contains("kind: Namespace") && first.contains(&format!("name: {namespace}")),
                "{} sorts first in manifests/{folder}/ but does not create namespace {namespace}",
                files[0].display()
            );
        }
        for file in &files {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                if let Some(namespace) = line.trim().strip_prefix("namespace: ") {
                    assert_eq!(namespace, lives_in, "{}: {line}", file.display());
                }
            }
        }
    }
}
