//! The Kubernetes adapter never touches what it cannot prove it wrote, repairs what drifted, and
//! treats the data volume as sacred: checked against the stand-in with an independent client.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use testkit::fresh_tenant;
use testkit::stack::Stack;
use tgsearch::adapters::kubernetes::KubeBackend;
use tgsearch::backend::{self, BackendSettings};
use tgsearch::credentials::{TenantCredentials, generate_password};
use tgsearch::ports::{Converged, Foreign, Removed, TenantBackend};

fn as_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn foreign_objects_named_like_a_tenants_are_neither_adopted_nor_deleted() {
    let app = Stack::require().app().await;
    let kube = &app.provisioner.backend;
    let client = kube.client().clone();
    let ns = &kube.settings().namespace;
    let tenant = fresh_tenant();
    // Somebody else's objects with the tenant's names and no provisioner labels.
    let pp = PostParams::default();
    let secret: Secret = as_json(serde_json::json!({
        "metadata": {"name": backend::secret_name(&tenant), "labels": {"app": "other"}},
        "stringData": {"AMQP_URI": "amqp://someone:else@elsewhere/x"}
    }));
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&pp, &secret)
        .await
        .unwrap();
    let volume = backend::render_volume(&tenant, kube.settings());
    let mut volume: PersistentVolumeClaim = volume;
    volume.metadata.labels = None;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&pp, &volume)
        .await
        .unwrap();
    let mut deployment: Deployment =
        backend::render_deployment(&tenant, kube.settings(), &backend::template().unwrap());
    deployment.metadata.labels = Some(BTreeMap::from([("app".into(), "other".into())]));
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&pp, &deployment)
        .await
        .unwrap();

    let creds = TenantCredentials::new(&tenant, generate_password(), &app.config.rabbitmq_amqp_url);
    let errors = [
        kube.ensure_secret(&tenant, &creds.amqp_uri).await.unwrap_err(),
        kube.ensure_volume(&tenant).await.unwrap_err(),
        kube.ensure_deployment(&tenant).await.unwrap_err(),
    ];
    for err in &errors {
        assert!(Foreign::is_in(err.as_ref()), "{err}");
    }
    for removed in [
        kube.remove_deployment(&tenant).await.unwrap(),
        kube.remove_volume(&tenant).await.unwrap(),
        kube.remove_secret(&tenant).await.unwrap(),
    ] {
        assert!(matches!(removed, Removed::LeftAlone(_)), "{removed:?}");
    }
    let (secret, volume, deployment) = kube.get_all(&tenant).await.unwrap();
    assert_eq!(
        secret.unwrap().data.unwrap()["AMQP_URI"].0,
        b"amqp://someone:else@elsewhere/x",
        "untouched"
    );
    assert!(volume.is_some() && deployment.is_some());
    // The inventory reports them as foreign, not as the tenant's.
    let inventory = kube.inventory().await.unwrap();
    assert!(!inventory.secrets.contains(tenant.as_str()));
    let foreign: Vec<&String> = inventory.foreign.iter().map(|(_, name, _)| name).collect();
    assert!(foreign.contains(&&backend::volume_name(&tenant)), "{foreign:?}");

    let dp = kube::api::DeleteParams::default();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .delete(&backend::deployment_name(&tenant), &dp)
        .await
        .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .delete(&backend::volume_name(&tenant), &dp)
        .await
        .unwrap();
    Api::<Secret>::namespaced(client, ns)
        .delete(&backend::secret_name(&tenant), &dp)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_edited_kubernetes_secret_is_repaired() {
    let app = Stack::require().app().await;
    let kube = &app.provisioner.backend;
    let tenant = fresh_tenant();
    let creds = TenantCredentials::new(&tenant, generate_password(), &app.config.rabbitmq_amqp_url);
    assert_eq!(
        kube.ensure_secret(&tenant, &creds.amqp_uri).await.unwrap(),
        Converged::Created
    );
    assert_eq!(
        kube.ensure_secret(&tenant, &creds.amqp_uri).await.unwrap(),
        Converged::Unchanged
    );
    // `kubectl edit`, as another field manager.
    let edit = serde_json::json!({"data": {"AMQP_URI": ByteString(b"amqp://x:y@elsewhere/z".to_vec())}});
    Api::<Secret>::namespaced(kube.client().clone(), &kube.settings().namespace)
        .patch(
            &backend::secret_name(&tenant),
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    assert!(matches!(
        kube.ensure_secret(&tenant, &creds.amqp_uri).await.unwrap(),
        Converged::Repaired(_)
    ));
    let (secret, _, _) = kube.get_all(&tenant).await.unwrap();
    assert_eq!(
        secret.unwrap().data.unwrap()["AMQP_URI"].0,
        creds.amqp_uri.expose().as_bytes()
    );
    kube.remove_secret(&tenant).await.unwrap();
}

#[tokio::test]
async fn the_volume_never_shrinks_nor_changes_class_and_never_blocks_the_deployment() {
    let app = Stack::require().app().await;
    let kube = &app.provisioner.backend;
    let tenant = fresh_tenant();
    let with = |size: &str, class: Option<&str>| {
        KubeBackend::new(
            kube.client().clone(),
            BackendSettings {
                storage_size: size.into(),
                storage_class: class.map(String::from),
                ..kube.settings().clone()
            },
            backend::template().unwrap(),
        )
    };
    let first = with("2Gi", Some("gp3"));
    assert_eq!(first.ensure_volume(&tenant).await.unwrap(), Converged::Created);
    assert_eq!(
        first.ensure_deployment(&tenant).await.unwrap(),
        Converged::Created
    );

    // An operator lowers the size and changes the class: reported, never applied.
    let changed = with("1Gi", Some("standard"));
    match changed.ensure_volume(&tenant).await.unwrap() {
        Converged::NeedsPerson(why) => {
            assert!(why.contains("never shrink"), "{why}");
            assert!(why.contains("class never changes"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let (_, volume, _) = kube.get_all(&tenant).await.unwrap();
    let spec = volume.unwrap().spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
    assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "2Gi");

    // The Deployment is deleted by hand: the next run restores it all the same.
    Api::<Deployment>::namespaced(kube.client().clone(), &kube.settings().namespace)
        .delete(&backend::deployment_name(&tenant), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        changed.ensure_deployment(&tenant).await.unwrap(),
        Converged::Created
    );

    for removed in [
        kube.remove_deployment(&tenant).await.unwrap(),
        kube.remove_volume(&tenant).await.unwrap(),
    ] {
        assert_eq!(removed, Removed::Deleted);
    }
}

#[tokio::test]
async fn a_volume_grows_where_its_class_allows_and_needs_a_person_where_not() {
    let app = Stack::require().app().await;
    let kube = &app.provisioner.backend;
    let with = |size: &str, class: &str| {
        KubeBackend::new(
            kube.client().clone(),
            BackendSettings {
                storage_size: size.into(),
                storage_class: Some(class.into()),
                ..kube.settings().clone()
            },
            backend::template().unwrap(),
        )
    };
    for (class, grows) in [("gp3", true), ("gp2", false)] {
        let tenant = fresh_tenant();
        let small = with("1Gi", class);
        small.ensure_volume(&tenant).await.unwrap();
        // Bound once its pod mounts it (WaitForFirstConsumer).
        small.ensure_deployment(&tenant).await.unwrap();
        let outcome = with("3Gi", class).ensure_volume(&tenant).await.unwrap();
        let (_, volume, _) = kube.get_all(&tenant).await.unwrap();
        let size = volume.unwrap().spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
            .0
            .clone();
        if grows {
            assert_eq!(outcome, Converged::Repaired("grown from 1Gi to 3Gi".into()));
            assert_eq!(size, "3Gi");
        } else {
            assert!(
                matches!(&outcome, Converged::NeedsPerson(why) if why.contains("refused")),
                "{outcome:?}"
            );
            assert_eq!(size, "1Gi");
        }
        kube.remove_deployment(&tenant).await.unwrap();
        kube.remove_volume(&tenant).await.unwrap();
    }
}
