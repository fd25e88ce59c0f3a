//! Rotation through the real `tenant-credentials` function URL, against the stack's real
//! servers: two at once, racing reconcile, cut at each step and repeated, looped by one user.
//! Every check is what a user would check: the password `GET /tenant` hands out logs in over
//! AMQP, the one it replaced does not.
//!
//! Needs the local stack (`cargo xtask stack up`).

use std::time::Duration;

use testkit::amqp;
use testkit::cognito::User;
use testkit::frontend::{Frontend, bearer};
use tgsearch::credentials::{TenantCredentials, generate_password, random_uuid};
use tgsearch::deadline::Deadline;
use tgsearch::ports::{CredentialStore, TenantBackend, TenantBroker};
use tgsearch::provision::SecretFirst;

/// A ready tenant and its signed-in user.
async fn ready(f: &Frontend, label: &str) -> (User, String) {
    let user = f.user(label).await;
    let token = bearer(&f.sign_in(&user).await.access);
    f.provision(&user).await;
    (user, token)
}

async fn rotate(f: &Frontend, token: &str) -> testkit::frontend::Answer {
    f.request(reqwest::Method::POST, "/tenant/rotate", &[token]).await
}

/// The stored credentials log in, `replaced` does not, nothing is pending, and `GET /tenant`
/// hands out exactly the stored ones.
async fn assert_rotated(f: &Frontend, user: &User, token: &str, replaced: &str) -> TenantCredentials {
    let versions = f
        .app
        .provisioner
        .store
        .versions(&user.tenant)
        .await
        .unwrap()
        .ours()
        .expect("the tenant's secret");
    assert!(versions.pending.is_none(), "a rotation was left pending");
    let stored = versions.current.credentials;
    amqp::round_trip(stored.amqp_uri.expose(), b"stored")
        .await
        .expect("the stored password logs in");
    assert!(
        amqp::connect(replaced).await.is_err(),
        "the replaced password still logs in"
    );
    let got = f.get("/tenant", &[token]).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json()["amqp_uri"], stored.amqp_uri.expose());
    stored
}

#[tokio::test]
async fn three_rotations_at_once_answer_one_password_that_logs_in() {
    let f = Frontend::new().await;
    let (user, token) = ready(&f, "rotate-burst").await;
    let before = f.get("/tenant", &[&token]).await.json();
    let answers = futures::future::join_all((0..3).map(|_| rotate(&f, &token))).await;
    let mut handed_out = Vec::new();
    for a in &answers {
        match a.status {
            200 => handed_out.push(a.json()["amqp_uri"].as_str().unwrap().to_owned()),
            409 => assert_eq!(a.json()["error"], "rotation_in_progress", "{}", a.text),
            other => panic!("{other}: {}", a.text),
        }
    }
    assert!(!handed_out.is_empty(), "no rotation answered 200");
    let stored = assert_rotated(&f, &user, &token, before["amqp_uri"].as_str().unwrap()).await;
    for uri in handed_out {
        assert_eq!(
            uri,
            stored.amqp_uri.expose(),
            "a 200 answer carried credentials that no longer log in"
        );
    }
    f.remove(&user).await;
}

#[tokio::test]
async fn a_rotation_racing_reconcile_is_never_reverted() {
    let f = Frontend::new().await;
    let (user, token) = ready(&f, "rotate-race").await;
    let mut replaced = f.get("/tenant", &[&token]).await.json()["amqp_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    for round in 0..2 {
        let reconcile = async {
            // Reconcile's own per-tenant run, several times while the rotation runs.
            for _ in 0..4 {
                let deadline = Deadline::new(Duration::from_secs(10), None);
                f.app
                    .provisioner
                    .converge(&user.tenant, &deadline, SecretFirst::Read)
                    .await
                    .unwrap();
            }
        };
        let (answer, ()) = tokio::join!(rotate(&f, &token), reconcile);
        assert_eq!(answer.status, 200, "round {round}: {}", answer.text);
        let stored = assert_rotated(&f, &user, &token, &replaced).await;
        assert_eq!(
            answer.json()["amqp_uri"],
            stored.amqp_uri.expose(),
            "round {round}"
        );
        replaced = stored.amqp_uri.expose().to_owned();
    }
    f.remove(&user).await;
}

/// Where a rotation can be cut: after each of its writes (the pending version, the broker user,
/// the Kubernetes Secret, the restart).
#[derive(Clone, Copy, Debug)]
enum Cut {
    Pending,
    Broker,
    KubeSecret,
    Restart,
}

#[tokio::test]
async fn a_rotation_cut_at_any_step_is_finished_by_repeating_it() {
    let f = Frontend::new().await;
    for cut in [Cut::Pending, Cut::Broker, Cut::KubeSecret, Cut::Restart] {
        let (user, token) = ready(&f, "rotate-cut").await;
        let old = f.get("/tenant", &[&token]).await.json()["amqp_uri"]
            .as_str()
            .unwrap()
            .to_owned();
        // What a rotation cut at that point leaves behind, written by the real adapters in the
        // protocol's order.
        let p = &f.app.provisioner;
        let version = random_uuid();
        let pending = TenantCredentials::new(&user.tenant, generate_password(), &p.amqp_url);
        p.store
            .put_pending(&user.tenant, &version, &pending)
            .await
            .unwrap();
        if !matches!(cut, Cut::Pending) {
            p.broker
                .ensure_user(&user.tenant, &pending.password)
                .await
                .unwrap();
            p.broker.close_connections(&user.tenant).await.unwrap();
            // Cut here, the old password is refused already; the user is told to wait.
            let meanwhile = f.get("/tenant", &[&token]).await;
            assert_eq!(meanwhile.status, 202, "{cut:?}: {}", meanwhile.text);
        }
        if matches!(cut, Cut::KubeSecret | Cut::Restart) {
            p.backend
                .ensure_secret(&user.tenant, &pending.amqp_uri)
                .await
                .unwrap();
        }
        if matches!(cut, Cut::Restart) {
            p.backend.restart(&user.tenant, &version).await.unwrap();
        }
        let repeated = rotate(&f, &token).await;
        assert_eq!(repeated.status, 200, "{cut:?}: {}", repeated.text);
        assert_eq!(
            repeated.json()["amqp_uri"],
            pending.amqp_uri.expose(),
            "{cut:?}: the repeat finishes the rotation that was cut"
        );
        let stored = assert_rotated(&f, &user, &token, &old).await;
        assert_eq!(stored, pending, "{cut:?}");
        f.remove(&user).await;
    }
}

#[tokio::test]
async fn one_user_looping_rotations_gets_429_and_others_are_not_held_back() {
    let f = Frontend::new().await;
    let (user, token) = ready(&f, "rotate-loop").await;
    let (other, other_token) = ready(&f, "rotate-bystander").await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let a = rotate(&f, &token).await;
        if a.status == 429 {
            let wait: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=600).contains(&wait), "Retry-After {wait}");
            assert_eq!(a.json()["error"], "rate_limited");
            assert!(a.json().get("password").is_none());
        }
        codes.push(a.status);
    }
    // The stack's rate: TENANT_ROTATE_RATE's default, 3 per 10 minutes.
    assert_eq!(codes, [200, 200, 200, 429, 429, 429]);
    // The refused ones changed nothing: what GET /tenant hands out logs in.
    let now = f.get("/tenant", &[&token]).await;
    assert_eq!(now.status, 200, "{}", now.text);
    amqp::round_trip(now.json()["amqp_uri"].as_str().unwrap(), b"after the loop")
        .await
        .unwrap();
    // Another tenant rotates and reads as usual.
    assert_eq!(rotate(&f, &other_token).await.status, 200);
    assert_eq!(f.get("/tenant", &[&other_token]).await.status, 200);
    f.remove(&user).await;
    f.remove(&other).await;
}
