//! The Lambda base image SAM would pull (`public.ecr.aws/lambda/provided:al2023`), built here
//! from Debian's packages because no registry is reachable: `debootstrap --variant=minbase` into
//! a folder, trimmed, `docker import`ed with the environment of the AWS image, tagged by a hash
//! of its recipe so a second run finds it. SAM adds its runtime interface emulator on top
//! (`<repo>:rapid-<arch>`), which is removed whenever the base or SAM changes.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::Arch;
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

/// Left out of the image: documentation, manuals, translations, apt's caches.
const TRIM: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
];

/// The base image's recipe, for the content tag.
struct Recipe {
    suite: String,
    arch: Arch,
}

impl Recipe {
    fn tag(&self) -> String {
        let mut hash = Sha256::new();
        for part in [RECIPE_VERSION, &self.suite, self.arch.debian(), "minbase"]
            .into_iter()
            .chain(PACKAGES.iter().copied())
            .chain(IMAGE_CONFIG.iter().copied())
            .chain(TRIM.iter().copied())
        {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest = hex::encode(hash.finalize());
        format!("debian-{}-{}-{}", self.suite, self.arch.sam(), &digest[..12])
    }
}

/// Fails with what to do when the Docker engine does not answer.
pub fn require_docker() -> Result<()> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => bail!(
            "the Docker engine is needed for `sam local` (its functions run in containers), and `docker info` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => {
            bail!("the Docker engine is needed for `sam local`, and the `docker` client cannot run: {e}")
        }
    }
}

fn image_exists(reference: &str) -> Result<bool> {
    Ok(Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success())
}

/// The base image's reference (`repo:tag`), built first when it is not there yet.
pub fn ensure(dir: &Path, arch: Arch, say: &impl Fn(&str)) -> Result<String> {
    require_docker()?;
    let recipe = Recipe {
        suite: host_suite()?,
        arch,
    };
    let reference = format!("{REPOSITORY}:{}", recipe.tag());
    if !image_exists(&reference)? {
        say(&format!(
            "building the Lambda base image {reference} from Debian's packages (once)"
        ));
        build(dir, &recipe, &reference)?;
    }
    forget_stale_rapid_image(dir, &reference, arch)?;
    Ok(reference)
}

fn build(dir: &Path, recipe: &Recipe, reference: &str) -> Result<()> {
    ensure_debootstrap()?;
    let rootfs = dir.join(format!("rootfs-{}", recipe.tag()));
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)
            .with_context(|| format!("removing the half-built {}", rootfs.display()))?;
    }
    let result = build_in(&rootfs, recipe, reference);
    let _ = fs::remove_dir_all(&rootfs);
    result
}

fn build_in(rootfs: &Path, recipe: &Recipe, reference: &str) -> Result<()> {
    let log = rootfs.with_extension("log");
    let log_file = fs::File::create(&log)?;
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--arch={}", recipe.arch.debian())])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(&recipe.suite)
        .arg(rootfs)
        .arg(mirror())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .context("cannot run debootstrap")?;
    if !status.success() {
        bail!(
            "debootstrap of Debian {} ({}) failed ({status}); its log: {}",
            recipe.suite,
            recipe.arch.debian(),
            log.display()
        );
    }
    let _ = fs::remove_file(&log);
    for path in TRIM {
        let trimmed = rootfs.join(path);
        if trimmed.exists() {
            fs::remove_dir_all(&trimmed)?;
            fs::create_dir_all(&trimmed)?;
        }
    }
    // Where Lambda puts the function, the runtime and layers.
    for path in ["var/task", "var/runtime", "opt"] {
        fs::create_dir_all(rootfs.join(path))?;
    }
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let mut import = Command::new("docker");
    import.arg("import");
    for change in IMAGE_CONFIG {
        import.args(["--change", change]);
    }
    let imported = import
        .args(["-", reference])
        .stdin(tar.stdout.take().context("tar has no stdout")?)
        .stdout(Stdio::null())
        .status()
        .context("cannot run docker import")?;
    let tarred = tar.wait()?;
    if !tarred.success() || !imported.success() {
        bail!("importing the root filesystem into Docker failed (tar {tarred}, docker import {imported})");
    }
    Ok(())
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

fn ensure_debootstrap() -> Result<()> {
    let found = Command::new("sh")
        .args(["-c", "command -v debootstrap || test -x /usr/sbin/debootstrap"])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !procs::is_root() {
        bail!(
            "building the Lambda base image needs root (debootstrap makes a chroot); run `cargo xtask sam image` as root{}",
            if found {
                ""
            } else {
                " with Debian's debootstrap installed"
            }
        );
    }
    if !found {
        eprintln!("sam: installing Debian's debootstrap (once)");
        procs::run(Command::new("apt-get").args(["update", "-qq"]))?;
        procs::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", "debootstrap"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

/// The host's Debian release (its keyring verifies it), e.g. `bookworm`.
fn host_suite() -> Result<String> {
    let os = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let field = |name: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_matches('"').to_owned())
    };
    if field("ID=").as_deref() != Some("debian") {
        bail!(
            "the Lambda base image is built with Debian's debootstrap and keyring: this needs a Debian host"
        );
    }
    field("VERSION_CODENAME=")
        .filter(|c| !c.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME")
}

/// `TGSEARCH_DEBIAN_MIRROR`, else the first Debian archive apt uses here, else Debian's own.
fn mirror() -> String {
    if let Ok(mirror) = std::env::var("TGSEARCH_DEBIAN_MIRROR") {
        return mirror;
    }
    let sources = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    sources
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|uri| uri.ends_with("/debian") || uri.ends_with("/debian/"))
        .map(str::to_owned)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_recipe() {
        let tag = |suite: &str, arch| {
            Recipe {
                suite: suite.into(),
                arch,
            }
            .tag()
        };
        assert_eq!(tag("bookworm", Arch::X86_64), tag("bookworm", Arch::X86_64));
        assert_ne!(tag("bookworm", Arch::X86_64), tag("trixie", Arch::X86_64));
        assert_ne!(tag("bookworm", Arch::X86_64), tag("bookworm", Arch::Arm64));
        assert!(tag("bookworm", Arch::Arm64).starts_with("debian-bookworm-arm64-"));
    }
}
