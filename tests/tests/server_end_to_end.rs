//! The whole path, against both databases: 1,200 contributors (the client pipeline run on
//! public ShareGPT conversations, privatized with OpenDP's secure noise) post their batches to
//! `chorus serve`; a native `chorus contribute` posts one more; a release is cut over the admin
//! API and with `chorus release`; its signature verifies (in process and with `chorus verify`);
//! its estimates (facets, the topic hierarchy) cover the non-private truth; no published cell
//! is below k.

use chorus_shared::privacy::Channel;
use chorus_shared::study::CompiledStudy;
use chorus_shared::Analysis;
use chorus_tests::{
    analyses_of, batch_for, cached, chorus_bin, fixture, fresh_postgres_database, write_sharegpt_sample, ServerProcess,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

const CONTRIBUTORS: usize = 1200;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Analysed once, shared by the SQLite and PostgreSQL runs.
fn analyses() -> &'static Vec<Analysis> {
    static ANALYSES: OnceLock<Vec<Analysis>> = OnceLock::new();
    ANALYSES.get_or_init(|| {
        let dir = temp("corpus");
        let export = dir.join("sharegpt.json");
        write_sharegpt_sample(&cached("corpus/sharegpt.json"), CONTRIBUTORS, &export);
        let analyses = analyses_of(&export);
        assert!(analyses.len() >= CONTRIBUTORS - 20, "{} analyses", analyses.len());
        analyses
    })
}

fn run(database: Option<&str>, name: &str) {
    let dir = temp(name);
    let server = ServerProcess::start(&dir.join("data"), database, &[]);
    let (status, body) = server.get("/api/v1/studies/chorus-default");
    assert_eq!(status, 200, "{body}");
    let study: CompiledStudy = serde_json::from_str(&body).unwrap();
    let k = study.release.k as f64;

    let analyses = analyses();
    for analysis in analyses {
        let batch = serde_json::to_string(&batch_for(&study, analysis)).unwrap();
        let (status, body) = server.post("/api/v1/studies/chorus-default/reports", &batch);
        assert_eq!(status, 201, "{body}");
    }
    // One more contributor through the native client, exactly as the browser posts.
    let out = std::process::Command::new(chorus_bin())
        .args([
            "contribute",
            "--server",
            &server.url,
            "--study",
            "chorus-default",
            "--memo",
        ])
        .arg(dir.join("memo.json"))
        .arg(fixture("chatgpt/conversations.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let receipt: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["reports"], 1);
    assert_eq!(receipt["replayed"], false);

    let (status, body) = server.post("/api/v1/admin/studies/chorus-default/releases", "");
    assert_eq!(status, 201, "{body}");
    let summary: Value = serde_json::from_str(&body).unwrap();
    let id = summary["id"].as_str().unwrap().to_owned();
    let (_, document) = server.get(&format!("/api/v1/releases/{id}"));
    let (_, key) = server.get("/api/v1/public-key");
    let key: Value = serde_json::from_str(&key).unwrap();
    let signed =
        chorus_shared::release::verify(&document, key["public_key"].as_str().unwrap()).expect("the release verifies");
    let release = &signed.release;
    assert_eq!(release["study"]["version"], study.version.as_str());

    // Offline, with the command an auditor runs; and a tampered copy fails.
    let file = dir.join(format!("{id}.json"));
    std::fs::write(&file, &document).unwrap();
    std::fs::write(dir.join("key.json"), serde_json::to_string(&key).unwrap()).unwrap();
    let verify = |path: &PathBuf| {
        std::process::Command::new(chorus_bin())
            .arg("verify")
            .arg(path)
            .arg("--key")
            .arg(dir.join("key.json"))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(verify(&file));
    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, document.replacen("\"k\": 10", "\"k\": 1", 1)).unwrap();
    assert!(!verify(&tampered), "a tampered release must not verify");

    // The central-DP counts are near the truth (discrete Laplace, scale 4 at ε = 0.25).
    let contributors = release["counts"]["contributors"].as_f64().unwrap();
    assert!(
        (contributors - (analyses.len() + 1) as f64).abs() < 60.0,
        "{contributors}"
    );

    // Every published cell: its count is reliably ≥ k, and its interval covers the truth.
    let mut coverage = Coverage::default();
    for channel in [
        Channel::Category,
        Channel::Language,
        Channel::Concern,
        Channel::Turns,
        Channel::HasCode,
    ] {
        let truth = study.privacy.true_shares(channel, analyses, &study.category_ids());
        let cells = release["facets"][channel.name()]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), truth.len());
        for (cell, t) in cells.iter().zip(&truth) {
            // The category (ε = 1.5 on every report) is precise enough that its large cells must
            // be published; the pooled facets (ε = 0.35 on a quarter of the reports) are too
            // noisy at this size, and suppression is their honest answer.
            assert!(
                cell["suppressed"] != true || channel != Channel::Category || *t < 0.12,
                "a category cell of share {t} was suppressed"
            );
            coverage.check(&format!("{channel:?} {}", cell["value"]), cell, *t, k);
        }
    }
    // The codebook's hierarchy: every level's published topics cover the share of analyses
    // whose path passes through them.
    let levels = release["topics"]["levels"].as_array().expect("a topics section");
    assert_eq!(levels.len(), 3);
    for (depth, level) in levels.iter().enumerate() {
        let mut top_published = 0;
        for cell in level.as_array().unwrap() {
            assert!(cell["name"].as_str().is_some_and(|n| !n.is_empty()), "{cell}");
            assert_eq!(cell["parent"].is_null(), depth == 0, "{cell}");
            let id = cell["value"].as_str().unwrap();
            let t = analyses
                .iter()
                .filter(|a| a.topic_path.as_ref().unwrap()[depth] == id)
                .count() as f64
                / analyses.len() as f64;
            top_published += usize::from(depth == 0 && cell["suppressed"] != true);
            coverage.check(&format!("topic {id}"), cell, t, k);
        }
        // A third of the reports carry the top level at ε = 1: its large topics show.
        assert!(depth > 0 || top_published >= 1, "no top-level topic published");
    }
    coverage.assert_calibrated();
    for cell in release["facets"]["category"]["debiased"].as_array().unwrap() {
        if cell["suppressed"] != true {
            assert!(cell["count_ci95"][0].as_f64().unwrap() >= k);
        }
    }
    for tab in [
        "category_by_language",
        "topic_level1_by_language",
        "topic_level2_by_language",
    ] {
        for cell in release["crosstabs"][tab]["cells"].as_array().unwrap() {
            if cell["suppressed"] != true {
                assert!(cell["count_ci95"][0].as_f64().unwrap() >= k);
            }
        }
    }
    // Discovery at the default study's noise: clusters only where the data support them.
    let discovery = &release["discovery"];
    assert!(discovery["points"].as_u64().unwrap() > 1000, "{discovery}");
    let clusters = discovery["clusters"].as_array().unwrap();
    assert!(clusters.is_empty() || clusters.len() >= 2);
    for c in clusters {
        let low = c["share"].as_f64().unwrap() - 1.96 * c["share_se"].as_f64().unwrap();
        assert!(low * analyses.len() as f64 >= k, "{c}");
    }
    if clusters.is_empty() {
        assert!(!discovery["note"].as_str().unwrap().is_empty());
    }
    let (status, csv) = server.get(&format!("/api/v1/releases/{id}/csv"));
    assert_eq!(status, 200);
    assert!(csv.starts_with("table,row,column,share"), "{csv}");
    assert!(csv.lines().count() > 30);

    // `chorus release` cuts the next release from the same store; the list shows both.
    let mut command = std::process::Command::new(chorus_bin());
    command
        .args(["release", "--study", "chorus-default", "--data-dir"])
        .arg(&server.data_dir);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, list) = server.get("/api/v1/releases");
    let list: Vec<BTreeMap<String, Value>> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let metrics = server.get("/metrics").1;
    assert!(metrics.contains("chorus_reports_stored_total"), "{metrics}");
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

/// One after the other: the two servers would otherwise compete for the two cores (and, on a
/// cold cache, compile the study at the same time).
#[test]
fn end_to_end_on_sqlite_then_postgres() {
    let url = fresh_postgres_database("e2e");
    run(None, "sqlite");
    run(Some(&url), "postgres");
}

/// Published cells against the on-device truth.
#[derive(Default)]
struct Coverage {
    cells: usize,
    published: usize,
    misses: Vec<String>,
}

impl Coverage {
    /// A published cell's count is reliably at least k and its unbiased estimate is within 4.5
    /// standard errors of the truth (a broken pipeline is off by far more; chance reaches 4.5
    /// once in ~150,000 cells). Misses of the 95% interval are collected.
    fn check(&mut self, what: &str, cell: &Value, truth: f64, k: f64) {
        self.cells += 1;
        if cell["suppressed"] == true {
            return;
        }
        self.published += 1;
        assert!(
            cell["count_ci95"][0].as_f64().unwrap() >= k,
            "a published cell below k: {cell}"
        );
        let (unbiased, se) = (cell["unbiased"].as_f64().unwrap(), cell["se"].as_f64().unwrap());
        let z = (unbiased - truth) / se;
        assert!(
            z.abs() < 4.5,
            "{what}: truth {truth} is {z:.2} standard errors from {cell}"
        );
        if z.abs() > 1.96 {
            self.misses.push(format!("{what}: truth {truth:.4}, z {z:.2}"));
        }
    }

    /// Each interval misses with probability 0.05 *before* the k threshold; a cell clears k only
    /// when its estimate came out high, so a published small cell misses far more often than
    /// that. Misses among published cells are a subset of misses among all cells: bound them by
    /// the binomial count of all cells, within four standard deviations.
    fn assert_calibrated(&self) {
        assert!(self.published >= 3, "only {} cells published", self.published);
        let (p, n) = (0.05, self.cells as f64);
        let allowed = (n * p + 4.0 * (n * p * (1.0 - p)).sqrt()).ceil() as usize;
        assert!(
            self.misses.len() <= allowed,
            "{} of {} published intervals miss the truth (at most {allowed} of {} cells may): {:?}",
            self.misses.len(),
            self.published,
            self.cells,
            self.misses
        );
    }
}
