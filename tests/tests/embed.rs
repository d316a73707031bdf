//! The embedder against onnxruntime: the same pinned model file and tokenizer, run by
//! onnxruntime in Python (fixtures/reference-embeddings.json, written by
//! fixtures/reference_embeddings.py at the embedder's MAX_TOKENS), must give the same vectors.

use chorus_shared::embed::{cosine, pins::pins, EmbedError, Embedder, DIM, POOLED_LAYERS};
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

/// The means the category classifier reads besides the embedding: the hidden states after
/// the pooled layers, as onnxruntime computes them (fixtures/reference-layer-means.json), after
/// the very embedding `embed` gives.
#[test]
fn the_layers_means_match_onnxruntime() {
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture("reference-layer-means.json")).unwrap()).unwrap();
    let vectors = reference["vectors"].as_array().unwrap();
    assert_eq!(reference["vectors"][0]["layers"], serde_json::json!(POOLED_LAYERS));
    let texts: Vec<&str> = vectors.iter().map(|v| v["text"].as_str().unwrap()).collect();
    let e = embedder();
    let layered = e.embed_layers(&texts).unwrap();
    let embedded = e.embed(&texts).unwrap();
    for (i, (layered, vector)) in layered.iter().zip(vectors).enumerate() {
        assert_eq!(layered.len(), (1 + POOLED_LAYERS.len()) * DIM);
        assert_eq!(layered[..DIM], embedded[i][..], "text {i}: the embedding comes first");
        for (l, expected) in vector["means"].as_array().unwrap().iter().enumerate() {
            let mean = &layered[(l + 1) * DIM..(l + 2) * DIM];
            let max_diff = (mean.iter().zip(expected.as_array().unwrap()))
                .map(|(a, b)| (a - b.as_f64().unwrap() as f32).abs())
                .fold(0f32, f32::max);
            assert!(
                max_diff < 1e-4,
                "text {i}, layer {}: max difference {max_diff}",
                POOLED_LAYERS[l]
            );
        }
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

/// The pinned graph cut after its fourth layer: the upper two layers run on the lower part's
/// hidden states give what the whole graph gives (the basis for running a study's own weights
/// for the upper layers without running the lower ones twice).
#[test]
fn the_graph_cut_between_layers_computes_the_same() {
    use chorus_shared::embed::split;
    use tract_onnx::prelude::*;
    let bytes = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let onnx = tract_onnx::onnx().with_ignore_value_info(true);
    let proto = onnx.proto_model_for_read(&mut &*bytes).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let boundary = split::hidden_state_after(graph, 4).unwrap();
    assert!(
        split::hidden_state_after(graph, 7).is_none(),
        "the model has six layers"
    );
    let plan = |graph: tract_onnx::pb::GraphProto, inputs: &[(&str, Tensor)]| {
        let mut proto = proto.clone();
        proto.graph = Some(graph);
        let mut model = onnx.model_for_proto_model(&proto).unwrap();
        for (i, outlet) in model.input_outlets().unwrap().to_vec().into_iter().enumerate() {
            let name = model.node(outlet.node).name.clone();
            let (_, value) = inputs.iter().find(|(n, _)| *n == name).expect("a known input");
            model
                .set_input_fact(i, value.datum_type().fact(value.shape()).into())
                .unwrap();
        }
        let values: TVec<TValue> = (model.input_outlets().unwrap().iter())
            .map(|o| {
                inputs
                    .iter()
                    .find(|(n, _)| *n == model.node(o.node).name)
                    .unwrap()
                    .1
                    .clone()
                    .into_tvalue()
            })
            .collect();
        model
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
            .run(values)
            .unwrap()
    };
    let ids: Vec<i64> = vec![101, 2129, 2079, 1045, 4066, 1037, 2862, 1999, 18750, 1029, 102];
    let tokens = |v: Vec<i64>| {
        tract_ndarray::Array2::from_shape_vec((1, ids.len()), v)
            .unwrap()
            .into_tensor()
    };
    let inputs = [
        ("input_ids", tokens(ids.clone())),
        ("attention_mask", tokens(vec![1; ids.len()])),
        ("token_type_ids", tokens(vec![0; ids.len()])),
    ];
    let whole = plan(graph.clone(), &inputs);
    let lower = plan(split::below(graph, &boundary), &inputs);
    let mut upper_inputs = inputs.to_vec();
    upper_inputs.push((boundary.as_str(), lower[0].clone().into_tensor()));
    let upper = plan(split::above(graph, &boundary), &upper_inputs);
    let (expected, got) = (
        whole[0].to_plain_array_view::<f32>().unwrap(),
        upper[0].to_plain_array_view::<f32>().unwrap(),
    );
    assert_eq!(expected.shape(), got.shape());
    let difference = expected
        .iter()
        .zip(got.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(difference < 1e-5, "largest difference {difference}");
    let hidden = lower[0].to_plain_array_view::<f32>().unwrap();
    assert!(
        hidden.iter().zip(expected.iter()).any(|(a, b)| (a - b).abs() > 0.1),
        "the boundary is not the output"
    );
}

/// The pinned model's layers 4 and 5 read out of the graph and run in plain arrays
/// (`embed::layer`, what fine-tuning trains) on the hidden states after layer 3 give the pinned
/// model's own output; and written back in the graph's form they are the pinned tensors.
#[test]
fn the_upper_layers_in_plain_arrays_compute_what_the_pinned_graph_computes() {
    use chorus_shared::embed::{pool, weights};
    use tract_onnx::prelude::*;
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &*model).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let layers: Vec<_> = (4..6).map(|l| weights::read_layer(graph, l).unwrap()).collect();
    let lower = Embedder::new(&model, &tokenizer).unwrap().lower_layers(4).unwrap();
    let texts = [
        "How do I sort a list in Python?",
        "Écris un poème sur la mer, en alexandrins, avec des rimes croisées.",
        "x",
    ];
    let whole = embedder().token_states(&texts).unwrap();
    for (states, expected) in lower.token_states(&texts).unwrap().into_iter().zip(whole) {
        let mut x = states;
        for layer in &layers {
            x = layer.forward(x).into_output();
        }
        let worst = (x.iter().zip(&expected)).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-4, "largest difference {worst}");
        assert!(cosine(&pool(&x.view()), &pool(&expected.view())) > 0.999_999);
    }
    for (l, layer) in (4..6).zip(&layers) {
        let mut rewritten = graph.clone();
        let tuned = weights::tuned_layers(graph, l, std::slice::from_ref(layer)).unwrap();
        assert_eq!(tuned.tensors.len(), 22);
        weights::replace_initializers(&mut rewritten, &tuned).unwrap();
        let tensors: Vec<_> = (tuned.tensors.iter())
            .map(|t| rewritten.initializer.iter().find(|p| p.name == t.name).unwrap())
            .collect();
        for t in tensors {
            let pinned = graph.initializer.iter().find(|p| p.name == t.name).unwrap();
            let decoded = |t: &tract_onnx::pb::TensorProto| -> Vec<f32> {
                if t.data_type == 3 {
                    t.raw_data.iter().map(|&b| b as i8 as f32).collect()
                } else if t.float_data.is_empty() {
                    t.raw_data
                        .chunks(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect()
                } else {
                    t.float_data.clone()
                }
            };
            let (a, b) = (decoded(pinned), decoded(t));
            let worst = a.iter().zip(&b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // Re-quantizing dequantized int8 gives the same integers at most one step apart.
            assert!(
                worst <= if t.data_type == 3 { 1.0 } else { 1e-6 },
                "{}: {worst}",
                t.name
            );
        }
    }
}

/// An embedder with a study's tuned layers cuts the pinned graph below them, yet its pinned
/// embedding and layers' means (what topics, concern, the embedding channel and the category's
/// pinned half read) are the whole model's, wherever the cut falls among the pooled layers; and
/// tuned layers that are the pinned ones give the pinned embedding.
#[test]
fn an_embedder_with_tuned_layers_pools_the_pinned_layers_as_the_whole_model_does() {
    let texts = [
        "How do I sort a list in Python?",
        "Écris un poème sur la mer, en alexandrins, avec des rimes croisées.",
        "x",
    ];
    let whole = embedder().embed_layers(&texts).unwrap();
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    // Cut below, at and above the pooled layers (3, 4, 5).
    for first in [2, 4, 5] {
        let plain = embedder();
        let pinned = plain.pinned_layers(first).unwrap();
        let (tuned, _) = plain.quantized_layers(first, &pinned).unwrap();
        let cut = plain.with_tuned_layers(&tuned).unwrap();
        let both = cut.embed_tuned(&texts).unwrap().expect("tuned layers");
        let layered = cut.embed_layers(&texts).unwrap();
        for ((expected, both), layered) in whole.iter().zip(&both).zip(&layered) {
            assert_eq!(both.pinned.len(), (1 + POOLED_LAYERS.len()) * DIM);
            assert!(
                worst(expected, &both.pinned) < 1e-5,
                "cut after {first}: {}",
                worst(expected, &both.pinned)
            );
            assert!(
                worst(expected, layered) < 1e-5,
                "cut after {first}: {}",
                worst(expected, layered)
            );
            assert!(cosine(&expected[..DIM], &both.tuned) > 0.999, "cut after {first}");
        }
    }
    let lower = embedder().lower_layers(4).unwrap();
    assert!(
        lower.embed_layers(&texts).is_err(),
        "the lower layers alone cannot pool the upper ones"
    );
}
