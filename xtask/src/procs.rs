//! Background services of the stack: started detached with a pid file and a log, stopped by
//! process group.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

pub fn pid_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pid"))
}

pub fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Starts `command` in its own process group, detached from this terminal, output to
/// `<dir>/<name>.log`, pid in `<dir>/<name>.pid`.
pub fn spawn(dir: &Path, name: &str, command: &mut Command) -> Result<u32> {
    let log = fs::File::create(log_file(dir, name))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name}: {command:?}"))?;
    fs::write(pid_file(dir, name), child.id().to_string())?;
    Ok(child.id())
}

/// Waits until `ready()` holds, or fails with the tail of the service's log.
pub fn wait_for(dir: &Path, name: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = fs::read_to_string(log_file(dir, name)).unwrap_or_default();
    let tail: Vec<&str> = log
        .lines()
        .rev()
        .take(25)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    bail!(
        "{name} did not become ready within {}s; last lines of {}:\n{}",
        timeout.as_secs(),
        log_file(dir, name).display(),
        tail.join("\n")
    )
}

/// Whether the process recorded in `<dir>/<name>.pid` runs.
pub fn is_running(dir: &Path, name: &str) -> bool {
    let Ok(pid) = fs::read_to_string(pid_file(dir, name)) else {
        return false;
    };
    Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the process group recorded in `<dir>/<name>.pid`. Returns whether one was running.
pub fn stop(dir: &Path, name: &str) -> Result<bool> {
    let pid_path = pid_file(dir, name);
    let Ok(pid) = fs::read_to_string(&pid_path) else {
        return Ok(false);
    };
    let pid = pid.trim().to_owned();
    let _ = fs::remove_file(&pid_path);
    let alive = Command::new("kill")
        .args(["-0", &pid])
        .stderr(Stdio::null())
        .status()?
        .success();
    if !alive {
        return Ok(false);
    }
    let group = format!("-{pid}");
    Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status()?;
    for _ in 0..80 {
        if !Command::new("kill")
            .args(["-0", &pid])
            .stderr(Stdio::null())
            .status()?
            .success()
        {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status()?;
    Ok(true)
}

/// Runs `command` to completion, failing with its name when it fails. Its standard output goes
/// to our standard error, so that what an xtask prints on its own standard output (`stack env`,
/// `sam image`) stays machine-readable.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `command` to completion with its output kept for the error only: a step that succeeds
/// prints nothing of its own.
pub fn run_quiet(command: &mut Command) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed with {}: {}{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stdout), 15),
            tail(&String::from_utf8_lossy(&out.stderr), 15)
        );
    }
    Ok(())
}

/// Runs `command` to completion with its output in `<dir>/<name>.log`; on failure the error
/// carries the log's last lines and its path. Installs use this: one progress line of ours per
/// step, never a package manager's screenful.
pub fn run_logged(dir: &Path, name: &str, command: &mut Command) -> Result<()> {
    let path = log_file(dir, name);
    let log = fs::File::create(&path)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!(
            "{command:?} failed with {status}; the end of {}:\n{}",
            path.display(),
            tail(&fs::read_to_string(&path).unwrap_or_default(), 20)
        );
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Installs Debian packages (as root; otherwise fails saying what to install), one progress
/// line, apt's output in `<dir>/apt.log`.
pub fn apt_install(dir: &Path, packages: &[&str], say: &impl Fn(&str)) -> Result<()> {
    if !is_root() {
        bail!(
            "{} not installed: run `sudo apt-get install {}` and try again",
            packages.join(", "),
            packages.join(" ")
        );
    }
    fs::create_dir_all(dir)?;
    say(&format!("installing Debian's {} (once)", packages.join(", ")));
    run_logged(dir, "apt", Command::new("apt-get").args(["update", "-qq"]))?;
    run_logged(
        dir,
        "apt",
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
