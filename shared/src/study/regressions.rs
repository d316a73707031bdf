//! Regressions trained while compiling one study, kept by what they were trained on.
//!
//! Compiling trains the same regression more than once: the confusion's model without fold k is
//! the nested validation's model without outer fold k, and the nested validation's inner folds
//! (a, b) and (b, a) leave out the same two folds. Training is deterministic, so a repeat takes
//! the first result: the compiled study is the same bytes, and a study with five folds trains 16
//! regressions instead of 31 (the regression is most of a compile's time).

use super::classifier::{Classifier, TrainOptions};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Regressions(Mutex<HashMap<[u8; 32], Classifier>>);

impl Regressions {
    /// `Classifier::train_linear(xs, ys, classes, options)`, trained once per distinct input.
    pub fn train(&self, xs: &[Vec<f32>], ys: &[usize], classes: usize, options: TrainOptions) -> Classifier {
        let key = digest(xs, ys, classes, options);
        if let Some(model) = self.trained().get(&key) {
            return model.clone();
        }
        // Trained outside the lock: the folds of one cross-validation train side by side.
        let model = Classifier::train_linear(xs, ys, classes, options);
        self.trained().insert(key, model.clone());
        model
    }

    /// How many distinct regressions were trained.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.trained().len()
    }

    fn trained(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Classifier>> {
        // A panic while the lock is held (an insert) leaves the map whole: go on with it.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Everything a regression's training reads: its inputs in order, their labels, the number of
/// classes and the settings.
fn digest(xs: &[Vec<f32>], ys: &[usize], classes: usize, options: TrainOptions) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(format!("{classes} {} {} {options:?}", xs.len(), ys.len()));
    for (x, y) in xs.iter().zip(ys) {
        let row: Vec<u8> = (x.iter()).flat_map(|v| v.to_le_bytes()).collect();
        hasher.update((x.len() as u64).to_le_bytes());
        hasher.update(&row);
        hasher.update((*y as u64).to_le_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_training_is_the_first_result_and_a_different_one_is_trained() {
        let xs: Vec<Vec<f32>> = (0..40).map(|i| vec![i as f32 / 40.0, (i % 3) as f32]).collect();
        let ys: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let options = TrainOptions::default();
        let regressions = Regressions::default();
        let first = regressions.train(&xs, &ys, 2, options);
        assert_eq!(first, Classifier::train_linear(&xs, &ys, 2, options));
        assert_eq!(regressions.train(&xs, &ys, 2, options), first);
        assert_eq!(regressions.len(), 1);
        let mut relabelled = ys.clone();
        relabelled[0] = 1;
        regressions.train(&xs, &relabelled, 2, options);
        regressions.train(&xs[1..], &ys[1..], 2, options);
        let more = TrainOptions {
            iterations: options.iterations + 1,
            ..options
        };
        regressions.train(&xs, &ys, 2, more);
        assert_eq!(regressions.len(), 4, "labels, inputs and settings each make a new key");
    }
}
