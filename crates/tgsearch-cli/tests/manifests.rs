//! Every manifest an operator applies (`manifests/cluster/`, `manifests/system/`,
//! `manifests/broker/`, `manifests/broker-targets/`, `manifests/secrets/`) and the objects
//! `tgsearch render` prints (what provisioning applies) validate strictly against the Kubernetes
//! 1.35 and 1.36 schemas (the versions in EKS standard support; kubernetes-validate) and, for the
//! custom resources kubernetes-validate has no schema for, against their CRDs' schemas
//! (`validate_custom_resources.py`); a security scanner finds nothing that is not explained in
//! the file; the folders are laid out so that `kubectl apply -f <folder>` is safe; and the
//! NetworkPolicies, evaluated here, let a tenant's pod reach its broker's AMQPS port, DNS and
//! public HTTPS, and nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The folders an operator applies, in the README's order (`broker-targets/` with the cluster
/// stack's target group ARNs filled in).
const FOLDERS: [&str; 5] = ["cluster", "system", "broker", "broker-targets", "secrets"];
const KUBERNETES_VERSIONS: [&str; 2] = ["1.35.0", "1.36.0"];

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
fn manifests_validate_strictly_against_kubernetes_1_35_and_1_36() {
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
        "secrets-store.csi.x-k8s.io/v1 SecretProviderClass",
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

/// `kubectl apply -f manifests/<folder>/` applies files in name order: a folder that creates
/// namespaces must do so in its first file, and everything in it stays in the namespaces the
/// README's order has created by then (or the cluster's own `kube-system`). Nothing an operator
/// applies sits beside the backend template (the provisioner renders it; applied as is, it would
/// make a broken Deployment). `broker-targets/` is applied through `sed` with the target group
/// ARNs (README step 5): its placeholders are all it may hold of an account.
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
    // (folder, the namespaces it creates, the namespaces its objects live in)
    let layout: [(&str, &[&str], &[&str]); 5] = [
        ("cluster", &["tgsearch"], &["tgsearch"]),
        (
            "system",
            &["cert-manager", "rabbitmq-system"],
            &["kube-system", "cert-manager", "rabbitmq-system"],
        ),
        ("broker", &["tgsearch-broker"], &["tgsearch-broker"]),
        ("broker-targets", &[], &["tgsearch-broker"]),
        ("secrets", &[], &["tgsearch"]),
    ];
    assert_eq!(layout.map(|(folder, _, _)| folder), FOLDERS);
    for (folder, creates, lives_in) in layout {
        let files = yaml_files(&repo_manifests().join(folder));
        assert!(!files.is_empty(), "manifests/{folder}/ is empty");
        for namespace in creates {
            let first = std::fs::read_to_string(&files[0]).unwrap();
            assert!(
                first.contains("kind: Namespace") && first.contains(&format!("name: {namespace}\n")),
                "{} sorts first in manifests/{folder}/ but does not create namespace {namespace}",
                files[0].display()
            );
        }
        for file in &files {
            for line in std::fs::read_to_string(file).unwrap().lines() {
                if let Some(namespace) = line.trim().strip_prefix("namespace: ") {
                    assert!(lives_in.contains(&namespace), "{}: {line}", file.display());
                }
            }
        }
    }
    let targets: String =
        std::fs::read_to_string(repo_manifests().join("broker-targets/target-group-bindings.yaml"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
    assert!(
        !targets.contains("arn:aws") && !targets.contains("targetGroupName"),
        "manifests/broker-targets/ names its target groups by ARN, filled in from the cluster stack's outputs"
    );
    for placeholder in [
        "BROKER_AMQPS_TARGET_GROUP_ARN",
        "BROKER_MANAGEMENT_TARGET_GROUP_ARN",
    ] {
        assert!(
            targets.contains(&format!("targetGroupARN: {placeholder}")),
            "manifests/broker-targets/target-group-bindings.yaml lost its placeholder {placeholder}"
        );
    }
}

// --- What the NetworkPolicies allow, evaluated -----------------------------------------------
// The VPC CNI enforces NetworkPolicy in strict mode (cloudformation/eks-cluster.yml): a pod that no
// policy selects for a direction has nothing allowed in it, and traffic between two pods needs the
// sender's egress and the receiver's ingress. The evaluation below follows the NetworkPolicy API
// (podSelector, namespaceSelector, ipBlock with except, ports with protocol and endPort), applying
// ipBlocks to pod addresses too (as the VPC CNI does: pods have VPC addresses).

/// Every NetworkPolicy an operator applies, as JSON (YAML read by the lint venv's Python).
fn network_policies() -> Vec<serde_json::Value> {
    let mut files = Vec::new();
    for folder in FOLDERS {
        files.extend(yaml_files(&repo_manifests().join(folder)));
    }
    let out = Command::new(lint_tool("python"))
        .args([
            "-c",
            "import json, sys, yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))",
        ])
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    docs.into_iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect()
}

#[derive(Debug, Clone)]
struct Endpoint {
    what: &'static str,
    /// `Some((namespace, labels))` for a pod.
    pod: Option<(&'static str, Vec<(&'static str, String)>)>,
    ip: std::net::Ipv4Addr,
}

fn pod(
    what: &'static str,
    namespace: &'static str,
    labels: &[(&'static str, &str)],
    ip: [u8; 4],
) -> Endpoint {
    Endpoint {
        what,
        pod: Some((
            namespace,
            labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        )),
        ip: ip.into(),
    }
}

fn address(what: &'static str, ip: [u8; 4]) -> Endpoint {
    Endpoint {
        what,
        pod: None,
        ip: ip.into(),
    }
}

fn cidr_contains(cidr: &str, ip: std::net::Ipv4Addr) -> bool {
    let (net, bits) = cidr.split_once('/').expect("a CIDR");
    let net: std::net::Ipv4Addr = net.parse().expect("an IPv4 CIDR");
    let bits: u32 = bits.parse().unwrap();
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    (u32::from(net) & mask) == (u32::from(ip) & mask)
}

/// A label selector (`matchLabels`, `matchExpressions`) against labels; `{}` matches everything.
fn selects(selector: &serde_json::Value, labels: &[(&str, String)]) -> bool {
    let get = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k.as_str()) == v.as_str());
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect();
            match e["operator"].as_str().unwrap() {
                "In" => get(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => !get(key).is_some_and(|v| values.contains(&v)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                other => panic!("unknown selector operator {other}"),
            }
        });
    by_labels && by_expressions
}

/// The labels of a namespace, as the API server sets them.
fn namespace_labels(namespace: &str) -> Vec<(&'static str, String)> {
    vec![("kubernetes.io/metadata.name", namespace.to_owned())]
}

/// Whether one `from`/`to` peer of a rule matches an endpoint.
fn peer_matches(peer: &serde_json::Value, policy_namespace: &str, endpoint: &Endpoint) -> bool {
    if let Some(block) = peer.get("ipBlock") {
        let cidr = block["cidr"].as_str().unwrap();
        let excepted = block["except"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| cidr_contains(c.as_str().unwrap(), endpoint.ip));
        return cidr_contains(cidr, endpoint.ip) && !excepted;
    }
    let Some((namespace, labels)) = &endpoint.pod else {
        return false;
    };
    let namespace_ok = match peer.get("namespaceSelector") {
        Some(selector) => selects(selector, &namespace_labels(namespace)),
        None => *namespace == policy_namespace,
    };
    let pod_ok = match peer.get("podSelector") {
        Some(selector) => selects(selector, labels),
        None => true,
    };
    namespace_ok && pod_ok
}

fn port_matches(ports: &serde_json::Value, protocol: &str, port: u16) -> bool {
    match ports.as_array() {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => list.iter().any(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            let Some(from) = p["port"].as_u64() else {
                return proto == protocol; // no port: every port of the protocol
            };
            let to = p["endPort"].as_u64().unwrap_or(from);
            proto == protocol && (from..=to).contains(&u64::from(port))
        }),
    }
}

/// The policies that select `subject` for `direction` ("Ingress" or "Egress").
fn policies_for<'a>(
    policies: &'a [serde_json::Value],
    subject: &Endpoint,
    direction: &str,
) -> Vec<&'a serde_json::Value> {
    let Some((namespace, labels)) = &subject.pod else {
        return Vec::new();
    };
    policies
        .iter()
        .filter(|p| p["metadata"]["namespace"].as_str() == Some(*namespace))
        .filter(|p| selects(&p["spec"]["podSelector"], labels))
        .filter(|p| {
            let types: Vec<&str> = match p["spec"]["policyTypes"].as_array() {
                Some(t) => t.iter().filter_map(|t| t.as_str()).collect(),
                None if p["spec"].get("egress").is_some() => vec!["Ingress", "Egress"],
                None => vec!["Ingress"],
            };
            types.contains(&direction)
        })
        .collect()
}

/// Whether `subject`'s policies for `direction` allow traffic with `peer` on `protocol`/`port`.
/// Strict mode: no policy for the direction, nothing allowed.
fn allows(
    policies: &[serde_json::Value],
    subject: &Endpoint,
    direction: &str,
    peer: &Endpoint,
    protocol: &str,
    port: u16,
) -> bool {
    let (rules_key, peers_key) = match direction {
        "Egress" => ("egress", "to"),
        _ => ("ingress", "from"),
    };
    let namespace = subject.pod.as_ref().map(|(n, _)| *n).unwrap_or_default();
    policies_for(policies, subject, direction).iter().any(|p| {
        p["spec"][rules_key].as_array().into_iter().flatten().any(|rule| {
            let peer_ok = match rule[peers_key].as_array() {
                None => true,
                Some(list) if list.is_empty() => true,
                Some(list) => list.iter().any(|q| peer_matches(q, namespace, peer)),
            };
            peer_ok && port_matches(&rule["ports"], protocol, port)
        })
    })
}

/// A connection from `from` to `to` goes through: the sender's egress allows it, and when the
/// receiver is a pod, its ingress too.
fn connects(
    policies: &[serde_json::Value],
    from: &Endpoint,
    to: &Endpoint,
    protocol: &str,
    port: u16,
) -> bool {
    let out = from.pod.is_none() || allows(policies, from, "Egress", to, protocol, port);
    let into = to.pod.is_none() || allows(policies, to, "Ingress", from, protocol, port);
    out && into
}

/// The labels a tenant's backend pod has: the template's, plus the two the provisioner sets.
fn tenant_pod_labels(tenant: &str) -> Vec<(&'static str, String)> {
    let template = std::fs::read_to_string(repo_manifests().join("backend-deployment.yaml")).unwrap();
    let mut labels: Vec<(&'static str, String)> = Vec::new();
    // The pod template's labels: the `labels:` block under `template: metadata:`.
    let pod_part = template
        .split_once("  template:\n")
        .map(|(_, rest)| rest)
        .expect("the backend template has no pod template");
    let block = pod_part
        .split_once("labels:\n")
        .map(|(_, rest)| rest)
        .expect("the backend template's pods have no labels");
    for line in block.lines().take_while(|l| l.starts_with("        ")) {
        if let Some((k, v)) = line.trim().split_once(": ") {
            let key: &'static str = Box::leak(k.to_owned().into_boxed_str());
            labels.push((key, v.trim().to_owned()));
        }
    }
    assert!(!labels.is_empty(), "no pod labels read from the backend template");
    labels.push(("app.kubernetes.io/managed-by", "tgsearch-provisioner".to_owned()));
    labels.push(("tgsearch.io/tenant", tenant.to_owned()));
    labels
}

/// What a tenant's backend pod can reach, and what can reach it, with every NetworkPolicy of the
/// manifests in force: its broker's AMQPS port (through the broker's load balancer, whose own
/// subnets hold nothing else), DNS at CoreDNS, and HTTPS on public addresses (Telegram), and
/// nothing else - no other port of the broker, not the broker pods directly, not another tenant,
/// not the Kubernetes API, the Pod Identity agent, the metadata service, the functions, the VPC's
/// resolver or any other private address. Nothing reaches the backend. And the paths it needs
/// work end to end: the load balancer reaches the broker pods on 5671, CoreDNS answers the
/// backend and reaches its upstream resolver and the API server.
#[test]
fn a_tenant_pod_reaches_its_broker_and_dns_and_nothing_else() {
    let policies = network_policies();
    assert!(
        policies.len() >= 10,
        "only {} NetworkPolicies found",
        policies.len()
    );
    // Addresses as in a default deployment (network.yml with VpcCidr 10.42.0.0/16): pods and
    // nodes in the private /19s, the broker's load balancer in its /27s at 10.42.108.0/25.
    let tenant = pod("the tenant's pod", "tgsearch", &[], [10, 42, 1, 10]);
    let tenant = Endpoint {
        pod: Some((
            "tgsearch",
            tenant_pod_labels("4f1c2b3a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"),
        )),
        ..tenant
    };
    let other_tenant = Endpoint {
        what: "another tenant's pod",
        pod: Some((
            "tgsearch",
            tenant_pod_labels("00000000-0000-4000-8000-000000000000"),
        )),
        ip: [10, 42, 33, 11].into(),
    };
    let coredns = pod(
        "CoreDNS",
        "kube-system",
        &[("k8s-app", "kube-dns")],
        [10, 42, 2, 20],
    );
    let broker_pod = pod(
        "a broker pod",
        "tgsearch-broker",
        &[
            ("app.kubernetes.io/name", "tgsearch-rabbitmq"),
            ("app.kubernetes.io/component", "rabbitmq"),
        ],
        [10, 42, 65, 30],
    );
    let load_balancer = [
        address("the broker's load balancer (zone 1)", [10, 42, 108, 5]),
        address("the broker's load balancer (zone 2)", [10, 42, 108, 40]),
        address("the broker's load balancer (zone 3)", [10, 42, 108, 70]),
    ];
    let controller = pod(
        "the Load Balancer Controller",
        "kube-system",
        &[("app.kubernetes.io/name", "aws-load-balancer-controller")],
        [10, 42, 3, 40],
    );
    let cert_manager = pod(
        "cert-manager",
        "cert-manager",
        &[("app.kubernetes.io/name", "cert-manager")],
        [10, 42, 4, 50],
    );
    let operator = pod(
        "the RabbitMQ Cluster Operator",
        "rabbitmq-system",
        &[("app.kubernetes.io/name", "rabbitmq-cluster-operator")],
        [10, 42, 5, 60],
    );
    let telegram = address("Telegram (public)", [149, 154, 167, 51]);
    let others = [
        other_tenant.clone(),
        broker_pod.clone(),
        controller.clone(),
        cert_manager.clone(),
        operator.clone(),
        address("the Kubernetes API (control plane interface)", [10, 42, 6, 70]),
        address("the Kubernetes API (service address)", [172, 20, 0, 1]),
        address("the kube-dns service address", [172, 20, 0, 10]),
        address("the VPC's resolver", [10, 42, 0, 2]),
        address("the instance metadata service", [169, 254, 169, 254]),
        address("the EKS Pod Identity agent", [169, 254, 170, 23]),
        address("a function's network interface", [10, 42, 40, 80]),
        address("a node", [10, 42, 7, 90]),
        address("a peered private network", [192, 168, 1, 1]),
        address("a carrier-grade NAT address", [100, 64, 0, 1]),
    ];
    let probes: [(&str, u16); 15] = [
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 22),
        ("TCP", 80),
        ("TCP", 443),
        ("TCP", 4369),
        ("TCP", 5671),
        ("TCP", 5672),
        ("TCP", 8080),
        ("TCP", 9443),
        ("TCP", 10250),
        ("TCP", 15671),
        ("TCP", 15672),
        ("TCP", 25672),
        ("UDP", 443),
    ];
    let mut everything: Vec<Endpoint> = others.to_vec();
    everything.push(coredns.clone());
    everything.extend(load_balancer.iter().cloned());
    everything.push(telegram.clone());
    everything.push(address("another public address", [8, 8, 8, 8]));

    let mut reached = Vec::new();
    for to in &everything {
        for (protocol, port) in probes {
            if connects(&policies, &tenant, to, protocol, port) {
                reached.push(format!("{} {protocol}/{port}", to.what));
            }
        }
    }
    let mut expected = vec!["CoreDNS UDP/53".to_owned(), "CoreDNS TCP/53".to_owned()];
    for lb in &load_balancer {
        expected.push(format!("{} TCP/5671", lb.what));
    }
    expected.push("Telegram (public) TCP/443".to_owned());
    expected.push("another public address TCP/443".to_owned());
    reached.sort();
    expected.sort();
    assert_eq!(reached, expected, "what a tenant's pod can reach");

    // Nothing reaches a tenant's pod, from anywhere, on any port.
    for from in everything.iter().chain([&other_tenant, &coredns]) {
        for (protocol, port) in probes {
            assert!(
                !connects(&policies, from, &tenant, protocol, port),
                "{} reaches the tenant's pod on {protocol}/{port}",
                from.what
            );
        }
    }
    assert!(
        policies_for(&policies, &tenant, "Ingress")
            .iter()
            .all(|p| p["spec"]["ingress"]
                .as_array()
                .is_none_or(|rules| rules.is_empty())),
        "a policy gives the tenant's pods an ingress rule"
    );

    // The paths a tenant needs work end to end.
    for lb in &load_balancer {
        assert!(
            connects(&policies, lb, &broker_pod, "TCP", 5671),
            "{} cannot reach the broker pods on 5671",
            lb.what
        );
        assert!(
            connects(&policies, lb, &broker_pod, "TCP", 15671),
            "{} cannot reach the broker's management API",
            lb.what
        );
    }
    assert!(
        !connects(&policies, &other_tenant, &broker_pod, "TCP", 5671),
        "a tenant reaches a broker pod directly"
    );
    assert!(connects(
        &policies,
        &coredns,
        &address("the VPC's resolver", [10, 42, 0, 2]),
        "UDP",
        53
    ));
    assert!(connects(
        &policies,
        &coredns,
        &address("the Kubernetes API", [10, 42, 6, 70]),
        "TCP",
        443
    ));
    // The operators start: DNS, the API server, the Pod Identity agent where they use AWS, webhooks.
    for (who, needs_aws) in [(&controller, true), (&cert_manager, false), (&operator, false)] {
        assert!(
            connects(&policies, who, &coredns, "UDP", 53),
            "{} has no DNS",
            who.what
        );
        assert!(
            connects(
                &policies,
                who,
                &address("the Kubernetes API", [10, 42, 6, 70]),
                "TCP",
                443
            ),
            "{} cannot reach the API server",
            who.what
        );
        assert_eq!(
            connects(
                &policies,
                who,
                &address("the EKS Pod Identity agent", [169, 254, 170, 23]),
                "TCP",
                80
            ),
            needs_aws,
            "{} and the Pod Identity agent",
            who.what
        );
    }
    let control_plane = address("the control plane", [10, 42, 6, 70]);
    assert!(
        connects(&policies, &control_plane, &controller, "TCP", 9443),
        "the controller's webhook"
    );
    let webhook = pod(
        "cert-manager's webhook",
        "cert-manager",
        &[("app.kubernetes.io/component", "webhook")],
        [10, 42, 4, 51],
    );
    assert!(
        connects(&policies, &control_plane, &webhook, "TCP", 10250),
        "cert-manager's webhook"
    );
}
