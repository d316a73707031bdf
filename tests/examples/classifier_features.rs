//! The default study's classifier inputs exactly as `chorus study evaluate` builds them (the
//! embeddings with their layers' means, then the words), for reference fits outside the product.
//!
//! ```text
//! classifier_features OUT_DIR   # writes features.f32 (row-major, little-endian) and meta.json
//! ```

use chorus_shared::embed::{pins::pins, Embedder};
use chorus_shared::study::words::Words;
use chorus_shared::study::{category_input, embed_training_set, fold_assignment, training_set, VOCABULARY};
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
    let texts: Vec<&str> = (set.texts.iter())
        .chain(set.replies.iter().flatten())
        .map(String::as_str)
        .collect();
    let words = Words {
        replies: true,
        ..Words::fit(&texts, VOCABULARY)
    };
    let mut bytes = Vec::new();
    let mut width = 0;
    for (i, x) in embedded.features(input).into_iter().enumerate() {
        let x = [x, words.text_features(set.category_texts(i))].concat();
        width = x.len();
        x.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
    }
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("features.f32"), bytes).unwrap();
    let meta = serde_json::json!({
        "rows": set.labels.len(),
        "width": width,
        "labels": set.labels,
        "fold_of": fold_assignment(&study, 5),
        "vocabulary": words.vocabulary,
    });
    std::fs::write(out.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
}
