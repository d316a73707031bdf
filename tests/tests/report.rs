//! What leaves the device: the batch built from real conversations holds none of their text,
//! `chorus report` prints the very same batch on every run and never a conversation left out,
//! and a batch can only be built with secure noise. The memo's rules are in `device.rs`.

use chorus_messages::ReportBatch;
use chorus_shared::device::{digest, Memo};
use chorus_shared::device::{seal, BatchError};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::{Analysis, Analyzer};
use chorus_tests::{assert_no_text_of, chorus_bin, compile_study, embedder, first_conversations, fixture};
use std::process::Command;

#[test]
fn a_batch_of_every_conversation_holds_none_of_their_text() {
    let mut study = compile_study(None);
    let analyzer = Analyzer::new(embedder(), study.clone()).unwrap();
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
        // Report every conversation of the export, not just one.
        study.privacy.reports_per_contributor = conversations.len() as u32;
        let mut noise = Noise::Secure;
        let mut memo = Memo::new(&mut noise).unwrap();
        let candidates: Vec<(String, &Analysis)> = conversations
            .iter()
            .zip(&analyses)
            .map(|(c, a)| (memo.key(&study.id, &digest(c)), a))
            .collect();
        let batch = memo.prepare(&study, &candidates, &mut noise).unwrap().batch;
        assert_eq!(batch.reports.len(), conversations.len());
        let json = serde_json::to_string(&batch).unwrap();
        assert_no_text_of(&export, &json);
        // The receiving side reads it back exactly (and rejects unknown fields).
        assert_eq!(serde_json::from_str::<ReportBatch>(&json).unwrap(), batch);
    }
}

#[test]
fn simulation_noise_can_never_be_sent() {
    let noise = Noise::seeded(1);
    let refused = seal("s", "v", "c", "k", vec![], &noise);
    assert!(matches!(refused, Err(BatchError::InsecureNoise)));
}

/// `chorus report` with a memo file and exclusions: what the stderr says, and the batch.
fn chorus_report(memo: &std::path::Path, excluded: &[&str]) -> Result<(String, String), String> {
    let mut command = Command::new(chorus_bin());
    command.args(["report", "--memo"]).arg(memo);
    for id in excluded {
        command.args(["--exclude", id]);
    }
    let out = command.arg(fixture("chatgpt-export.zip")).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    if !out.status.success() {
        return Err(stderr);
    }
    Ok((String::from_utf8(out.stdout).unwrap(), stderr))
}

/// The conversation a `chorus report` run says it reported.
fn reported(stderr: &str) -> String {
    stderr.rsplit("reported: ").next().unwrap().trim().to_owned()
}

#[test]
fn chorus_report_prints_the_same_batch_every_run_and_never_an_excluded_conversation() {
    let memo = std::env::temp_dir().join(format!("chorus-memo-{}.json", std::process::id()));
    let (first, first_err) = chorus_report(&memo, &[]).unwrap();
    let (second, second_err) = chorus_report(&memo, &[]).unwrap();
    assert_eq!(first, second);
    assert!(
        first_err.contains("1 report of 1 conversation (7 included, 0 excluded)"),
        "{first_err}"
    );
    assert_eq!(reported(&first_err), reported(&second_err));
    assert!(
        first_err.contains("spends at most ε = 2.99"),
        "the privacy statement: {first_err}"
    );
    let batch: ReportBatch = serde_json::from_str(&first).unwrap();
    assert_eq!(batch.reports.len(), 1);
    assert_no_text_of(&fixture("chatgpt-export.zip"), &first);
    // Leaving out the reported conversation reports another one.
    let sampled = reported(&first_err);
    let (third, third_err) = chorus_report(&memo, &[&sampled]).unwrap();
    assert!(third_err.contains("(6 included, 1 excluded)"), "{third_err}");
    assert_ne!(reported(&third_err), sampled);
    assert_ne!(third, first);
    // Leaving out every conversation: nothing to send, and the reason.
    let ids: Vec<String> = first_conversations(&fixture("chatgpt-export.zip"), usize::MAX)
        .into_iter()
        .map(|c| c.id)
        .collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    let refused = chorus_report(&memo, &all).unwrap_err();
    assert!(refused.contains("every conversation is excluded"), "{refused}");
    std::fs::remove_file(&memo).ok();
}
