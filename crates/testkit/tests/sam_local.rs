//! The functions as `sam build` builds them and `sam local` runs them, in containers of the
//! Debian-built Lambda base image on this machine's Docker engine, against the local stack:
//! exactly the README's `cargo xtask sam` commands, checked with independent clients
//! (Secrets Manager, the RabbitMQ management API, the Kubernetes API, AMQP) and the AWS CLI.
//!
//! Needs the local stack (`cargo xtask stack up`) and a Docker engine; fails, never skips,
//! without them. The first run compiles the functions for cargo-lambda's target and builds the
//! base image (minutes); later runs reuse both.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::cognito::pool_tenant;
use testkit::settle::until_complete;

use serde_json::Value;
use testkit::stack::Stack;
use testkit::{amqp, events, fresh_tenant};
use tgsearch::ports::CredentialStore;
use tgsearch::status::tenant_status;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_docker() {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the Docker engine is needed: `sam local` runs the functions in containers, and `docker info` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "the Docker engine is needed: `sam local` runs the functions in containers, and `docker` cannot run: {e}"
        ),
    }
}

/// `cargo xtask sam <args>`, as a user types it, under a deadline (its output goes to files, so
/// nothing blocks on a full pipe).
fn xtask_sam(args: &[&str], deadline: Duration) -> Output {
    let scratch = std::env::temp_dir().join(format!("tgsearch-sam-test-{}", fresh_tenant()));
    fs::create_dir_all(&scratch).unwrap();
    let (out_path, err_path) = (scratch.join("stdout"), scratch.join("stderr"));
    let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(["xtask", "sam"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("cannot run cargo xtask sam");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            kill_group(&mut child, "-KILL");
            let err = fs::read_to_string(&err_path).unwrap_or_default();
            panic!("cargo xtask sam {args:?} did not finish within {deadline:?}; its stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let output = Output {
        status,
        stdout: fs::read(&out_path).unwrap(),
        stderr: fs::read(&err_path).unwrap(),
    };
    let _ = fs::remove_dir_all(scratch);
    assert!(
        output.status.success(),
        "cargo xtask sam {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn kill_group(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{}", child.id())])
        .status();
}

/// `cargo xtask sam start-lambda` in the background; stopped (SIGINT, as Ctrl-C) when dropped.
struct StartLambda {
    child: Child,
    port: u16,
}

impl StartLambda {
    fn start() -> Self {
        // A port nobody listens on, next to SAM's default 3001.
        let port = (3001..=3019)
            .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("no free port in 3001-3019 for sam local start-lambda");
        let child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["xtask", "sam", "start-lambda", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("cannot run cargo xtask sam start-lambda");
        let mut server = Self { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("cargo xtask sam start-lambda ended with {status} before it listened");
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "sam local start-lambda did not listen on {port} within 180 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StartLambda {
    fn drop(&mut self) {
        kill_group(&mut self.child, "-INT");
        for _ in 0..60 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        kill_group(&mut self.child, "-KILL");
        let _ = self.child.wait();
    }
}

/// `aws lambda invoke --endpoint-url` with the AWS CLI v1 of the stack's venv-awscli: the status
/// it prints and the function's answer.
fn aws_lambda_invoke(endpoint: &str, function: &str, payload: &Value) -> (Value, Value) {
    let dir = std::env::temp_dir().join(format!("tgsearch-sam-aws-{}", fresh_tenant()));
    fs::create_dir_all(&dir).unwrap();
    let (payload_file, answer_file) = (dir.join("payload.json"), dir.join("answer.json"));
    fs::write(&payload_file, payload.to_string()).unwrap();
    let out = Command::new(testkit::stack::awscli_bin().join("aws"))
        .args([
            "lambda",
            "invoke",
            "--endpoint-url",
            endpoint,
            "--function-name",
            function,
        ])
        .arg("--payload")
        .arg(format!("file://{}", payload_file.display()))
        .arg(&answer_file)
        .args(["--cli-read-timeout", "120"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", testkit::stack::REGION)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("the AWS CLI (venv-awscli) is missing: run `cargo xtask stack up`");
    assert!(
        out.status.success(),
        "aws lambda invoke {function}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = serde_json::from_slice(&out.stdout).unwrap();
    let answer = serde_json::from_slice(&fs::read(&answer_file).unwrap()).unwrap();
    let _ = fs::remove_dir_all(dir);
    (status, answer)
}

#[tokio::test]
async fn sam_builds_invokes_and_serves_the_functions_in_containers() {
    require_docker();
    let stack = Stack::require();
    let app = stack.app().await;

    // 1. sam build of every function of template.yml whose binary is in the workspace.
    xtask_sam(&["build"], Duration::from_secs(40 * 60));
    let built: Value =
        serde_json::from_slice(&fs::read(root().join(".aws-sam/build/tgsearch-built.json")).unwrap())
            .unwrap();
    let functions: Vec<&str> = built["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for function in [
        "PostConfirmationFunction",
        "TeardownFunction",
        "ReconcileFunction",
        "MailgunWebhookFunction",
    ] {
        assert!(functions.contains(&function), "{function} was not built: {built}");
        let bootstrap = root()
            .join(".aws-sam/functions")
            .join(function)
            .join(function)
            .join("bootstrap");
        assert!(bootstrap.exists(), "sam build left no {}", bootstrap.display());
    }

    // 2. The base image, built from Debian's packages (or found by its content tag).
    let image = String::from_utf8(xtask_sam(&["image"], Duration::from_secs(20 * 60)).stdout).unwrap();
    let image = image.trim();
    assert!(
        image.starts_with("tgsearch/lambda-provided-al2023:debian-"),
        "{image}"
    );
    let inspected = Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .unwrap();
    assert!(inspected.status.success(), "docker does not know {image}");

    // 3. sam local invoke of post-confirmation with the signup fixture of a fresh user.
    let tenant = pool_tenant().await;
    let event = events::signup_for(&tenant);
    let event_file = std::env::temp_dir().join(format!("tgsearch-sam-signup-{tenant}.json"));
    fs::write(&event_file, event.to_string()).unwrap();
    let out = xtask_sam(
        &[
            "invoke",
            "PostConfirmationFunction",
            "--event",
            event_file.to_str().unwrap(),
        ],
        Duration::from_secs(5 * 60),
    );
    let _ = fs::remove_file(&event_file);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sam local invoke printed no JSON answer ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(answer, event, "Cognito needs its event back unchanged");

    // What the container made, seen by independent clients: every resource, and the stored
    // credentials log in to the tenant's own vhost over AMQP.
    until_complete(&app.provisioner, &tenant).await;
    let creds = app
        .provisioner
        .store
        .read(&tenant)
        .await
        .unwrap()
        .ours()
        .expect("the tenant secret exists");
    let body = amqp::round_trip(creds.amqp_uri.expose(), tenant.as_str().as_bytes())
        .await
        .unwrap();
    assert_eq!(body, tenant.as_str().as_bytes());

    // The other functions with their fixtures: the Mailgun fixture is not signed with the stack's
    // key, and the webhook refuses it for good (406).
    let out = xtask_sam(&["invoke", "MailgunWebhookFunction"], Duration::from_secs(5 * 60));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["statusCode"], 406, "{answer}");

    // 4. sam local start-lambda, and teardown through it with the AWS CLI, once the user has
    // left the stack's pool (teardown refuses to remove an active user's tenant).
    assert!(testkit::cognito::delete_pool_user(&tenant).await);
    let server = StartLambda::start();
    let (status, answer) = aws_lambda_invoke(
        &server.endpoint(),
        "TeardownFunction",
        &serde_json::json!({ "sub": tenant.as_str() }),
    );
    assert_eq!(status["StatusCode"], 200, "{status}");
    assert!(status.get("FunctionError").is_none(), "teardown failed: {answer}");
    assert_eq!(answer["sub"], tenant.as_str(), "{answer}");
    drop(server);

    let status = tenant_status(&app.provisioner, &tenant).await.unwrap();
    assert!(status.is_absent(), "teardown in a container left: {status}");
    let refused = amqp::connect(creds.amqp_uri.expose()).await;
    assert!(refused.is_err(), "the removed tenant still logs in over AMQP");
}
