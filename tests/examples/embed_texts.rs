//! The native side of the embedding comparison in `bench/`: Chorus's embedder (tract, the pinned
//! model) over a list of texts, one text at a time (no padding), on one or more threads.
//!
//! ```text
//! embed_texts texts EXPORT N OUT.json          # the request texts of an export's first N conversations
//! embed_texts replies EXPORT N OUT.json        # the reply texts of those that have a reply
//! embed_texts embed TEXTS.json THREADS [VECTORS.json]
//! embed_texts examples EXAMPLES.jsonl OUT.json  # labelled examples as the classifier reads them
//! ```
//! `embed` prints `{"texts", "threads", "ms_per_text"}` (model loading excluded): each thread
//! has its own embedder and takes every THREADS-th text.

use chorus_shared::embed::{pins::pins, Embedder};
use chorus_shared::facets::reply_excerpt;
use chorus_shared::study::{example_text, LabelledExample};
use chorus_tests::{cached, first_conversations};
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(which @ ("texts" | "replies")) if args.len() == 4 => {
            let n: usize = args[2].parse().expect("N is a number");
            let conversations = first_conversations(Path::new(&args[1]), n);
            let texts: Vec<String> = match which {
                "texts" => conversations.iter().map(chorus_shared::facets::request_text).collect(),
                _ => conversations
                    .iter()
                    .filter_map(chorus_shared::facets::reply_text)
                    .collect(),
            };
            std::fs::write(&args[3], serde_json::to_vec(&texts).unwrap()).unwrap();
        }
        Some("examples") if args.len() == 3 => {
            let examples: Vec<serde_json::Value> = std::fs::read_to_string(&args[1])
                .unwrap()
                .lines()
                .map(|line| {
                    let e: LabelledExample = serde_json::from_str(line).unwrap();
                    serde_json::json!({
                        "text": example_text(&e.text),
                        "reply": e.reply.as_deref().map(reply_excerpt),
                        "category": e.category,
                        "sample": e.source.as_deref() == Some("sample"),
                    })
                })
                .collect();
            std::fs::write(&args[2], serde_json::to_vec(&examples).unwrap()).unwrap();
        }
        Some("embed") if args.len() >= 3 => {
            let texts: Vec<String> = serde_json::from_slice(&std::fs::read(&args[1]).unwrap()).unwrap();
            let threads: usize = args[2].parse().expect("THREADS is a number");
            let (seconds, vectors) = embed(&texts, threads);
            if let Some(out) = args.get(3) {
                std::fs::write(out, serde_json::to_vec(&vectors).unwrap()).unwrap();
            }
            let ms = seconds * 1000.0 / texts.len() as f64;
            println!(
                r#"{{"texts": {}, "threads": {threads}, "ms_per_text": {ms:.3}}}"#,
                texts.len()
            );
        }
        _ => {
            eprintln!(
                "usage: embed_texts texts|replies EXPORT N OUT.json | embed_texts embed TEXTS.json THREADS [VECTORS.json] | embed_texts examples EXAMPLES.jsonl OUT.json"
            );
            std::process::exit(2);
        }
    }
}

fn embed(texts: &[String], threads: usize) -> (f64, Vec<Vec<f32>>) {
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    let embedders: Vec<Embedder> = (0..threads)
        .map(|_| Embedder::new(&model, &tokenizer).unwrap())
        .collect();
    let started = Instant::now();
    let mut vectors = vec![Vec::new(); texts.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = embedders
            .iter()
            .enumerate()
            .map(|(t, embedder)| {
                scope.spawn(move || {
                    (t..texts.len())
                        .step_by(threads)
                        .map(|i| (i, embedder.embed(&[texts[i].as_str()]).unwrap().remove(0)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (i, v) in handle.join().unwrap() {
                vectors[i] = v;
            }
        }
    });
    (started.elapsed().as_secs_f64(), vectors)
}
