//! EKS tokens: identical to the AWS CLI's for the same credentials and signing time, accepted
//! by aws-iam-authenticator's checks, and `tgsearch eks-token` works as kubectl's exec plugin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use tgsearch::eks::token::decode_url;
use tgsearch::eks::verify::check_token;
use tgsearch::eks::{exec_credential, sign_token};

fn awscli_python() -> PathBuf {
    let python = testkit::stack::awscli_bin().join("python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask stack up --test-tools` (or `cargo xtask test`), which installs the AWS CLI for comparison",
        python.display()
    );
    python
}

/// The token the AWS CLI's own code signs for these inputs.
fn aws_cli_token(cluster: &str, region: &str, creds: &Credentials, epoch: u64) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/aws_eks_token.py");
    let request = serde_json::json!({
        "cluster": cluster,
        "region": region,
        "access_key": creds.access_key_id(),
        "secret_key": creds.secret_access_key(),
        "session_token": creds.session_token(),
        "epoch": epoch,
    });
    // A clean environment: no AWS_ENDPOINT_URL or profile may change what the CLI signs.
    let mut child = Command::new(awscli_python())
        .arg(script)
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn tokens_are_identical_to_the_aws_clis() {
    let epoch = 1_795_000_000;
    let cases = [
        (
            "tgsearch",
            "eu-west-1",
            Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "t",
            ),
        ),
        (
            "prod-cluster",
            "us-east-1",
            Credentials::new(
                "ASIAIOSFODNN7EXAMPLE",
                "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
                Some("IQoJb3JpZ2luX2VjEXAMPLE+/session=token".into()),
                None,
                "t",
            ),
        ),
        (
            "cn-cluster",
            "cn-north-1",
            Credentials::new("AKID", "secret", Some("tok".into()), None, "t"),
        ),
    ];
    for (cluster, region, creds) in cases {
        let ours = sign_token(
            cluster,
            region,
            &creds,
            SystemTime::UNIX_EPOCH + Duration::from_secs(epoch),
        )
        .unwrap()
        .token;
        let theirs = aws_cli_token(cluster, region, &creds, epoch);
        assert_eq!(
            decode_url(&ours).unwrap(),
            decode_url(&theirs).unwrap(),
            "{cluster} in {region}: the presigned URLs differ"
        );
        assert_eq!(ours, theirs);
        check_token(&ours, SystemTime::UNIX_EPOCH + Duration::from_secs(epoch + 30)).unwrap();
    }
}

fn tgsearch_bin() -> PathBuf {
    // The CLI is built by `cargo xtask test` before the tests run (it is a workspace binary).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug/tgsearch");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` (it builds the CLI)",
        bin.display()
    );
    bin
}

/// kubectl runs `tgsearch eks-token` from a kubeconfig and sends the token it prints.
#[tokio::test]
async fn kubectl_uses_tgsearch_eks_token_as_its_exec_plugin() {
    let tls = testkit::tls::self_signed().unwrap();
    let mut probe = testkit::probe::Probe::start(tls.server.clone()).await;
    let user = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args: [eks-token, --cluster-name, tgsearch-probe, --region, eu-west-1]\n      interactiveMode: Never\n",
        tgsearch_bin().display()
    );
    let (dir, kubeconfig) = testkit::probe::kubeconfig(&probe, &tls.ca_pem, &user);

    let started = SystemTime::now();
    let out = tokio::process::Command::new("kubectl")
        .args(["get", "--raw", "/version", "--request-timeout", "30s"])
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_SESSION_TOKEN", "kubectl-session")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("v1.36.0"));

    let token = probe.bearer_tokens().pop().expect("kubectl sent a bearer token");
    let checked = check_token(&token, SystemTime::now()).expect("the authenticator's checks pass");
    assert_eq!(checked.host, "sts.eu-west-1.amazonaws.com");
    assert_eq!(checked.params["x-amz-security-token"], "kubectl-session");
    // Re-signing for the same cluster at the token's own time reproduces it: the signature
    // covers the cluster name.
    let creds = Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("kubectl-session".into()),
        None,
        "t",
    );
    let again = sign_token("tgsearch-probe", "eu-west-1", &creds, checked.signed_at).unwrap();
    assert_eq!(again.token, token);
    assert!(checked.signed_at + Duration::from_secs(2) >= started);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn eks_token_prints_the_exec_credential_and_fails_cleanly() {
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(tgsearch_bin());
        cmd.arg("eks-token")
            .args(args)
            .env_clear()
            .env("HOME", "/nonexistent");
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        cmd.envs(envs.iter().copied());
        cmd.output().unwrap()
    };
    let creds = [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "secret")];

    let out = run(&creds, &["--cluster-name", "c", "--region", "us-west-2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cred["kind"], "ExecCredential");
    assert_eq!(cred["apiVersion"], exec_credential::V1BETA1);
    let expires = cred["status"]["expirationTimestamp"].as_str().unwrap();
    assert_eq!(expires.len(), 20, "{expires}");
    assert!(expires.ends_with('Z'));
    check_token(cred["status"]["token"].as_str().unwrap(), SystemTime::now()).unwrap();

    let mut with_info = creds.to_vec();
    with_info.push(("KUBERNETES_EXEC_INFO", r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#));
    let out = run(&with_info, &["--cluster-name", "c", "--region", "us-west-2"]);
    let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cred["apiVersion"], exec_credential::V1);

    let out = run(&creds, &["--cluster-name", "c"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no AWS region"));

    let out = run(&[], &["--cluster-name", "c", "--region", "us-west-2"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load AWS credentials"));
}

#[test]
fn with_a_role_arn_the_token_is_signed_with_the_assumed_roles_credentials() {
    let stack = testkit::stack::Stack::require();
    let out = Command::new(tgsearch_bin())
        .args(["eks-token", "--cluster-name", "c", "--region", "us-east-1"])
        .args(["--role-arn", "arn:aws:iam::123456789012:role/eks-admin"])
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // STS is moto's: AssumeRole hands out temporary credentials.
        .env("AWS_ENDPOINT_URL", stack.var("AWS_ENDPOINT_URL"))
        .env("AWS_ACCESS_KEY_ID", "AKIDCALLER")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checked = check_token(cred["status"]["token"].as_str().unwrap(), SystemTime::now()).unwrap();
    assert_ne!(
        checked.access_key_id, "AKIDCALLER",
        "signed with the role's key, not the caller's"
    );
    assert!(
        checked.params.contains_key("x-amz-security-token"),
        "temporary credentials carry a session token"
    );
    assert_eq!(
        checked.host, "sts.us-east-1.amazonaws.com",
        "the token is for real STS, whatever endpoint issued the role"
    );
}
