//! The webhook delivery ledger against DynamoDB (moto's server): conditional claims, lapsed
//! leases taken over, settle and release only by the holder.

use testkit::stack::{DEDUP_TABLE, Stack};
use tgsearch::adapters::dynamodb::DynamoLedger;
use tgsearch::ports::{Claim, Delivery, DeliveryLedger, DeliveryState};

fn entry(owner: &str, digest: &str, lease_until: u64) -> Delivery {
    Delivery {
        state: DeliveryState::Pending,
        digest: digest.into(),
        owner: owner.into(),
        lease_until,
        expires_at: 2_000_000_000,
    }
}

async fn ledger() -> DynamoLedger {
    let stack = Stack::require();
    DynamoLedger::new(&stack.aws().await, DEDUP_TABLE)
}

#[tokio::test]
async fn one_claim_wins_and_the_others_see_it() {
    let ledger = ledger().await;
    let token = testkit::fresh_tenant().to_string();
    let now = 1_800_000_000;
    let claims = futures::future::join_all((0..6).map(|i| {
        let ledger = &ledger;
        let token = &token;
        async move {
            ledger
                .claim(token, &entry(&format!("owner-{i}"), "d1", now + 60), now)
                .await
                .unwrap()
        }
    }))
    .await;
    let won = claims.iter().filter(|c| **c == Claim::Claimed).count();
    assert_eq!(won, 1, "{claims:?}");
    for claim in &claims {
        if let Claim::Existing(d) = claim {
            assert_eq!((d.state, d.digest.as_str()), (DeliveryState::Pending, "d1"));
        }
    }
    let holder = ledger.get(&token).await.unwrap().unwrap().owner;
    assert!(
        ledger.mark_sent(&token, "someone-else").await.is_err(),
        "only the holder settles"
    );
    ledger.mark_sent(&token, &holder).await.unwrap();
    let settled = ledger.get(&token).await.unwrap().unwrap();
    assert_eq!(settled.state, DeliveryState::Sent);
    // A sent token is never claimed again, lease or not.
    match ledger
        .claim(&token, &entry("late", "d1", now + 60), now + 3600)
        .await
        .unwrap()
    {
        Claim::Existing(d) => assert_eq!(d.state, DeliveryState::Sent),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_lapsed_claim_is_taken_over_and_a_released_one_is_free() {
    let ledger = ledger().await;
    let token = testkit::fresh_tenant().to_string();
    let now = 1_800_000_000;
    assert_eq!(
        ledger
            .claim(&token, &entry("dead", "d", now + 60), now)
            .await
            .unwrap(),
        Claim::Claimed
    );
    assert!(matches!(
        ledger
            .claim(&token, &entry("early", "d", now + 70), now + 10)
            .await
            .unwrap(),
        Claim::Existing(_)
    ));
    assert_eq!(
        ledger
            .claim(&token, &entry("heir", "d", now + 200), now + 120)
            .await
            .unwrap(),
        Claim::Claimed,
        "a claim whose lease lapsed is taken over"
    );
    ledger.release(&token, "dead").await.unwrap();
    assert_eq!(
        ledger.get(&token).await.unwrap().unwrap().owner,
        "heir",
        "only the holder releases"
    );
    ledger.release(&token, "heir").await.unwrap();
    assert!(ledger.get(&token).await.unwrap().is_none());
    assert_eq!(
        ledger
            .claim(&token, &entry("next", "d", now + 200), now)
            .await
            .unwrap(),
        Claim::Claimed
    );
}
