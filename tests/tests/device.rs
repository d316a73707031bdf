//! The device's promises, on the shipped default study: an excluded conversation is never sent;
//! a batch always holds exactly `m` reports in random order; a drawn report is re-used, never
//! redrawn; a sent batch is frozen and its cost is in the device's ledger; a new study version
//! re-sends the values whose mechanism did not change and pays only for the others, and a sent
//! batch leaves again unchanged even after the device's code changed; the study's
//! lifetime cap is enforced; a study made at another reading length is refused and nothing drawn
//! under it is re-sent; and the version is the meaning of the study, not its formatting.

use chorus_messages::Channel;
use chorus_shared::device::mechanisms::mechanisms;
use chorus_shared::device::{digest, DeviceError, Memo};
use chorus_shared::embed::MAX_TOKENS;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::privacy::oracle::{Oracle, OracleChoice};
use chorus_shared::study::{CompiledStudy, Study, StudyContents};
use chorus_shared::{Analysis, Analyzer};
use chorus_tests::{compile_study, embedder, first_conversations, fixture, workspace_root};
use std::sync::OnceLock;

/// The default study and the seven conversations of the ChatGPT fixture, analysed once.
fn setup() -> &'static (CompiledStudy, Vec<(String, Analysis)>) {
    static SETUP: OnceLock<(CompiledStudy, Vec<(String, Analysis)>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let analyzer = Analyzer::new(embedder(), compile_study(None)).unwrap();
        let conversations = first_conversations(&fixture("chatgpt-export.zip"), usize::MAX);
        let analysed = conversations
            .iter()
            .map(|c| (digest(c), analyzer.analyze(c, true).unwrap()))
            .collect();
        (analyzer.study().clone(), analysed)
    })
}

/// The candidates a device offers: salted keys of the conversations not excluded.
fn candidates<'a>(
    memo: &Memo,
    study: &CompiledStudy,
    analysed: &'a [(String, Analysis)],
    excluded: &[&str],
) -> Vec<(String, &'a Analysis)> {
    analysed
        .iter()
        .filter(|(_, a)| !excluded.contains(&a.id.as_str()))
        .map(|(d, a)| (memo.key(&study.id, d), a))
        .collect()
}

fn ids<'a>(prepared: &chorus_shared::device::Prepared, offered: &[(String, &'a Analysis)]) -> Vec<&'a str> {
    prepared.sampled.iter().map(|&i| offered[i].1.id.as_str()).collect()
}

#[test]
fn an_excluded_conversation_is_never_sent_and_a_drawn_report_is_never_redrawn() {
    let (study, analysed) = setup();
    assert_eq!(
        study.privacy.reports_per_contributor, 1,
        "the shipped study sends one report"
    );
    let mut noise = Noise::Secure;
    let mut memo = Memo::new(&mut noise).unwrap();
    let all = candidates(&memo, study, analysed, &[]);
    let first = memo.prepare(study, &all, &mut noise).unwrap();
    let sampled = ids(&first, &all)[0];
    // Showing the payload again changes nothing.
    assert_eq!(memo.prepare(study, &all, &mut noise).unwrap().batch, first.batch);
    // Unticking the sampled conversation: another is reported, under a new batch key.
    let without = candidates(&memo, study, analysed, &[sampled]);
    let second = memo.prepare(study, &without, &mut noise).unwrap();
    let replacement = ids(&second, &without)[0];
    assert_ne!(replacement, sampled);
    assert_ne!(second.batch.idempotency_key, first.batch.idempotency_key);
    assert_ne!(second.batch.reports, first.batch.reports);
    // Only one conversation included: that one is reported, with the report drawn for it before.
    let others: Vec<&str> = analysed
        .iter()
        .map(|(_, a)| a.id.as_str())
        .filter(|id| *id != sampled)
        .collect();
    let only_first = candidates(&memo, study, analysed, &others);
    let again = memo.prepare(study, &only_first, &mut noise).unwrap();
    assert_eq!(
        again.batch.reports, first.batch.reports,
        "a drawn report is re-used, not redrawn"
    );
    // Nothing included: nothing can be sent.
    let everything: Vec<&str> = analysed.iter().map(|(_, a)| a.id.as_str()).collect();
    let none = candidates(&memo, study, analysed, &everything);
    assert!(matches!(
        memo.prepare(study, &none, &mut noise),
        Err(DeviceError::NothingIncluded)
    ));
}

#[test]
fn a_batch_holds_exactly_m_reports_in_random_order() {
    let (study, analysed) = setup();
    let mut study = study.clone();
    study.privacy.reports_per_contributor = 3;
    let mut noise = Noise::Secure;
    // Two conversations, m = 3: three reports, one conversation twice with its own noise.
    let memo = Memo::new(&mut noise).unwrap();
    let two: Vec<&str> = analysed[2..].iter().map(|(_, a)| a.id.as_str()).collect();
    let mut memo = memo;
    let offered = candidates(&memo, &study, analysed, &two);
    assert_eq!(offered.len(), 2);
    let prepared = memo.prepare(&study, &offered, &mut noise).unwrap();
    assert_eq!(prepared.batch.reports.len(), 3);
    let mut sampled = prepared.sampled.clone();
    sampled.sort();
    assert!(sampled == [0, 0, 1] || sampled == [0, 1, 1], "{sampled:?}");
    // One conversation, then two: the second is reported too (each included one at least once),
    // and the first keeps the reports drawn for it.
    let mut memo = Memo::new(&mut noise).unwrap();
    let all: Vec<&str> = analysed.iter().map(|(_, a)| a.id.as_str()).collect();
    let one = candidates(&memo, &study, analysed, &all[1..]);
    let alone = memo.prepare(&study, &one, &mut noise).unwrap();
    assert_eq!(alone.sampled, [0, 0, 0]);
    let two = candidates(&memo, &study, analysed, &all[2..]);
    let both = memo.prepare(&study, &two, &mut noise).unwrap();
    let mut sampled = both.sampled.clone();
    sampled.sort();
    assert_eq!(sampled, [0, 0, 1], "the newly included conversation is reported once");
    let kept = alone
        .batch
        .reports
        .iter()
        .filter(|r| both.batch.reports.contains(r))
        .count();
    assert_eq!(kept, 2, "two of the first conversation's reports are re-used");
    // Seven conversations: three distinct ones, in an order that is not the export's. In
    // increasing order by chance one time in six: forty batches all in order is a 10⁻³¹ event.
    let mut shuffled = 0;
    for _ in 0..40 {
        let mut memo = Memo::new(&mut noise).unwrap();
        let offered = candidates(&memo, &study, analysed, &[]);
        let prepared = memo.prepare(&study, &offered, &mut noise).unwrap();
        assert_eq!(prepared.batch.reports.len(), 3);
        let mut distinct = prepared.sampled.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 3);
        shuffled += usize::from(!prepared.sampled.windows(2).all(|w| w[0] < w[1]));
    }
    assert!(shuffled > 0, "batches follow the export's order");
}

#[test]
fn a_sent_batch_is_frozen_and_its_cost_is_in_the_ledger() {
    let (study, analysed) = setup();
    let mut noise = Noise::Secure;
    let mut memo = Memo::new(&mut noise).unwrap();
    let all = candidates(&memo, study, analysed, &[]);
    let prepared = memo.prepare(study, &all, &mut noise).unwrap();
    let contributor = study.privacy.accounting.contributor;
    assert!(
        (prepared.cost.epsilon - contributor.epsilon).abs() < 1e-9,
        "{prepared:?}"
    );
    assert_eq!(memo.lifetime(&study.id).epsilon, 0.0, "nothing is spent before sending");
    let spend = memo.commit(study, &prepared.batch.idempotency_key).unwrap().unwrap();
    assert!((spend.spent.epsilon - contributor.epsilon).abs() < 1e-9);
    assert!((memo.lifetime(&study.id).epsilon - contributor.epsilon).abs() < 1e-9);
    // Shown again: the same batch, which costs nothing more; committing again changes nothing.
    let again = memo.prepare(study, &all, &mut noise).unwrap();
    assert!(again.sent);
    assert_eq!(again.batch, prepared.batch);
    assert_eq!(again.cost.epsilon, 0.0);
    assert!(memo.commit(study, &prepared.batch.idempotency_key).unwrap().is_none());
    assert_eq!(memo.studies[&study.id].ledger.len(), 1);
    // After an upgrade of the device's code under the same study version (another compiled
    // format: every mechanism's fingerprint changes), the batch leaves again as it left: a
    // fresh draw of its conversation would reach the server unpaid for.
    let mut upgraded = study.clone();
    upgraded.format += 1;
    assert_ne!(mechanisms(&upgraded), mechanisms(study));
    let after_upgrade = memo.prepare(&upgraded, &all, &mut noise).unwrap();
    assert!(after_upgrade.sent);
    assert_eq!(after_upgrade.batch, prepared.batch);
    assert_eq!(after_upgrade.cost.epsilon, 0.0);
    // Its conversation can no longer be left out of a batch that was sent.
    let sampled = ids(&prepared, &all)[0];
    let without = candidates(&memo, study, analysed, &[sampled]);
    assert!(matches!(
        memo.prepare(study, &without, &mut noise),
        Err(DeviceError::AlreadySent)
    ));
    // The memo survives its JSON (IndexedDB or a file) unchanged.
    let text = serde_json::to_string(&memo).unwrap();
    assert_eq!(Memo::from_json(&text).unwrap(), memo);
    assert!(matches!(
        Memo::from_json(r#"{"salt":"00","studies":{}}"#),
        Err(DeviceError::OldMemo)
    ));
}

/// The default study with a new version whose category channel has another budget.
fn with_category_epsilon(study: &CompiledStudy, epsilon: f64, version: &str) -> CompiledStudy {
    let mut next = study.clone();
    next.version = version.to_owned();
    let category = next
        .privacy
        .channels
        .iter_mut()
        .find(|c| c.channel == Channel::Category)
        .unwrap();
    category.oracle = Oracle::new(OracleChoice::Auto, category.labels.len(), epsilon);
    next
}

#[test]
fn a_new_version_pays_only_for_the_mechanisms_it_changed_up_to_the_lifetime_cap() {
    let (study, analysed) = setup();
    let mut noise = Noise::Secure;
    let mut memo = Memo::new(&mut noise).unwrap();
    let all = candidates(&memo, study, analysed, &[]);
    let first = memo.prepare(study, &all, &mut noise).unwrap();
    memo.commit(study, &first.batch.idempotency_key).unwrap();
    let spent = memo.lifetime(&study.id).epsilon;

    // The same mechanisms under another version (an edit that changes no mechanism): the same
    // conversation and values again, for nothing.
    let mut same = study.clone();
    same.version = "same-mechanisms".into();
    let carried = memo.prepare(&same, &all, &mut noise).unwrap();
    assert_eq!(carried.sampled, first.sampled);
    assert_eq!(carried.batch.reports, first.batch.reports);
    assert_ne!(
        carried.batch.contributor, first.batch.contributor,
        "a new version, a new pseudonym"
    );
    assert_eq!(carried.cost.epsilon, 0.0);

    // A new category budget: only the category is drawn anew, and only it is paid for.
    let next = with_category_epsilon(study, 1.2, "new-category-budget");
    let prepared = memo.prepare(&next, &all, &mut noise).unwrap();
    assert_eq!(prepared.sampled, first.sampled, "the sample carries over");
    let (old, new) = (&first.batch.reports[0], &prepared.batch.reports[0]);
    assert_eq!(old.embedding, new.embedding);
    for (channel, value) in &new.channels {
        if *channel != Channel::Category {
            assert_eq!(old.channels.get(channel), Some(value), "{channel:?} was redrawn");
        }
    }
    assert!((prepared.cost.epsilon - 1.2).abs() < 1e-9, "{:?}", prepared.cost);
    assert!((prepared.lifetime_after.epsilon - (spent + 1.2)).abs() < 1e-9);

    // Past the study's lifetime cap, the device refuses to send.
    let mut capped = with_category_epsilon(study, 1.2, "capped");
    capped.privacy.lifetime_epsilon_cap = Some(spent + 1.0);
    let prepared = memo.prepare(&capped, &all, &mut noise).unwrap();
    let refused = memo.commit(&capped, &prepared.batch.idempotency_key);
    assert!(
        matches!(refused, Err(DeviceError::OverLifetimeCap { .. })),
        "{refused:?}"
    );
    assert!((memo.lifetime(&study.id).epsilon - spent).abs() < 1e-9);
}

/// An embedding drawn for a version that was never sent stays unpaid-for when a version
/// without the embedding channel is sent, and is paid for when a version that carries it is.
#[test]
fn only_an_embedding_a_batch_carries_counts_as_sent() {
    let (study, analysed) = setup();
    assert!(
        study.privacy.embedding.is_some(),
        "the default study sends an embedding"
    );
    let mut noise = Noise::Secure;
    let mut memo = Memo::new(&mut noise).unwrap();
    // One conversation offered, so that every version samples it.
    let others: Vec<&str> = analysed[1..].iter().map(|(_, a)| a.id.as_str()).collect();
    let all = candidates(&memo, study, analysed, &others);
    assert_eq!(all.len(), 1);
    // Drawn, shown, never sent.
    let shown = memo.prepare(study, &all, &mut noise).unwrap();
    assert!(shown.batch.reports[0].embedding.is_some());
    // A version without the embedding channel, sent.
    let mut without = study.clone();
    without.version = "without-embedding".into();
    without.privacy.embedding = None;
    let sent = memo.prepare(&without, &all, &mut noise).unwrap();
    assert!(sent.batch.reports[0].embedding.is_none());
    memo.commit(&without, &sent.batch.idempotency_key).unwrap().unwrap();
    // The embedding again: the values the last batch carried are re-sent for nothing, the
    // embedding, which never left the device, is paid for.
    let mut again = study.clone();
    again.version = "embedding-again".into();
    let prepared = memo.prepare(&again, &all, &mut noise).unwrap();
    assert_eq!(prepared.batch.reports[0].embedding, shown.batch.reports[0].embedding);
    // The embedding's ρ is about ε 0.15 at the study's δ; the cheapest channel costs ε 0.35.
    assert!(
        prepared.cost.epsilon > 0.1 && prepared.cost.epsilon < 0.3,
        "{:?}",
        prepared.cost
    );
}

/// A study made at another reading length (`MAX_TOKENS`) fitted its classifiers to other
/// embeddings: a device refuses it by name, and a value drawn under it is never re-sent as if
/// this code had computed it (every fingerprint names the length).
#[test]
fn a_study_or_codebook_made_at_another_reading_length_is_refused_and_nothing_drawn_under_it_is_reused() {
    let (study, _) = setup();
    assert_eq!(
        study.max_tokens, MAX_TOKENS,
        "the shipped study records its reading length"
    );
    let mut longer = study.clone();
    longer.max_tokens = 2 * MAX_TOKENS;
    let refused = Analyzer::new(embedder(), longer.clone())
        .err()
        .expect("refused")
        .to_string();
    let expected = format!("read to {} tokens, this code reads {MAX_TOKENS}", 2 * MAX_TOKENS);
    assert!(refused.contains(&expected), "{refused}");
    let mut old_topics = study.clone();
    old_topics
        .codebook
        .as_mut()
        .expect("the shipped study has a codebook")
        .max_tokens = 2 * MAX_TOKENS;
    let refused = Analyzer::new(embedder(), old_topics)
        .err()
        .expect("refused")
        .to_string();
    assert!(refused.contains("codebook was made from requests read to"), "{refused}");
    assert!(refused.contains(&expected), "{refused}");

    let (now, then) = (mechanisms(study), mechanisms(&longer));
    for (channel, fingerprint) in &now.channels {
        assert_ne!(
            then.channels.get(channel),
            Some(fingerprint),
            "{channel:?} would be re-sent"
        );
    }
    assert!(now.embedding.is_some());
    assert_ne!(now.embedding, then.embedding, "the embedding would be re-sent");
}

#[test]
fn the_version_is_the_meaning_of_the_study_not_its_formatting() {
    let dir = workspace_root().join("studies/default");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (toml, examples, codebook) = (read("study.toml"), read("examples.jsonl"), read("codebook.json"));
    let parse = |toml: &str, codebook: &str| {
        let contents = StudyContents {
            labelled_examples: Some(&examples),
            codebook: Some(codebook),
        };
        Study::parse(toml, contents).unwrap().version
    };
    let shipped = parse(&toml, &codebook);
    let commented = format!(
        "# a note for the operators\n{}\n\n# the end\n",
        toml.replace(" = ", "   =   ")
    );
    assert_eq!(
        parse(&commented, &codebook),
        shipped,
        "comments and spacing are not meaning"
    );
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&codebook).unwrap()).unwrap();
    assert_eq!(
        parse(&toml, &pretty),
        shipped,
        "the codebook's formatting is not meaning"
    );
    let budget = toml.replace("category = { epsilon = 1.5 }", "category = { epsilon = 1.4 }");
    assert_ne!(budget, toml);
    assert_ne!(parse(&budget, &codebook), shipped, "a budget is meaning");
}
