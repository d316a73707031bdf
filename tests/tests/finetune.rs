//! A study that fine-tunes the embedder's upper layers (`fine_tune_layers`): compiling ships the
//! tuned layers, a device classifies through them exactly as the classifier was trained (the
//! compile's plain-array forward and the device's tract plan agree), and a device refuses tuned
//! weights that do not fit the pinned model.

use chorus_shared::conversation::{Conversation, Role, Turn};
use chorus_shared::embed::{pins::pins, weights, DIM};
use chorus_shared::facets::{replies_text, reply_text, request_text};
use chorus_shared::pipeline::Analyzer;
use chorus_shared::study::{finetune, tuned_request, CategoryTexts, CompiledStudy};
use chorus_tests::{cached, compile_study, embedder, workspace_root};
use serde_json::Value;
use tract_onnx::prelude::*;

/// The default study with every 20th labelled example (about 260) and two tuned layers,
/// compiled once for this file's tests; and the examples kept.
fn small_tuned_study() -> &'static (CompiledStudy, Vec<Value>) {
    static STUDY: std::sync::OnceLock<(CompiledStudy, Vec<Value>)> = std::sync::OnceLock::new();
    STUDY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("chorus-tuned-study-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, examples) = write_small_tuned_study(&dir);
        let compiled = compile_study(Some(&path));
        std::fs::remove_dir_all(&dir).ok();
        (compiled, examples)
    })
}

fn write_small_tuned_study(dir: &std::path::Path) -> (std::path::PathBuf, Vec<Value>) {
    let default = workspace_root().join("studies/default");
    let toml = std::fs::read_to_string(default.join("study.toml")).unwrap().replacen(
        "id = \"chorus-default\"",
        "id = \"tuned-small\"\nfine_tune_layers = 2",
        1,
    );
    let all = std::fs::read_to_string(default.join("examples.jsonl")).unwrap();
    let examples: Vec<&str> = all.lines().step_by(20).collect();
    std::fs::write(dir.join("study.toml"), toml).unwrap();
    std::fs::write(dir.join("examples.jsonl"), examples.join("\n")).unwrap();
    std::fs::copy(default.join("codebook.json"), dir.join("codebook.json")).unwrap();
    let parsed = examples.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    (dir.join("study.toml"), parsed)
}

fn conversation(request: &str, reply: Option<&str>) -> Conversation {
    let turn = |role, text: &str| Turn {
        role,
        text: text.into(),
        is_code: false,
    };
    let mut turns = vec![turn(Role::User, request)];
    turns.extend(reply.map(|r| turn(Role::Assistant, r)));
    Conversation {
        id: "c".into(),
        title: None,
        created: None,
        turns,
    }
}

#[test]
fn a_tuned_study_ships_its_layers_and_devices_classify_through_them_as_trained() {
    let (compiled, examples) = small_tuned_study();
    let tuned = compiled.tuned_layers.clone().expect("the study ships tuned layers");
    assert_eq!(tuned.first, 4, "the upper two of six layers");
    assert_eq!(tuned.tensors.len(), 44, "22 initializers per layer");

    // What compiling trained the classifier on: the pinned lower layers, then the shipped
    // (int8) upper layers in plain arrays.
    let base = embedder();
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let mut graph = tract_onnx::onnx()
        .proto_model_for_read(&mut &*model)
        .unwrap()
        .graph
        .unwrap();
    weights::replace_initializers(&mut graph, &tuned).unwrap();
    let shipped: Vec<_> = (4..6).map(|l| weights::read_layer(&graph, l).unwrap()).collect();
    let pinned = base.pinned_layers(4).unwrap();
    assert_ne!(shipped, pinned, "fine-tuning changed the weights");
    let lower = base.lower_layers(4).unwrap();
    let trained_embedding = |text: &str| finetune::embed(&shipped, &lower.token_states(&[text]).unwrap()[0]);

    let analyzer = Analyzer::new(embedder(), compiled.clone()).unwrap();
    let mut differs = 0;
    for e in examples.iter().take(12) {
        let c = conversation(e["text"].as_str().unwrap(), e["reply"].as_str());
        let analysis = analyzer.analyze(&c, true).unwrap();
        // The request's tuned embedding before its pinned one and means; the reply's pinned
        // embedding and means; the words.
        let (request, reply) = (request_text(&c), reply_text(&c));
        let pinned = base.embed_layers(&[&request]).unwrap().remove(0);
        let reply_layered = reply.as_ref().map(|r| base.embed_layers(&[r]).unwrap().remove(0));
        let replies = (compiled.words.as_ref())
            .filter(|w| w.replies)
            .and_then(|_| replies_text(&c));
        let texts = CategoryTexts {
            request: &request,
            reply: reply.as_deref(),
            replies: replies.as_deref(),
        };
        let category_input = tuned_request(&trained_embedding(&request), &pinned);
        let expected = compiled.category_probabilities(&category_input, reply_layered.as_deref(), texts);
        let got = analysis.category_probabilities.unwrap();
        let worst = got.iter().zip(&expected).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-3, "device {got:?}, as trained {expected:?}");
        // The embedding channel and topics still read the pinned embedding.
        let embedding = analysis.embedding.unwrap();
        let off = embedding
            .iter()
            .zip(&pinned[..DIM])
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(off < 1e-5, "the pinned embedding is {off} off");
        let untuned = tuned_request(&pinned[..DIM], &pinned);
        differs += usize::from(compiled.category_probabilities(&untuned, reply_layered.as_deref(), texts) != expected);
    }
    assert_eq!(differs, 12, "the classifier reads the tuned embeddings");
}

/// A server cannot make a device run weights of another shape, replace weights outside the
/// tuned layers (the embeddings, a lower layer), or poison every embedding with a NaN, by
/// editing the compiled study.
#[test]
fn tuned_weights_that_do_not_fit_the_pinned_model_are_refused() {
    let (compiled, _) = small_tuned_study();
    let tamper = |edit: &dyn Fn(&mut CompiledStudy)| {
        let mut study = compiled.clone();
        edit(&mut study);
        Analyzer::new(embedder(), study).err().expect("refused").to_string()
    };
    let cut = tamper(&|s| {
        s.tuned_layers.as_mut().unwrap().tensors[0].int8.truncate(100);
    });
    let reshaped = tamper(&|s| {
        // The intermediate layer's 384 × 1536 matrix, declared 1536 × 384.
        let t = &mut s.tuned_layers.as_mut().unwrap().tensors[12];
        assert_eq!(t.dims, [384, 1536]);
        t.dims = vec![t.dims[1], t.dims[0]];
    });
    let above = tamper(&|s| s.tuned_layers.as_mut().unwrap().first = 5);
    let elsewhere = tamper(&|s| {
        s.tuned_layers.as_mut().unwrap().tensors[2].name = "inner.encoder.layer.0.output.dense.bias".into();
    });
    let poisoned = tamper(&|s| {
        let bias = &mut s.tuned_layers.as_mut().unwrap().tensors[2];
        assert!(bias.name.ends_with("bias"), "{}", bias.name);
        bias.floats[7] = f32::NAN;
    });
    assert!(poisoned.contains("NaN"), "{poisoned}");
    for error in [cut, reshaped, above, elsewhere, poisoned] {
        assert!(error.starts_with("the compiled study is malformed"), "{error}");
    }
}

/// The tuned input's layout: the request's tuned embedding and the reply's pinned one first
/// (the floats the labelled neighbours compare), then the request's pinned embedding and the
/// two texts' means; without a reply, the request's pinned embedding and means stand for it.
#[test]
fn the_tuned_input_puts_the_compared_embeddings_first() {
    use chorus_shared::embed::POOLED_LAYERS;
    use chorus_shared::study::CategoryInput;
    let input = CategoryInput::TunedRequestAndLayers;
    let block = |v: f32, blocks: usize| vec![v; blocks * DIM];
    let means = POOLED_LAYERS.len();
    let request = tuned_request(&block(1.0, 1), &[block(2.0, 1), block(3.0, means)].concat());
    let reply = [block(4.0, 1), block(5.0, means)].concat();
    let x = input.features(&request, Some(&reply));
    assert_eq!(x.len(), input.width());
    assert_eq!(input.compared(), 2 * DIM);
    let expected = [
        block(1.0, 1),
        block(4.0, 1),
        block(2.0, 1),
        block(3.0, means),
        block(5.0, means),
    ]
    .concat();
    assert_eq!(x, expected);
    let alone = input.features(&request, None);
    let expected = [
        block(1.0, 1),
        block(2.0, 1),
        block(2.0, 1),
        block(3.0, means),
        block(3.0, means),
    ]
    .concat();
    assert_eq!(alone, expected);
}
