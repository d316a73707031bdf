//! `chorus analyze` and `chorus study` end to end: the built binary on the fixtures.

use chorus_tests::{chorus_bin, fixture};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn chorus(args: &[&str]) -> Output {
    Command::new(chorus_bin()).args(args).output().expect("chorus runs")
}

fn analyze(paths: &[&Path], extra: &[&str]) -> Output {
    let mut args = vec!["analyze"];
    args.extend_from_slice(extra);
    let strings: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(strings.iter().map(String::as_str));
    chorus(&args)
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn analyzes_an_export_zip() {
    let out = analyze(&[&fixture("chatgpt-export.zip")], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = lines(&out);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c-001", "c-002", "c-003", "c-004", "c-101", "c-102", "c-103"]);
    let by_id = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    for row in &rows {
        let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "category",
                "chars",
                "concern",
                "has_code",
                "id",
                "language",
                "topic_path",
                "turns"
            ],
            "no embedding unless asked"
        );
        assert!((1..=5).contains(&row["concern"].as_u64().unwrap()));
        // The default study's codebook: a topic at each of its three levels, top first.
        let path = row["topic_path"].as_array().unwrap();
        assert_eq!(path.len(), 3);
        assert!(path[0].as_str().unwrap().starts_with("t1.") && path[2].as_str().unwrap().starts_with("t3."));
    }
    assert_eq!(
        (
            by_id("c-001")["language"].as_str(),
            by_id("c-001")["has_code"].as_bool()
        ),
        (Some("en"), Some(true))
    );
    assert_eq!(by_id("c-001")["turns"], 3);
    assert_eq!(by_id("c-002")["language"], "fr");
    assert_eq!(by_id("c-102")["language"], "de");
    assert_eq!(by_id("c-103")["has_code"], true);
    assert_eq!(by_id("c-003")["has_code"], false);
    // Clear-cut English requests land in their obvious category. (The pinned embedding model
    // was trained on English; other languages are classified less reliably.)
    assert_eq!(by_id("c-003")["category"], "creative_writing");
    assert_eq!(by_id("c-004")["category"], "career_and_jobs");
    assert_eq!(by_id("c-101")["category"], "lifestyle_and_leisure");
    assert_eq!(by_id("c-103")["category"], "data_and_ai");
    let summary = stderr(&out);
    assert!(
        summary.contains("analysed 7 conversations from 1 of 1 files"),
        "{summary}"
    );
    assert!(summary.contains("skipped 2 unreadable records"), "{summary}");
}

#[test]
fn embeddings_on_request() {
    let out = analyze(&[&fixture("sharegpt.json")], &["--embeddings"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for row in lines(&out) {
        let v: Vec<f64> = row["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 384);
        assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-3);
    }
}

#[test]
fn bad_inputs_fail_cleanly_with_a_message() {
    for (name, needle) in [
        ("bad/empty.json", "is empty"),
        ("bad/zero-conversations.json", "holds no conversations"),
        ("bad/wrong-shape.json", "not a supported export"),
        ("bad/records-not-conversations.json", "not a supported export"),
        ("bad/binary.bin", "a binary file"),
        ("bad/notes.txt", "not JSON"),
        ("bad/corrupt.zip", "damaged zip archive"),
    ] {
        let out = analyze(&[&fixture(name)], &[]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: exit {:?}, stderr {err}",
            out.status
        );
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}: printed results");
    }
    let missing = analyze(&[&fixture("no-such-file.json")], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("cannot open"), "{}", stderr(&missing));
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let out = analyze(&[&fixture("bad/binary.bin"), &fixture("openai.jsonl")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines(&out).len(), 2);
    assert!(stderr(&out).contains("from 1 of 2 files"), "{}", stderr(&out));
}

#[test]
fn a_study_without_labelled_examples_classifies_by_prototype() {
    let dir = std::env::temp_dir().join(format!("chorus-cli-study-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let study = dir.join("study.toml");
    std::fs::write(
        &study,
        r#"
id = "tiny"
title = "Code or cooking"
[[category]]
id = "code"
name = "Programming"
description = "Writing and fixing computer programs and software"
examples = ["Fix this Python function", "Why does my JavaScript loop never end?"]
[[category]]
id = "food"
name = "Cooking"
description = "Recipes, cooking and baking"
examples = ["How long do I bake a chocolate cake?", "A recipe with rice and beans"]
"#,
    )
    .unwrap();
    let out = analyze(
        &[&fixture("chatgpt/conversations.json")],
        &["--study", study.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = lines(&out);
    assert_eq!(rows[0]["category"], "code", "the CSV question");
    assert_eq!(rows[1]["category"], "food", "the collapsed chocolate cake");

    std::fs::write(
        &study,
        std::fs::read_to_string(&study)
            .unwrap()
            .replace("id = \"tiny\"", "id = \"tiny\"\nlabelled_examples = \"missing.jsonl\""),
    )
    .unwrap();
    let out = analyze(
        &[&fixture("chatgpt/conversations.json")],
        &["--study", study.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.jsonl"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_model_is_an_error_not_a_fallback() {
    let empty = std::env::temp_dir().join(format!("chorus-no-model-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = analyze(&[&fixture("sharegpt.json")], &["--model-dir", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cargo xtask fetch"), "{}", stderr(&out));
    std::fs::remove_dir_all(&empty).ok();
}
