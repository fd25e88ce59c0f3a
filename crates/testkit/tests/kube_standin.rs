//! The Kubernetes API stand-in as clients see it: 401 for any token EKS would refuse, real
//! `Status` errors, and plain kubectl get/describe/delete through the stack's kubeconfig.

use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use testkit::stack::{self, Stack};
use tgsearch::eks::sign_token;

fn client() -> reqwest::Client {
    let ca = std::fs::read(stack::kube_ca_file()).expect("the stand-in's CA: run `cargo xtask stack up`");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

fn token(cluster: &str, secret: &str, at: SystemTime) -> String {
    let creds = Credentials::new("testing", secret, None, None, "t");
    sign_token(cluster, stack::REGION, &creds, at).unwrap().token
}

async fn get(path: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let stack = Stack::require();
    let mut request = client().get(format!("{}{path}", stack.var("EKS_CLUSTER_ENDPOINT")));
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn tokens_eks_would_refuse_get_401() {
    let now = SystemTime::now();
    let good = token(stack::CLUSTER_NAME, "testing", now);
    assert_eq!(get("/api/v1/namespaces", Some(&good)).await.0, 200);
    let refused = [
        None,
        Some("not-a-token".to_string()),
        Some(token(stack::CLUSTER_NAME, "wrong-secret", now)),
        Some(token("another-cluster", "testing", now)),
        Some(token(
            stack::CLUSTER_NAME,
            "testing",
            now - Duration::from_secs(16 * 60),
        )),
    ];
    for bearer in refused {
        let (code, body) = get("/api/v1/namespaces", bearer.as_deref()).await;
        assert_eq!(code, 401, "{bearer:?}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
    }
}

#[tokio::test]
async fn errors_are_status_objects_with_real_reasons() {
    let good = token(stack::CLUSTER_NAME, "testing", SystemTime::now());
    let (code, body) = get("/api/v1/namespaces/tgsearch/secrets/does-not-exist", Some(&good)).await;
    assert_eq!(code, 404);
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["message"], "secrets \"does-not-exist\" not found");
    let (code, body) = get("/apis/apps/v1/namespaces/tgsearch/widgets", Some(&good)).await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
}

fn kubectl(args: &[&str]) -> (bool, String) {
    Stack::require();
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", stack::kubeconfig_file())
        .output()
        .expect("kubectl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn kubectl_gets_describes_and_deletes() {
    let name = format!("probe-{}", &testkit::fresh_tenant().as_str()[..8]);
    let (ok, out) = kubectl(&["create", "secret", "generic", &name, "--from-literal=k=v"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["get", "secrets"]);
    assert!(ok && out.contains(&name) && out.contains("Opaque"), "{out}");
    let (ok, out) = kubectl(&["describe", "secret", &name]);
    assert!(ok && out.contains(&format!("Name:         {name}")), "{out}");
    let (ok, out) = kubectl(&[
        "get",
        "secret",
        &name,
        "-o",
        "jsonpath={.metadata.resourceVersion}/{.metadata.uid}",
    ]);
    assert!(ok && out.contains('/') && out.len() > 30, "{out}");
    // Server-side apply and a label change, as an operator would (the stand-in serves no
    // OpenAPI documents, hence --validate=false).
    let manifest = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{team: ops}}\nstringData:\n  k: v2\n"),
    )
    .unwrap();
    let (ok, out) = kubectl(&[
        "apply",
        "--server-side",
        "--validate=false",
        "-f",
        manifest.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("serverside-applied"), "{out}");
    let (ok, out) = kubectl(&["label", "secret", &name, "extra=1"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["get", "secrets", "-l", "team=ops,extra=1", "-o", "name"]);
    assert!(ok && out.trim() == format!("secret/{name}"), "{out}");
    let (ok, out) = kubectl(&["get", "secret", &name, "-o", "jsonpath={.data.k}"]);
    assert!(ok && out == "djI=", "applied stringData lands in data: {out}");
    let _ = std::fs::remove_file(manifest);
    let (ok, out) = kubectl(&["delete", "secret", &name]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["get", "secret", &name]);
    assert!(!ok && out.contains("NotFound"), "{out}");
}
