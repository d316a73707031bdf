//! What leaves the device: the batch built from real conversations holds none of their text,
//! is memoised (a second run sends the very same batch), and can only be built with secure
//! noise.

use chorus_shared::privacy::memo::{digest, study_key, Memo};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::protocol::{BatchError, ReportBatch};
use chorus_shared::{Analysis, Analyzer};
use chorus_tests::{assert_no_text_of, chorus_bin, compile_study, embedder, first_conversations, fixture};
use std::process::Command;

#[test]
fn a_batch_of_every_conversation_holds_none_of_their_text() {
    let mut study = compile_study(None);
    // Report every conversation of the export, not just one.
    study.privacy.reports_per_contributor = 100;
    let analyzer = Analyzer::new(embedder(), study).unwrap();
    let study = analyzer.study();
    for export in [
        fixture("chatgpt-export.zip"),
        fixture("claude/conversations.json"),
        fixture("openai.jsonl"),
    ] {
        let conversations = first_conversations(&export, usize::MAX);
        let analyses: Vec<Analysis> = conversations
            .iter()
            .map(|c| analyzer.analyze(c, true).unwrap())
            .collect();
        let mut noise = Noise::Secure;
        let mut memo = Memo::new(&mut noise).unwrap();
        let candidates: Vec<(String, &Analysis)> = conversations
            .iter()
            .zip(&analyses)
            .map(|(c, a)| (memo.key(&study_key(study), &digest(c)), a))
            .collect();
        let batch = memo.batch(study, &candidates, &mut noise).unwrap();
        assert_eq!(batch.reports.len(), conversations.len());
        let json = serde_json::to_string(&batch).unwrap();
        assert_no_text_of(&export, &json);
        // The receiving side reads it back exactly (and rejects unknown fields).
        assert_eq!(serde_json::from_str::<ReportBatch>(&json).unwrap(), batch);
    }
}

#[test]
fn reports_are_drawn_once_and_sent_again_unchanged() {
    let study = compile_study(None);
    let analyzer = Analyzer::new(embedder(), study).unwrap();
    let study = analyzer.study();
    let conversations = first_conversations(&fixture("chatgpt-export.zip"), usize::MAX);
    let analyses: Vec<Analysis> = conversations
        .iter()
        .map(|c| analyzer.analyze(c, true).unwrap())
        .collect();
    let mut noise = Noise::Secure;
    let mut memo = Memo::new(&mut noise).unwrap();
    let candidates: Vec<(String, &Analysis)> = conversations
        .iter()
        .zip(&analyses)
        .map(|(c, a)| (memo.key("v", &digest(c)), a))
        .collect();
    let first = memo
        .reports("v", &study.privacy, &study.category_ids(), &candidates, &mut noise)
        .unwrap()
        .clone();
    assert_eq!(first.selected.len(), 1, "m = 1: one conversation is sampled");
    // Later runs, even over other conversations, re-send the same report, pseudonym and key.
    let again = memo
        .reports("v", &study.privacy, &study.category_ids(), &candidates[2..], &mut noise)
        .unwrap()
        .clone();
    assert_eq!(first, again);
    // Another study version is a new round.
    let other = memo
        .reports("v2", &study.privacy, &study.category_ids(), &candidates, &mut noise)
        .unwrap()
        .clone();
    assert_ne!(other.contributor, first.contributor);
}

#[test]
fn simulation_noise_can_never_be_sent() {
    let noise = Noise::seeded(1);
    let refused = ReportBatch::new("s", "v", "c", "k", vec![], &noise);
    assert!(matches!(refused, Err(BatchError::InsecureNoise)));
}

#[test]
fn chorus_report_prints_the_same_batch_every_run() {
    let memo = std::env::temp_dir().join(format!("chorus-memo-{}.json", std::process::id()));
    let run = || {
        let out = Command::new(chorus_bin())
            .args(["report", "--memo"])
            .arg(&memo)
            .arg(fixture("chatgpt-export.zip"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (first, first_err) = run();
    let (second, second_err) = run();
    assert_eq!(first, second);
    assert!(
        first_err.contains("1 of 7 conversations reported (drawn now)"),
        "{first_err}"
    );
    assert!(second_err.contains("(the same as before)"), "{second_err}");
    assert!(
        first_err.contains("spends at most ε = 2.99"),
        "the privacy statement: {first_err}"
    );
    let batch: ReportBatch = serde_json::from_str(&first).unwrap();
    assert_eq!(batch.reports.len(), 1);
    assert_no_text_of(&fixture("chatgpt-export.zip"), &first);
    std::fs::remove_file(&memo).ok();
}
