//! The broker the deployment runs, as `manifests/broker/rabbitmq.yaml` pins and configures it:
//! the stack's RabbitMQ takes its behaviour settings from there (so what the tests prove holds
//! for the deployed configuration), and the tests set the running broker against the pin.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The manifest, relative to the workspace root.
pub const MANIFEST: &str = "manifests/broker/rabbitmq.yaml";

/// Settings of the deployed `rabbitmq.conf` that the local stack does not take: listeners, TLS
/// and logging belong to the deployment's network and certificates (the stack listens in plain
/// text on its containers' own addresses, and logs to the console).
const DEPLOYMENT_ONLY: &[&str] = &[
    "listeners.",
    "management.tcp.",
    "management.ssl.",
    "prometheus.",
    "ssl_options.",
    "log.",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedBroker {
    /// `rabbitmq:4.3.6-management`.
    pub image: String,
    /// `4.3.6`.
    pub version: String,
    /// `key = value` lines of `spec.rabbitmq.additionalConfig`, comments dropped.
    pub settings: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Manifest {
    spec: Spec,
}
#[derive(Deserialize)]
struct Spec {
    image: String,
    rabbitmq: RabbitmqSpec,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RabbitmqSpec {
    additional_config: String,
}

impl DeployedBroker {
    /// Reads the manifest under `root` (the workspace).
    pub fn read(root: &Path) -> Result<Self> {
        let path = root.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = serde_saphyr::from_str(text).context("not a RabbitmqCluster manifest")?;
        let image = manifest.spec.image;
        let version = image
            .strip_prefix("rabbitmq:")
            .and_then(|tag| tag.split('-').next())
            .filter(|v| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()))
            .with_context(|| format!("spec.image `{image}` is not rabbitmq:<major>.<minor>.<patch>[-...]"))?
            .to_owned();
        let mut settings = Vec::new();
        for line in manifest.spec.rabbitmq.additional_config.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("spec.rabbitmq.additionalConfig: `{line}` is not `key = value`");
            };
            settings.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Self {
            image,
            version,
            settings,
        })
    }

    /// `4.3` of `4.3.6`.
    pub fn major_minor(&self) -> &str {
        self.version.rsplit_once('.').map_or(&self.version, |(mm, _)| mm)
    }

    /// The deployed settings the local stack runs with too (all but [`DEPLOYMENT_ONLY`]).
    pub fn stack_settings(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .filter(|(k, _)| !DEPLOYMENT_ONLY.iter().any(|p| k.starts_with(p)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST_TEXT: &str = "apiVersion: rabbitmq.com/v1beta1
kind: RabbitmqCluster
spec:
  image: rabbitmq:4.3.6-management
  rabbitmq:
    additionalConfig: |
      # comment
      default_queue_type = quorum
      listeners.tcp.local = 127.0.0.1:5672
      ssl_options.versions.1 = tlsv1.3
      management_agent.disable_metrics_collector = true
";

    #[test]
    fn the_pin_and_the_behaviour_settings_are_read_and_the_network_ones_left_to_the_deployment() {
        let broker = DeployedBroker::parse(MANIFEST_TEXT).unwrap();
        assert_eq!(broker.version, "4.3.6");
        assert_eq!(broker.major_minor(), "4.3");
        assert_eq!(broker.settings.len(), 4);
        assert_eq!(
            broker.stack_settings(),
            [
                ("default_queue_type".to_owned(), "quorum".to_owned()),
                (
                    "management_agent.disable_metrics_collector".to_owned(),
                    "true".to_owned()
                )
            ]
        );
        let bad = MANIFEST_TEXT.replace("rabbitmq:4.3.6-management", "rabbitmq:latest");
        assert!(format!("{:#}", DeployedBroker::parse(&bad).unwrap_err()).contains("rabbitmq:latest"));
    }

    #[test]
    fn the_workspace_manifest_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        DeployedBroker::read(&root).unwrap();
    }
}
