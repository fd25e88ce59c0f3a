//! `template.yml` and `cloudformation/*.yml` are valid for CloudFormation and SAM (cfn-lint, from
//! the stack's venv), and every function the SAM template builds is a binary of this workspace.

use std::path::Path;
use std::process::Command;

#[test]
fn the_templates_pass_cfn_lint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfn_lint = testkit::stack::venv_bin().join("cfn-lint");
    assert!(
        cfn_lint.exists(),
        "{} is missing: run `cargo xtask stack up`, which installs it",
        cfn_lint.display()
    );
    let out = Command::new(&cfn_lint)
        .arg(root.join("template.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_function_in_the_template_is_a_workspace_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = std::fs::read_to_string(root.join("template.yml")).unwrap();
    let binaries: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Binary: "))
        .collect();
    assert_eq!(
        binaries,
        ["post-confirmation", "teardown", "reconcile", "mailgun-webhook"]
    );
    for binary in binaries {
        let main = root.join("crates").join(binary).join("src/main.rs");
        assert!(
            main.exists(),
            "template builds `{binary}`, but {} does not exist",
            main.display()
        );
    }
}
