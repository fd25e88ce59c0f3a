//! The API server's defaulting (`SetDefaults_*` of the v1 and apps/v1 types) for the kinds
//! served: the fields a real server fills in that a client did not send.

use serde_json::{Map, Value, json};

fn set_if_absent(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

fn obj<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    parent.get_mut(key).and_then(Value::as_object_mut)
}

pub fn apply(kind: &str, object: &mut Value) {
    match kind {
        "Deployment" => deployment(object),
        "PersistentVolumeClaim" => pvc(object),
        "Secret" => {
            if let Some(m) = object.as_object_mut() {
                set_if_absent(m, "type", "Opaque".into());
            }
        }
        "Namespace" => namespace(object),
        "StorageClass" => {
            if let Some(m) = object.as_object_mut() {
                set_if_absent(m, "reclaimPolicy", "Delete".into());
                set_if_absent(m, "volumeBindingMode", "Immediate".into());
            }
        }
        _ => {}
    }
}

fn deployment(d: &mut Value) {
    let Some(spec) = obj(d, "spec") else { return };
    set_if_absent(spec, "replicas", 1.into());
    set_if_absent(spec, "revisionHistoryLimit", 10.into());
    set_if_absent(spec, "progressDeadlineSeconds", 600.into());
    set_if_absent(spec, "strategy", json!({}));
    if let Some(strategy) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
        set_if_absent(strategy, "type", "RollingUpdate".into());
        if strategy["type"] == "RollingUpdate" {
            set_if_absent(strategy, "rollingUpdate", json!({}));
            if let Some(ru) = strategy.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                set_if_absent(ru, "maxUnavailable", "25%".into());
                set_if_absent(ru, "maxSurge", "25%".into());
            }
        }
    }
    if let Some(pod) = spec.get_mut("template").and_then(|t| obj(t, "spec")) {
        pod_spec(pod);
    }
}

fn pod_spec(pod: &mut Map<String, Value>) {
    set_if_absent(pod, "dnsPolicy", "ClusterFirst".into());
    set_if_absent(pod, "restartPolicy", "Always".into());
    set_if_absent(pod, "securityContext", json!({}));
    set_if_absent(pod, "terminationGracePeriodSeconds", 30.into());
    set_if_absent(pod, "schedulerName", "default-scheduler".into());
    for list in ["containers", "initContainers"] {
        for c in pod
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(c) = c.as_object_mut() {
                container(c);
            }
        }
    }
    for v in pod
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(v) = v.as_object_mut() else { continue };
        if v.keys().all(|k| k == "name") {
            v.insert("emptyDir".into(), json!({}));
        }
        for source in ["secret", "configMap", "projected", "downwardAPI"] {
            if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                set_if_absent(s, "defaultMode", 420.into());
            }
        }
    }
}

/// `imagePullPolicy` defaults to `Always` for `:latest` or untagged images.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Map<String, Value>) {
    set_if_absent(p, "timeoutSeconds", 1.into());
    set_if_absent(p, "periodSeconds", 10.into());
    set_if_absent(p, "successThreshold", 1.into());
    set_if_absent(p, "failureThreshold", 3.into());
    if let Some(http) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_if_absent(http, "path", "/".into());
        set_if_absent(http, "scheme", "HTTP".into());
    }
}

fn container(c: &mut Map<String, Value>) {
    set_if_absent(c, "terminationMessagePath", "/dev/termination-log".into());
    set_if_absent(c, "terminationMessagePolicy", "File".into());
    let policy = pull_policy(c.get("image").and_then(Value::as_str).unwrap_or_default());
    set_if_absent(c, "imagePullPolicy", policy.into());
    set_if_absent(c, "resources", json!({}));
    for p in c
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object_mut() {
            set_if_absent(p, "protocol", "TCP".into());
        }
    }
    for name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(name).and_then(Value::as_object_mut) {
            probe(p);
        }
    }
    for e in c
        .get_mut("env")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(field_ref) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            set_if_absent(field_ref, "apiVersion", "v1".into());
        }
    }
}

fn pvc(c: &mut Value) {
    if let Some(spec) = obj(c, "spec") {
        set_if_absent(spec, "volumeMode", "Filesystem".into());
    }
    if let Some(m) = c.as_object_mut() {
        set_if_absent(m, "status", json!({}));
    }
    if let Some(status) = obj(c, "status") {
        set_if_absent(status, "phase", "Pending".into());
    }
}

fn namespace(ns: &mut Value) {
    let name = ns["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if let Some(meta) = obj(ns, "metadata") {
        set_if_absent(meta, "labels", json!({}));
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.insert("kubernetes.io/metadata.name".into(), name.into());
        }
    }
    if let Some(m) = ns.as_object_mut() {
        set_if_absent(m, "status", json!({}));
    }
    if let Some(status) = obj(ns, "status") {
        set_if_absent(status, "phase", "Active".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_the_api_servers_defaults() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {"containers": [
            {"name": "a", "image": "nginx"}, {"name": "b", "image": "repo/x:1.2", "ports": [{"containerPort": 80}]}
        ]}}}});
        apply("Deployment", &mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert!(
            spec["strategy"].get("rollingUpdate").is_none(),
            "Recreate gets no rollingUpdate"
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["containers"][1]["ports"][0]["protocol"], "TCP");
        let mut rolling = json!({"spec": {}});
        apply("Deployment", &mut rolling);
        assert_eq!(rolling["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    }
}
