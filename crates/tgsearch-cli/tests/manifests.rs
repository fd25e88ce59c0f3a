//! The manifests `tgsearch render` prints (what provisioning applies) and the operator's
//! manifests validate against the Kubernetes 1.3x schemas in strict mode, and pass a security
//! scanner with no finding that is not explained in the template.

use std::path::{Path, PathBuf};
use std::process::Command;

fn lint_tool(name: &str) -> PathBuf {
    let tool = testkit::stack::k8s_lint_bin().join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `cargo xtask stack up`, which installs it",
        tool.display()
    );
    tool
}

/// The rendered objects of a fresh tenant plus the operator manifests, in one folder.
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
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests");
    for name in [
        "namespace.yaml",
        "provisioner-rbac.yaml",
        "aws-auth-provisioner.yaml",
    ] {
        std::fs::copy(repo.join(name), dir.join(name)).unwrap();
    }
    dir
}

#[test]
fn manifests_validate_strictly_against_kubernetes_1_3x() {
    let dir = manifests();
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for version in ["1.31.0", "1.33.0", "1.34.0"] {
        let out = Command::new(lint_tool("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "Kubernetes {version}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
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
