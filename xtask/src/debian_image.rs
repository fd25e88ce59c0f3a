//! Container images built here from Debian's archive, because no image registry is reachable:
//! `debootstrap --variant=minbase` into a folder (with the packages the image needs), trimmed,
//! extra files written, then `docker import`ed with the image's configuration. Each image is
//! tagged by a hash of its recipe, so a second run finds it and a changed recipe builds anew.
//! The Lambda base image (`sam image`) and the RabbitMQ broker image (`stack up`) are two
//! recipes of this one builder.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::procs;

/// What an image is made of. Every field goes into the content tag.
pub struct Recipe<'a> {
    /// What the image is, for progress lines and errors ("the RabbitMQ broker image").
    pub what: &'a str,
    pub repository: &'a str,
    /// Bump when the recipe changes in a way the fields below do not show.
    pub version: &'a str,
    /// Debian suite: `bookworm`, `trixie`, `sid`, ...
    pub suite: String,
    /// Debian's architecture name (`amd64`, `arm64`).
    pub arch: &'a str,
    /// The tag's readable part before the hash, e.g. `debian-bookworm-arm64`.
    pub tag_prefix: String,
    /// Packages on top of minbase (debootstrap resolves their dependencies).
    pub packages: &'a [&'a str],
    /// `docker import --change` lines (ENV, CMD, WORKDIR, LABEL, ...).
    pub config: &'a [&'a str],
    /// Folders emptied in the image: documentation, manuals, apt's caches.
    pub trim: &'a [&'a str],
    /// Files written into the image: path inside it, content, mode.
    pub files: &'a [(&'a str, &'a str, u32)],
    /// Folders created in the image.
    pub dirs: &'a [&'a str],
}

/// Folders every image here leaves out.
pub const TRIM: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
];

impl Recipe<'_> {
    pub fn tag(&self) -> String {
        let mut hash = Sha256::new();
        for part in [self.version, &self.suite, self.arch, "minbase"]
            .into_iter()
            .chain(self.packages.iter().copied())
            .chain(self.config.iter().copied())
            .chain(self.trim.iter().copied())
            .chain(self.dirs.iter().copied())
            .chain(self.files.iter().flat_map(|(path, content, _)| [*path, *content]))
        {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        for (_, _, mode) in self.files {
            hash.update(mode.to_le_bytes());
        }
        let digest = hex::encode(hash.finalize());
        format!("{}-{}", self.tag_prefix, &digest[..12])
    }

    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag())
    }

    /// The image's reference, built first when it is not there yet (`dir` holds the build's
    /// scratch folder and log).
    pub fn ensure(&self, dir: &Path, say: &impl Fn(&str)) -> Result<String> {
        require_docker(self.what)?;
        let reference = self.reference();
        if !image_exists(&reference)? {
            say(&format!(
                "building {} {reference} from Debian {}'s packages (once, about a minute)",
                self.what, self.suite
            ));
            self.build(dir, &reference)?;
        }
        Ok(reference)
    }

    fn build(&self, dir: &Path, reference: &str) -> Result<()> {
        ensure_debootstrap(dir, self.what)?;
        let rootfs = dir.join(format!("rootfs-{}", self.tag()));
        if rootfs.exists() {
            fs::remove_dir_all(&rootfs)
                .with_context(|| format!("removing the half-built {}", rootfs.display()))?;
        }
        let result = self.build_in(&rootfs, reference);
        let _ = fs::remove_dir_all(&rootfs);
        result
    }

    fn build_in(&self, rootfs: &Path, reference: &str) -> Result<()> {
        let log = rootfs.with_extension("log");
        let log_file = fs::File::create(&log)?;
        let mut debootstrap = Command::new("debootstrap");
        debootstrap.args(["--variant=minbase", &format!("--arch={}", self.arch)]);
        if !self.packages.is_empty() {
            debootstrap.arg(format!("--include={}", self.packages.join(",")));
        }
        let status = debootstrap
            .arg(&self.suite)
            .arg(rootfs)
            .arg(mirror())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .status()
            .context("cannot run debootstrap")?;
        if !status.success() {
            bail!(
                "debootstrap of Debian {} ({}) for {} failed ({status}); its log: {}",
                self.suite,
                self.arch,
                self.what,
                log.display()
            );
        }
        let _ = fs::remove_file(&log);
        for path in self.trim {
            let trimmed = rootfs.join(path);
            if trimmed.exists() {
                fs::remove_dir_all(&trimmed)?;
                fs::create_dir_all(&trimmed)?;
            }
        }
        for path in self.dirs {
            fs::create_dir_all(rootfs.join(path))?;
        }
        for (path, content, mode) in self.files {
            let file = rootfs.join(path);
            fs::create_dir_all(file.parent().context("a file path has a parent")?)?;
            fs::write(&file, content)?;
            fs::set_permissions(&file, fs::Permissions::from_mode(*mode))?;
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
        for change in self.config {
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
            bail!(
                "importing the root filesystem into Docker failed (tar {tarred}, docker import {imported})"
            );
        }
        Ok(())
    }
}

/// Fails with what to install or start when the Docker engine does not answer.
pub fn require_docker(purpose: &str) -> Result<()> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => bail!(
            "{purpose} runs in Docker, and the Docker engine does not answer (`docker info`: {}). Start it (`service docker start` or `systemctl start docker`) and run again",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => bail!(
            "{purpose} runs in Docker, and the `docker` client cannot run ({e}). Install Docker Engine (on Debian: `apt-get install docker.io`, or Docker's docker-ce), start it, and run again"
        ),
    }
}

pub fn image_exists(reference: &str) -> Result<bool> {
    Ok(Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success())
}

/// Every image of `repository` (for `stack down --purge`). Returns the references removed.
pub fn remove_all(repository: &str) -> Result<Vec<String>> {
    let out = Command::new("docker")
        .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository])
        .output()?;
    let references: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|r| !r.is_empty())
        .collect();
    for reference in &references {
        procs::run_quiet(Command::new("docker").args(["image", "rm", "--force", reference]))?;
    }
    Ok(references)
}

fn ensure_debootstrap(dir: &Path, what: &str) -> Result<()> {
    let found = Command::new("sh")
        .args(["-c", "command -v debootstrap || test -x /usr/sbin/debootstrap"])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !procs::is_root() {
        bail!(
            "building {what} needs root (debootstrap makes a chroot): run as root{}",
            if found {
                ""
            } else {
                " with Debian's debootstrap installed"
            }
        );
    }
    if !found {
        procs::apt_install(dir, &["debootstrap"], &|m| eprintln!("stack: {m}"))?;
    }
    Ok(())
}

/// The host's Debian release (its keyring verifies it), e.g. `bookworm`.
pub fn host_suite() -> Result<String> {
    let os = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let field = |name: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_matches('"').to_owned())
    };
    if field("ID=").as_deref() != Some("debian") {
        bail!("images are built with Debian's debootstrap and keyring: this needs a Debian host");
    }
    field("VERSION_CODENAME=")
        .filter(|c| !c.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME")
}

/// The host's architecture as Debian names it.
pub fn host_arch() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => bail!("no Debian image recipe for a {other} host"),
    }
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

    fn recipe(suite: &str, file: &'static str) -> Recipe<'static> {
        Recipe {
            what: "an image",
            repository: "tgsearch/test",
            version: "1",
            suite: suite.into(),
            arch: "amd64",
            tag_prefix: format!("debian-{suite}"),
            packages: &["ca-certificates"],
            config: &["ENV A=b"],
            trim: TRIM,
            files: if file.is_empty() {
                &[]
            } else {
                &[("etc/x", "y", 0o644)]
            },
            dirs: &[],
        }
    }

    #[test]
    fn the_tag_follows_every_part_of_the_recipe() {
        assert_eq!(recipe("sid", "").tag(), recipe("sid", "").tag());
        assert_ne!(recipe("sid", "").tag(), recipe("trixie", "").tag());
        assert_ne!(recipe("sid", "").tag(), recipe("sid", "f").tag());
        assert!(recipe("sid", "").tag().starts_with("debian-sid-"));
        assert_eq!(
            recipe("sid", "").reference(),
            format!("tgsearch/test:{}", recipe("sid", "").tag())
        );
    }
}
