//! What compiling a study and evaluating it share: the training set, its folds, and the
//! cross-validated errors of a classifier trained on them.

use super::classifier::{argmax, Classifier, TrainOptions};
use super::{Study, CATEGORY_MIN_EXAMPLES};
use crate::embed::EmbedError;
use crate::facets::pii;
use crate::privacy::PrivacyError;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("category `{category}` has {found} labelled examples; at least {CATEGORY_MIN_EXAMPLES} are needed to train on (or drop `labelled_examples` to classify by prototypes)")]
    TooFewExamples { category: String, found: usize },
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error("the codebook was built with model {codebook}, not the pinned model {pinned}; build it again with `chorus codebook build`")]
    CodebookModel { codebook: String, pinned: String },
}

/// The text of a labelled example as the classifier sees it: prepared exactly like a
/// conversation's request text.
pub fn example_text(text: &str) -> String {
    let truncated: String = text.chars().take(crate::facets::MAX_REQUEST_CHARS).collect();
    pii::scrub(&truncated)
}

/// Texts and category indices to train on: with labelled examples, those plus the taxonomy's
/// own examples; without, each category's name and description and its examples (prototypes).
pub fn training_set(study: &Study) -> (Vec<String>, Vec<usize>) {
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (c, category) in study.categories.iter().enumerate() {
        if study.examples.is_empty() {
            texts.push(format!("{}: {}", category.name, category.description));
            labels.push(c);
        }
        for e in &category.examples {
            texts.push(example_text(e));
            labels.push(c);
        }
    }
    for e in &study.examples {
        texts.push(example_text(&e.text));
        labels.push(study.category_index(&e.category).expect("examples were validated"));
    }
    (texts, labels)
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
    /// The held-out predictions' confidence against how often they were right.
    pub calibration: super::calibration::Calibration,
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
    let mut calibration = super::calibration::Calibration::default();
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
            let predicted = argmax(&p);
            hard[labels[i]][predicted] += 1;
            calibration.add(f64::from(p[predicted]), predicted == labels[i]);
            soft[labels[i]].iter_mut().zip(&p).for_each(|(s, x)| *s += *x as f64);
        }
    }
    CrossValidation {
        hard,
        soft,
        calibration,
    }
}
