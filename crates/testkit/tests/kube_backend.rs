//! The Kubernetes adapter against the stand-in, through the EKS code path (in-process tokens,
//! verified CA) and through a plain kubeconfig.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use testkit::fresh_tenant;
use testkit::stack::{self, Stack};
use tgsearch::adapters::kubernetes::KubeBackend;
use tgsearch::backend::{self, BackendSettings};
use tgsearch::cluster::kubeconfig_client;
use tgsearch::credentials::{TenantCredentials, generate_password};
use tgsearch::ports::{Removed, TenantBackend};

#[tokio::test]
async fn objects_are_applied_with_tenant_labels_and_converge_on_a_changed_template() {
    let app = Stack::require().app().await;
    let kube = &app.provisioner.backend;
    let tenant = fresh_tenant();
    let creds = TenantCredentials::new(&tenant, generate_password(), &app.config.rabbitmq_amqp_url);
    kube.ensure_secret(&tenant, &creds.amqp_uri).await.unwrap();
    kube.ensure_volume(&tenant).await.unwrap();
    kube.ensure_deployment(&tenant).await.unwrap();
    // A retry changes nothing and fails nothing.
    kube.ensure_deployment(&tenant).await.unwrap();

    let (secret, volume, deployment) = kube.get_all(&tenant).await.unwrap();
    let secret = secret.expect("secret");
    assert_eq!(
        secret.data.unwrap()["AMQP_URI"].0,
        creds.amqp_uri.expose().as_bytes()
    );
    let volume = volume.expect("volume");
    assert_eq!(volume.spec.unwrap().access_modes.unwrap(), ["ReadWriteOnce"]);
    let deployment = deployment.expect("deployment");
    let labels = deployment.metadata.labels.clone().unwrap();
    assert_eq!(labels["tgsearch.io/tenant"], tenant.as_str());
    assert_eq!(labels["app.kubernetes.io/managed-by"], "tgsearch-provisioner");
    assert_eq!(deployment.metadata.generation, Some(1));
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone()
    };
    assert_eq!(image(&deployment).as_deref(), Some(stack::BACKEND_IMAGE));

    // The operator ships a new image: the same apply converges the Deployment.
    let settings = BackendSettings {
        image: "ghcr.io/tgsearch/core:2.0".into(),
        ..kube.settings().clone()
    };
    let upgraded = KubeBackend::new(kube.client().clone(), settings, backend::template().unwrap());
    upgraded.ensure_deployment(&tenant).await.unwrap();
    let (_, _, after) = kube.get_all(&tenant).await.unwrap();
    let after = after.unwrap();
    assert_eq!(image(&after).as_deref(), Some("ghcr.io/tgsearch/core:2.0"));
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(
        after.metadata.uid, deployment.metadata.uid,
        "updated in place, not recreated"
    );

    assert_eq!(kube.remove_deployment(&tenant).await.unwrap(), Removed::Deleted);
    assert_eq!(kube.remove_volume(&tenant).await.unwrap(), Removed::Deleted);
    assert_eq!(kube.remove_secret(&tenant).await.unwrap(), Removed::Deleted);
    assert_eq!(
        kube.remove_deployment(&tenant).await.unwrap(),
        Removed::AlreadyAbsent
    );
    assert_eq!(
        kube.get_all(&tenant).await.unwrap().2.map(|d| d.metadata.name),
        None
    );
}

#[tokio::test]
async fn a_plain_kubeconfig_reaches_the_same_cluster() {
    let stack = Stack::require();
    let app = stack.app().await;
    // The kubeconfig `stack up` writes: its user runs `tgsearch eks-token`, as an EKS one would
    // run `aws eks get-token`.
    let client = kubeconfig_client(Some(&stack::kubeconfig_file()), stack::NAMESPACE)
        .await
        .unwrap();
    let via_kubeconfig = KubeBackend::new(
        client.clone(),
        app.provisioner.backend.settings().clone(),
        backend::template().unwrap(),
    );
    let tenant = fresh_tenant();
    via_kubeconfig.ensure_volume(&tenant).await.unwrap();
    via_kubeconfig.ensure_deployment(&tenant).await.unwrap();
    let (_, volume, deployment) = app.provisioner.backend.get_all(&tenant).await.unwrap();
    assert!(
        volume.is_some() && deployment.is_some(),
        "what the kubeconfig client wrote, the EKS client reads"
    );
    let listed = Api::<Deployment>::namespaced(client, stack::NAMESPACE)
        .list(&kube::api::ListParams::default().labels(&backend::tenant_selector(&tenant)))
        .await
        .unwrap();
    assert_eq!(
        listed.items.len(),
        1,
        "label selectors select the tenant's objects only"
    );
    via_kubeconfig.remove_deployment(&tenant).await.unwrap();
    via_kubeconfig.remove_volume(&tenant).await.unwrap();
}

#[tokio::test]
async fn api_errors_name_the_object_and_hint_at_the_cause() {
    let app = Stack::require().app().await;
    let settings = BackendSettings {
        namespace: "no-such-namespace".into(),
        ..app.provisioner.backend.settings().clone()
    };
    let misplaced = KubeBackend::new(
        app.provisioner.backend.client().clone(),
        settings,
        backend::template().unwrap(),
    );
    let tenant = fresh_tenant();
    // The provisioner's Role is granted in its own namespace only: EKS answers 403 elsewhere.
    let err = misplaced.ensure_volume(&tenant).await.unwrap_err().to_string();
    assert!(err.contains("403"), "{err}");
    assert!(
        err.contains(&format!("no-such-namespace/backend-{tenant}-data")),
        "{err}"
    );
    assert!(err.contains("lacks RBAC rights"), "{err}");
}
