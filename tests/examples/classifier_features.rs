//! The default study's classifier inputs exactly as `chorus study evaluate` builds them (the
//! embeddings with their layers' means, then the words), for reference fits outside the product;
//! meta.json also holds each row's texts as the embedder reads them (request, reply opening).
//!
//! ```text
//! classifier_features OUT_DIR   # writes features.f32 (row-major, little-endian) and meta.json
//! ```

use chorus_shared::embed::{pins::pins, Embedder};
use chorus_shared::study::{category_input, embed_training_set, fit_words, fold_assignment, training_set, with_words};
use chorus_tests::{cached, default_study};

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("OUT_DIR"));
    let study = default_study();
    let set = training_set(&study);
    let input = category_input(&study);
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    let embedder = Embedder::new(&model, &tokenizer).unwrap();
    let (embedded, _) = embed_training_set(&embedder, &set, input, &[], |done, total| {
        if done % 1000 < 16 {
            eprintln!("{done}/{total}");
        }
    })
    .unwrap();
    let words = fit_words(input, &set).expect("the default study reads words");
    let features = with_words(embedded.features(input), Some(&words), &set);
    let width = features[0].len();
    let bytes: Vec<u8> = features.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("features.f32"), bytes).unwrap();
    let meta = serde_json::json!({
        "rows": set.labels.len(),
        "width": width,
        "labels": set.labels,
        "fold_of": fold_assignment(&study, 5),
        "vocabulary": words.vocabulary,
        "texts": set.texts,
        "replies": set.replies,
    });
    std::fs::write(out.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
}
