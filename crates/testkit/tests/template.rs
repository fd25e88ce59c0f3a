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

/// The commands of the README's "Deploying" walkthrough, one per line: every ```sh block's lines
/// with `\` continuations joined, comment lines dropped.
fn walkthrough_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let deploying = readme
        .split_once("\n## Deploying\n")
        .map(|(_, rest)| rest.split_once("\n## ").map_or(rest, |(section, _)| section))
        .expect("README.md has no \"## Deploying\" section");
    let mut commands = Vec::new();
    // Inside a fenced block: whether it is a shell one.
    let mut fence: Option<bool> = None;
    let mut current = String::new();
    for line in deploying.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(trimmed, "```sh" | "```bash" | "```shell")),
            };
            continue;
        }
        if fence != Some(true) || trimmed.starts_with('#') {
            continue;
        }
        let code = trimmed.split(" # ").next().unwrap_or("").trim_end();
        match code.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(code);
                if !current.trim().is_empty() {
                    commands.push(current.trim().to_owned());
                }
                current.clear();
            }
        }
    }
    commands
}

/// What CloudFormation makes a stack acknowledge for this template: `CAPABILITY_NAMED_IAM` when
/// an IAM resource has a custom name, `CAPABILITY_IAM` when it has any IAM resource (a SAM
/// function without `Role` makes one), nothing otherwise.
fn needed_capability(template: &str) -> Option<&'static str> {
    const IAM: [&str; 6] = [
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::IAM::InstanceProfile",
        "AWS::IAM::User",
        "AWS::IAM::Group",
    ];
    const NAMES: [&str; 5] = [
        "RoleName:",
        "ManagedPolicyName:",
        "InstanceProfileName:",
        "UserName:",
        "GroupName:",
    ];
    // (type, property keys) of each resource, from the template's two-space layout.
    let mut resources: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_resources = false;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            in_resources = line == "Resources:";
            continue;
        }
        if !in_resources {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 2 && text.ends_with(':') && !text.starts_with('#') {
            resources.push((String::new(), Vec::new()));
        } else if let Some((kind, keys)) = resources.last_mut() {
            if indent == 4 {
                if let Some(t) = text.strip_prefix("Type:") {
                    *kind = t.trim().to_owned();
                }
            } else if indent == 6
                && let Some((key, _)) = text.split_once(':')
            {
                keys.push(format!("{key}:"));
            }
        }
    }
    let mut needed = None;
    for (kind, keys) in &resources {
        let implicit_role = kind == "AWS::Serverless::Function" && !keys.iter().any(|k| k == "Role:");
        if IAM.contains(&kind.as_str()) || implicit_role {
            if keys.iter().any(|k| NAMES.contains(&k.as_str())) && kind != "AWS::IAM::Policy" {
                return Some("CAPABILITY_NAMED_IAM");
            }
            needed = Some("CAPABILITY_IAM");
        }
    }
    needed
}

#[test]
fn the_capability_rule_reads_templates_right() {
    let role = "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      Path: /\n";
    assert_eq!(needed_capability(role), Some("CAPABILITY_IAM"));
    let named = "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: x\n";
    assert_eq!(needed_capability(named), Some("CAPABILITY_NAMED_IAM"));
    let function =
        "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: .\n";
    assert_eq!(needed_capability(function), Some("CAPABILITY_IAM"));
    let none = "Resources:\n  Q:\n    Type: AWS::SQS::Queue\nOutputs:\n  X:\n    Value: AWS::IAM::Role\n";
    assert_eq!(needed_capability(none), None);
}

/// Every `aws cloudformation deploy` and `sam deploy` of the walkthrough passes the capability its
/// template needs (CloudFormation answers `InsufficientCapabilities` otherwise), and every
/// template is deployed by one of them.
#[test]
fn every_walkthrough_deploy_passes_the_capabilities_its_template_needs() {
    let mut deployed = std::collections::BTreeSet::new();
    for command in walkthrough_commands() {
        let words: Vec<&str> = command.split_whitespace().collect();
        let (start, default_template) = match words
            .windows(3)
            .position(|w| w == ["aws", "cloudformation", "deploy"])
        {
            Some(i) => (i + 3, None),
            None => match words.windows(2).position(|w| w == ["sam", "deploy"]) {
                Some(i) => (i + 2, Some("template.yml")),
                None => continue,
            },
        };
        let args = &words[start..];
        let template = args
            .windows(2)
            .find(|w| matches!(w[0], "--template-file" | "-t" | "--template"))
            .map(|w| w[1])
            .or(default_template)
            .unwrap_or_else(|| panic!("`{command}` names no template"));
        let capabilities: Vec<&str> = args
            .iter()
            .skip_while(|a| **a != "--capabilities")
            .skip(1)
            .take_while(|a| !a.starts_with('-'))
            .copied()
            .collect();
        let text = std::fs::read_to_string(root().join(template))
            .unwrap_or_else(|e| panic!("`{command}` deploys {template}: {e}"));
        match needed_capability(&text) {
            Some("CAPABILITY_NAMED_IAM") => assert!(
                capabilities.contains(&"CAPABILITY_NAMED_IAM"),
                "`{command}`: {template} names IAM resources, so it needs --capabilities CAPABILITY_NAMED_IAM"
            ),
            Some(cap) => assert!(
                capabilities.contains(&cap) || capabilities.contains(&"CAPABILITY_NAMED_IAM"),
                "`{command}`: {template} creates IAM resources, so it needs --capabilities {cap}"
            ),
            None => {}
        }
        deployed.insert(template.trim_start_matches("./").to_owned());
    }
    for template in templates() {
        let relative = template
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            deployed.contains(&relative),
            "no README deploy command deploys {relative} (deployed: {deployed:?})"
        );
    }
}

/// The minor version the local Kubernetes API stand-in reports at `/version`.
fn standin_minor() -> String {
    let kinds = std::fs::read_to_string(root().join("crates/kube-standin/src/kinds.rs")).unwrap();
    kinds
        .split_once("\"minor\": \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(minor, _)| minor.to_owned())
        .expect("crates/kube-standin/src/kinds.rs reports no \"minor\" version")
}

/// The cluster template's default Kubernetes version is one of its allowed versions, the one the
/// local stand-in serves, and the one the workspace's `k8s-openapi` types are built for.
#[test]
fn the_default_kubernetes_version_is_the_one_the_standin_serves() {
    let template = std::fs::read_to_string(root().join("cloudformation/eks-cluster.yml")).unwrap();
    let parameter: Vec<&str> = template
        .lines()
        .skip_while(|l| l.trim() != "KubernetesVersion:")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty() || l.trim().starts_with('#'))
        .collect();
    let field = |name: &str| {
        parameter
            .iter()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("KubernetesVersion has no {name}"))
    };
    let default = field("Default:").trim_matches('"').to_owned();
    let allowed = field("AllowedValues:");
    assert!(
        allowed.contains(&format!("\"{default}\"")),
        "the default {default} is not among the allowed {allowed}"
    );
    let minor = standin_minor();
    assert_eq!(
        default,
        format!("1.{minor}"),
        "the cluster template defaults to Kubernetes {default}, the stand-in (kinds.rs `/version`) serves 1.{minor}"
    );
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let k8s_openapi = cargo
        .lines()
        .find(|l| l.starts_with("k8s-openapi"))
        .expect("the workspace Cargo.toml has no k8s-openapi dependency");
    assert!(
        k8s_openapi.contains(&format!("\"v1_{minor}\"")),
        "k8s-openapi is not built for Kubernetes 1.{minor}: {k8s_openapi}"
    );
}

fn template_json() -> serde_json::Value {
    testkit::template::json()
}

/// Each IAM action a function's role is granted, with the resource it is granted on.
fn granted(template: &serde_json::Value, function: &str) -> Vec<(String, String)> {
    let policies = &template["Resources"][function]["Properties"]["Policies"];
    let mut rights = Vec::new();
    for policy in policies.as_array().into_iter().flatten() {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            let actions: Vec<String> = match &statement["Action"] {
                serde_json::Value::String(a) => vec![a.clone()],
                serde_json::Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
                other => panic!("{function}: an Action of {other}"),
            };
            for action in actions {
                rights.push((action, statement["Resource"].to_string()));
            }
        }
    }
    rights
}

/// The internet-facing function holds none of the provisioner's rights: no tenant secret, no
/// RabbitMQ administrator, no Kubernetes group, no lock. It may invoke the worker, look users up,
/// and count requests; the worker holds what rotation takes.
#[test]
fn the_internet_facing_function_holds_no_provisioner_rights() {
    let template = template_json();
    let rights = granted(&template, "TenantCredentialsFunction");
    let mut actions: Vec<&str> = rights.iter().map(|(a, _)| a.as_str()).collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "cognito-idp:ListUsers",
            "dynamodb:UpdateItem",
            "lambda:InvokeFunction"
        ],
        "{rights:?}"
    );
    let invoke = &rights
        .iter()
        .find(|(a, _)| a == "lambda:InvokeFunction")
        .unwrap()
        .1;
    assert!(invoke.contains("ProvisionWorkerFunction"), "{invoke}");
    let environment =
        &template["Resources"]["TenantCredentialsFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        environment["TENANT_ACCESS_FUNCTION"],
        serde_json::json!({"Ref": "ProvisionWorkerFunction"})
    );
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] == "AWS::EKS::AccessEntry" {
            let principal = resource["Properties"]["PrincipalArn"].to_string();
            assert!(
                !principal.contains("TenantCredentials"),
                "{name} maps tenant-credentials into the cluster"
            );
        }
    }
    let rbac = std::fs::read_to_string(root().join("manifests/cluster/provisioner-rbac.yaml")).unwrap();
    assert!(!rbac.contains("tgsearch-tenant-credentials"));
    // The worker, which rotates, holds what rotation takes.
    let worker: Vec<String> = granted(&template, "ProvisionWorkerFunction")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for needed in [
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "cognito-idp:ListUsers",
    ] {
        assert!(
            worker.iter().any(|a| a == needed),
            "the worker lacks {needed}: {worker:?}"
        );
    }
}
