//! A study compiled against the embedder: the classifiers a client runs, as plain data that
//! serialises to JSON (the browser receives this, not the labelled examples).

use super::classifier::{CategoryInput, Classifier, TrainOptions};
use super::neighbours::{category_probabilities, Neighbours, Projection};
use super::regressions::Regressions;
use super::training::{
    category_input, cross_validate_vectors, embed_training_set, fit_words, fold_assignment, train_category_model,
    training_set, with_words, CompileError, Labelled,
};
use super::tuning::{check_tuning, tuned_spaces, Tuning};
use super::validation::{validate_debiasing, DebiasValidation};
use super::words::{CategoryTexts, Words};
use super::{Access, Category, ReleaseConfig, Steward, Study};
use crate::codebook::Codebook;
use crate::embed::weights::TunedLayers;
use crate::embed::{self, Embedder};
use crate::privacy::PrivacyPlan;
use serde::{Deserialize, Serialize};

/// Changes whenever compiled studies from older code must not be reused (9: the access mode;
/// 10: the concern scale's descriptions; 11: the steward; 12: what the category classifier reads;
/// 13: fine-tuned upper layers; 14: the pinned layers' means; 15: the texts' words; 16: the
/// replies' words; 17: the request's reading length, [`CompiledStudy::max_tokens`]; 18: tuned
/// layers read beside the pinned ones' embeddings, means and words).
pub const COMPILED_FORMAT: u32 = 18;
/// Folds of the cross-validation that measures the classifier's errors.
pub const CONFUSION_FOLDS: usize = 5;
/// With labelled examples, each category needs at least this many to train on.
pub const CATEGORY_MIN_EXAMPLES: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompiledStudy {
    pub format: u32,
    pub id: String,
    pub title: String,
    pub description: String,
    /// Hash of what the study means: its settings, taxonomy, examples and codebook, not its formatting.
    pub version: String,
    /// SHA-256 of the model file the classifiers were trained with.
    pub model_sha256: String,
    /// How many tokens of each text the embedder read when the classifiers, the concern
    /// prototypes and the embedding channel's projection were made ([`embed::MAX_TOKENS`]): a
    /// device reading another length would feed them inputs they were not fitted to. (Absent
    /// from studies of older formats, which are refused by their format first.)
    #[serde(default)]
    pub max_tokens: usize,
    pub categories: Vec<Category>,
    /// What the category classifier reads.
    pub category_input: CategoryInput,
    /// The study's own weights for the embedder's upper layers, which the category classifier
    /// reads the request and reply through (topics, concern and the embedding channel read the
    /// pinned embedding). None: the classifier reads the pinned embeddings too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned_layers: Option<TunedLayers>,
    /// The words the category classifier reads after the embeddings (request's, then
    /// reply's); none: it reads the embeddings alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Words>,
    pub classifier: Classifier,
    /// The labelled examples whose vote is blended with the classifier's (studies with
    /// labelled examples).
    pub neighbours: Option<Neighbours>,
    pub concern_threshold: f32,
    pub concern_prototypes: Vec<ConcernPrototype>,
    /// Lowercase terms and the level each marks.
    pub concern_terms: Vec<(u8, String)>,
    /// What each level of the study's concern scale means (level 1, no concern, is implicit),
    /// for the contributor's review.
    #[serde(default)]
    pub concern_scale: Vec<(u8, String)>,
    /// The classifier's errors: `[true][c]` sums of the probability given to category c, from
    /// cross-validation on the labelled examples (none for a study classified by prototypes).
    /// What the server needs to estimate the true category mix from the reported one.
    pub category_confusion: Option<Vec<Vec<f64>>>,
    /// Whether correcting for the classifier's errors beat the devices' own estimate on held-out
    /// labelled examples (nested cross-validation), and the classifier-error band a release
    /// states with the category mix it publishes.
    pub category_validation: Option<DebiasValidation>,
    /// Who may contribute.
    pub access: Access,
    /// Who runs the study, why, and how long its reports are kept.
    #[serde(default)]
    pub steward: Steward,
    /// What leaves the device and what it costs.
    pub privacy: PrivacyPlan,
    /// What the server may publish.
    pub release: ReleaseConfig,
    /// The public topic codebook: a device reports the leaf nearest its request.
    pub codebook: Option<Codebook>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConcernPrototype {
    pub level: u8,
    pub embedding: Vec<f32>,
}

impl CompiledStudy {
    /// Embeds the study's examples and trains its classifiers, reading them through the
    /// study's fine-tuned layers when it has them (`tuning`: [`super::tuning::tune`] with
    /// [`CONFUSION_FOLDS`] folds). `progress` receives the number of texts embedded so far and
    /// the total.
    pub fn compile(
        study: &Study,
        embedder: &Embedder,
        options: TrainOptions,
        tuning: Option<&Tuning>,
        progress: impl FnMut(usize, usize),
    ) -> Result<CompiledStudy, CompileError> {
        check_tuning(study, tuning, CONFUSION_FOLDS, embedder.layer_count()?).map_err(CompileError::Tuning)?;
        let pinned = &embed::pins::pins().model.sha256;
        if let Some(codebook) = study.codebook.as_ref().filter(|c| &c.model_sha256 != pinned) {
            return Err(CompileError::CodebookModel {
                codebook: codebook.model_sha256.clone(),
                pinned: pinned.clone(),
            });
        }
        // A device finds its request's topic by comparing its embedding with the centroids: both
        // must come from requests read to the same length.
        if let Some(codebook) = study.codebook.as_ref().filter(|c| c.max_tokens != embed::MAX_TOKENS) {
            return Err(CompileError::CodebookReadingLength {
                codebook: codebook.max_tokens,
                reads: embed::MAX_TOKENS,
            });
        }
        let training = training_set(study);
        let concern_texts: Vec<(u8, String)> = study
            .concerns
            .iter()
            .flat_map(|c| c.examples.iter().map(move |e| (c.level, e.clone())))
            .collect();
        let concern_refs: Vec<&str> = concern_texts.iter().map(|(_, t)| t.as_str()).collect();
        let category_input = category_input(study);
        let (embedded, concern) = embed_training_set(embedder, &training, category_input, &concern_refs, progress)?;
        let folds = fold_assignment(study, CONFUSION_FOLDS);
        let words = fit_words(category_input, &training);
        let tuning = (tuning.map(|t| tuned_spaces(embedder, &training, &embedded, words.as_ref(), category_input, t)))
            .transpose()?;
        let features = match &tuning {
            Some(t) => t.features.clone(),
            None => with_words(embedded.features(category_input), words.as_ref(), &training),
        };
        let set = Labelled {
            vectors: &features,
            labels: &training.labels,
            fold_of: &folds,
            classes: study.categories.len(),
            folds: CONFUSION_FOLDS,
            by_fold: tuning.as_ref().map(|t| &t.by_fold[..]),
            regressions: &Regressions::default(),
        };
        // With labelled examples, the neighbours' public projection (labels play no part in it).
        let projection = (!study.examples.is_empty()).then(|| Projection::fit(&features, category_input.compared()));
        let (classifier, neighbours, category_confusion) = train_classifier(study, &set, options, projection.as_ref())?;
        let privacy = PrivacyPlan::build(
            &study.privacy,
            &category_ids(study),
            &topic_ids(study),
            &embedded.request_embeddings(),
        )?;
        let category_validation = category_confusion.as_ref().and_then(|_| {
            let oracle = privacy.channel(chorus_messages::Channel::Category).map(|c| c.oracle);
            validate_debiasing(&set, options, projection.as_ref(), oracle)
        });
        Ok(CompiledStudy {
            format: COMPILED_FORMAT,
            id: study.id.clone(),
            title: study.title.clone(),
            description: study.description.clone(),
            version: study.version.clone(),
            model_sha256: pinned.clone(),
            max_tokens: embed::MAX_TOKENS,
            categories: study.categories.clone(),
            category_input,
            tuned_layers: tuning.map(|t| t.layers),
            words,
            classifier,
            neighbours,
            concern_threshold: study.concern_threshold,
            category_confusion,
            category_validation,
            access: study.access,
            steward: study.steward.clone(),
            privacy,
            release: study.release.clone(),
            codebook: study.codebook.clone(),
            concern_scale: study
                .concerns
                .iter()
                .map(|c| (c.level, c.description.clone()))
                .collect(),
            concern_terms: study
                .concerns
                .iter()
                .flat_map(|c| c.terms.iter().map(move |t| (c.level, t.to_lowercase())))
                .collect(),
            concern_prototypes: concern_texts
                .iter()
                .zip(concern)
                .map(|((level, _), v)| ConcernPrototype {
                    level: *level,
                    embedding: v,
                })
                .collect(),
        })
    }

    /// `id@version`: how logs and the pages name one version of a study.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    pub fn category_ids(&self) -> Vec<String> {
        self.categories.iter().map(|c| c.id.clone()).collect()
    }

    /// The codebook topics (ids, top level first) of a conversation with this request
    /// embedding: the nearest leaf and its ancestors.
    pub fn topic_path(&self, embedding: &[f32]) -> Option<Vec<String>> {
        let codebook = self.codebook.as_ref()?;
        let leaf = codebook.leaf(embedding);
        Some(codebook.path_ids(leaf))
    }

    /// The category classifier's probabilities for a conversation with this request embedding
    /// and, when it has a reply, this embedding of the reply's opening; `texts` are the request
    /// and the reply's opening that were embedded, and the replies (their words, for a
    /// classifier that reads them).
    pub fn category_probabilities(&self, request: &[f32], reply: Option<&[f32]>, texts: CategoryTexts) -> Vec<f32> {
        let mut x = self.category_input.features(request, reply);
        if let Some(words) = &self.words {
            x.extend(words.text_features(texts));
        }
        category_probabilities(&self.classifier, self.neighbours.as_ref(), &x)
    }

    /// The category probabilities of a conversation known only by its request embedding (a
    /// discovered cluster's centroid): its reply's embedding taken to be the request's, and
    /// what else the regression reads (the layers' means, the words) at the regression's
    /// training mean, where it moves no score.
    pub fn category_probabilities_of_embedding(&self, embedding: &[f32]) -> Vec<f32> {
        let mut x = self.category_input.features(embedding, None);
        if let Classifier::Linear { mean, .. } = &self.classifier {
            x.extend_from_slice(&mean[x.len().min(mean.len())..]);
        }
        category_probabilities(&self.classifier, self.neighbours.as_ref(), &x)
    }

    /// How many floats the category classifier reads: its embeddings' and its words'.
    pub fn category_width(&self) -> usize {
        self.category_input.width() + self.words.as_ref().map_or(0, Words::width)
    }

    /// Concern level 1–5 of a conversation: the highest level whose terms appear in what the
    /// user wrote (`user_text`), or with an example at least `concern_threshold` similar to the
    /// request embedding; 1 ("no concern") when neither does.
    ///
    /// Embedding similarity alone reflects the form of a request as much as its content ("tell me
    /// a joke" is close to "tell me a dirty joke"), so the threshold is high and the terms catch
    /// what it misses.
    pub fn concern(&self, embedding: &[f32], user_text: &str) -> u8 {
        let by_example = self
            .concern_prototypes
            .iter()
            .filter(|p| embed::cosine(&p.embedding, embedding) >= self.concern_threshold)
            .map(|p| p.level);
        let lower = user_text.to_lowercase();
        let by_term = self
            .concern_terms
            .iter()
            .filter(|(_, t)| contains_word(&lower, t))
            .map(|(level, _)| *level);
        by_example.chain(by_term).max().unwrap_or(1)
    }
}

/// `[true][c]` sums of the cross-validated probability of category c.
type SoftConfusion = Vec<Vec<f64>>;

/// The category classifier: logistic regression with its cross-validated soft confusion when
/// the study has labelled examples, else nearest prototype (and no measured errors).
fn train_classifier(
    study: &Study,
    set: &Labelled<'_>,
    options: TrainOptions,
    projection: Option<&Projection>,
) -> Result<(Classifier, Option<Neighbours>, Option<SoftConfusion>), CompileError> {
    if study.examples.is_empty() {
        return Ok((Classifier::prototypes(set.vectors, set.labels, set.classes), None, None));
    }
    for (c, category) in study.categories.iter().enumerate() {
        let found = set.labels.iter().filter(|&&l| l == c).count();
        if found < CATEGORY_MIN_EXAMPLES {
            return Err(CompileError::TooFewExamples {
                category: category.id.clone(),
                found,
            });
        }
    }
    let validated = cross_validate_vectors(set, options, projection);
    let (classifier, neighbours) = train_category_model(set, options, projection, &validated);
    Ok((classifier, neighbours, Some(validated.soft)))
}

fn category_ids(study: &Study) -> Vec<String> {
    study.categories.iter().map(|c| c.id.clone()).collect()
}

/// The codebook's topic ids, level by level (top first); none without a codebook.
fn topic_ids(study: &Study) -> Vec<Vec<String>> {
    let Some(codebook) = &study.codebook else {
        return Vec::new();
    };
    codebook
        .levels
        .iter()
        .map(|level| level.iter().map(|t| t.id.clone()).collect())
        .collect()
}

/// Whether `phrase` occurs in `text` with no letter or digit right before or after it.
fn contains_word(text: &str, phrase: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(phrase)
        .any(|(i, _)| boundary(text[..i].chars().next_back()) && boundary(text[i + phrase.len()..].chars().next()))
}

#[cfg(test)]
mod tests {
    use super::contains_word;

    #[test]
    fn terms_match_whole_words_only() {
        assert!(contains_word("how to make a bomb?", "bomb"));
        assert!(contains_word("nerve agent at home", "nerve agent"));
        assert!(!contains_word("a photobomb picture", "bomb"));
        assert!(!contains_word("bombastic prose", "bomb"));
    }
}
