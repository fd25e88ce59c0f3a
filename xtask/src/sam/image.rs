//! The Lambda base image SAM would pull (`public.ecr.aws/lambda/provided:al2023`), built here
//! from Debian's packages because no registry is reachable (`crate::debian_image`): minbase
//! with the CA bundle, `docker import`ed with the environment of the AWS image, tagged by a hash
//! of its recipe so a second run finds it. SAM adds its runtime interface emulator on top
//! (`<repo>:rapid-<arch>`), which is removed whenever the base or SAM changes.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::Arch;
use crate::debian_image::{Recipe, TRIM, host_suite, image_exists};
use crate::procs;
use crate::stack::workspace_root;

pub const REPOSITORY: &str = "tgsearch/lambda-provided-al2023";

/// Bump when the recipe changes in a way its inputs below do not show.
const RECIPE_VERSION: &str = "1";

/// Debian packages on top of minbase: the CA bundle AL2023 also ships (the SDK's HTTPS to AWS).
const PACKAGES: &[&str] = &["ca-certificates"];

/// What the AWS image sets (its Dockerfile), with Debian's built-in C.UTF-8 locale for en_US.
const IMAGE_CONFIG: &[&str] = &[
    "ENV LANG=C.UTF-8",
    "ENV TZ=:/etc/localtime",
    "ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "ENV LAMBDA_TASK_ROOT=/var/task",
    "ENV LAMBDA_RUNTIME_DIR=/var/runtime",
    "WORKDIR /var/task",
    "LABEL org.opencontainers.image.description=\"provided.al2023 stand-in built from Debian minbase by cargo xtask sam image\"",
];

/// The base image's recipe: the host's Debian release, for the functions' architecture.
fn recipe(suite: String, arch: Arch) -> Recipe<'static> {
    Recipe {
        what: "the Lambda base image",
        repository: REPOSITORY,
        version: RECIPE_VERSION,
        tag_prefix: format!("debian-{suite}-{}", arch.sam()),
        suite,
        arch: arch.debian(),
        packages: PACKAGES,
        config: IMAGE_CONFIG,
        trim: TRIM,
        files: &[],
        // Where Lambda puts the function, the runtime and layers.
        dirs: &["var/task", "var/runtime", "opt"],
    }
}

/// The base image's reference (`repo:tag`), built first when it is not there yet.
pub fn ensure(dir: &Path, arch: Arch, say: &impl Fn(&str)) -> Result<String> {
    let reference = recipe(host_suite()?, arch).ensure(dir, say)?;
    forget_stale_rapid_image(dir, &reference, arch)?;
    Ok(reference)
}

/// SAM builds `<repo>:rapid-<arch>` (the base plus its emulator) once and reuses it by name,
/// even after the base image or SAM changed: remove it when either did.
fn forget_stale_rapid_image(dir: &Path, reference: &str, arch: Arch) -> Result<()> {
    let requirements = fs::read(workspace_root().join("xtask/sam-requirements.txt"))?;
    let wanted = format!("{reference} {}\n", hex::encode(Sha256::digest(&requirements)));
    let stamp = dir.join("rapid-image.stamp");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    let rapid = format!("{REPOSITORY}:rapid-{}", arch.sam());
    if image_exists(&rapid)? {
        procs::run(
            Command::new("docker")
                .args(["image", "rm", "--force", &rapid])
                .stdout(Stdio::null()),
        )?;
    }
    fs::write(stamp, wanted)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_recipe() {
        let tag = |suite: &str, arch| recipe(suite.into(), arch).tag();
        assert_eq!(tag("bookworm", Arch::X86_64), tag("bookworm", Arch::X86_64));
        assert_ne!(tag("bookworm", Arch::X86_64), tag("trixie", Arch::X86_64));
        assert_ne!(tag("bookworm", Arch::X86_64), tag("bookworm", Arch::Arm64));
        assert!(tag("bookworm", Arch::Arm64).starts_with("debian-bookworm-arm64-"));
    }
}
