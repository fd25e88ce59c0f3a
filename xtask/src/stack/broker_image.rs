//! The broker image: RabbitMQ from Debian's archive in a container, because the release the
//! deployment runs (4.x, metadata in Khepri) does not install on this Debian 12 host (its
//! Erlang needs a newer glibc). Debian sid ships 4.3 on Khepri alone; `TGSEARCH_BROKER_SUITE`
//! picks another suite (`trixie`: 4.0.5, where `stack up` turns Khepri on by its feature
//! flag). The image runs `rabbitmq-server` as the `rabbitmq` user with the cluster's Erlang
//! cookie, its logs on standard output.

use std::path::Path;

use anyhow::Result;
use testkit::cluster::IMAGE_REPOSITORY;

use crate::debian_image::{Recipe, TRIM, host_arch};

/// The suite the broker comes from unless `TGSEARCH_BROKER_SUITE` says otherwise.
pub const DEFAULT_SUITE: &str = "sid";

/// Bump when the recipe changes in a way its inputs below do not show.
const RECIPE_VERSION: &str = "1";

/// The container's command: the cookie mounted by `stack up` becomes the `rabbitmq` user's,
/// then RabbitMQ runs as that user (Debian's `/usr/sbin` wrapper would send the logs to files).
const ENTRYPOINT: &str = r#"#!/bin/sh
set -eu
if [ -r /run/tgsearch/erlang.cookie ]; then
  install -o rabbitmq -g rabbitmq -m 0400 /run/tgsearch/erlang.cookie /var/lib/rabbitmq/.erlang.cookie
fi
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
cd /var/lib/rabbitmq
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
  env HOME=/var/lib/rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
"#;

const IMAGE_CONFIG: &[&str] = &[
    "ENV LANG=C.UTF-8",
    "CMD [\"/usr/local/bin/tgsearch-rabbitmq\"]",
    "LABEL org.opencontainers.image.description=\"RabbitMQ from Debian's archive, built by cargo xtask stack up\"",
];

pub fn suite() -> String {
    std::env::var("TGSEARCH_BROKER_SUITE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SUITE.into())
}

fn recipe(suite: String, arch: &'static str) -> Recipe<'static> {
    Recipe {
        what: "the RabbitMQ broker image",
        repository: IMAGE_REPOSITORY,
        version: RECIPE_VERSION,
        tag_prefix: format!("debian-{suite}-{arch}"),
        suite,
        arch,
        packages: &["rabbitmq-server"],
        config: IMAGE_CONFIG,
        trim: TRIM,
        files: &[("usr/local/bin/tgsearch-rabbitmq", ENTRYPOINT, 0o755)],
        dirs: &["run/tgsearch"],
    }
}

/// The broker image's reference, built first when it is not there yet.
pub fn ensure(dir: &Path, say: &impl Fn(&str)) -> Result<String> {
    recipe(suite(), host_arch()?).ensure(dir, say)
}
