//! What both benchmarks need: the analyzer with the default study, and the realistic mix.
// Each benchmark uses part of this module.
#![allow(dead_code)]

use chorus_shared::embed::{pins::pins, Embedder};
use chorus_shared::study::{CompiledStudy, Study, StudyContents, TrainOptions};
use chorus_shared::{Analyzer, Conversation};
use chorus_tests::{cached, first_conversations, workspace_root};

/// Conversations in the realistic mix: the first 300 of the public ShareGPT corpus.
pub const MIX: usize = 300;

pub fn analyzer() -> Analyzer {
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    let embedder = Embedder::new(&model, &tokenizer).unwrap();
    let dir = workspace_root().join("studies/default");
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let (examples, codebook) = (read("examples.jsonl"), read("codebook.json"));
    let contents = StudyContents {
        labelled_examples: Some(&examples),
        codebook: Some(&codebook),
    };
    let study = Study::parse(&read("study.toml"), contents).unwrap();
    let compiled = CompiledStudy::compile(&study, &embedder, TrainOptions::default(), |_, _| {}, |_, _| {}).unwrap();
    Analyzer::new(embedder, compiled).unwrap()
}

pub fn mix() -> Vec<Conversation> {
    first_conversations(&cached("corpus/sharegpt.json"), MIX)
}
