//! `template.yml` as CloudFormation reads it, for the tests that check what it grants and shows.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The SAM template's path.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yml")
}

/// `template.yml` with short-form intrinsics (`!Ref`, `!Sub`) in their `Fn::` form, through
/// cfn-lint's own decoder from the stack's venv. Panics saying what to install when it is missing.
pub fn json() -> serde_json::Value {
    let python = crate::stack::venv_bin().join("python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask stack up --test-tools` (or `cargo xtask test`), which installs cfn-lint",
        python.display()
    );
    let out = Command::new(python)
        .arg("-c")
        .arg("import json, sys\nfrom cfnlint.decode import cfn_yaml\nprint(json.dumps(cfn_yaml.load(sys.argv[1])))")
        .arg(path())
        .output()
        .expect("the stack's python runs");
    assert!(
        out.status.success(),
        "cfn-lint's decoder failed on template.yml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the decoder prints JSON")
}
