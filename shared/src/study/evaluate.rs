//! Held-out accuracy of a study's classifier: k-fold cross-validation over the labelled
//! examples drawn as a uniform sample of a corpus (`"source": "sample"`), so that the figure
//! estimates accuracy on that corpus. Examples chosen on purpose (other sources) and the
//! taxonomy's own examples are only ever trained on.

use super::classifier::{Classifier, TrainOptions};
use super::compiled::{example_text, CompileError};
use super::Study;
use crate::embed::Embedder;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub folds: usize,
    /// Examples that were held out once each.
    pub held_out: usize,
    /// Share of held-out examples classified correctly by the logistic regression.
    pub accuracy: f64,
    /// The same for the prototype fallback (no labelled examples), on the same held-out data.
    pub prototype_accuracy: f64,
    pub per_category: Vec<CategoryScore>,
    /// `confusion[true][predicted]`, counted over all folds.
    pub confusion: Vec<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryScore {
    pub id: String,
    pub support: u32,
    pub recall: f64,
    pub precision: f64,
}

pub fn cross_validate(
    study: &Study,
    embedder: &Embedder,
    folds: usize,
    options: TrainOptions,
    progress: impl FnMut(usize),
) -> Result<Evaluation, CompileError> {
    let classes = study.categories.len();
    // Everything that can be trained on, in one list: taxonomy examples, then labelled examples.
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    let mut fold_of = Vec::new();
    for (c, category) in study.categories.iter().enumerate() {
        for e in &category.examples {
            texts.push(example_text(e));
            labels.push(c);
            fold_of.push(None);
        }
    }
    let taxonomy_examples = texts.len();
    for e in &study.examples {
        texts.push(example_text(&e.text));
        labels.push(
            study
                .category_index(&e.category)
                .expect("examples were validated"),
        );
        fold_of.push(
            (e.source.as_deref() == Some("sample"))
                .then(|| (fnv1a(&e.text) % folds as u64) as usize),
        );
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed_many(&refs, progress)?;

    let prototype_texts: Vec<String> = study
        .categories
        .iter()
        .map(|c| format!("{}: {}", c.name, c.description))
        .collect();
    let prototype_refs: Vec<&str> = prototype_texts.iter().map(String::as_str).collect();
    // The fallback a study without labelled examples gets: names, descriptions, taxonomy examples.
    let mut prototype_xs = embedder.embed(&prototype_refs)?;
    prototype_xs.extend_from_slice(&vectors[..taxonomy_examples]);
    let prototype_ys: Vec<usize> = (0..classes)
        .chain(labels[..taxonomy_examples].iter().copied())
        .collect();
    let prototypes = Classifier::prototypes(&prototype_xs, &prototype_ys, classes);

    let mut confusion = vec![vec![0u32; classes]; classes];
    let mut prototype_correct = 0u32;
    for fold in 0..folds {
        let train: Vec<usize> = (0..texts.len())
            .filter(|&i| fold_of[i] != Some(fold))
            .collect();
        let xs: Vec<Vec<f32>> = train.iter().map(|&i| vectors[i].clone()).collect();
        let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let model = Classifier::train_linear(&xs, &ys, classes, options);
        for i in (0..texts.len()).filter(|&i| fold_of[i] == Some(fold)) {
            confusion[labels[i]][model.predict(&vectors[i])] += 1;
            prototype_correct += u32::from(prototypes.predict(&vectors[i]) == labels[i]);
        }
    }
    let held_out: u32 = confusion.iter().flatten().sum();
    let correct: u32 = (0..classes).map(|c| confusion[c][c]).sum();
    let per_category = study
        .categories
        .iter()
        .enumerate()
        .map(|(c, category)| {
            let support: u32 = confusion[c].iter().sum();
            let predicted: u32 = confusion.iter().map(|row| row[c]).sum();
            CategoryScore {
                id: category.id.clone(),
                support,
                recall: ratio(confusion[c][c], support),
                precision: ratio(confusion[c][c], predicted),
            }
        })
        .collect();
    Ok(Evaluation {
        folds,
        held_out: held_out as usize,
        accuracy: ratio(correct, held_out),
        prototype_accuracy: ratio(prototype_correct, held_out),
        per_category,
        confusion,
    })
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// A stable hash for fold assignment (adding an example never moves the others).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
