//! The wasm build of the client pipeline, run under Node, against the native build on the same
//! exports: categories, languages and concern levels must agree exactly, embeddings to cosine
//! ≥ 0.9999, for both bundles (relaxed SIMD and plain simd128). Needs `cargo xtask wasm` first
//! (the test command runs it).

use chorus_shared::embed::{cosine, pins::pins};
use chorus_tests::{cached, chorus_bin, fixture, workspace_root};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn run(command: &mut Command) -> String {
    let out = command.output().expect("command runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The two bundles `cargo xtask wasm` builds: relaxed SIMD (what Chromium runs) and plain
/// simd128 (the fallback for browsers without relaxed SIMD).
const BUNDLES: [&str; 2] = ["chorus_client_bg.wasm", "chorus_client_simd128_bg.wasm"];

fn compare(export: &Path, study_json: &Path) -> usize {
    let native = lines(&run(Command::new(chorus_bin())
        .args(["analyze", "--embeddings"])
        .arg(export)));
    for name in BUNDLES {
        let bundle = workspace_root().join("www/pkg").join(name);
        assert!(
            bundle.exists(),
            "{} is missing: run `cargo xtask wasm`",
            bundle.display()
        );
        let wasm = lines(&run(Command::new("node")
            .env("CHORUS_WASM", name)
            .arg(workspace_root().join("tests/wasm/analyze.mjs"))
            .arg(cached(&format!("model/{}", pins().model.file)))
            .arg(cached(&format!("model/{}", pins().tokenizer.file)))
            .arg(study_json)
            .arg(export)));
        agree(export, name, &native, &wasm);
    }
    native.len()
}

fn agree(export: &Path, bundle: &str, native: &[Value], wasm: &[Value]) {
    assert_eq!(
        native.len(),
        wasm.len(),
        "{} ({bundle}): different numbers of conversations",
        export.display()
    );
    let mut worst = 1f32;
    for (n, w) in native.iter().zip(wasm) {
        for field in ["id", "category", "language", "concern", "turns", "chars", "has_code"] {
            assert_eq!(
                n[field],
                w[field],
                "{}: {field} differs for {}",
                export.display(),
                n["id"]
            );
        }
        let vector = |v: &Value| -> Vec<f32> {
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
        let probabilities = |v: &Value| -> Vec<f32> {
            v["category_probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
        let largest_gap = probabilities(n)
            .iter()
            .zip(probabilities(w))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            largest_gap < 1e-3,
            "{}: category probabilities of {} differ by {largest_gap}",
            export.display(),
            n["id"]
        );
        let c = cosine(&vector(n), &vector(w));
        worst = worst.min(c);
        assert!(
            c >= 0.9999,
            "{}: embedding of {} differs (cosine {c})",
            export.display(),
            n["id"]
        );
    }
    eprintln!(
        "{} ({bundle}): {} conversations agree; lowest cosine {worst}",
        export.display(),
        native.len()
    );
}

#[test]
fn wasm_and_native_agree() {
    let dir = std::env::temp_dir().join(format!("chorus-wasm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let study = dir.join("study.json");
    run(Command::new(chorus_bin())
        .args(["study", "compile", "--out"])
        .arg(&study));

    assert_eq!(compare(&fixture("chatgpt-export.zip"), &study), 7);
    compare(&fixture("claude/conversations.json"), &study);
    compare(&fixture("openai.jsonl"), &study);

    // A realistic mix: the first 300 conversations of the public ShareGPT corpus.
    let sample = dir.join("sharegpt-300.json");
    chorus_tests::write_sharegpt_sample(&cached("corpus/sharegpt.json"), 300, &sample);
    assert_eq!(compare(&sample, &study), 300);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wasm_builds_the_batch_the_browser_sends_and_memoises_it() {
    let dir = std::env::temp_dir().join(format!("chorus-wasm-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let study = dir.join("study.json");
    run(Command::new(chorus_bin())
        .args(["study", "compile", "--out"])
        .arg(&study));
    let export = fixture("chatgpt-export.zip");
    let out: Value = serde_json::from_str(&run(Command::new("node")
        .arg(workspace_root().join("tests/wasm/analyze.mjs"))
        .arg(cached(&format!("model/{}", pins().model.file)))
        .arg(cached(&format!("model/{}", pins().tokenizer.file)))
        .arg(&study)
        .arg(&export)
        .arg("--report")))
    .unwrap();
    // The batch comes out of the client as text, and that text is what the page sends: its OLH
    // seeds are strings, so no JavaScript number ever holds one.
    let text = out["batch"].as_str().expect("the batch as JSON text");
    let batch: chorus_messages::ReportBatch = serde_json::from_str(text).expect("a ReportBatch");
    assert!(text.contains(r#""seed":""#), "OLH seeds travel as strings: {text}");
    assert_eq!(
        out["batch"], out["again"],
        "a second run must re-send the memoised batch unchanged"
    );
    assert_eq!(
        batch.reports.len(),
        1,
        "the default study reports one conversation per contributor"
    );
    // Unticking the reported conversation reports another; once sent, it cannot be unticked;
    // with nothing included nothing can be sent.
    assert_ne!(out["sampled"], out["other_sampled"]);
    assert_ne!(out["batch"], out["other"]);
    assert!(out["after_sending"].as_str().unwrap().contains("already sent"), "{out}");
    assert!(
        out["none"].as_str().unwrap().contains("every conversation is excluded"),
        "{out}"
    );
    let (cost, spent) = (&out["cost"]["epsilon"], &out["spend"]["spent"]["epsilon"]);
    assert_eq!(cost, spent, "the page's shown cost is what the ledger records");
    let report = &batch.reports[0];
    assert!(report.channels.contains_key(&chorus_messages::Channel::Category));
    assert_eq!(
        report.channels.len(),
        3,
        "the category and one channel of each sampled pool (topic, facets)"
    );
    assert_eq!(report.embedding.as_ref().map(Vec::len), Some(16));
    assert_eq!((batch.contributor.len(), batch.idempotency_key.len()), (32, 32));
    let eps = out["privacy"]["contributor"]["epsilon"].as_f64().unwrap();
    assert!(eps > 2.9 && eps <= 3.0, "contributor ε {eps}");
    chorus_tests::assert_no_text_of(&export, text);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_embedder_alone_matches_native() {
    let dir = std::env::temp_dir().join(format!("chorus-wasm-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let texts: Vec<String> = chorus_tests::first_conversations(&cached("corpus/sharegpt.json"), 40)
        .iter()
        .map(chorus_shared::facets::request_text)
        .collect();
    let file = dir.join("texts.json");
    std::fs::write(&file, serde_json::to_vec(&texts).unwrap()).unwrap();
    let embedder = chorus_tests::embedder();
    let native: Vec<Vec<f32>> = texts.iter().map(|t| embedder.embed(&[t]).unwrap().remove(0)).collect();
    let wasm: Vec<Vec<f32>> = serde_json::from_str(&run(Command::new("node")
        .arg(workspace_root().join("tests/wasm/analyze.mjs"))
        .arg(cached(&format!("model/{}", pins().model.file)))
        .arg(cached(&format!("model/{}", pins().tokenizer.file)))
        .arg("-")
        .arg(&file)
        .arg("--embed-texts")))
    .unwrap();
    assert_eq!(wasm.len(), texts.len());
    for (i, (a, b)) in native.iter().zip(&wasm).enumerate() {
        let c = cosine(a, b);
        assert!(c >= 0.9999, "text {i}: cosine {c} between native and wasm");
    }
    std::fs::remove_dir_all(&dir).ok();
}
