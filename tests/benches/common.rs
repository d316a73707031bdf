//! What both benchmarks need: the analyzer with the default study, and the realistic mix.
// Each benchmark uses part of this module.
#![allow(dead_code)]

use chorus_shared::embed::{pins::pins, Embedder};
use chorus_shared::{Analyzer, Conversation};
use chorus_tests::{cached, compile_study, first_conversations};

/// Conversations in the realistic mix: the first 300 of the public ShareGPT corpus.
pub const MIX: usize = 300;

pub fn analyzer() -> Analyzer {
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    let embedder = Embedder::new(&model, &tokenizer).unwrap();
    // Compiled (and cached) by the `chorus` binary: compiling fine-tunes for minutes.
    Analyzer::new(embedder, compile_study(None)).unwrap()
}

pub fn mix() -> Vec<Conversation> {
    first_conversations(&cached("corpus/sharegpt.json"), MIX)
}
