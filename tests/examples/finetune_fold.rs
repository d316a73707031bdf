//! What fine-tuning the embedder's upper layers buys the default study's classifier on one
//! held-out fold, measured with the product's own code (`study::finetune`, the logistic
//! regression, the neighbours' vote): the figures `bench/classifier` measured in JAX.
//!
//! ```text
//! finetune_fold FOLD [EPOCHS] [LAYERS]
//! ```

use chorus_shared::embed::{pins::pins, Embedder, DIM};
use chorus_shared::study::finetune::{embed_all, fine_tune, FineTuneOptions, Item};
use chorus_shared::study::neighbours::{Neighbours, Projection};
use chorus_shared::study::{fold_assignment, training_set, Classifier, Study, StudyContents, TrainOptions};
use chorus_tests::{cached, workspace_root};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (fold, epochs) = (args[0], args.get(1).copied().unwrap_or(2));
    let tuned_layers = args.get(2).copied().unwrap_or(2);
    let dir = workspace_root().join("studies/default");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (examples, codebook) = (read("examples.jsonl"), read("codebook.json"));
    let contents = StudyContents {
        labelled_examples: Some(&examples),
        codebook: Some(&codebook),
    };
    let study = Study::parse(&read("study.toml"), contents).unwrap();
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
        let right = |weight: f64| {
            let correct = (held.iter())
                .filter(|&&i| {
                    let scores = model.scores(&features[i]);
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                    let p: Vec<f64> = scores.iter().map(|s| (s - max).exp() / total).collect();
                    let blended = Neighbours::blend_scores(&p, &neighbours.vote(&features[i]), weight);
                    chorus_shared::study::argmax(&blended) == set.labels[i]
                })
                .count();
            correct as f64 / held.len() as f64
        };
        println!(
            "fold {fold} ({} held out), {what}: regression {:.3}, blend 0.2 {:.3}, 0.4 {:.3}, 0.6 {:.3}",
            held.len(),
            right(0.0),
            right(0.2),
            right(0.4),
            right(0.6)
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
}
