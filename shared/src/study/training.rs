//! What compiling a study and evaluating it share: the training set, its folds, and the
//! cross-validated errors of a classifier trained on them.

use super::calibration::{fit_temperature, Calibration};
use super::classifier::{argmax, softmax, Classifier, TrainOptions};
use super::neighbours::{Neighbours, Projection};
use super::regressions::Regressions;
use super::words::{CategoryTexts, Words};
use super::{CategoryInput, Study, CATEGORY_MIN_EXAMPLES};
use crate::embed::{EmbedError, Embedder, DIM};
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
    #[error("cannot use these tuned layers: {0}")]
    Tuning(String),
    #[error("the codebook was built with model {codebook}, not the pinned model {pinned}; build it again with `chorus codebook build`")]
    CodebookModel { codebook: String, pinned: String },
    #[error("the codebook's centroids were computed from public requests read to {codebook} tokens (0: not recorded), but this code reads {reads}; recentre it with `chorus codebook recentre --corpus PUBLIC_EXPORT CODEBOOK`")]
    CodebookReadingLength { codebook: usize, reads: usize },
}

/// The text of a labelled example as the classifier sees it: prepared exactly like a
/// conversation's request text.
pub fn example_text(text: &str) -> String {
    let truncated: String = text.chars().take(crate::facets::MAX_REQUEST_CHARS).collect();
    pii::scrub(&truncated)
}

/// What the category classifier is trained on: one item per labelled text.
pub struct TrainingSet {
    /// Request texts, prepared like a conversation's ([`example_text`]).
    pub texts: Vec<String>,
    /// The opening of each item's first reply when it has one, prepared like a conversation's
    /// ([`crate::facets::reply_excerpt`]).
    pub replies: Vec<Option<String>>,
    /// Each item's assistant replies when it has them, prepared like a conversation's
    /// ([`crate::facets::replies_excerpt`]): what their words are read from.
    pub all_replies: Vec<Option<String>>,
    /// Category indices.
    pub labels: Vec<usize>,
    /// Which of the study's labelled examples each item is; none for the taxonomy's own
    /// examples (and the categories' names and descriptions).
    pub example: Vec<Option<usize>>,
}

/// Texts and category indices to train on: with labelled examples, those plus the taxonomy's
/// own examples; without, each category's name and description and its examples (prototypes).
pub fn training_set(study: &Study) -> TrainingSet {
    let mut set = TrainingSet {
        texts: Vec::new(),
        replies: Vec::new(),
        all_replies: Vec::new(),
        labels: Vec::new(),
        example: Vec::new(),
    };
    let mut push = |text: String, reply: Option<&str>, replies: Option<&str>, label: usize, example: Option<usize>| {
        set.texts.push(text);
        set.replies.push(reply.map(crate::facets::reply_excerpt));
        set.all_replies.push(replies.map(crate::facets::replies_excerpt));
        set.labels.push(label);
        set.example.push(example);
    };
    for (c, category) in study.categories.iter().enumerate() {
        if study.examples.is_empty() {
            push(
                format!("{}: {}", category.name, category.description),
                None,
                None,
                c,
                None,
            );
        }
        for e in &category.examples {
            push(example_text(e), None, None, c, None);
        }
    }
    for (i, e) in study.examples.iter().enumerate() {
        let label = study.category_index(&e.category).expect("examples were validated");
        push(
            example_text(&e.text),
            e.reply.as_deref(),
            e.replies.as_deref(),
            label,
            Some(i),
        );
    }
    set
}

impl TrainingSet {
    /// Item `i`'s texts, as the classifier reads their words.
    pub fn category_texts(&self, i: usize) -> CategoryTexts<'_> {
        CategoryTexts {
            request: &self.texts[i],
            reply: self.replies[i].as_deref(),
            replies: self.all_replies[i].as_deref(),
        }
    }
}

/// What a study's category classifier reads: the request and the reply's opening when most of
/// its labelled examples carry their reply (a classifier trained on requests alone would meet
/// replies it never learned from), else the request alone; with the pinned layers' means, and
/// the request's embedding through the study's tuned upper layers when it tunes them.
pub fn category_input(study: &Study) -> CategoryInput {
    let with_reply = study.examples.iter().filter(|e| e.reply.is_some()).count();
    match (with_reply * 2 > study.examples.len(), study.fine_tune_layers) {
        (false, _) => CategoryInput::Request,
        (true, 0) => CategoryInput::RequestAndReplyLayers,
        (true, _) => CategoryInput::TunedRequestAndLayers,
    }
}

/// Words in the vocabulary of a classifier that reads words. On the default study 1,000 did
/// about as well as 2,000 with the neighbours' vote (scikit-learn reference runs: +0.7 and +0.7
/// points), and each word widens the regression by two floats.
pub const VOCABULARY: usize = 1000;

/// The words the category classifier reads beside the embeddings, fitted to the training set's
/// requests and reply openings (each one text): for the layered input, the classifier of a
/// study with replies that does not fine-tune; none otherwise. It reads the replies' words
/// too when most items with a reply carry their replies (a classifier that learned them from
/// a few would meet them on every device).
pub fn fit_words(input: CategoryInput, set: &TrainingSet) -> Option<Words> {
    input.layered().then(|| {
        let texts: Vec<&str> = (set.texts.iter())
            .chain(set.replies.iter().flatten())
            .map(String::as_str)
            .collect();
        let with_replies = set.all_replies.iter().flatten().count();
        Words {
            replies: with_replies * 2 > set.replies.iter().flatten().count(),
            ..Words::fit(&texts, VOCABULARY)
        }
    })
}

/// Each item's classifier input: its embeddings' features, then its words' when the
/// classifier reads words.
pub fn with_words(mut features: Vec<Vec<f32>>, words: Option<&Words>, set: &TrainingSet) -> Vec<Vec<f32>> {
    if let Some(words) = words {
        for (i, x) in features.iter_mut().enumerate() {
            x.extend(words.text_features(set.category_texts(i)));
        }
    }
    features
}

/// A training set's embeddings: each request's, and each reply's where there is one; with the
/// layered input, each followed by its layers' means ([`Embedder::embed_layers`]).
pub struct EmbeddedSet {
    pub requests: Vec<Vec<f32>>,
    pub replies: Vec<Option<Vec<f32>>>,
}

impl EmbeddedSet {
    /// What the category classifier reads for each item.
    pub fn features(&self, input: CategoryInput) -> Vec<Vec<f32>> {
        self.requests
            .iter()
            .zip(&self.replies)
            .map(|(request, reply)| input.features(request, reply.as_deref()))
            .collect()
    }

    /// Each request's embedding (without its layers' means).
    pub fn request_embeddings(&self) -> Vec<Vec<f32>> {
        self.requests.iter().map(|r| r[..DIM].to_vec()).collect()
    }
}

/// Embeds a training set's requests and replies as the classifier reading `input` sees them,
/// then `extra` texts (returned apart, embeddings only); `progress` receives the number of
/// texts embedded so far and the total.
pub fn embed_training_set(
    embedder: &Embedder,
    set: &TrainingSet,
    input: CategoryInput,
    extra: &[&str],
    mut progress: impl FnMut(usize, usize),
) -> Result<(EmbeddedSet, Vec<Vec<f32>>), EmbedError> {
    let replies: Vec<&str> = set.replies.iter().flatten().map(String::as_str).collect();
    let all: Vec<&str> = (set.texts.iter().map(String::as_str))
        .chain(replies.iter().copied())
        .chain(extra.iter().copied())
        .collect();
    let (total, mut done) = (all.len(), 0);
    let mut count = |n| {
        done += n;
        progress(done, total)
    };
    let mut vectors = match input.layered() {
        true => embedder.embed_layers_many(&all, &mut count)?,
        false => embedder.embed_many(&all, &mut count)?,
    }
    .into_iter();
    let requests: Vec<Vec<f32>> = vectors.by_ref().take(set.texts.len()).collect();
    let reply_vectors: Vec<Option<Vec<f32>>> = set
        .replies
        .iter()
        .map(|r| r.as_ref().and_then(|_| vectors.next()))
        .collect();
    Ok((
        EmbeddedSet {
            requests,
            replies: reply_vectors,
        },
        vectors.map(|v| v[..DIM].to_vec()).collect(),
    ))
}

/// The fold of each item of [`training_set`]: labelled examples drawn as a uniform sample of
/// their corpus (`"source": "sample"`) take turns being held out; everything else is always
/// trained on. The fold is a hash of the request's text as the classifier reads it
/// ([`example_text`]: two requests that differ only in a scrubbed address are one text), so
/// that every copy of a request is held out with the others: a classifier scored on a copy of
/// what it was trained on would claim more than it does on a request it never saw (on the
/// default study, where hundreds of requests are asked more than once, folds that split them
/// score more than a point higher).
pub fn fold_assignment(study: &Study, folds: usize) -> Vec<Option<usize>> {
    let taxonomy = study.categories.iter().map(|c| c.examples.len()).sum::<usize>();
    std::iter::repeat_n(None, taxonomy)
        .chain(study.examples.iter().map(|e| {
            (e.source.as_deref() == Some("sample")).then(|| {
                let text = example_text(&e.text);
                (crate::stable_hash::fnv1a(text.as_bytes()) % folds as u64) as usize
            })
        }))
        .collect()
}

/// The classifier's errors measured by cross-validation: each held-out item is classified by a
/// model trained on the other folds, calibrated as the shipped classifier is (the temperatures
/// and the blend's weight fitted to all the held-out predictions).
#[derive(Clone)]
pub struct CrossValidation {
    /// `[true][predicted]` counts of the most probable category.
    pub hard: Vec<Vec<u32>>,
    /// `[true][c]` sums of the predicted probability of category c: the "soft" confusion that
    /// probabilistic classify-and-count corrects with.
    pub soft: Vec<Vec<f64>>,
    /// The temperature that calibrates the regression's held-out probabilities best.
    pub temperature: f64,
    /// With neighbours: the vote's weight and the blend's temperature.
    pub blend: Option<(f64, f64)>,
    /// Held-out accuracy of the regression alone.
    pub regression_accuracy: f64,
    /// Each held-out item's index and predicted category.
    pub predictions: Vec<(usize, usize)>,
    /// The held-out predictions' confidence against how often they were right, calibrated and
    /// not (no temperature anywhere).
    pub calibration: Calibration,
    pub uncalibrated: Calibration,
}

/// The vote's shares of the blend tried; the most accurate on held-out predictions is kept
/// (the first on a tie).
const BLEND_WEIGHTS: [f64; 4] = [0.0, 0.2, 0.4, 0.6];

/// One held-out prediction: the true label, the regression's scores, the neighbours' vote.
type HeldOut = (usize, Vec<f64>, Option<Vec<f64>>);

/// Labelled examples as the classifier sees them: vectors, category indices, and each one's
/// fold ([`fold_assignment`]; none for examples always trained on).
#[derive(Clone, Copy)]
pub(crate) struct Labelled<'a> {
    pub vectors: &'a [Vec<f32>],
    pub labels: &'a [usize],
    pub fold_of: &'a [Option<usize>],
    pub classes: usize,
    pub folds: usize,
    /// With fine-tuned upper layers: for each fold, every item's vector as embedded by the
    /// layers tuned without that fold (and the neighbours' projection fitted to them), which
    /// that fold's model is trained and scored on; `vectors` are the shipped layers'.
    pub by_fold: Option<&'a [FoldSpace]>,
    /// Where its regressions are trained: once per distinct training input.
    pub regressions: &'a Regressions,
}

/// Every item's vector as one fold's tuned layers embed it, and the projection fitted to them.
pub(crate) struct FoldSpace {
    pub vectors: Vec<Vec<f32>>,
    pub projection: Option<Projection>,
}

impl<'a> Labelled<'a> {
    /// The vectors and projection fold `fold`'s model is trained and scored on.
    pub fn space(&self, fold: usize, projection: Option<&'a Projection>) -> (&'a [Vec<f32>], Option<&'a Projection>) {
        match self.by_fold {
            Some(spaces) => (&spaces[fold].vectors, spaces[fold].projection.as_ref()),
            None => (self.vectors, projection),
        }
    }
}

pub(crate) fn cross_validate_vectors(
    set: &Labelled<'_>,
    options: TrainOptions,
    projection: Option<&Projection>,
) -> CrossValidation {
    let Labelled {
        labels,
        fold_of,
        classes,
        folds,
        ..
    } = *set;
    // Each fold's held-out items and predictions, the folds trained side by side.
    let by_fold = crate::parallel::map(
        folds,
        |fold| {
            let (vectors, projection) = set.space(fold, projection);
            let held: Vec<usize> = (0..vectors.len()).filter(|&i| fold_of[i] == Some(fold)).collect();
            if held.is_empty() {
                return Vec::new();
            }
            let train: Vec<usize> = (0..vectors.len()).filter(|&i| fold_of[i] != Some(fold)).collect();
            let xs: Vec<Vec<f32>> = train.iter().map(|&i| vectors[i].clone()).collect();
            let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
            let model = set.regressions.train(&xs, &ys, classes, options);
            let neighbours = projection.map(|p| Neighbours::index(p, &xs, &ys, classes));
            (held.into_iter())
                .map(|i| {
                    let vote = neighbours.as_ref().map(|n| n.vote(&vectors[i]));
                    (i, (labels[i], model.scores(&vectors[i]), vote))
                })
                .collect::<Vec<(usize, HeldOut)>>()
        },
        |_, _| {},
    );
    let (items, held_out): (Vec<usize>, Vec<HeldOut>) = by_fold.into_iter().flatten().unzip();
    let truth: Vec<usize> = held_out.iter().map(|h| h.0).collect();
    let scores: Vec<Vec<f64>> = held_out.iter().map(|h| h.1.clone()).collect();
    let temperature = if scores.is_empty() {
        1.0
    } else {
        fit_temperature(&scores, &truth)
    };
    let regression: Vec<Vec<f64>> = scores.iter().map(|s| softmax(&divided(s, temperature))).collect();
    let raw: Vec<Vec<f64>> = scores.iter().map(|s| softmax(s)).collect();
    let regression_accuracy = accuracy(&regression, &truth);
    let (blend, calibrated, uncalibrated) = match projection {
        None => (None, regression, raw),
        Some(_) => {
            let votes: Vec<&Vec<f64>> = held_out.iter().filter_map(|h| h.2.as_ref()).collect();
            let blended = |probabilities: &[Vec<f64>], weight: f64| -> Vec<Vec<f64>> {
                (probabilities.iter().zip(&votes))
                    .map(|(p, v)| Neighbours::blend_scores(p, v, weight))
                    .collect()
            };
            let accuracies = BLEND_WEIGHTS.map(|w| accuracy(&blended(&regression, w), &truth));
            let weight = BLEND_WEIGHTS[argmax(&accuracies)];
            let blend_scores = blended(&regression, weight);
            let blend_temperature = if blend_scores.is_empty() {
                1.0
            } else {
                fit_temperature(&blend_scores, &truth)
            };
            let calibrated = blend_scores
                .iter()
                .map(|s| softmax(&divided(s, blend_temperature)))
                .collect();
            let uncalibrated = blended(&raw, weight).iter().map(|s| softmax(s)).collect();
            (Some((weight, blend_temperature)), calibrated, uncalibrated)
        }
    };
    let mut hard = vec![vec![0u32; classes]; classes];
    let mut soft = vec![vec![0f64; classes]; classes];
    let mut calibration = Calibration::default();
    let mut before = Calibration::default();
    let mut predictions = Vec::new();
    for (((&y, p), q), &item) in truth.iter().zip(&calibrated).zip(&uncalibrated).zip(&items) {
        let predicted = argmax(p);
        predictions.push((item, predicted));
        hard[y][predicted] += 1;
        calibration.add(p[predicted], predicted == y);
        before.add(q[argmax(q)], argmax(q) == y);
        soft[y].iter_mut().zip(p).for_each(|(s, x)| *s += x);
    }
    CrossValidation {
        hard,
        soft,
        temperature,
        blend,
        regression_accuracy,
        predictions,
        calibration,
        uncalibrated: before,
    }
}

/// The category model trained on every item of `set` (its own vectors: not a fold's tuned
/// space), calibrated as cross-validation found best.
pub(crate) fn train_category_model(
    set: &Labelled<'_>,
    options: TrainOptions,
    projection: Option<&Projection>,
    validated: &CrossValidation,
) -> (Classifier, Option<Neighbours>) {
    let Labelled {
        vectors,
        labels,
        classes,
        ..
    } = *set;
    let classifier = set
        .regressions
        .train(vectors, labels, classes, options)
        .with_temperature(validated.temperature);
    let neighbours = projection
        .zip(validated.blend)
        .map(|(p, (weight, temperature))| Neighbours {
            weight,
            temperature,
            ..Neighbours::index(p, vectors, labels, classes)
        });
    (classifier, neighbours)
}

fn divided(scores: &[f64], temperature: f64) -> Vec<f64> {
    scores.iter().map(|s| s / temperature).collect()
}

/// Share of predictions (probabilities or scores) whose largest value is the true label's.
fn accuracy(predictions: &[Vec<f64>], truth: &[usize]) -> f64 {
    let right = predictions.iter().zip(truth).filter(|(p, &y)| argmax(p) == y).count();
    right as f64 / truth.len().max(1) as f64
}
