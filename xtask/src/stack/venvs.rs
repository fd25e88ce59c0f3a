//! The stack's Python tools, each set in a venv of its own (never the system Python).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::workspace_root;
use crate::procs;

/// The stack's Python venvs: name, requirements file, a program that proves it is installed.
/// The first serves the stack itself (moto, cargo-lambda); the others only tests.
const VENVS: &[(&str, &str, &str)] = &[
    ("venv", "xtask/stack-requirements.txt", "moto_server"),
    ("venv-awscli", "xtask/awscli-requirements.txt", "aws"),
    ("venv-k8s-lint", "xtask/k8s-lint-requirements.txt", "checkov"),
    ("venv-sam", "xtask/sam-requirements.txt", "sam"),
];

pub(super) fn ensure_venvs(dir: &Path, test_tools: bool, say: &impl Fn(&str)) -> Result<()> {
    let wanted = if test_tools { VENVS } else { &VENVS[..1] };
    for (name, requirements, program) in wanted {
        let venv = dir.join(name);
        let requirements = workspace_root().join(requirements);
        let stamp = venv.join(".requirements");
        let wanted = fs::read_to_string(&requirements)?;
        if venv.join("bin").join(program).exists()
            && fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
        {
            continue;
        }
        say(&format!(
            "installing {} into the stack's {name} (once)",
            requirements
                .strip_prefix(workspace_root())
                .unwrap_or(&requirements)
                .display()
        ));
        procs::run_logged(
            dir,
            "pip",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )
        .context("python3 with the venv module is needed: apt-get install python3-venv")?;
        procs::run_logged(
            dir,
            "pip",
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
        )?;
        fs::write(stamp, wanted)?;
    }
    Ok(())
}
