//! `sam build` of every function of `template.yml` whose binary is in this workspace, each into
//! its own build directory (SAM wipes its build directory whenever it builds a single function),
//! merged into one built template at `.aws-sam/build/template.yaml`. Compiled code is reused
//! through cargo's target directory (`CARGO_TARGET_DIR`, shared by every function); SAM's own
//! `--cached` would only skip cargo's no-op check, at the price of hashing the workspace.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::template::{self, Function};
use super::{Arch, sam_command};
use crate::stack::workspace_root;

/// What the last `cargo xtask sam build` left in `.aws-sam/build`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Built {
    pub template: PathBuf,
    pub arch: Arch,
    pub release: bool,
    /// Logical ids of the functions built, in template order.
    pub functions: Vec<String>,
    /// Functions of the template whose binary is not in the workspace (yet).
    pub missing: Vec<String>,
}

fn build_root() -> PathBuf {
    workspace_root().join(".aws-sam")
}

fn manifest() -> PathBuf {
    build_root().join("build/tgsearch-built.json")
}

/// The template's functions, in template order.
pub fn template_functions() -> Result<Vec<Function>> {
    let path = workspace_root().join("template.yml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    template::functions(&text, &path)
}

/// The last build, or what to run when there is none.
pub fn last() -> Result<Built> {
    let text = fs::read(manifest()).context("nothing is built yet: run `cargo xtask sam build`")?;
    let built: Built = serde_json::from_slice(&text)
        .context("`.aws-sam/build` is from another tool: run `cargo xtask sam build`")?;
    if !built.template.exists() {
        bail!(
            "{} is gone: run `cargo xtask sam build`",
            built.template.display()
        );
    }
    Ok(built)
}

/// Binary targets of the workspace's packages, from `cargo metadata`.
fn workspace_binaries() -> Result<BTreeSet<String>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut binaries = BTreeSet::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            if target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
                && let Some(name) = target["name"].as_str()
            {
                binaries.insert(name.to_owned());
            }
        }
    }
    Ok(binaries)
}

pub fn build(arch: Arch, release: bool, say: &impl Fn(&str)) -> Result<Built> {
    let functions = template_functions()?;
    let binaries = workspace_binaries()?;
    let (present, missing): (Vec<&Function>, Vec<&Function>) =
        functions.iter().partition(|f| binaries.contains(&f.binary));
    for f in &missing {
        say(&format!(
            "skipping {} (binary `{}` is not in this workspace yet)",
            f.logical_id, f.binary
        ));
    }
    if present.is_empty() {
        bail!("none of template.yml's functions has its binary in this workspace");
    }
    let per_function = build_root().join("functions");
    fs::create_dir_all(&per_function)?;
    for f in &present {
        let started = Instant::now();
        let dir = per_function.join(&f.logical_id);
        let log_path = per_function.join(format!("{}.log", f.logical_id));
        let log = fs::File::create(&log_path)?;
        let mut sam = sam_command();
        sam.args([
            "build",
            &f.logical_id,
            "--template-file",
            "template.yml",
            "--build-dir",
        ])
        .arg(&dir)
        .args(["--parameter-overrides", &format!("Architecture={}", arch.sam())])
        .stdout(log.try_clone()?)
        .stderr(log);
        // cargo-lambda builds into CARGO_TARGET_DIR (shared with every other build) unless
        // TGSEARCH_SAM_TARGET_DIR names one of their own.
        if let Some(dir) = std::env::var_os("TGSEARCH_SAM_TARGET_DIR") {
            sam.env("CARGO_TARGET_DIR", dir);
        }
        if release {
            sam.env_remove("SAM_BUILD_MODE");
        } else {
            sam.env("SAM_BUILD_MODE", "debug");
        }
        let status = sam.status().context("cannot run sam build")?;
        if !status.success() {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            bail!(
                "sam build {} failed ({status}); last lines of {}:\n{}",
                f.logical_id,
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        say(&format!(
            "built {} (`{}`, {}, {}) in {:.1}s",
            f.logical_id,
            f.binary,
            arch.sam(),
            if release { "release" } else { "debug" },
            started.elapsed().as_secs_f64()
        ));
    }
    let first = per_function.join(&present[0].logical_id).join("template.yaml");
    let built_yaml = fs::read_to_string(&first).with_context(|| format!("reading {}", first.display()))?;
    let merged = template::merge_built(
        &built_yaml,
        &present
            .iter()
            .map(|f| {
                (
                    f.logical_id.clone(),
                    format!("../functions/{0}/{0}", f.logical_id),
                )
            })
            .collect::<Vec<_>>(),
        &missing.iter().map(|f| f.logical_id.clone()).collect::<Vec<_>>(),
        &workspace_root(),
    )?;
    let out = build_root().join("build");
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    fs::create_dir_all(&out)?;
    let template = out.join("template.yaml");
    fs::write(&template, merged)?;
    let built = Built {
        template,
        arch,
        release,
        functions: present.iter().map(|f| f.logical_id.clone()).collect(),
        missing: missing.iter().map(|f| f.logical_id.clone()).collect(),
    };
    fs::write(manifest(), serde_json::to_vec_pretty(&built)?)?;
    Ok(built)
}

impl Built {
    /// Fails unless `function` was built, naming what was.
    pub fn require(&self, function: &str) -> Result<()> {
        if self.functions.iter().any(|f| f == function) {
            return Ok(());
        }
        if self.missing.iter().any(|f| f == function) {
            bail!("{function} was not built: its binary is not in this workspace");
        }
        bail!(
            "template.yml has no built function {function}; built: {}",
            self.functions.join(", ")
        )
    }
}
