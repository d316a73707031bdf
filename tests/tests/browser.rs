//! The pages in Debian's headless Chromium (driven by `tests/browser/*.mjs` with
//! puppeteer-core): the contributor's donation flow against a study that reports every
//! conversation, and the auditor's page on a demo-seeded release. Screenshots are saved to
//! `tests/browser/screenshots/`.

use chorus_tests::{
    assert_no_text_of, cached, first_conversations, fixture, workspace_root, write_sharegpt_sample, ServerProcess,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn browser_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

fn screenshots() -> PathBuf {
    let dir = browser_dir().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one of the browser scripts; its last line of output is JSON.
fn node(script: &str, args: &[&str]) -> Value {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `cargo xtask test` installs Debian's chromium"
    );
    assert!(
        browser_dir().join("node_modules/puppeteer-core").exists(),
        "tests/browser/node_modules is missing: `cargo xtask test` runs npm ci there"
    );
    let out = std::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(browser_dir())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn reports_stored(server: &ServerProcess) -> f64 {
    let metrics = server.get("/metrics").1;
    metrics
        .lines()
        .filter(|l| l.starts_with("chorus_reports_stored_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every request went to the server itself, and none carries text of the export.
fn check_requests(out: &Value, base: &str, export: &Path) {
    let requests = out["requests"].as_array().unwrap();
    assert!(!requests.is_empty());
    let mut sent = String::new();
    for r in requests {
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with(base) || url.starts_with("data:"),
            "a request off the server: {url}"
        );
        sent.push_str(url);
        sent.push('\n');
        sent.push_str(r["body"].as_str().unwrap());
        sent.push('\n');
    }
    assert_no_text_of(export, &sent);
}

#[test]
fn a_contributor_donates_from_the_page() {
    let export = fixture("chatgpt-export.zip");
    let conversations = first_conversations(&export, usize::MAX).len();
    let dir = temp("contribute");
    let wrong = dir.join("holiday.png");
    std::fs::write(&wrong, b"\x89PNG\r\n\x1a\n not an export at all").unwrap();
    let www = workspace_root().join("www");
    let study = fixture("every-conversation-study.toml");
    let server = ServerProcess::start(
        &dir.join("data"),
        None,
        &["--www", www.to_str().unwrap(), "--study-file", study.to_str().unwrap()],
    );
    let shots = screenshots();
    let out = node(
        "contribute.mjs",
        &[
            &server.url,
            "every-conversation",
            export.to_str().unwrap(),
            wrong.to_str().unwrap(),
            shots.to_str().unwrap(),
        ],
    );
    let error = out["wrong_file_error"].as_str().unwrap();
    assert!(error.contains("could not be read as an export"), "{error}");
    assert_eq!(out["rows"], conversations as u64, "{out}");
    // One row excluded: one report fewer; the second device excluded nothing.
    assert_eq!(out["payload"]["reports"].as_array().unwrap().len(), conversations - 1);
    assert_eq!(
        out["second_payload"]["reports"].as_array().unwrap().len(),
        conversations
    );
    assert!(out["receipt"].as_str().unwrap().starts_with("Thank you"), "{out}");
    assert!(
        out["blocked"].as_u64().unwrap() >= 1,
        "the failed POST was not attempted"
    );
    assert!(
        out["second_receipt"].as_str().unwrap().starts_with("Thank you"),
        "{out}"
    );
    assert_eq!(out["outbox_after"], 0, "a donation was left in the outbox");
    // Chromium has relaxed SIMD: its workers run the faster bundle, never the fallback.
    let bundles: Vec<&str> = out["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["url"].as_str().filter(|u| u.ends_with(".wasm")))
        .collect();
    assert!(
        !bundles.is_empty() && bundles.iter().all(|u| u.ends_with("/pkg/chorus_client_bg.wasm")),
        "{bundles:?}"
    );
    assert_eq!(out["narrow_overflow"], false, "the page overflows a narrow screen");
    assert!(out["model_fetches_first_visit"].as_u64().unwrap() >= 1);
    assert_eq!(
        out["model_fetches_after_return"], 0,
        "the model must come from Cache Storage"
    );
    // From the keyboard: the first row's checkbox unticked with Space, the payload with Enter
    // (the memo re-sends the donated batch, which left that row in).
    let count = out["keyboard_excluded"].as_str().unwrap();
    assert!(count.contains(&format!("{} included", conversations - 1)), "{count}");
    assert_eq!(out["keyboard_payload_reports"], (conversations - 1) as u64);
    // Both devices' batches, each stored once.
    assert_eq!(reports_stored(&server), (2 * conversations - 1) as f64);
    check_requests(&out, &server.url, &export);
    eprintln!(
        "contributor page: {} conversations analysed in {} ms (model load included)",
        out["rows"], out["analysis_ms"]
    );
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_auditor_reads_a_verified_release() {
    let dir = temp("audit");
    let corpus = dir.join("public.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), 600, &corpus);
    let www = workspace_root().join("www");
    let server = ServerProcess::start(
        &dir.join("data"),
        None,
        &[
            "--www",
            www.to_str().unwrap(),
            "--demo-corpus",
            corpus.to_str().unwrap(),
            "--demo-contributors",
            "600",
        ],
    );
    let started = Instant::now();
    while server.get("/api/v1/releases").1 == "[]" {
        assert!(started.elapsed() < Duration::from_secs(300), "no demo release");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = node("audit.mjs", &[&server.url, screenshots().to_str().unwrap()]);
    assert_eq!(out["signature"], "verified", "{}", out["signature_text"]);
    assert_eq!(out["demo_banner"], true);
    assert!(out["bar_charts"].as_u64().unwrap() >= 5, "{out}");
    assert!(out["bars"].as_u64().unwrap() >= 3, "{out}");
    assert!(out["treemap_cells"].as_u64().unwrap() >= 2, "{out}");
    assert_eq!(
        out["tree_topics"],
        4 + 12 + 48,
        "every topic of the codebook in the tree"
    );
    assert!(out["privacy_rows"].as_u64().unwrap() >= 8, "{out}");
    assert_eq!(out["narrow_overflow"], false, "the page overflows a narrow screen");
    for r in out["requests"].as_array().unwrap() {
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with(&server.url) || url.starts_with("data:"),
            "a request off the server: {url}"
        );
    }
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}
