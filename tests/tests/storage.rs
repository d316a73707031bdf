//! The storage contract, run against both implementations: group commits with new batches,
//! retries, reused keys, contributors at and over the cap, repeats inside one group; releases
//! immutable; batches read back in order, with how many contributors stored how many reports;
//! token nonces spent once; invitations redeemed once.

use chorus_server::storage::{self, NewBatch, Redemption, ReleaseSummary, StoreOutcome};
use chorus_tests::fresh_postgres_database;

fn batch(key: &str, contributor: &str, reports: u32, body: &str) -> NewBatch {
    NewBatch {
        study_id: "s".into(),
        study_version: "v1".into(),
        contributor: contributor.into(),
        idempotency_key: key.into(),
        digest: format!("digest-of-{body}"),
        reports,
        cap: 2,
        day: 20_786,
        body: body.into(),
        token_nonces: Vec::new(),
    }
}

fn with_tokens(mut b: NewBatch, nonces: &[&str]) -> NewBatch {
    b.token_nonces = nonces.iter().map(|n| n.to_string()).collect();
    b.study_version = "v2".into();
    b
}

fn stored(o: &StoreOutcome) -> bool {
    matches!(o, StoreOutcome::Stored(_))
}

fn contract(database: &str) {
    let store = storage::open(database).unwrap();
    // A group of new batches from different contributors (the fast path on PostgreSQL).
    let first: Vec<NewBatch> = (0..5)
        .map(|i| batch(&format!("k{i}"), &format!("c{i}"), 1, &format!("b{i}")))
        .collect();
    let outcomes = store.store(&first).unwrap();
    assert!(outcomes.iter().all(stored), "{outcomes:?}");
    let receipts: Vec<i64> = outcomes
        .iter()
        .map(|o| match o {
            StoreOutcome::Stored(r) => r.receipt,
            _ => unreachable!(),
        })
        .collect();

    // A mixed group: a retry, a reused key, a contributor reaching the cap, one going over it,
    // a brand-new one, and the same new key twice.
    let group = vec![
        batch("k0", "c0", 1, "b0"),    // retry of a stored batch
        batch("k1", "c1", 1, "other"), // its key, other content
        batch("k5", "c2", 1, "b5"),    // c2 reaches 2 = the cap
        batch("k6", "c3", 2, "b6"),    // c3 would reach 3
        batch("k7", "c9", 1, "b7"),    // new
        batch("k7", "c9", 1, "b7"),    // the same batch again in the same group
    ];
    let outcomes = store.store(&group).unwrap();
    match &outcomes[0] {
        StoreOutcome::Replayed(r) => assert_eq!(r.receipt, receipts[0]),
        other => panic!("retry: {other:?}"),
    }
    assert_eq!(outcomes[1], StoreOutcome::KeyConflict);
    assert!(stored(&outcomes[2]), "{:?}", outcomes[2]);
    assert_eq!(outcomes[3], StoreOutcome::OverCap { stored: 1, cap: 2 });
    assert!(stored(&outcomes[4]));
    assert!(matches!(outcomes[5], StoreOutcome::Replayed(_)), "{:?}", outcomes[5]);

    // The same mix without repeated keys or contributors inside the group (PostgreSQL's
    // set-based path).
    let group = vec![
        batch("k3", "c3", 1, "b3"),    // retry
        batch("k1", "c8", 1, "other"), // a used key, other content
        batch("k8", "c2", 1, "b8"),    // c2 is at the cap
        batch("k9", "c4", 1, "b9"),    // c4 reaches the cap
        batch("k10", "c10", 3, "b10"), // over the cap alone
    ];
    let outcomes = store.store(&group).unwrap();
    assert!(matches!(outcomes[0], StoreOutcome::Replayed(_)), "{outcomes:?}");
    assert_eq!(outcomes[1], StoreOutcome::KeyConflict);
    assert_eq!(outcomes[2], StoreOutcome::OverCap { stored: 2, cap: 2 });
    assert!(stored(&outcomes[3]), "{outcomes:?}");
    assert_eq!(outcomes[4], StoreOutcome::OverCap { stored: 0, cap: 2 });

    // What is stored: 8 batches of one report, in order, nothing of the refused ones.
    assert_eq!(store.totals("s", "v1").unwrap(), (8, 8));
    // Read with them: c2 and c4 stored two reports each, c0, c1, c3 and c9 one.
    let mut bodies = Vec::new();
    let contributors = store.batches("s", "v1", &mut |b| bodies.push(b.body)).unwrap();
    assert_eq!(bodies, ["b0", "b1", "b2", "b3", "b4", "b5", "b7", "b9"]);
    assert_eq!(contributors, [(1, 4), (2, 2)].into_iter().collect());
    assert_eq!(store.totals("s", "v2").unwrap(), (0, 0));

    // Releases: stored once, never replaced.
    let summary = ReleaseSummary {
        id: "s-r1".into(),
        study_id: "s".into(),
        created: "2026-11-29T00:00:00Z".into(),
    };
    store.insert_release(&summary, "{\"a\":1}", "digest-1").unwrap();
    assert!(store.insert_release(&summary, "{\"a\":2}", "digest-2").is_err());
    assert_eq!(store.release("s-r1").unwrap().as_deref(), Some("{\"a\":1}"));
    // What it counted is kept beside it, and not replaced either.
    assert_eq!(store.release_counted("s-r1").unwrap().as_deref(), Some("digest-1"));
    assert_eq!(store.release_counted("nope").unwrap(), None);
    assert_eq!(store.releases().unwrap(), vec![summary]);
    assert_eq!(store.release_count("s").unwrap(), 1);
    assert_eq!(store.release("nope").unwrap(), None);

    // Tokens: a batch spends its nonces; a batch with a spent nonce (here, one group with
    // another that spends it first, then alone) is refused and stores nothing, not even its
    // contributor's count; a retry of a stored batch is a replay.
    let group = vec![
        with_tokens(batch("t1", "d1", 1, "x1"), &["n1"]),
        with_tokens(batch("t2", "d2", 1, "x2"), &["n1"]),
        with_tokens(batch("t3", "d3", 2, "x3"), &["n3", "n4"]),
    ];
    let outcomes = store.store(&group).unwrap();
    assert!(stored(&outcomes[0]) && stored(&outcomes[2]), "{outcomes:?}");
    assert_eq!(outcomes[1], StoreOutcome::TokenSpent);
    let again = store
        .store(&[
            with_tokens(batch("t4", "d2", 1, "x4"), &["n4"]),
            with_tokens(batch("t1", "d1", 1, "x1"), &["n1"]),
        ])
        .unwrap();
    assert_eq!(again[0], StoreOutcome::TokenSpent);
    assert!(matches!(again[1], StoreOutcome::Replayed(_)), "{again:?}");
    assert_eq!(store.totals("s", "v2").unwrap(), (2, 3));
    let contributors = store.batches("s", "v2", &mut |_| {}).unwrap();
    assert_eq!(
        contributors,
        [(1, 1), (2, 1)].into_iter().collect(),
        "d2 stored nothing"
    );

    // Invitations: redeemed once; the same request again is a retry; another is refused.
    store.add_invitations("s", &["h1".into(), "h2".into()]).unwrap();
    assert_eq!(store.redeem_invitation("s", "h1", "r1").unwrap(), Redemption::Redeemed);
    assert_eq!(store.redeem_invitation("s", "h1", "r1").unwrap(), Redemption::Retried);
    assert_eq!(store.redeem_invitation("s", "h1", "r2").unwrap(), Redemption::Spent);
    assert_eq!(store.redeem_invitation("s", "h3", "r1").unwrap(), Redemption::Unknown);
    assert_eq!(
        store.redeem_invitation("other", "h2", "r1").unwrap(),
        Redemption::Unknown
    );
    assert_eq!(store.redeem_invitation("s", "h2", "r3").unwrap(), Redemption::Redeemed);

    // Reopening runs no migration twice and keeps everything.
    drop(store);
    let store = storage::open(database).unwrap();
    assert_eq!(store.totals("s", "v1").unwrap(), (8, 8));
    assert_eq!(store.redeem_invitation("s", "h2", "r3").unwrap(), Redemption::Retried);
    withdrawal_and_retention(store.as_ref());
}

/// A withdrawal deletes a batch's reports and its count towards the cap, and a retry of the
/// batch stores nothing again; retention deletes whole days of batches and their counts.
fn withdrawal_and_retention(store: &dyn storage::Storage) {
    assert_eq!(store.withdraw("s", "t3").unwrap(), Some(2));
    assert_eq!(store.totals("s", "v2").unwrap(), (1, 1));
    let mut bodies = Vec::new();
    let contributors = store.batches("s", "v2", &mut |b| bodies.push(b.body)).unwrap();
    assert_eq!(bodies, vec!["x1".to_owned()]);
    assert_eq!(contributors, [(1, 1)].into_iter().collect(), "d3 counts nothing now");
    assert_eq!(store.withdraw("s", "t3").unwrap(), Some(0), "withdrawn before");
    assert_eq!(store.withdraw("s", "no-such-key").unwrap(), None);
    assert_eq!(store.withdraw("other", "t1").unwrap(), None, "another study's key");
    let retry = store
        .store(&[with_tokens(batch("t3", "d3", 2, "x3"), &["n3", "n4"])])
        .unwrap();
    assert!(matches!(retry[0], StoreOutcome::Replayed(_)), "{retry:?}");
    assert_eq!(store.totals("s", "v2").unwrap(), (1, 1), "the retry stored nothing");
    // The withdrawn reports no longer count towards d3's cap of 2.
    let fresh = store
        .store(&[with_tokens(batch("t5", "d3", 2, "x5"), &["n5", "n6"])])
        .unwrap();
    assert!(stored(&fresh[0]), "{fresh:?}");
    assert_eq!(store.totals("s", "v2").unwrap(), (2, 3));

    // Retention: everything that arrived before day 20,787 goes (v1's eight batches; v2's two
    // and the withdrawn one), a later day stays.
    let mut late = batch("k8", "c8", 1, "b8");
    late.day = 20_790;
    assert!(stored(&store.store(&[late]).unwrap()[0]));
    assert_eq!(store.forget_before("s", 20_787).unwrap(), 11);
    assert_eq!(store.totals("s", "v1").unwrap(), (1, 1));
    assert_eq!(store.totals("s", "v2").unwrap(), (0, 0));
    assert_eq!(
        store.batches("s", "v1", &mut |_| {}).unwrap(),
        [(1, 1)].into_iter().collect()
    );
    assert!(store.batches("s", "v2", &mut |_| {}).unwrap().is_empty());
    assert_eq!(store.withdraw("s", "k0").unwrap(), None, "deleted with its day");
    assert_eq!(store.forget_before("s", 20_787).unwrap(), 0);
}

#[test]
fn sqlite_storage_contract() {
    let dir = std::env::temp_dir().join(format!("chorus-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    contract(dir.join("chorus.sqlite3").to_str().unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn postgres_storage_contract() {
    contract(&fresh_postgres_database("storage"));
}

/// Two servers sharing one PostgreSQL database each run a retention pass at start: a
/// contributor's count loses the expired reports once, not once per server. Each round stores
/// one expired and one kept report for a contributor, then runs the two passes at once; a
/// count subtracted twice would drop the contributor, whose kept report then no longer counts
/// towards the cap. (Without one pass waiting for the other, rounds of this test failed.)
#[test]
fn concurrent_retention_passes_on_postgres_subtract_once() {
    let database = fresh_postgres_database("retention_race");
    let (first, second) = (storage::open(&database).unwrap(), storage::open(&database).unwrap());
    for round in 0..60 {
        let study = format!("s{round}");
        let on = |key: &str, day: i64| NewBatch {
            study_id: study.clone(),
            day,
            ..batch(key, "c", 1, key)
        };
        let outcomes = first.store(&[on("old", 20_700), on("new", 20_786)]).unwrap();
        assert!(outcomes.iter().all(stored), "{outcomes:?}");
        std::thread::scope(|s| {
            s.spawn(|| first.forget_before(&study, 20_786).unwrap());
            s.spawn(|| second.forget_before(&study, 20_786).unwrap());
        });
        let counts = first.batches(&study, "v1", &mut |_| {}).unwrap();
        assert_eq!(counts, [(1, 1)].into_iter().collect(), "round {round}");
    }
}
