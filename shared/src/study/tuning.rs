//! A study's fine-tuned layers (`fine_tune_layers`): tuned once per cross-validation fold and
//! once on every labelled example ([`tune`], the slow part of compiling, plain data a caller may
//! cache), then applied to the training items so that each fold's classifier is trained and
//! scored in the space of the layers tuned without that fold ([`tuned_spaces`]).

use super::finetune::{embed_all, fine_tune, FineTuneOptions, Item};
use super::neighbours::Projection;
use super::training::{fold_assignment, training_set, with_words, EmbeddedSet, FoldSpace, TrainingSet};
use super::words::Words;
use super::{tuned_request, CategoryInput, Study};
use crate::embed::pins::sha256_hex;
use crate::embed::weights::TunedLayers;
use crate::embed::{EmbedError, Embedder};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::tract_ndarray::Array2;

/// At most this many of the embedder's six layers are fine-tuned: the lower two stay pinned.
pub const MAX_LAYERS: usize = 4;
/// Changes whenever tunings from older code must not be reused.
pub const TUNING_FORMAT: u32 = 1;

/// A study's fine-tuned layers: one set per cross-validation fold, tuned without that fold's
/// items, and the set tuned on every item, which ships. The slow part of compiling, as plain
/// data that a caller may cache: it depends only on the study, the pinned model and this code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    pub folds: usize,
    pub by_fold: Vec<TunedLayers>,
    pub shipped: TunedLayers,
}

/// A study's tuned layers applied to its training items.
pub(crate) struct StudyTuning {
    /// The layers tuned on every training item, as shipped.
    pub layers: TunedLayers,
    /// Each training item's classifier input through them.
    pub features: Vec<Vec<f32>>,
    /// The same through each fold's layers (and the neighbours' projection fitted to them).
    pub by_fold: Vec<FoldSpace>,
}

/// The hidden states below the tuned layers of every training item's request and, with
/// `replies`, its reply (the request again when it has none): requests first, then replies.
fn training_states(
    embedder: &Embedder,
    training: &TrainingSet,
    first: usize,
    replies: bool,
) -> Result<Vec<Array2<f32>>, EmbedError> {
    let replies = (training.replies.iter().zip(&training.texts))
        .map(|(r, t)| r.as_deref().unwrap_or(t))
        .filter(|_| replies);
    let texts: Vec<&str> = training.texts.iter().map(String::as_str).chain(replies).collect();
    embedder.lower_layers(first)?.token_states_many(&texts, |_| {})
}

/// A digest of everything of `study` that [`tune`] reads with `folds` folds: the training
/// items' texts, reply openings and labels, their folds, the number of categories and of tuned
/// layers. A study that differs only elsewhere (its names and descriptions, privacy settings,
/// codebook, concern scale) has the same tuning, so a cache keyed by this digest (with the
/// model and the code) need not tune it again: minutes per fold.
pub fn inputs_digest(study: &Study, folds: usize) -> String {
    let training = training_set(study);
    let inputs = serde_json::json!({
        "texts": training.texts,
        "replies": training.replies,
        "labels": training.labels,
        "folds": folds,
        "fold_of": fold_assignment(study, folds),
        "classes": study.categories.len(),
        "fine_tune_layers": study.fine_tune_layers,
    });
    sha256_hex(inputs.to_string().as_bytes())[..16].to_owned()
}

/// Fine-tunes the study's upper layers (`fine_tune_layers` of them) once per fold of
/// [`fold_assignment`], without that fold's items, and once on every item; none when the study
/// tunes nothing. `progress` receives the number of fits done and the number of fits.
pub fn tune(
    study: &Study,
    embedder: &Embedder,
    folds: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Option<Tuning>, EmbedError> {
    if study.fine_tune_layers == 0 || study.examples.is_empty() {
        return Ok(None);
    }
    let training = training_set(study);
    let fold_of = fold_assignment(study, folds);
    let first = embedder.layer_count()?.saturating_sub(study.fine_tune_layers);
    let pinned = embedder.pinned_layers(first)?;
    let states = training_states(embedder, &training, first, true)?;
    let n = training.texts.len();
    let fit = |held_out: Option<usize>| -> Result<TunedLayers, EmbedError> {
        let items: Vec<Item<'_>> = (0..n)
            .filter(|&i| held_out.is_none() || fold_of[i] != held_out)
            .map(|i| Item {
                request: &states[i],
                reply: &states[n + i],
                label: training.labels[i],
            })
            .collect();
        let classes = study.categories.len();
        let layers = fine_tune(
            pinned.clone(),
            &items,
            classes,
            FineTuneOptions::default(),
            |_, _, _| {},
        );
        Ok(embedder.quantized_layers(first, &layers)?.0)
    };
    let shipped = fit(None)?;
    progress(1, folds + 1);
    let mut by_fold = Vec::with_capacity(folds);
    for fold in 0..folds {
        // A fold with no items of its own would be tuned on every item: the shipped layers.
        let empty = !fold_of.contains(&Some(fold));
        by_fold.push(if empty { shipped.clone() } else { fit(Some(fold))? });
        progress(fold + 2, folds + 1);
    }
    Ok(Some(Tuning {
        folds,
        by_fold,
        shipped,
    }))
}

/// Whether `tuning` is what [`tune`] gives `study` with `folds` folds on a model of `layers`
/// layers (in shape: which layers, how many folds), so that compiling cannot pair a study with
/// another study's layers.
pub(crate) fn check_tuning(study: &Study, tuning: Option<&Tuning>, folds: usize, layers: usize) -> Result<(), String> {
    match (study.fine_tune_layers, tuning) {
        (0, None) => Ok(()),
        (0, Some(_)) => Err("the study tunes no layers, but tuned layers were given".into()),
        (_, None) => Err("the study fine-tunes its upper layers; tune them first (`tuning::tune`)".into()),
        (k, Some(t)) if t.folds != folds || t.by_fold.len() != folds || t.shipped.first + k != layers => Err(format!(
            "the tuned layers were made for {} folds from layer {}, not {folds} folds of the top {k} layers",
            t.folds, t.shipped.first
        )),
        _ => Ok(()),
    }
}

/// Applies a study's tuning to its training items: each item's classifier input (`input`,
/// which reads the request through the tuned layers beside the pinned `embedded` set and the
/// `words`) through the shipped layers and through each fold's.
pub(crate) fn tuned_spaces(
    embedder: &Embedder,
    training: &TrainingSet,
    embedded: &EmbeddedSet,
    words: Option<&Words>,
    input: CategoryInput,
    tuning: &Tuning,
) -> Result<StudyTuning, EmbedError> {
    let states = training_states(embedder, training, tuning.shipped.first, false)?;
    let features_through = |layers: &TunedLayers| -> Result<Vec<Vec<f32>>, EmbedError> {
        let tuned = embed_all(&embedder.tuned_weights(layers)?, &states);
        let features = (tuned.into_iter().zip(&embedded.requests).zip(&embedded.replies))
            .map(|((tuned, pinned), reply)| input.features(&tuned_request(&tuned, pinned), reply.as_deref()))
            .collect();
        Ok(with_words(features, words, training))
    };
    let mut by_fold = Vec::with_capacity(tuning.folds);
    for layers in &tuning.by_fold {
        let vectors = features_through(layers)?;
        let projection = Some(Projection::fit(&vectors, input.compared()));
        by_fold.push(FoldSpace { vectors, projection });
    }
    Ok(StudyTuning {
        layers: tuning.shipped.clone(),
        features: features_through(&tuning.shipped)?,
        by_fold,
    })
}

#[cfg(test)]
mod tests {
    use super::inputs_digest;
    use crate::study::tests::{examples, STUDY};
    use crate::study::Study;

    const EXAMPLES: &str = "{\"text\":\"fix my loop\",\"category\":\"code\",\"source\":\"sample\"}\n\
                            {\"text\":\"a sonnet\",\"category\":\"poems\",\"reply\":\"Roses\",\"source\":\"sample\"}\n";

    /// The study module's test study, tuning two layers, with an example in its taxonomy.
    fn tuned_study() -> String {
        STUDY
            .replace("\"ex.jsonl\"", "\"ex.jsonl\"\nfine_tune_layers = 2")
            .replace("\"Programming\"", "\"Programming\"\nexamples = [\"fix my build\"]")
    }

    fn parse(study: &str, jsonl: &str) -> Study {
        Study::parse(study, examples(jsonl)).unwrap()
    }

    #[test]
    fn a_tuning_is_keyed_by_what_it_reads_alone() {
        let tuned = tuned_study();
        let study = parse(&tuned, EXAMPLES);
        assert_eq!((study.fine_tune_layers, study.categories[0].examples.len()), (2, 1));
        let key = inputs_digest(&study, 5);
        // A new version of the study that reads the same items: the same tuning.
        let described = tuned
            .replace("\"Poetry\"", "\"Verse of every kind\"")
            .replace("\"T\"", "\"Other\"");
        let described = parse(&described, EXAMPLES);
        assert_ne!(described.version, study.version);
        assert_eq!(inputs_digest(&described, 5), key);
        // Anything the tuning reads: a label, a reply, a taxonomy example, the layers, the folds.
        let changed = [
            inputs_digest(&parse(&tuned, &EXAMPLES.replace("\"code\"", "\"poems\"")), 5),
            inputs_digest(&parse(&tuned, &EXAMPLES.replace("Roses", "Violets")), 5),
            inputs_digest(&parse(&tuned.replace("my build", "my test"), EXAMPLES), 5),
            inputs_digest(&parse(&tuned.replace("= 2", "= 3"), EXAMPLES), 5),
            inputs_digest(&study, 4),
        ];
        for other in changed {
            assert_ne!(other, key);
        }
    }
}
