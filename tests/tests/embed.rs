//! The embedder against onnxruntime: the same pinned model file and tokenizer, run by
//! onnxruntime in Python (fixtures/reference-embeddings.json), must give the same vectors.

use chorus_shared::embed::{cosine, pins::pins, EmbedError, Embedder, DIM};
use chorus_tests::{cached, fixture};
use serde_json::Value;

fn embedder() -> Embedder {
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    Embedder::new(&model, &tokenizer).unwrap()
}

#[test]
fn matches_onnxruntime_one_by_one_and_batched() {
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture("reference-embeddings.json")).unwrap()).unwrap();
    let vectors = reference["vectors"].as_array().unwrap();
    let texts: Vec<&str> = vectors.iter().map(|v| v["text"].as_str().unwrap()).collect();
    let expected: Vec<Vec<f32>> = vectors
        .iter()
        .map(|v| {
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let e = embedder();
    let batched = e.embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let single = e.embed(&[text]).unwrap().remove(0);
        assert_eq!(single.len(), DIM);
        let norm: f32 = single.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not unit length: {norm}");
        let c = cosine(&single, &expected[i]);
        assert!(c > 0.9999, "text {i}: cosine {c} with onnxruntime");
        let max_diff = single
            .iter()
            .zip(&expected[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "text {i}: max difference {max_diff}");
        // Padding a text to the batch's longest must not change its embedding.
        assert!(cosine(&single, &batched[i]) > 0.99999, "text {i} changed when batched");
    }
}

#[test]
fn refuses_a_file_that_is_not_the_pinned_model() {
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    let mut altered = model.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 1;
    match Embedder::new(&altered, &tokenizer) {
        Err(EmbedError::WrongFile { file, .. }) => assert_eq!(file, "model.onnx"),
        other => panic!("an altered model must be refused, got {:?}", other.err()),
    }
    assert!(matches!(
        Embedder::new(&model, b"{}"),
        Err(EmbedError::WrongFile { .. })
    ));
}
