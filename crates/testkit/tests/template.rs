//! The deployment templates as a reviewer checks them: `template.yml` passes `sam validate
//! --lint`, every template (`template.yml`, `cloudformation/*.yml`) passes cfn-lint and checkov
//! with no failed check and a written reason on every skip, and every function the SAM template
//! builds is a binary of this workspace. The tools come from the stack's venvs (`cargo xtask
//! stack up --test-tools` and `cargo xtask test` install them); nothing here needs AWS credentials or the network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `template.yml` and every CloudFormation template under `cloudformation/`.
fn templates() -> Vec<PathBuf> {
    let mut all = vec![root().join("template.yml")];
    let mut stacks: Vec<PathBuf> = std::fs::read_dir(root().join("cloudformation"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    stacks.sort();
    assert!(
        stacks.len() >= 2,
        "expected the network and cluster stacks under cloudformation/, found {stacks:?}"
    );
    all.extend(stacks);
    all
}

fn tool(venv_bin: PathBuf, name: &str) -> PathBuf {
    let tool = venv_bin.join(name);
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

#[test]
fn the_sam_template_passes_sam_validate_lint() {
    let home = std::env::temp_dir().join(format!("tgsearch-sam-{}", testkit::fresh_tenant()));
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(tool(testkit::stack::dir().join("venv-sam/bin"), "sam"))
        .args(["validate", "--lint", "--template-file"])
        .arg(root().join("template.yml"))
        .env("HOME", &home)
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(home);
    assert!(out.status.success(), "sam validate --lint:\n{}", report(&out));
    assert!(
        report(&out).contains("is a valid SAM Template"),
        "sam validate said:\n{}",
        report(&out)
    );
}

#[test]
fn every_template_passes_cfn_lint() {
    let cfn_lint = tool(testkit::stack::venv_bin(), "cfn-lint");
    for template in templates() {
        let out = Command::new(&cfn_lint).arg(&template).output().unwrap();
        assert!(
            out.status.success(),
            "cfn-lint found problems in {}:\n{}",
            template.display(),
            report(&out)
        );
    }
}

#[test]
fn the_security_scanner_finds_nothing_unexplained_in_the_templates() {
    let home = std::env::temp_dir().join(format!("tgsearch-checkov-{}", testkit::fresh_tenant()));
    std::fs::create_dir_all(&home).unwrap();
    let mut checkov = Command::new(tool(testkit::stack::k8s_lint_bin(), "checkov"));
    for template in templates() {
        checkov.arg("--file").arg(template);
    }
    let out = checkov
        .args([
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
        ])
        .env("HOME", &home)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(home);
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
        .map(|c| {
            format!(
                "{} {} ({}, {})",
                c["check_id"], c["check_name"], c["resource"], c["file_path"]
            )
        })
        .collect();
    assert!(failed.is_empty(), "unexplained findings:\n{}", failed.join("\n"));
    let passed = results["passed_checks"].as_array().unwrap().len();
    assert!(passed > 100, "only {passed} checks ran over {:?}", templates());
    for skip in results["skipped_checks"].as_array().unwrap() {
        let reason = skip["check_result"]["suppress_comment"].as_str().unwrap_or("");
        assert!(
            reason.split_whitespace().count() >= 8,
            "{} on {} is skipped without a reason in the template (Metadata.checkov.skip[].comment): {reason:?}",
            skip["check_id"],
            skip["resource"]
        );
    }
}

#[test]
fn every_function_in_the_template_is_a_workspace_binary() {
    let template = std::fs::read_to_string(root().join("template.yml")).unwrap();
    let binaries: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Binary: "))
        .collect();
    assert_eq!(
        binaries,
        [
            "post-confirmation",
            "provision-worker",
            "teardown",
            "reconcile",
            "tenant-credentials",
            "mailgun-webhook"
        ]
    );
    for binary in binaries {
        let main = root().join("crates").join(binary).join("src/main.rs");
        assert!(
            main.exists(),
            "template builds `{binary}`, but {} does not exist",
            main.display()
        );
    }
}

/// The names declared in one top-level section (`Parameters:`, `Outputs:`) of a template.
fn section_keys(template: &str, section: &str) -> Vec<String> {
    template
        .lines()
        .skip_while(|l| *l != format!("{section}:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#'))
        .filter_map(|l| l.strip_suffix(':'))
        .map(str::to_owned)
        .collect()
}

/// An operator deploying from the README meets every parameter and output of every template in
/// its "Deploying" walkthrough, each by name.
#[test]
fn the_walkthrough_traces_every_parameter_and_output() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let deploying = readme
        .split_once("\n## Deploying\n")
        .map(|(_, rest)| rest.split_once("\n## ").map_or(rest, |(section, _)| section))
        .expect("README.md has no \"## Deploying\" section");
    for template in templates() {
        let text = std::fs::read_to_string(&template).unwrap();
        for section in ["Parameters", "Outputs"] {
            let keys = section_keys(&text, section);
            assert!(!keys.is_empty(), "{} declares no {section}", template.display());
            let missing: Vec<&String> = keys
                .iter()
                .filter(|key| {
                    !deploying.contains(&format!("`{key}")) && !deploying.contains(&format!("-{key}`"))
                })
                .collect();
            assert!(
                missing.is_empty(),
                "README \"Deploying\" never names these {section} of {}: {missing:?}",
                template.display()
            );
        }
    }
}
