//! Held-out accuracy of a study's classifier: k-fold cross-validation over the labelled
//! examples drawn as a uniform sample of a corpus (`"source": "sample"`), so that the figure
//! estimates accuracy on that corpus. Examples chosen on purpose (other sources) and the
//! taxonomy's own examples are only ever trained on.

use super::classifier::{CategoryInput, Classifier, TrainOptions};
use super::neighbours::Projection;
use super::regressions::Regressions;
use super::training::{
    category_input, cross_validate_vectors, embed_training_set, fit_words, fold_assignment, training_set, with_words,
    CompileError, Labelled, TrainingSet,
};
use super::tuning::{check_tuning, tuned_spaces, Tuning};
use super::words::Words;
use super::Study;
use crate::embed::{Embedder, DIM};
use crate::facets::language_of;
use crate::stable_hash::fnv1a;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub folds: usize,
    /// Examples that were held out once each.
    pub held_out: usize,
    /// What the classifier read.
    pub input: CategoryInput,
    /// Share of held-out examples the shipped classifier gets right.
    pub accuracy: f64,
    /// The same for each step the shipped classifier adds, one at a time.
    pub steps: Steps,
    /// The same for the prototype fallback (no labelled examples), on the same held-out data.
    pub prototype_accuracy: f64,
    pub per_category: Vec<CategoryScore>,
    /// Held-out accuracy by the detected language of the request.
    pub per_language: Vec<LanguageScore>,
    /// Held-out accuracy on the examples two independent readings gave the same category
    /// (when the study's examples say): what the classifier gets right where the labels are
    /// not themselves in doubt.
    pub agreed: Option<AgreedScore>,
    /// Held-out accuracy with fewer of the uniformly sampled labelled examples: what more
    /// labels buy (with the pinned embeddings: fine-tuning is not repeated for each subset).
    pub learning_curve: Vec<CurvePoint>,
    /// `confusion[true][predicted]`, counted over all folds.
    pub confusion: Vec<Vec<u32>>,
    /// The temperature the regression's scores are divided by, and the neighbours' weight and
    /// the blend's temperature, fitted to the held-out predictions.
    pub temperature: f64,
    pub blend: Option<(f64, f64)>,
    /// How well the held-out probabilities are calibrated, with those temperatures and without.
    pub calibration: super::calibration::CalibrationSummary,
    pub uncalibrated: super::calibration::CalibrationSummary,
}

/// Held-out accuracy as the classifier is built up.
#[derive(Debug, Clone, Serialize)]
pub struct Steps {
    /// Logistic regression on the request alone (when the study's classifier reads more).
    pub request_only: Option<f64>,
    /// Logistic regression on the request's and reply's embeddings alone (when the study's
    /// input adds the layers' means).
    pub without_layers: Option<f64>,
    /// Logistic regression on the embeddings and the layers' means, without the texts' words
    /// (when the study's classifier reads words).
    pub without_words: Option<f64>,
    /// The same with the request's and the reply opening's words, without the replies' (when
    /// the study's classifier reads the replies' words).
    pub without_replies_words: Option<f64>,
    /// Logistic regression on the study's input.
    pub regression: f64,
    /// Blended with the nearest labelled examples' vote (when the study has them).
    pub with_neighbours: Option<f64>,
    /// The same two with the embedder's upper layers fine-tuned (when the study tunes them):
    /// each fold's layers tuned without that fold.
    pub fine_tuned: Option<FineTunedSteps>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FineTunedSteps {
    pub regression: f64,
    pub with_neighbours: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryScore {
    pub id: String,
    pub support: u32,
    pub recall: f64,
    pub precision: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgreedScore {
    pub held_out: u32,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LanguageScore {
    pub language: String,
    pub support: u32,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// Uniformly sampled labelled examples in the set (each trained on in all but one fold).
    pub sampled: usize,
    pub accuracy: f64,
}

/// Cross-validates the study's classifier; with tuned layers (`tuning`: [`super::tuning::tune`]
/// with `folds` folds), both as it would be without them and as it ships.
pub fn cross_validate(
    study: &Study,
    embedder: &Embedder,
    folds: usize,
    options: TrainOptions,
    tuning: Option<&Tuning>,
    progress: impl FnMut(usize, usize),
) -> Result<Evaluation, CompileError> {
    check_tuning(study, tuning, folds, embedder.layer_count()?).map_err(CompileError::Tuning)?;
    let classes = study.categories.len();
    let training = training_set(study);
    let labels = &training.labels;
    let fold_of = fold_assignment(study, folds);
    let input = category_input(study);
    let (embedded, _) = embed_training_set(embedder, &training, input, &[], progress)?;
    let words = fit_words(input, &training);
    // The pinned layers' input (what ships for a study that tunes nothing).
    let pinned_input = input.pinned();
    let features = with_words(embedded.features(pinned_input), words.as_ref(), &training);
    let set = Labelled {
        vectors: &features,
        labels,
        fold_of: &fold_of,
        classes,
        folds,
        by_fold: None,
        regressions: &Regressions::default(),
    };
    let projection = (!study.examples.is_empty()).then(|| Projection::fit(&features, pinned_input.compared()));
    let pinned = cross_validate_vectors(&set, options, projection.as_ref());
    let tuning =
        (tuning.map(|t| tuned_spaces(embedder, &training, &embedded, words.as_ref(), input, t))).transpose()?;
    // What ships: the classifier on the tuned layers' embeddings when the study tunes them.
    let validated = match &tuning {
        Some(tuning) => {
            let tuned = Labelled {
                vectors: &tuning.features,
                by_fold: Some(&tuning.by_fold),
                ..set
            };
            cross_validate_vectors(
                &tuned,
                options,
                Some(&Projection::fit(&tuning.features, input.compared())),
            )
        }
        None => pinned.clone(),
    };
    let confusion = validated.hard.clone();
    let requests = embedded.request_embeddings();
    let regression_on = |vectors: &[Vec<f32>]| {
        let set = Labelled { vectors, ..set };
        cross_validate_vectors(&set, options, None).regression_accuracy
    };
    let request_only = (input != CategoryInput::Request).then(|| regression_on(&requests));
    let without_layers = input.layered().then(|| {
        let plain = (requests.iter().zip(&embedded.replies))
            .map(|(request, reply)| CategoryInput::RequestAndReply.features(request, reply.as_ref().map(|r| &r[..DIM])))
            .collect::<Vec<_>>();
        regression_on(&plain)
    });
    let without_words = words.is_some().then(|| regression_on(&embedded.features(pinned_input)));
    let without_replies_words = (words.as_ref().filter(|w| w.replies)).map(|w| {
        let fewer = Words {
            replies: false,
            ..w.clone()
        };
        regression_on(&with_words(embedded.features(pinned_input), Some(&fewer), &training))
    });
    let steps = Steps {
        request_only,
        without_layers,
        without_words,
        without_replies_words,
        regression: pinned.regression_accuracy,
        with_neighbours: projection.as_ref().map(|_| accuracy(&pinned.hard)),
        fine_tuned: tuning.as_ref().map(|_| FineTunedSteps {
            regression: validated.regression_accuracy,
            with_neighbours: accuracy(&confusion),
        }),
    };
    let learning_curve = learning_curve(&set, &training.texts, options, projection.as_ref());
    let vectors = &requests;
    // The fallback a study without labelled examples gets: names, descriptions, taxonomy examples.
    // A study without labelled examples already trains on its names and descriptions: they are
    // among its items that are no labelled example, and must not count twice.
    let taxonomy_examples: Vec<usize> = (0..labels.len()).filter(|&i| training.example[i].is_none()).collect();
    let prototype_texts: Vec<String> = (study.categories.iter())
        .filter(|_| !study.examples.is_empty())
        .map(|c| format!("{}: {}", c.name, c.description))
        .collect();
    let prototype_refs: Vec<&str> = prototype_texts.iter().map(String::as_str).collect();
    let mut prototype_xs = embedder.embed(&prototype_refs)?;
    let mut prototype_ys: Vec<usize> = (0..prototype_texts.len()).collect();
    prototype_xs.extend(taxonomy_examples.iter().map(|&i| vectors[i].clone()));
    prototype_ys.extend(taxonomy_examples.iter().map(|&i| labels[i]));
    let prototypes = Classifier::prototypes(&prototype_xs, &prototype_ys, classes);
    let prototype_correct = (0..labels.len())
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
        input,
        accuracy: ratio(correct, held_out),
        steps,
        per_language: per_language(&validated.predictions, &training.texts, labels),
        agreed: agreed(study, &validated.predictions, &training),
        learning_curve,
        prototype_accuracy: ratio(prototype_correct, held_out),
        per_category,
        confusion,
        temperature: validated.temperature,
        blend: validated.blend,
        calibration: validated.calibration.summary(),
        uncalibrated: validated.uncalibrated.summary(),
    })
}

/// Accuracy on the held-out examples whose two readings agreed.
fn agreed(study: &Study, predictions: &[(usize, usize)], training: &TrainingSet) -> Option<AgreedScore> {
    let agreed = |item: usize| {
        let example = training.example[item].and_then(|i| study.examples.get(i));
        example.is_some_and(|e| e.agreed == Some(true))
    };
    let (mut held_out, mut right) = (0, 0);
    for &(item, predicted) in predictions.iter().filter(|(item, _)| agreed(*item)) {
        held_out += 1;
        right += u32::from(predicted == training.labels[item]);
    }
    (held_out > 0).then(|| AgreedScore {
        held_out,
        accuracy: ratio(right, held_out),
    })
}

/// Accuracy by the detected language of the held-out requests, the most frequent first.
fn per_language(predictions: &[(usize, usize)], texts: &[String], labels: &[usize]) -> Vec<LanguageScore> {
    let mut by_language: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
    for &(item, predicted) in predictions {
        let (support, right) = by_language.entry(language_of(&texts[item])).or_default();
        *support += 1;
        *right += u32::from(predicted == labels[item]);
    }
    let mut scores: Vec<LanguageScore> = by_language
        .into_iter()
        .map(|(language, (support, right))| LanguageScore {
            language: language.to_owned(),
            support,
            accuracy: ratio(right, support),
        })
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.support));
    scores
}

/// Cross-validated accuracy with an eighth, a quarter, a half and all of the uniformly sampled
/// examples (chosen by a hash of their text; the other examples are always trained on).
fn learning_curve(
    set: &Labelled<'_>,
    texts: &[String],
    options: TrainOptions,
    projection: Option<&Projection>,
) -> Vec<CurvePoint> {
    [1, 2, 4, 8]
        .into_iter()
        .map(|eighths| {
            let kept: Vec<usize> = (0..set.vectors.len())
                .filter(|&i| set.fold_of[i].is_none() || (fnv1a(texts[i].as_bytes()) >> 32) % 8 < eighths)
                .collect();
            let vectors: Vec<Vec<f32>> = kept.iter().map(|&i| set.vectors[i].clone()).collect();
            let labels: Vec<usize> = kept.iter().map(|&i| set.labels[i]).collect();
            let fold_of: Vec<Option<usize>> = kept.iter().map(|&i| set.fold_of[i]).collect();
            let subset = Labelled {
                vectors: &vectors,
                labels: &labels,
                fold_of: &fold_of,
                ..*set
            };
            CurvePoint {
                sampled: fold_of.iter().filter(|f| f.is_some()).count(),
                accuracy: accuracy(&cross_validate_vectors(&subset, options, projection).hard),
            }
        })
        .collect()
}

/// Share of a confusion matrix on its diagonal.
fn accuracy(confusion: &[Vec<u32>]) -> f64 {
    let correct: u32 = (0..confusion.len()).map(|c| confusion[c][c]).sum();
    ratio(correct, confusion.iter().flatten().sum())
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
