//! Held-out accuracy of a study's classifier: k-fold cross-validation over the labelled
//! examples drawn as a uniform sample of a corpus (`"source": "sample"`), so that the figure
//! estimates accuracy on that corpus. Examples chosen on purpose (other sources) and the
//! taxonomy's own examples are only ever trained on.

use super::classifier::{Classifier, TrainOptions};
use super::compiled::{training_set, CompileError};
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
    let confusion = cross_validate_vectors(&set, options).hard;

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
    })
}

/// The fold of each item of [`training_set`]: labelled examples drawn as a uniform sample of
/// their corpus (`"source": "sample"`) take turns being held out; everything else is always
/// trained on.
pub fn fold_assignment(study: &Study, folds: usize) -> Vec<Option<usize>> {
    let taxonomy = study.categories.iter().map(|c| c.examples.len()).sum::<usize>();
    std::iter::repeat_n(None, taxonomy)
        .chain(study.examples.iter().map(|e| {
            (e.source.as_deref() == Some("sample"))
                .then(|| (crate::stable_hash::fnv1a(e.text.as_bytes()) % folds as u64) as usize)
        }))
        .collect()
}

/// The classifier's errors measured by cross-validation: each held-out item is classified by a
/// model trained on the other folds.
pub struct CrossValidation {
    /// `[true][predicted]` counts of the most probable category.
    pub hard: Vec<Vec<u32>>,
    /// `[true][c]` sums of the predicted probability of category c: the "soft" confusion that
    /// probabilistic classify-and-count corrects with.
    pub soft: Vec<Vec<f64>>,
}

/// Labelled examples as the classifier sees them: vectors, category indices, and each one's
/// fold ([`fold_assignment`]; none for examples always trained on).
#[derive(Clone, Copy)]
pub(crate) struct Labelled<'a> {
    pub vectors: &'a [Vec<f32>],
    pub labels: &'a [usize],
    pub fold_of: &'a [Option<usize>],
    pub classes: usize,
    pub folds: usize,
}

pub(crate) fn cross_validate_vectors(set: &Labelled<'_>, options: TrainOptions) -> CrossValidation {
    let Labelled {
        vectors,
        labels,
        fold_of,
        classes,
        folds,
    } = *set;
    let mut hard = vec![vec![0u32; classes]; classes];
    let mut soft = vec![vec![0f64; classes]; classes];
    for fold in 0..folds {
        if !fold_of.contains(&Some(fold)) {
            continue;
        }
        let train: Vec<usize> = (0..vectors.len()).filter(|&i| fold_of[i] != Some(fold)).collect();
        let xs: Vec<Vec<f32>> = train.iter().map(|&i| vectors[i].clone()).collect();
        let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let model = Classifier::train_linear(&xs, &ys, classes, options);
        for i in (0..vectors.len()).filter(|&i| fold_of[i] == Some(fold)) {
            let p = model.probabilities(&vectors[i]);
            hard[labels[i]][super::classifier::argmax(&p)] += 1;
            soft[labels[i]].iter_mut().zip(&p).for_each(|(s, x)| *s += *x as f64);
        }
    }
    CrossValidation { hard, soft }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
