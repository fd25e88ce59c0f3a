//! The Kubernetes API stand-in and the kubeconfig that points kubectl at it.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use testkit::stack::{
    self, CLUSTER_NAME, KUBE_ADMIN_ACCESS_KEY_ID, KUBE_ADMIN_SECRET_ACCESS_KEY, KUBE_ADMIN_USER, KUBE_PORT,
    NAMESPACE, REGION,
};

use super::{target_dir, with_env, workspace_root};
use crate::procs::{self, port_open};

/// Starts the Kubernetes API stand-in unless it runs (its debug build, or its release build,
/// which the bench builds). Returns `true` when it started (with a new CA).
pub(super) fn ensure_kube_standin(dir: &Path, say: &impl Fn(&str), release: bool) -> Result<bool> {
    ensure_kube_standin_at(dir, KUBE_PORT, CLUSTER_NAME, say, release)
}

/// [`ensure_kube_standin`] with its state (pid, CA) in `dir`, on `port`, for the EKS cluster
/// `cluster_name` (a second cell's cluster).
pub(super) fn ensure_kube_standin_at(
    dir: &Path,
    port: u16,
    cluster_name: &str,
    say: &impl Fn(&str),
    release: bool,
) -> Result<bool> {
    let ca_file = dir.join("kube/ca.pem");
    let profile = if release { "release" } else { "debug" };
    if release {
        let mut build = Command::new("cargo");
        build.current_dir(workspace_root()).args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "kube-standin",
        ]);
        procs::run(&mut build)?;
    }
    let binary = target_dir().join(profile).join("kube-standin");
    let started = fs::metadata(dir.join("kube.pid")).and_then(|m| m.modified()).ok();
    let built = fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let rebuilt = matches!((built, started), (Some(b), Some(s)) if b > s);
    let running = fs::read_to_string(dir.join("kube.profile")).ok();
    if port_open(port) && !rebuilt && running.as_deref() == Some(profile) && ca_file.exists() {
        return Ok(false);
    }
    procs::stop(dir, "kube")?;
    if port_open(port) {
        bail!("port {port} is taken by another process (a local cluster?); stop it and run again");
    }
    say(&format!(
        "starting the Kubernetes API stand-in for {cluster_name} on {port} ({profile} build)"
    ));
    let _ = fs::remove_file(&ca_file);
    let mut standin = Command::new(&binary);
    standin
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cluster-name",
            cluster_name,
        ])
        .arg("--dir")
        .arg(dir.join("kube"))
        // The provisioner's Role, as an operator applies it; the stack's AWS credentials are
        // the stand-in's default identity, in the group that Role is bound to.
        .arg("--rbac")
        .arg(workspace_root().join("manifests/cluster/provisioner-rbac.yaml"));
    with_env(&mut standin);
    // kubectl's own credential pair, a cluster admin (passed in the environment, not argv).
    standin.env(
        "KUBE_STANDIN_IDENTITIES",
        format!("{KUBE_ADMIN_ACCESS_KEY_ID}:{KUBE_ADMIN_SECRET_ACCESS_KEY}:{KUBE_ADMIN_USER}|system:masters"),
    );
    procs::spawn(dir, "kube", &mut standin)?;
    fs::write(dir.join("kube.profile"), profile)?;
    procs::wait_for(dir, "kube", Duration::from_secs(30), || {
        port_open(port) && ca_file.exists()
    })?;
    Ok(true)
}

/// A kubeconfig for plain kubectl, whose user runs `tgsearch eks-token` exactly as an EKS
/// kubeconfig runs `aws eks get-token`, with an admin credential pair of its own (a
/// `system:masters` user on the stand-in), not the stack's.
pub(super) fn write_kubeconfig() -> Result<()> {
    let tgsearch = target_dir().join("debug/tgsearch");
    let mut clusters = String::new();
    let mut contexts = String::new();
    let mut users = String::new();
    // One context per cell's cluster, named after it; the first (cell `a`) is current.
    for cell in stack::local_cells() {
        let name = cell.cluster_name;
        clusters.push_str(&format!(
            "- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n",
            server = cell.kube_endpoint(),
            ca = cell.kube_ca_file().display(),
        ));
        contexts.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: {NAMESPACE}\n"
        ));
        users.push_str(&format!(
            "- name: {name}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {tgsearch}
      args: [eks-token, --cluster-name, {name}, --region, {REGION}]
      env:
      - name: AWS_ACCESS_KEY_ID
        value: {KUBE_ADMIN_ACCESS_KEY_ID}
      - name: AWS_SECRET_ACCESS_KEY
        value: {KUBE_ADMIN_SECRET_ACCESS_KEY}
      interactiveMode: Never
",
            tgsearch = tgsearch.display(),
        ));
    }
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{contexts}current-context: {CLUSTER_NAME}\nusers:\n{users}"
    );
    fs::write(stack::kubeconfig_file(), kubeconfig)?;
    Ok(())
}
