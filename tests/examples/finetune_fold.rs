//! What fine-tuning the embedder's upper layers buys the default study's classifier on one
//! held-out fold, measured with the product's own code (`study::finetune`, the logistic
//! regression, the neighbours' vote): the figures `bench/classifier` measured in JAX.
//!
//! ```text
//! finetune_fold FOLD [EPOCHS] [LAYERS]
//! POOL_EXPORT=EXPORT POOL_SIZE=N finetune_fold FOLD [EPOCHS] [LAYERS]
//! TUNED_DUMP=FILE finetune_fold FOLD [EPOCHS] [LAYERS]
//! ```
//! With `POOL_EXPORT`, it also measures distilling the tuned classifier into the pinned one: the
//! tuned classifier labels the export's first N conversations that are not labelled examples,
//! and the shipped classifier (pinned embeddings and layers' means) is trained on the fold's
//! labelled examples and those it labelled with a probability of at least a half. With
//! `TUNED_DUMP`, it writes every text's tuned embedding there (f32, little-endian, the requests
//! and then the replies, each [`DIM`] floats).

use chorus_shared::embed::{pins::pins, Embedder, DIM};
use chorus_shared::study::finetune::{embed_all, fine_tune, FineTuneOptions, Item};
use chorus_shared::study::neighbours::{Neighbours, Projection};
use chorus_shared::study::{fold_assignment, training_set, CategoryInput, Classifier, TrainOptions};
use chorus_tests::{cached, default_study, workspace_root};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (fold, epochs) = (args[0], args.get(1).copied().unwrap_or(2));
    let tuned_layers = args.get(2).copied().unwrap_or(2);
    let dir = workspace_root().join("studies/default");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let study = default_study();
    let set = training_set(&study);
    let folds = fold_assignment(&study, 5);
    let classes = study.categories.len();

    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    let started = Instant::now();
    let embedder = Embedder::new(&model, &tokenizer).unwrap();
    let first = embedder.layer_count().unwrap() - tuned_layers;
    let lower = embedder.lower_layers(first).unwrap();
    let texts: Vec<&str> = (set.texts.iter().map(String::as_str))
        .chain(
            set.replies
                .iter()
                .zip(&set.texts)
                .map(|(r, t)| r.as_deref().unwrap_or(t)),
        )
        .collect();
    let states = lower.token_states_many(&texts, |_| {}).unwrap();
    let n = set.texts.len();
    eprintln!(
        "layers 0-{} for {} texts: {:.0} s",
        first - 1,
        texts.len(),
        started.elapsed().as_secs_f64()
    );

    // The pinned middle layers' means, which the shipped classifier reads besides the embeddings.
    let layered = embedder.embed_layers_many(&texts, |_| {}).unwrap();
    let means: Vec<&[f32]> = layered.iter().map(|l| &l[DIM..]).collect();
    let pinned = embedder.pinned_layers(first).unwrap();
    let train: Vec<usize> = (0..n).filter(|&i| folds[i] != Some(fold)).collect();
    let held: Vec<usize> = (0..n).filter(|&i| folds[i] == Some(fold)).collect();
    let score_features = |features: &[Vec<f32>], what: &str| {
        let xs: Vec<Vec<f32>> = train.iter().map(|&i| features[i].clone()).collect();
        let ys: Vec<usize> = train.iter().map(|&i| set.labels[i]).collect();
        let model = Classifier::train_linear(&xs, &ys, classes, TrainOptions::default());
        let neighbours = Neighbours::index(&Projection::fit(features, 2 * DIM), &xs, &ys, classes);
        let [regression, b2, b4, b6] = held_accuracy(&model, &neighbours, features, &held, &set.labels);
        println!(
            "fold {fold} ({} held out), {what}: regression {regression:.3}, blend 0.2 {b2:.3}, 0.4 {b4:.3}, 0.6 {b6:.3}",
            held.len(),
        );
    };
    let score = |layers: &[chorus_shared::embed::layer::Layer], what: &str| {
        let vectors = embed_all(layers, &states);
        for with_means in [false, true] {
            let features: Vec<Vec<f32>> = (0..n)
                .map(|i| match with_means {
                    true => [&vectors[i][..], &vectors[n + i][..], means[i], means[n + i]].concat(),
                    false => [&vectors[i][..], &vectors[n + i][..]].concat(),
                })
                .collect();
            let what = format!("{what}{}", if with_means { " + pinned layers' means" } else { "" });
            score_features(&features, &what);
        }
    };
    score(&pinned, "pinned");

    let items: Vec<Item<'_>> = train
        .iter()
        .map(|&i| Item {
            request: &states[i],
            reply: &states[n + i],
            label: set.labels[i],
        })
        .collect();
    let options = FineTuneOptions {
        epochs,
        ..Default::default()
    };
    let started = Instant::now();
    let mut losses = 0.0;
    let tuned = fine_tune(pinned.clone(), &items, classes, options, |step, steps, loss| {
        losses += loss;
        if step % 50 == 0 || step == steps {
            eprintln!(
                "step {step}/{steps}: mean loss {:.3}, {:.0} s",
                losses / 50.0,
                started.elapsed().as_secs_f64()
            );
            losses = 0.0;
        }
    });
    score(&tuned, &format!("fine-tuned ({epochs} epochs)"));
    if let Ok(path) = std::env::var("TUNED_DUMP") {
        // Every text's tuned embedding (requests, then replies), for reference fits beside the
        // product's other inputs (`bench/classifier/product_features.py DIR tuned`).
        let bytes: Vec<u8> = (embed_all(&tuned, &states).iter().flatten())
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&path, bytes).unwrap();
    }
    if let Ok(export) = std::env::var("POOL_EXPORT") {
        let size = std::env::var("POOL_SIZE").map_or(20_000, |n| n.parse().expect("POOL_SIZE is a number"));
        let labelled = labelled_conversations(&read("examples.jsonl"));
        let pool: Vec<_> = chorus_tests::first_conversations(std::path::Path::new(&export), size)
            .into_iter()
            .filter(|c| !labelled.contains(base_id(&c.id)))
            .collect();
        let teacher = Teacher {
            lower: &lower,
            tuned: &tuned,
            states: &states,
            train: &train,
            labels: &set.labels,
            classes,
        };
        let pseudo = teacher.label(&pool);
        let features: Vec<Vec<f32>> = (0..n).map(|i| layered_features(&layered, n, i)).collect();
        let texts = pool_texts(&pool);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let pool_layered = embedder.embed_layers_many(&refs, |_| {}).unwrap();
        let confident: Vec<usize> = (0..pool.len()).filter(|&j| pseudo[j].1 >= 0.5).collect();
        let mut xs: Vec<Vec<f32>> = train.iter().map(|&i| features[i].clone()).collect();
        let mut ys: Vec<usize> = train.iter().map(|&i| set.labels[i]).collect();
        let neighbours = Neighbours::index(&Projection::fit(&features, 2 * DIM), &xs, &ys, classes);
        xs.extend((confident.iter()).map(|&j| layered_features(&pool_layered, pool.len(), j)));
        ys.extend(confident.iter().map(|&j| pseudo[j].0));
        let student = Classifier::train_linear(&xs, &ys, classes, TrainOptions::default());
        let [regression, b2, b4, b6] = held_accuracy(&student, &neighbours, &features, &held, &set.labels);
        println!(
            "fold {fold}, pinned + means, also trained on the {} of {} pool conversations the tuned classifier labelled with p >= 0.5: regression {regression:.3}, blend 0.2 {b2:.3}, 0.4 {b4:.3}, 0.6 {b6:.3}",
            confident.len(),
            pool.len()
        );
    }
}

/// The shipped classifier's input for text `i` of `n` requests followed by their replies.
fn layered_features(layered: &[Vec<f32>], n: usize, i: usize) -> Vec<f32> {
    CategoryInput::RequestAndReplyLayers.features(&layered[i], Some(&layered[n + i]))
}

/// Held-out accuracy of the regression alone and blended with the neighbours' vote at 0.2,
/// 0.4 and 0.6.
fn held_accuracy(
    model: &Classifier,
    neighbours: &Neighbours,
    features: &[Vec<f32>],
    held: &[usize],
    labels: &[usize],
) -> [f64; 4] {
    [0.0, 0.2, 0.4, 0.6].map(|weight| {
        let correct = (held.iter())
            .filter(|&&i| {
                let p: Vec<f64> = model
                    .probabilities(&features[i])
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let blended = Neighbours::blend_scores(&p, &neighbours.vote(&features[i]), weight);
                chorus_shared::study::argmax(&blended) == labels[i]
            })
            .count();
        correct as f64 / held.len() as f64
    })
}

/// The ShareGPT conversation a labelled example came from (`sharegpt_id` without its part).
fn labelled_conversations(examples_jsonl: &str) -> std::collections::HashSet<String> {
    (examples_jsonl.lines())
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|e| e["sharegpt_id"].as_str().map(|id| base_id(id).to_owned()))
        .collect()
}

/// The conversations' requests, then their replies' openings (the request's for none), as a
/// device reads them.
fn pool_texts(pool: &[chorus_shared::Conversation]) -> Vec<String> {
    let request = chorus_shared::facets::request_text;
    (pool.iter().map(request))
        .chain(
            pool.iter()
                .map(|c| chorus_shared::facets::reply_text(c).unwrap_or_else(|| request(c))),
        )
        .collect()
}

fn base_id(id: &str) -> &str {
    id.split('_').next().unwrap_or(id)
}

/// The tuned classifier of one fold: regression and neighbours' vote on the tuned embeddings.
struct Teacher<'a> {
    lower: &'a Embedder,
    tuned: &'a [chorus_shared::embed::layer::Layer],
    states: &'a [tract_onnx::prelude::tract_ndarray::Array2<f32>],
    train: &'a [usize],
    labels: &'a [usize],
    classes: usize,
}

impl Teacher<'_> {
    /// Each conversation's most probable category under the blend (vote at 0.4) and its probability.
    fn label(&self, pool: &[chorus_shared::Conversation]) -> Vec<(usize, f64)> {
        let vectors = embed_all(self.tuned, self.states);
        let n = self.states.len() / 2;
        let features: Vec<Vec<f32>> = (0..n)
            .map(|i| [&vectors[i][..], &vectors[n + i][..]].concat())
            .collect();
        let xs: Vec<Vec<f32>> = self.train.iter().map(|&i| features[i].clone()).collect();
        let ys: Vec<usize> = self.train.iter().map(|&i| self.labels[i]).collect();
        let model = Classifier::train_linear(&xs, &ys, self.classes, TrainOptions::default());
        let neighbours = Neighbours::index(&Projection::fit(&features, 2 * DIM), &xs, &ys, self.classes);
        let texts = pool_texts(pool);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let pool_vectors = embed_all(self.tuned, &self.lower.token_states_many(&refs, |_| {}).unwrap());
        let m = pool.len();
        (0..m)
            .map(|j| {
                let x = [&pool_vectors[j][..], &pool_vectors[m + j][..]].concat();
                let p: Vec<f64> = model.probabilities(&x).iter().map(|&v| f64::from(v)).collect();
                let mixture: Vec<f64> = Neighbours::blend_scores(&p, &neighbours.vote(&x), 0.4)
                    .iter()
                    .map(|s| s.exp())
                    .collect();
                let best = chorus_shared::study::argmax(&mixture);
                (best, mixture[best])
            })
            .collect()
    }
}
