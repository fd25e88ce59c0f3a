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
    if port_open(KUBE_PORT)
        && !rebuilt
        && running.as_deref() == Some(profile)
        && stack::kube_ca_file().exists()
    {
        return Ok(false);
    }
    procs::stop(dir, "kube")?;
    if port_open(KUBE_PORT) {
        bail!("port {KUBE_PORT} is taken by another process (a local cluster?); stop it and run again");
    }
    say(&format!("starting the Kubernetes API stand-in ({profile} build)"));
    let _ = fs::remove_file(stack::kube_ca_file());
    let mut standin = Command::new(&binary);
    standin
        .args([
            "--listen",
            &format!("127.0.0.1:{KUBE_PORT}"),
            "--cluster-name",
            CLUSTER_NAME,
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
        port_open(KUBE_PORT) && stack::kube_ca_file().exists()
    })?;
    Ok(true)
}

/// A kubeconfig for plain kubectl, whose user runs `tgsearch eks-token` exactly as an EKS
/// kubeconfig runs `aws eks get-token`, with an admin credential pair of its own (a
/// `system:masters` user on the stand-in), not the stack's.
pub(super) fn write_kubeconfig() -> Result<()> {
    let tgsearch = target_dir().join("debug/tgsearch");
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CLUSTER_NAME}
  cluster:
    server: https://127.0.0.1:{KUBE_PORT}
    certificate-authority: {ca}
contexts:
- name: {CLUSTER_NAME}
  context:
    cluster: {CLUSTER_NAME}
    user: {CLUSTER_NAME}
    namespace: {NAMESPACE}
current-context: {CLUSTER_NAME}
users:
- name: {CLUSTER_NAME}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {tgsearch}
      args: [eks-token, --cluster-name, {CLUSTER_NAME}, --region, {REGION}]
      env:
      - name: AWS_ACCESS_KEY_ID
        value: {KUBE_ADMIN_ACCESS_KEY_ID}
      - name: AWS_SECRET_ACCESS_KEY
        value: {KUBE_ADMIN_SECRET_ACCESS_KEY}
      interactiveMode: Never
",
        ca = stack::kube_ca_file().display(),
        tgsearch = tgsearch.display(),
    );
    fs::write(stack::kubeconfig_file(), kubeconfig)?;
    Ok(())
}
