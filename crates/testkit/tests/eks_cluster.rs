//! The Kubernetes client: EKS mode sends fresh EKS tokens and trusts only the cluster's CA;
//! kubeconfig mode works with any cluster; DescribeCluster errors name the cluster.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use testkit::probe::Probe;
use testkit::stack::Stack;
use testkit::tls::self_signed;
use tgsearch::cluster::{ClusterTarget, KubeConfig, connect, eks_client, kubeconfig_client};
use tgsearch::eks::verify::check_token;
use tgsearch::eks::{TokenSource, sign_token};

fn der_of(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

fn creds() -> Credentials {
    Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "t",
    )
}

#[tokio::test]
async fn an_eks_client_sends_valid_tokens_and_trusts_only_the_cluster_ca() {
    let tls = self_signed().unwrap();
    let mut probe = Probe::start(tls.server.clone()).await;
    let source = Arc::new(TokenSource::new(
        "tgsearch",
        "eu-west-1",
        SharedCredentialsProvider::new(creds()),
    ));

    let client = eks_client(&probe.url(), der_of(&tls.ca_pem), "tgsearch", source.clone()).unwrap();
    let version = client
        .apiserver_version()
        .await
        .expect("the probe answers over verified TLS");
    assert_eq!(version.git_version, "v1.36.0");
    client.apiserver_version().await.unwrap();

    let tokens = probe.bearer_tokens();
    assert_eq!(tokens.len(), 2, "every request carries a token");
    assert_eq!(tokens[0], tokens[1], "the token is cached between requests");
    let checked = check_token(&tokens[0], SystemTime::now()).unwrap();
    let resigned = sign_token("tgsearch", "eu-west-1", &creds(), checked.signed_at).unwrap();
    assert_eq!(
        resigned.token, tokens[0],
        "the token is bound to the cluster name"
    );

    // Another CA: the same server is refused, nothing is sent.
    let stranger = self_signed().unwrap();
    let wary = eks_client(&probe.url(), der_of(&stranger.ca_pem), "tgsearch", source).unwrap();
    let err = wary.apiserver_version().await.unwrap_err();
    assert!(
        probe.requests().is_empty(),
        "a request reached an untrusted server: {err}"
    );
}

#[tokio::test]
async fn a_plain_kubeconfig_works_too() {
    let tls = self_signed().unwrap();
    let mut probe = Probe::start(tls.server.clone()).await;
    let (dir, kubeconfig) = testkit::probe::kubeconfig(&probe, &tls.ca_pem, "    token: static-token\n");
    let client = kubeconfig_client(Some(&kubeconfig), "tgsearch").await.unwrap();
    assert_eq!(client.default_namespace(), "tgsearch");
    client.apiserver_version().await.unwrap();
    assert_eq!(probe.bearer_tokens(), ["static-token"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn describe_cluster_failures_name_the_cluster() {
    let stack = Stack::require();
    let aws = stack.aws().await;
    let config = KubeConfig {
        target: ClusterTarget::Eks {
            name: format!("missing-{}", &testkit::fresh_tenant().as_str()[..8]),
            endpoint_and_ca: None,
        },
        namespace: "tgsearch".into(),
    };
    let err = connect(&config, &aws)
        .await
        .err()
        .expect("no such cluster in moto");
    let ClusterTarget::Eks { name, .. } = &config.target else {
        unreachable!()
    };
    assert!(err.to_string().contains(name.as_str()), "{err}");
}
