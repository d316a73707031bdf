//! Held-out accuracy of a study's classifier: k-fold cross-validation over the labelled
//! examples drawn as a uniform sample of a corpus (`"source": "sample"`), so that the figure
//! estimates accuracy on that corpus. Examples chosen on purpose (other sources) and the
//! taxonomy's own examples are only ever trained on.

use super::classifier::{Classifier, TrainOptions};
use super::training::{cross_validate_vectors, fold_assignment, training_set, CompileError, Labelled};
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
    /// How well the held-out probabilities are calibrated.
    pub calibration: super::calibration::CalibrationSummary,
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
    let (texts, labels) = training_set(study);
    let fold_of = fold_assignment(study, folds);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed_many(&refs, progress)?;
    let set = Labelled {
        vectors: &vectors,
        labels: &labels,
        fold_of: &fold_of,
        classes,
        folds,
    };
    let validated = cross_validate_vectors(&set, options);
    let confusion = validated.hard;

    // The fallback a study without labelled examples gets: names, descriptions, taxonomy examples.
    let taxonomy_examples = study.categories.iter().map(|c| c.examples.len()).sum::<usize>();
    let prototype_texts: Vec<String> = study
        .categories
        .iter()
        .map(|c| format!("{}: {}", c.name, c.description))
        .collect();
    let prototype_refs: Vec<&str> = prototype_texts.iter().map(String::as_str).collect();
    let mut prototype_xs = embedder.embed(&prototype_refs)?;
    prototype_xs.extend_from_slice(&vectors[..taxonomy_examples]);
    let prototype_ys: Vec<usize> = (0..classes)
        .chain(labels[..taxonomy_examples].iter().copied())
        .collect();
    let prototypes = Classifier::prototypes(&prototype_xs, &prototype_ys, classes);
    let prototype_correct = (0..texts.len())
        .filter(|&i| fold_of[i].is_some() && prototypes.predict(&vectors[i]) == labels[i])
        .count() as u32;

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
        calibration: validated.calibration.summary(),
    })
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
