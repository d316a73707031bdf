//! A corpus of bad batches — malformed, oversized, non-finite, wrong dimension, wrong study,
//! over the cap, replayed — each gets the right 4xx and a JSON error, nothing of it is stored,
//! and the server keeps serving; a retry of a batch stored under an earlier study version gets
//! its receipt. Against SQLite and PostgreSQL.

use chorus_messages::ReportBatch;
use chorus_server::ingest::{new_batch, receipt_id, today};
use chorus_server::storage::{self, StoreOutcome};
use chorus_shared::study::CompiledStudy;
use chorus_tests::{analyses_of, batch_for, fixture, fresh_postgres_database, ServerProcess};
use serde_json::{json, Value};

const PATH: &str = "/api/v1/studies/chorus-default/reports";

/// (what, body, expected status, expected error code)
fn bad_batches(valid: &Value) -> Vec<(&'static str, String, u16, &'static str)> {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        edit(&mut v);
        v.to_string()
    };
    let embedding_len = valid["reports"][0]["embedding"].as_array().unwrap().len();
    let pooled = ["language", "concern", "turns", "has_code"];
    vec![
        ("not JSON", "this is not json".into(), 400, "malformed"),
        ("truncated JSON", valid.to_string()[..40].to_owned(), 400, "malformed"),
        ("an empty object", "{}".into(), 400, "malformed"),
        ("an array", "[1, 2, 3]".into(), 400, "malformed"),
        ("deeply nested", "[".repeat(20_000), 400, "malformed"),
        (
            "an unknown field",
            with(&|v| v["ip"] = json!("1.2.3.4")),
            400,
            "malformed",
        ),
        (
            "a text field in a report",
            with(&|v| v["reports"][0]["title"] = json!("my secret")),
            400,
            "malformed",
        ),
        (
            "oversized",
            with(&|v| v["reports"][0]["embedding"] = json!(vec![0.5; 40_000])),
            413,
            "too_large",
        ),
        (
            "a NaN literal",
            valid.to_string().replacen("\"embedding\":[", "\"embedding\":[NaN,", 1),
            400,
            "malformed",
        ),
        // Beyond f32: JSON cannot carry an infinity, and the parser refuses to make one.
        (
            "an infinite value",
            with(&|v| v["reports"][0]["embedding"][0] = json!(1e39)),
            400,
            "malformed",
        ),
        (
            "an overflowing literal",
            valid
                .to_string()
                .replacen("\"embedding\":[", "\"embedding\":[1e400,", 1),
            400,
            "malformed",
        ),
        (
            "a short embedding",
            with(&|v| {
                v["reports"][0]["embedding"].as_array_mut().unwrap().pop();
            }),
            422,
            "invalid_batch",
        ),
        (
            "a long embedding",
            with(&|v| v["reports"][0]["embedding"] = json!(vec![0.1; embedding_len + 1])),
            422,
            "invalid_batch",
        ),
        (
            "a huge norm",
            with(&|v| v["reports"][0]["embedding"] = json!(vec![1000.0; embedding_len])),
            422,
            "invalid_batch",
        ),
        (
            "no embedding",
            with(&|v| {
                v["reports"][0].as_object_mut().unwrap().remove("embedding");
            }),
            422,
            "invalid_batch",
        ),
        (
            "a category outside the domain",
            with(&|v| v["reports"][0]["channels"]["category"] = json!(99)),
            422,
            "invalid_batch",
        ),
        (
            "a negative category",
            with(&|v| v["reports"][0]["channels"]["category"] = json!(-1)),
            400,
            "malformed",
        ),
        (
            "no category",
            with(&|v| {
                v["reports"][0]["channels"].as_object_mut().unwrap().remove("category");
            }),
            422,
            "invalid_batch",
        ),
        (
            "two pooled channels",
            with(&|v| {
                for p in pooled {
                    v["reports"][0]["channels"][p] = json!(0);
                }
            }),
            422,
            "invalid_batch",
        ),
        (
            "two channels of the topic pool",
            with(&|v| {
                for p in ["topic_top", "topic_mid", "topic"] {
                    v["reports"][0]["channels"][p] = json!(0);
                }
            }),
            422,
            "invalid_batch",
        ),
        (
            "an unknown channel",
            with(&|v| v["reports"][0]["channels"]["sentiment"] = json!(0)),
            400,
            "malformed",
        ),
        (
            "the protocol before seeds were strings",
            with(&|v| v["protocol"] = json!(1)),
            422,
            "invalid_batch",
        ),
        (
            "a hash seed as a number (a JavaScript client may have rounded it)",
            with(&|v| v["reports"][0]["channels"]["category"]["seed"] = json!(12345)),
            400,
            "malformed",
        ),
        (
            "a pseudonym that is not random hex",
            with(&|v| v["contributor"] = json!("alice@example.com")),
            422,
            "invalid_batch",
        ),
        (
            "a short key",
            with(&|v| v["idempotency_key"] = json!("abc")),
            422,
            "invalid_batch",
        ),
        ("no reports", with(&|v| v["reports"] = json!([])), 422, "invalid_batch"),
        (
            "more reports than the cap",
            with(&|v| {
                let r = v["reports"][0].clone();
                v["reports"] = json!([r.clone(), r]);
            }),
            409,
            "over_cap",
        ),
        (
            "another study's batch",
            with(&|v| v["study_id"] = json!("other-study")),
            409,
            "wrong_study_version",
        ),
        (
            "an old study version",
            with(&|v| v["study_version"] = json!("0000000000000000")),
            409,
            "wrong_study_version",
        ),
    ]
}

fn run(database: Option<&str>, name: &str) {
    let dir = std::env::temp_dir().join(format!("chorus-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(&config, "max_body_bytes = 65536\n").unwrap();
    let server = ServerProcess::start(&dir.join("data"), database, &["--config", config.to_str().unwrap()]);
    let study: CompiledStudy = serde_json::from_str(&server.get("/api/v1/studies/chorus-default").1).unwrap();
    // Nothing to release yet: the admin's to retry later (409), with the reason.
    let (status, body) = server.post("/api/v1/admin/studies/chorus-default/releases", "");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("has no reports"), "{body}");
    let analyses = analyses_of(&fixture("chatgpt/conversations.json"));
    let batch = batch_for(&study, &analyses[0]);
    let valid = serde_json::to_value(&batch).unwrap();

    for (what, body, status, code) in bad_batches(&valid) {
        let (got, answer) = server.post(PATH, &body);
        assert_eq!(got, status, "{what}: {answer}");
        let error: Value = serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{what}: not JSON: {answer}"));
        assert_eq!(error["error"]["code"], code, "{what}: {answer}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    let (got, answer) = server.post("/api/v1/studies/no-such-study/reports", &valid.to_string());
    assert_eq!((got, answer.contains("unknown_study")), (404, true), "{answer}");

    // The valid batch is stored once; its retry is acknowledged with the same receipt.
    let (got, first) = server.post(PATH, &valid.to_string());
    assert_eq!(got, 201, "{first}");
    let (got, again) = server.post(PATH, &valid.to_string());
    assert_eq!(got, 200, "{again}");
    let (first, again): (Value, Value) = (
        serde_json::from_str(&first).unwrap(),
        serde_json::from_str(&again).unwrap(),
    );
    assert_eq!(first["receipt"], again["receipt"]);
    assert_eq!(again["replayed"], true);
    // A batch stored under an earlier version of the study whose acknowledgement was lost: its
    // exact retry gets its receipt (which carries the withdrawal code) though the study has a
    // new version since; anything else made for that version is still refused.
    let mut old = serde_json::to_value(batch_for(&study, &analyses[2])).unwrap();
    old["study_version"] = json!("0000000000000000");
    let old_batch: ReportBatch = serde_json::from_value(old.clone()).unwrap();
    let store = database.map_or_else(
        || server.data_dir.join("chorus.sqlite3").to_string_lossy().into_owned(),
        str::to_owned,
    );
    let stored = storage::open(&store)
        .unwrap()
        .store(&[new_batch(&old_batch, 1, today())])
        .unwrap();
    assert!(matches!(stored[..], [StoreOutcome::Stored(_)]), "{stored:?}");
    let (got, answer) = server.post(PATH, &old.to_string());
    assert_eq!(got, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["replayed"], true);
    assert_eq!(answer["receipt"], receipt_id(&old_batch.idempotency_key).as_str());
    let mut edited = old.clone();
    edited["reports"] = valid["reports"].clone();
    let (got, answer) = server.post(PATH, &edited.to_string());
    assert_eq!((got, answer.contains("wrong_study_version")), (409, true), "{answer}");
    // The same key for other content, and a second batch past the cap of one report.
    let other = batch_for(&study, &analyses[1]);
    let mut conflicting = serde_json::to_value(&other).unwrap();
    conflicting["idempotency_key"] = valid["idempotency_key"].clone();
    let (got, answer) = server.post(PATH, &conflicting.to_string());
    assert_eq!((got, answer.contains("key_conflict")), (409, true), "{answer}");
    let mut second = serde_json::to_value(&other).unwrap();
    second["contributor"] = valid["contributor"].clone();
    let (got, answer) = server.post(PATH, &second.to_string());
    assert_eq!((got, answer.contains("over_cap")), (409, true), "{answer}");

    // Withdrawals that cannot be: a malformed code, a code no batch has, an unknown study; each
    // answered with what went wrong, and nothing withdrawn.
    let withdrawals = "/api/v1/studies/chorus-default/withdrawals";
    let unknown_code = "0123456789abcdef0123456789abcdef";
    for (path, code, status, error) in [
        (withdrawals, "not-a-code", 422, "invalid_withdrawal_code"),
        (withdrawals, unknown_code, 404, "no_such_donation"),
        (
            "/api/v1/studies/no-such-study/withdrawals",
            unknown_code,
            404,
            "unknown_study",
        ),
    ] {
        let (got, answer) = server.post(path, &serde_json::json!({ "idempotency_key": code }).to_string());
        assert_eq!((got, answer.contains(error)), (status, true), "{code}: {answer}");
    }

    assert_eq!(server.get("/healthz").0, 200, "the server survived");
    let stored = match database {
        None => {
            let db = rusqlite::Connection::open(server.data_dir.join("chorus.sqlite3")).unwrap();
            let batches: i64 = db.query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0)).unwrap();
            let reports: i64 = db
                .query_row("SELECT SUM(reports) FROM contributors", [], |r| r.get(0))
                .unwrap();
            (batches, reports)
        }
        Some(url) => {
            let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
            let batches: i64 = db.query_one("SELECT COUNT(*) FROM batches", &[]).unwrap().get(0);
            let reports: i64 = db
                .query_one("SELECT SUM(reports)::BIGINT FROM contributors", &[])
                .unwrap()
                .get(0);
            (batches, reports)
        }
    };
    assert_eq!(
        stored,
        (2, 2),
        "only the valid batch is stored (and the one stored under the old version)"
    );
    // Logs name routes and statuses, never a pseudonym or a batch key.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("\"status\":422"), "requests are logged");
    assert!(!log.contains(valid["contributor"].as_str().unwrap()));
    assert!(!log.contains(valid["idempotency_key"].as_str().unwrap()));
    assert!(!log.contains(unknown_code), "a withdrawal code in the log");
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sqlite_refuses_bad_batches() {
    run(None, "sqlite");
}

#[test]
fn postgres_refuses_bad_batches() {
    let url = fresh_postgres_database("bad");
    run(Some(&url), "postgres");
}

/// Rate limits: a pseudonym past its budget, and the server past its global budget, get 429
/// (and a retry later is the client's answer); nothing refused is stored.
#[test]
fn rate_limits_answer_429() {
    let dir = std::env::temp_dir().join(format!("chorus-rate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(&config, "per_contributor_per_minute = 1.0\nglobal_per_second = 3.0\n").unwrap();
    let server = ServerProcess::start(&dir.join("data"), None, &["--config", config.to_str().unwrap()]);
    let study: CompiledStudy = serde_json::from_str(&server.get("/api/v1/studies/chorus-default").1).unwrap();
    let analyses = analyses_of(&fixture("chatgpt/conversations.json"));
    let first = batch_for(&study, &analyses[0]);
    let (status, body) = server.post(PATH, &serde_json::to_string(&first).unwrap());
    assert_eq!(status, 201, "{body}");
    // The same pseudonym again within the minute.
    let mut again = serde_json::to_value(batch_for(&study, &analyses[1])).unwrap();
    again["contributor"] = json!(first.contributor);
    let (status, body) = server.post(PATH, &again.to_string());
    assert_eq!((status, body.contains("rate_limited")), (429, true), "{body}");
    // Many new pseudonyms at once: the global bucket (3 per second) runs dry.
    let statuses: Vec<u16> = (0..12)
        .map(|i| {
            let batch = batch_for(&study, &analyses[i % analyses.len()]);
            server.post(PATH, &serde_json::to_string(&batch).unwrap()).0
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 429), "{statuses:?}");
    let accepted = statuses.iter().filter(|s| **s == 201).count() as i64;
    let db = rusqlite::Connection::open(server.data_dir.join("chorus.sqlite3")).unwrap();
    let stored: i64 = db.query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 1 + accepted);
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}
