//! The Kubernetes API stand-in as clients see it, refusing what kube-apiserver refuses: 401
//! for any token EKS would refuse, RBAC from `manifests/cluster/provisioner-rbac.yaml` for the stack's
//! identity, immutable fields, field validation, server-side apply by field manager, dry runs
//! and delete preconditions, each with the real status code, reason and message; and plain
//! kubectl through the stack's kubeconfig (a `system:masters` identity).

use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use testkit::stack::{self, Stack};
use tgsearch::eks::sign_token;

fn client() -> reqwest::Client {
    let ca = std::fs::read(stack::kube_ca_file()).expect("the stand-in's CA: run `cargo xtask stack up`");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn token_for(cluster: &str, key: &str, secret: &str, at: SystemTime) -> String {
    let creds = Credentials::new(key, secret, None, None, "t");
    sign_token(cluster, stack::REGION, &creds, at).unwrap().token
}

fn token(cluster: &str, secret: &str, at: SystemTime) -> String {
    token_for(cluster, "testing", secret, at)
}

/// A caller of the stand-in's HTTP API with one identity.
struct Caller {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What came back: status code, body, `Warning` headers.
struct Answer {
    code: u16,
    body: Value,
    warnings: Vec<String>,
}

impl Caller {
    /// The stack's identity: what the Lambdas and the CLI are (group `tgsearch-provisioner`).
    fn provisioner() -> Self {
        let stack = Stack::require();
        Self {
            http: client(),
            base: stack.var("EKS_CLUSTER_ENDPOINT").to_owned(),
            token: token(stack::CLUSTER_NAME, "testing", SystemTime::now()),
        }
    }

    /// kubectl's identity (`system:masters`).
    fn admin() -> Self {
        Self {
            token: token_for(
                stack::CLUSTER_NAME,
                stack::KUBE_ADMIN_ACCESS_KEY_ID,
                stack::KUBE_ADMIN_SECRET_ACCESS_KEY,
                SystemTime::now(),
            ),
            ..Self::provisioner()
        }
    }

    async fn send(&self, method: &str, path: &str, content_type: &str, body: Option<&Value>) -> Answer {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.header("Content-Type", content_type).body(b.to_string());
        }
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect();
        Answer {
            code,
            body: response.json().await.unwrap_or_default(),
            warnings,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, "", None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send("POST", path, "application/json", Some(body)).await
    }

    /// Server-side apply, as kube-rs and kubectl send it.
    async fn apply(&self, path: &str, query: &str, body: &Value) -> Answer {
        self.send(
            "PATCH",
            &format!("{path}?{query}"),
            "application/apply-patch+yaml",
            Some(body),
        )
        .await
    }

    async fn delete(&self, path: &str, options: &Value) -> Answer {
        self.send("DELETE", path, "application/json", Some(options)).await
    }
}

/// A fresh name part, so tests run again and again against the same stand-in.
fn fresh_id() -> String {
    testkit::fresh_tenant().as_str()[..8].to_owned()
}

const SECRETS: &str = "/api/v1/namespaces/tgsearch/secrets";
const CLAIMS: &str = "/api/v1/namespaces/tgsearch/persistentvolumeclaims";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/tgsearch/deployments";

fn deployment(name: &str, app: &str, claim: Option<&str>) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "tgsearch"},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "backend", "image": "ghcr.io/tgsearch/core:1"}]}
            }
        }
    });
    if let Some(claim) = claim {
        d["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]);
        d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
    }
    d
}

fn claim(name: &str, class: &str, size: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "tgsearch"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "resources": {"requests": {"storage": size}}}
    })
}

const APPLY: &str = "fieldManager=tgsearch-provisioner&force=true&fieldValidation=Strict";

#[tokio::test]
async fn tokens_eks_would_refuse_get_401() {
    let now = SystemTime::now();
    let good = Caller::provisioner();
    assert_eq!(good.get(SECRETS).await.code, 200);
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
        Some(token_for(
            stack::CLUSTER_NAME,
            stack::KUBE_ADMIN_ACCESS_KEY_ID,
            "testing",
            now,
        )),
    ];
    for bearer in refused {
        let mut request = client().get(format!("{}{SECRETS}", good.base));
        if let Some(t) = &bearer {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{bearer:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
    }
}

#[tokio::test]
async fn errors_are_status_objects_with_real_reasons() {
    let (provisioner, admin) = (Caller::provisioner(), Caller::admin());
    let missing = provisioner.get(&format!("{SECRETS}/does-not-exist")).await;
    assert_eq!(missing.code, 404);
    assert_eq!(missing.body["reason"], "NotFound");
    assert_eq!(missing.body["message"], "secrets \"does-not-exist\" not found");
    let widgets = admin.get("/apis/apps/v1/namespaces/tgsearch/widgets").await;
    assert_eq!(
        (widgets.code, widgets.body["reason"].as_str()),
        (404, Some("NotFound"))
    );
    // RBAC comes before routing: the provisioner is refused what its Role does not name,
    // served or not, as on EKS.
    let refused = provisioner.get("/apis/apps/v1/namespaces/tgsearch/widgets").await;
    assert_eq!(
        (refused.code, refused.body["reason"].as_str()),
        (403, Some("Forbidden"))
    );
}

#[tokio::test]
async fn rbac_refuses_a_verb_or_a_resource_outside_the_role_with_the_real_message() {
    let provisioner = Caller::provisioner();
    let user = stack::KUBE_PROVISIONER_USER;
    let name = format!("rbac-{}", fresh_id());
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}});
    assert_eq!(
        provisioner.post(SECRETS, &secret).await.code,
        201,
        "the Role grants create"
    );
    // A verb the Role does not grant: update (PUT).
    let put = provisioner
        .send(
            "PUT",
            &format!("{SECRETS}/{name}"),
            "application/json",
            Some(&secret),
        )
        .await;
    assert_eq!(put.code, 403);
    assert_eq!(put.body["reason"], "Forbidden");
    assert_eq!(
        put.body["message"],
        format!(
            "secrets \"{name}\" is forbidden: User \"{user}\" cannot update resource \"secrets\" in API group \"\" in the namespace \"tgsearch\""
        )
    );
    assert_eq!(put.body["details"], json!({"name": name, "kind": "secrets"}));
    // Resources the Role does not name, and a namespace it does not cover.
    let classes = provisioner.get("/apis/storage.k8s.io/v1/storageclasses").await;
    assert_eq!(classes.code, 403);
    assert_eq!(
        classes.body["message"],
        format!(
            "storageclasses.storage.k8s.io is forbidden: User \"{user}\" cannot list resource \"storageclasses\" in API group \"storage.k8s.io\" at the cluster scope"
        )
    );
    let elsewhere = provisioner
        .get(&format!("/api/v1/namespaces/default/secrets/{name}"))
        .await;
    assert_eq!(elsewhere.code, 403);
    assert_eq!(
        elsewhere.body["message"],
        format!(
            "secrets \"{name}\" is forbidden: User \"{user}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\""
        )
    );
    assert_eq!(provisioner.get("/api/v1/namespaces").await.code, 403);
    // Discovery and /version stay open to any authenticated user.
    for path in ["/version", "/api", "/apis", "/api/v1", "/apis/apps/v1"] {
        assert_eq!(provisioner.get(path).await.code, 200, "{path}");
    }
    assert_eq!(
        provisioner
            .delete(&format!("{SECRETS}/{name}"), &json!({}))
            .await
            .code,
        200
    );
}

#[tokio::test]
async fn a_deployment_selector_change_is_422_field_is_immutable() {
    let provisioner = Caller::provisioner();
    let name = format!("sel-{}", fresh_id());
    let path = format!("{DEPLOYMENTS}/{name}");
    let created = provisioner
        .apply(&path, APPLY, &deployment(&name, "one", None))
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let changed = provisioner
        .apply(&path, APPLY, &deployment(&name, "two", None))
        .await;
    assert_eq!(changed.code, 422);
    assert_eq!(changed.body["reason"], "Invalid");
    assert_eq!(
        changed.body["message"],
        format!(
            "Deployment.apps \"{name}\" is invalid: spec.selector: Invalid value: v1.LabelSelector{{MatchLabels:map[string]string{{\"app\":\"two\"}}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}: field is immutable"
        )
    );
    assert_eq!(changed.body["details"]["kind"], "Deployment");
    assert_eq!(changed.body["details"]["group"], "apps");
    assert_eq!(changed.body["details"]["causes"][0]["field"], "spec.selector");
    assert_eq!(
        changed.body["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );
    let live = provisioner.get(&path).await;
    assert_eq!(
        live.body["spec"]["selector"]["matchLabels"]["app"], "one",
        "nothing was stored"
    );
    // Basic validation: a container without an image, a selector that misses the template.
    let mut no_image = deployment(&format!("{name}-b"), "x", None);
    no_image["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    no_image["spec"]["selector"]["matchLabels"]["app"] = "y".into();
    let invalid = provisioner
        .apply(&format!("{DEPLOYMENTS}/{name}-b"), APPLY, &no_image)
        .await;
    assert_eq!(invalid.code, 422);
    assert_eq!(
        invalid.body["message"],
        format!(
            "Deployment.apps \"{name}-b\" is invalid: [spec.template.metadata.labels: Invalid value: map[string]string{{\"app\":\"x\"}}: `selector` does not match template `labels`, spec.template.spec.containers[0].image: Required value]"
        )
    );
    assert_eq!(provisioner.delete(&path, &json!({})).await.code, 200);
}

#[tokio::test]
async fn claims_only_grow_and_only_when_bound_and_their_class_allows_it() {
    let provisioner = Caller::provisioner();
    let admin = Caller::admin();
    let id = fresh_id();
    let (grows, fixed) = (format!("grow-{id}"), format!("fixed-{id}"));
    let claim_path = |n: &str| format!("{CLAIMS}/{n}");
    assert_eq!(
        provisioner
            .apply(&claim_path(&grows), APPLY, &claim(&grows, "gp3", "1Gi"))
            .await
            .code,
        201
    );
    assert_eq!(
        provisioner
            .apply(&claim_path(&fixed), APPLY, &claim(&fixed, "gp2", "1Gi"))
            .await
            .code,
        201
    );
    let pending = provisioner.get(&claim_path(&grows)).await;
    assert_eq!(
        pending.body["status"]["phase"], "Pending",
        "WaitForFirstConsumer: nothing mounts it yet"
    );
    let early = provisioner
        .apply(&claim_path(&grows), APPLY, &claim(&grows, "gp3", "2Gi"))
        .await;
    assert_eq!(early.code, 422, "an unbound claim's request is immutable");
    assert!(
        early.body["message"].as_str().unwrap().starts_with(&format!(
            "PersistentVolumeClaim \"{grows}\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"
        )),
        "{}",
        early.body["message"]
    );
    // A Deployment that mounts the claims: the simulated binder binds them.
    for (n, c) in [(&grows, &grows), (&fixed, &fixed)] {
        let d = provisioner
            .apply(&format!("{DEPLOYMENTS}/{n}"), APPLY, &deployment(n, n, Some(c)))
            .await;
        assert_eq!(d.code, 201, "{}", d.body);
    }
    let bound = provisioner.get(&claim_path(&grows)).await;
    assert_eq!(bound.body["status"]["phase"], "Bound");
    assert_eq!(bound.body["status"]["capacity"]["storage"], "1Gi");
    let shrink = provisioner
        .apply(&claim_path(&grows), APPLY, &claim(&grows, "gp3", "512Mi"))
        .await;
    assert_eq!(shrink.code, 422);
    assert_eq!(
        shrink.body["message"],
        format!(
            "PersistentVolumeClaim \"{grows}\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
        )
    );
    let reclass = provisioner
        .apply(&claim_path(&grows), APPLY, &claim(&grows, "gp2", "1Gi"))
        .await;
    assert_eq!(reclass.code, 422);
    let message = reclass.body["message"].as_str().unwrap();
    assert!(message.contains("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"), "{message}");
    assert!(message.contains("StorageClassName"), "{message}");
    let grown = provisioner
        .apply(&claim_path(&grows), APPLY, &claim(&grows, "gp3", "2Gi"))
        .await;
    assert_eq!(grown.code, 200, "{}", grown.body);
    let after = provisioner.get(&claim_path(&grows)).await;
    assert_eq!(after.body["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert_eq!(
        after.body["status"]["capacity"]["storage"], "2Gi",
        "the simulated resizer ran"
    );
    let refused = provisioner
        .apply(&claim_path(&fixed), APPLY, &claim(&fixed, "gp2", "2Gi"))
        .await;
    assert_eq!(refused.code, 403, "gp2 does not allow expansion");
    assert_eq!(refused.body["reason"], "Forbidden");
    assert_eq!(
        refused.body["message"],
        format!(
            "persistentvolumeclaims \"{fixed}\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
        )
    );
    // While a Deployment mounts it, a deleted claim stays, marked (pvc-protection).
    let marked = provisioner.delete(&claim_path(&fixed), &json!({})).await;
    assert_eq!(marked.code, 200);
    assert!(
        marked.body["metadata"]["deletionTimestamp"].is_string(),
        "{}",
        marked.body
    );
    assert_eq!(provisioner.get(&claim_path(&fixed)).await.code, 200);
    for n in [&grows, &fixed] {
        assert_eq!(
            provisioner
                .delete(&format!("{DEPLOYMENTS}/{n}"), &json!({}))
                .await
                .code,
            200
        );
    }
    assert_eq!(
        provisioner.get(&claim_path(&fixed)).await.code,
        404,
        "gone once nothing mounts it"
    );
    assert_eq!(
        provisioner.delete(&claim_path(&grows), &json!({})).await.code,
        200
    );
    assert_eq!(admin.get(&claim_path(&grows)).await.code, 404);
}

#[tokio::test]
async fn unknown_fields_are_refused_under_strict_and_warned_about_by_default() {
    let provisioner = Caller::provisioner();
    let name = format!("strict-{}", fresh_id());
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "foo": 1, "stringData": {"k": "v"}});
    let strict = provisioner
        .post(&format!("{SECRETS}?fieldValidation=Strict"), &secret)
        .await;
    assert_eq!(strict.code, 400);
    assert_eq!(strict.body["reason"], "BadRequest");
    assert_eq!(
        strict.body["message"],
        "Secret in version \"v1\" cannot be handled as a Secret: strict decoding error: unknown field \"foo\""
    );
    assert_eq!(provisioner.get(&format!("{SECRETS}/{name}")).await.code, 404);
    // The default (1.27+) is Warn: accepted, with a Warning header.
    let warned = provisioner.post(SECRETS, &secret).await;
    assert_eq!(warned.code, 201);
    assert_eq!(warned.warnings, ["299 - \"unknown field \\\"foo\\\"\""]);
    // A merge patch under Strict: 422, the patched object named as the invalid value.
    let patched = provisioner
        .send(
            "PATCH",
            &format!("{SECRETS}/{name}?fieldValidation=Strict"),
            "application/merge-patch+json",
            Some(&json!({"foo": 2})),
        )
        .await;
    assert_eq!(patched.code, 422);
    let message = patched.body["message"].as_str().unwrap();
    assert!(
        message.starts_with(" \"\" is invalid: patch: Invalid value: \""),
        "{message}"
    );
    assert!(
        message.ends_with("\": strict decoding error: unknown field \"foo\""),
        "{message}"
    );
    // Server-side apply: structured-merge-diff refuses undeclared fields whatever the
    // directive; kube-apiserver answers that with a 500 and no reason (kubernetes#122480).
    let applied = provisioner
        .apply(&format!("{SECRETS}/{name}"), APPLY, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "tgsearch"}, "foo": 1}))
        .await;
    assert_eq!(applied.code, 500);
    assert_eq!(
        applied.body["message"],
        format!(
            "failed to create typed patch object (tgsearch/{name}; /v1, Kind=Secret): .foo: field not declared in schema"
        )
    );
    assert_eq!(
        provisioner
            .delete(&format!("{SECRETS}/{name}"), &json!({}))
            .await
            .code,
        200
    );
}

#[tokio::test]
async fn server_side_apply_tracks_ownership_by_field_manager() {
    Stack::require();
    let name = format!("own-{}", fresh_id());
    let kube = provisioner_kube().await;
    let api: Api<Deployment> = Api::namespaced(kube, stack::NAMESPACE);
    let mut config = deployment(&name, &name, None);
    config["spec"]["replicas"] = 2.into();
    config["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "KEEP", "value": "1"}, {"name": "DROP", "value": "2"}]);
    let a = PatchParams::apply("standin-test-a");
    api.patch(&name, &a, &Patch::Apply(&config)).await.unwrap();
    // Applied again without DROP: a field the manager applied before and now omits goes.
    config["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "KEEP", "value": "1"}]);
    let after = api.patch(&name, &a, &Patch::Apply(&config)).await.unwrap();
    let env = after.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["KEEP"]);
    // Another manager setting a field A owns to another value: 409 Conflict.
    let b_config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {"replicas": 5}});
    let b = PatchParams::apply("standin-test-b");
    let err = api.patch(&name, &b, &Patch::Apply(&b_config)).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"standin-test-a\": .spec.replicas"
    );
    // The same, raw, shows the causes.
    let raw = Caller::provisioner()
        .apply(
            &format!("{DEPLOYMENTS}/{name}"),
            "fieldManager=standin-test-b",
            &b_config,
        )
        .await;
    assert_eq!(
        raw.body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"standin-test-a\"", "field": ".spec.replicas"}])
    );
    // Forced, B takes the field: A no longer owns it.
    let forced = api
        .patch(&name, &b.clone().force(), &Patch::Apply(&b_config))
        .await
        .unwrap();
    assert_eq!(forced.spec.as_ref().unwrap().replicas, Some(5));
    let owners: Vec<(String, Value)> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap(),
                serde_json::to_value(m.fields_v1.unwrap()).unwrap(),
            )
        })
        .collect();
    let fields_of = |manager: &str| owners.iter().find(|(m, _)| m == manager).unwrap().1.clone();
    assert_eq!(fields_of("standin-test-b")["f:spec"]["f:replicas"], json!({}));
    assert!(fields_of("standin-test-a")["f:spec"].get("f:replicas").is_none());
    assert!(
        fields_of("standin-test-a")["f:spec"]["f:template"].is_object(),
        "A keeps the rest"
    );
    api.delete(&name, &Default::default()).await.unwrap();
}

#[tokio::test]
async fn dry_run_validates_everything_and_stores_nothing() {
    let provisioner = Caller::provisioner();
    let name = format!("dry-{}", fresh_id());
    let path = format!("{DEPLOYMENTS}/{name}");
    let dry = provisioner
        .apply(
            &path,
            &format!("{APPLY}&dryRun=All"),
            &deployment(&name, "a", None),
        )
        .await;
    assert_eq!(dry.code, 201, "{}", dry.body);
    assert_eq!(dry.body["metadata"]["name"], name.as_str());
    assert_eq!(
        provisioner.get(&path).await.code,
        404,
        "a dry-run create stores nothing"
    );
    let created = provisioner
        .apply(&path, APPLY, &deployment(&name, "a", None))
        .await;
    let version = created.body["metadata"]["resourceVersion"].clone();
    let mut newer = deployment(&name, "a", None);
    newer["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/tgsearch/core:2".into();
    let dry = provisioner
        .apply(&path, &format!("{APPLY}&dryRun=All"), &newer)
        .await;
    assert_eq!(dry.code, 200);
    assert_eq!(
        dry.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/tgsearch/core:2"
    );
    assert_eq!(dry.body["metadata"]["generation"], 2);
    let live = provisioner.get(&path).await;
    assert_eq!(
        live.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/tgsearch/core:1"
    );
    assert_eq!(
        live.body["metadata"]["resourceVersion"], version,
        "nothing bumped"
    );
    assert_eq!(live.body["metadata"]["generation"], 1);
    let refused = provisioner
        .apply(
            &path,
            &format!("{APPLY}&dryRun=All"),
            &deployment(&name, "b", None),
        )
        .await;
    assert_eq!(refused.code, 422, "a dry run is validated like a write");
    let deleted = provisioner
        .delete(&format!("{path}?dryRun=All"), &json!({}))
        .await;
    assert_eq!(deleted.code, 200);
    assert_eq!(
        provisioner.get(&path).await.code,
        200,
        "a dry-run delete deletes nothing"
    );
    assert_eq!(provisioner.delete(&path, &json!({})).await.code, 200);
}

#[tokio::test]
async fn a_delete_with_another_uid_as_precondition_is_409() {
    let provisioner = Caller::provisioner();
    let name = format!("pre-{}", fresh_id());
    let created = provisioner
        .post(
            SECRETS,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
        )
        .await;
    let uid = created.body["metadata"]["uid"].as_str().unwrap().to_owned();
    let path = format!("{SECRETS}/{name}");
    let stale = "00000000-0000-4000-a000-000000000000";
    let refused = provisioner
        .delete(&path, &json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": stale}, "propagationPolicy": "Background"}))
        .await;
    assert_eq!(refused.code, 409);
    assert_eq!(refused.body["reason"], "Conflict");
    assert_eq!(
        refused.body["message"],
        format!(
            "Operation cannot be fulfilled on secrets \"{name}\": StorageError: invalid object, Code: 4, Key: /registry/secrets/tgsearch/{name}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {stale}, UID in object meta: {uid}"
        )
    );
    let bad_policy = provisioner
        .delete(&path, &json!({"propagationPolicy": "Eventually"}))
        .await;
    assert_eq!(bad_policy.code, 422);
    let deleted = provisioner
        .delete(
            &path,
            &json!({"preconditions": {"uid": uid}, "propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(deleted.code, 200);
    assert_eq!(deleted.body["status"], "Success");
    assert_eq!(deleted.body["details"]["uid"], uid.as_str());
}

/// A kube-rs client with the stack's identity (a static token; tests are shorter than its 15
/// minutes).
async fn provisioner_kube() -> kube::Client {
    let stack = Stack::require();
    let token = token(stack::CLUSTER_NAME, "testing", SystemTime::now());
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority-data: \"{}\"}}}}]
users: [{{name: u, user: {{token: \"{token}\"}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: tgsearch}}}}]
current-context: x
",
        stack.var("EKS_CLUSTER_ENDPOINT"),
        stack.var("EKS_CLUSTER_CA"),
    );
    let file = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
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

/// `kubectl create -f` of `object` (JSON through kubectl's resource builder). `kubectl create
/// secret|namespace` would use client-go's typed clients, which send protobuf, a format the
/// stand-in does not speak (its README).
fn kubectl_create(namespace: &str, object: serde_json::Value) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("kubectl-create-{}.json", testkit::fresh_tenant()));
    std::fs::write(&file, object.to_string()).unwrap();
    let result = kubectl(&["-n", namespace, "create", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(file);
    result
}

fn opaque_secret(name: &str, key: &str, value: &str) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name},
        "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}
    })
}

#[test]
fn kubectl_gets_describes_and_deletes() {
    let name = format!("probe-{}", &testkit::fresh_tenant().as_str()[..8]);
    let (ok, out) = kubectl_create(stack::NAMESPACE, opaque_secret(&name, "k", "v"));
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
    // Server-side apply and a label change, as an operator would; kubectl validates fields on
    // the server (the stand-in's OpenAPI v3 documents say it supports fieldValidation).
    let manifest = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{team: ops}}\nstringData:\n  k: v2\n"),
    )
    .unwrap();
    let (ok, out) = kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
    assert!(ok && out.contains("serverside-applied"), "{out}");
    let (ok, out) = kubectl(&["label", "secret", &name, "extra=1"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["get", "secrets", "-l", "team=ops,extra=1", "-o", "name"]);
    assert!(ok && out.trim() == format!("secret/{name}"), "{out}");
    let (ok, out) = kubectl(&["get", "secret", &name, "-o", "jsonpath={.data.k}"]);
    assert!(ok && out == "djI=", "applied stringData lands in data: {out}");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  k: v3\nsurprise: 1\n"
        ),
    )
    .unwrap();
    let (ok, out) = kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        !ok && out.contains("strict decoding error: unknown field \"surprise\""),
        "{out}"
    );
    let _ = std::fs::remove_file(manifest);
    let (ok, out) = kubectl(&["delete", "secret", &name]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["get", "secret", &name]);
    assert!(!ok && out.contains("NotFound"), "{out}");
}

#[test]
fn kubectl_as_admin_may_do_what_the_provisioner_may_not() {
    let ns = format!("admin-{}", &testkit::fresh_tenant().as_str()[..8]);
    let (ok, out) = kubectl(&["get", "storageclasses"]);
    assert!(
        ok && out.contains("gp3") && out.contains("ebs.csi.aws.com"),
        "{out}"
    );
    let (ok, out) = kubectl_create(
        stack::NAMESPACE,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl_create(&ns, opaque_secret("s", "a", "b"));
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["get", "namespace", &ns, "-o", "jsonpath={.status.phase}"]);
    assert!(ok && out == "Active", "{out}");
    let (ok, out) = kubectl(&["delete", "namespace", &ns]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["-n", &ns, "get", "secret", "s"]);
    assert!(!ok && out.contains("NotFound"), "{out}");
}
