//! Does correcting for the classifier's errors earn its place? Measured by nested
//! cross-validation over the study's uniformly sampled labelled examples, when the study is
//! compiled: each of the study's folds is held out in turn; a classifier and its confusion
//! matrix (by cross-validation over the other folds) are trained on the rest, as the study
//! itself is trained on everything; the held-out examples are resampled into shifted mixes of
//! categories; and on each mix the devices' estimate (the mean of the classifier's
//! probabilities: what the category channel estimates without correction) and the debiased
//! estimate are compared with the true mix of labels — first without noise (the classifier's
//! errors alone), then through the study's category channel at several numbers of reports (the
//! channel's noise, drawn from the normal distribution its unbiased estimate follows; the
//! correction amplifies it).
//!
//! A release calls the debiased mix the true one only when, at its number of reports, it beat
//! the devices' estimate here by at least [`MARGIN`] in mean total variation distance; otherwise
//! it publishes the devices' estimate with the band this validation measured: for each category,
//! the 95th percentile of how far the devices' estimate was from the true share over the
//! held-out mixes, without noise (the release's intervals carry the noise).

use super::classifier::{argmax, TrainOptions};
use super::neighbours::{category_probabilities, Projection};
use super::training::{cross_validate_vectors, train_category_model, Labelled};
use crate::codebook::kmeans::SplitMix;
use crate::privacy::debias::{debias, ITERATIONS};
use crate::privacy::oracle::{project_to_simplex, Oracle};
use serde::{Deserialize, Serialize};

/// Shifted mixes drawn from each outer fold's held-out examples (plus its natural mix).
pub const MIXES_PER_FOLD: usize = 20;
/// Examples drawn (with replacement) into each mix.
pub const DRAWS: usize = 2000;
/// How much lower the debiased estimate's mean TVD must be for the release to publish it.
pub const MARGIN: f64 = 0.005;
/// Numbers of reports the estimates are compared at, through the category channel's noise.
pub const REPORTS: [usize; 6] = [1_000, 3_000, 10_000, 30_000, 100_000, 1_000_000];
/// Noise draws per held-out mix and number of reports.
const NOISE_DRAWS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebiasValidation {
    /// Held-out mixes the figures below are over.
    pub mixes: usize,
    /// Mean total variation distance from the true mix without noise (the classifier's errors
    /// alone): of the devices' estimate (probabilistic classify-and-count), of the debiased
    /// estimate, and of plain classify-and-count (the most probable category's counts).
    pub tvd_devices: f64,
    pub tvd_debiased: f64,
    pub tvd_counted: f64,
    /// The devices' and the debiased estimate through the category channel, at each of
    /// [`REPORTS`] (empty for a study that does not report the category).
    pub noisy: Vec<AtReports>,
    /// Per category: the 95th percentile over the held-out mixes of |devices' estimate − true
    /// share| without noise (the classifier-error band stated with the devices' estimate).
    pub band: Vec<f64>,
    /// Per category: the root mean square of the debiased estimate's error without noise (the
    /// error the correction leaves), which its intervals carry next to the devices' noise.
    pub debiased_rms_error: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtReports {
    pub reports: usize,
    pub tvd_devices: f64,
    pub tvd_debiased: f64,
}

impl DebiasValidation {
    /// Whether the debiased mix beat the devices' estimate by [`MARGIN`] at this many reports
    /// (the gain interpolated on a log scale between the numbers measured, and held constant
    /// beyond them).
    pub fn debias_at(&self, reports: f64) -> bool {
        let gain = |a: &AtReports| a.tvd_devices - a.tvd_debiased;
        let Some(first) = self.noisy.first() else {
            return false;
        };
        let at = reports.max(1.0).ln();
        let mut value = gain(first);
        for pair in self.noisy.windows(2) {
            let (a, b) = ((pair[0].reports as f64).ln(), (pair[1].reports as f64).ln());
            if at >= a {
                let t = ((at - a) / (b - a)).min(1.0);
                value = gain(&pair[0]) + t * (gain(&pair[1]) - gain(&pair[0]));
            }
        }
        value >= MARGIN
    }
}

/// Nested cross-validation of the debiasing over the examples with a fold (`fold_of[i]` is
/// `Some` for uniformly sampled examples; the others are always trained on), through the
/// category channel's `oracle`. None when there are too few held-out examples to measure.
pub(crate) fn validate_debiasing(
    set: &Labelled<'_>,
    options: TrainOptions,
    projection: Option<&Projection>,
    oracle: Option<Oracle>,
) -> Option<DebiasValidation> {
    let (classes, folds) = (set.classes, set.folds);
    let sampled = set.fold_of.iter().filter(|f| f.is_some()).count();
    if sampled < 10 * folds {
        return None;
    }
    let mut rng = SplitMix(0x05ee_dde1_a5ed);
    let mut errors = Errors::new(classes, oracle);
    for outer in 0..folds {
        let fold = train_without(set, options, projection, outer);
        if fold.labels.is_empty() {
            continue;
        }
        let natural = mix_of(&fold.labels, classes);
        errors.add(&fold, &natural, &mut rng);
        for _ in 0..MIXES_PER_FOLD {
            // A shifted mix: each category's natural weight tilted by a log-normal factor.
            let mix: Vec<f64> = natural.iter().map(|w| w * gaussian(&mut rng).exp()).collect();
            errors.add(&fold, &mix, &mut rng);
        }
    }
    errors.finish()
}

/// One evaluation set: held-out vectors and labels, and a model and confusion trained without them.
struct Fold {
    probabilities: Vec<Vec<f32>>,
    labels: Vec<usize>,
    confusion: Vec<Vec<f64>>,
}

/// Fold `outer` held out: a classifier, and its confusion by cross-validation over the other
/// folds, trained on everything else.
fn train_without(set: &Labelled<'_>, options: TrainOptions, projection: Option<&Projection>, outer: usize) -> Fold {
    let Labelled {
        labels,
        fold_of,
        classes,
        folds,
        ..
    } = *set;
    // With tuned layers, the whole of this fold's evaluation happens in the space of the layers
    // tuned without it. Its inner folds were seen by that tuning, so the inner confusion is
    // somewhat optimistic and the correction it drives errs towards the devices' own estimate:
    // the validation can only understate what debiasing buys.
    let (vectors, projection) = set.space(outer, projection);
    let train: Vec<usize> = (0..vectors.len()).filter(|&i| fold_of[i] != Some(outer)).collect();
    let test: Vec<usize> = (0..vectors.len()).filter(|&i| fold_of[i] == Some(outer)).collect();
    let xs: Vec<Vec<f32>> = train.iter().map(|&i| vectors[i].clone()).collect();
    let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
    let inner: Vec<Option<usize>> = train.iter().map(|&i| fold_of[i]).collect();
    let training = Labelled {
        vectors: &xs,
        labels: &ys,
        fold_of: &inner,
        classes,
        folds,
        by_fold: None,
        regressions: set.regressions,
    };
    // Trained and calibrated as the shipped classifier is, from its inner folds.
    let validated = cross_validate_vectors(&training, options, projection);
    let (model, neighbours) = train_category_model(&training, options, projection, &validated);
    let confusion = validated.soft;
    Fold {
        probabilities: (test.iter())
            .map(|&i| category_probabilities(&model, neighbours.as_ref(), &vectors[i]))
            .collect(),
        labels: test.iter().map(|&i| labels[i]).collect(),
        confusion,
    }
}

fn mix_of(labels: &[usize], classes: usize) -> Vec<f64> {
    let mut mix = vec![0f64; classes];
    labels.iter().for_each(|&l| mix[l] += 1.0);
    mix
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut SplitMix) -> f64 {
    let u = rng.unit().max(f64::MIN_POSITIVE);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * rng.unit()).cos()
}

fn tvd(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// The errors of each estimate over the held-out mixes.
struct Errors {
    classes: usize,
    oracle: Option<Oracle>,
    /// Per mix: TVD of the devices', the debiased and the counted estimate, without noise.
    tvd: [Vec<f64>; 3],
    /// Per number of reports: summed TVD of the devices' and the debiased estimate.
    noisy: Vec<(f64, f64)>,
    /// Per mix and category: |devices − truth| and |debiased − truth|.
    devices: Vec<Vec<f64>>,
    debiased: Vec<Vec<f64>>,
}

impl Errors {
    fn new(classes: usize, oracle: Option<Oracle>) -> Errors {
        Errors {
            classes,
            oracle,
            tvd: [Vec::new(), Vec::new(), Vec::new()],
            noisy: vec![(0.0, 0.0); REPORTS.len()],
            devices: Vec::new(),
            debiased: Vec::new(),
        }
    }

    /// Draws a mix of the fold's examples by category weight and records each estimate's error.
    fn add(&mut self, fold: &Fold, weights: &[f64], rng: &mut SplitMix) {
        let k = self.classes;
        let members: Vec<Vec<usize>> = (0..k)
            .map(|c| (0..fold.labels.len()).filter(|&i| fold.labels[i] == c).collect())
            .collect();
        let total: f64 = (0..k).filter(|&c| !members[c].is_empty()).map(|c| weights[c]).sum();
        let (mut truth, mut devices, mut counted) = (vec![0f64; k], vec![0f64; k], vec![0f64; k]);
        let share = 1.0 / DRAWS as f64;
        for _ in 0..DRAWS {
            let mut u = rng.unit() * total;
            let c = (0..k)
                .filter(|&c| !members[c].is_empty())
                .find(|&c| {
                    u -= weights[c];
                    u < 0.0
                })
                .unwrap_or_else(|| (0..k).rev().find(|&c| !members[c].is_empty()).expect("a label"));
            let item = members[c][rng.below(members[c].len())];
            truth[c] += share;
            let p = &fold.probabilities[item];
            devices.iter_mut().zip(p).for_each(|(d, x)| *d += *x as f64 * share);
            counted[argmax(p)] += share;
        }
        let debiased = debias(&devices, &fold.confusion, ITERATIONS);
        self.tvd[0].push(tvd(&devices, &truth));
        self.tvd[1].push(tvd(&debiased, &truth));
        self.tvd[2].push(tvd(&counted, &truth));
        self.devices
            .push((0..k).map(|c| (devices[c] - truth[c]).abs()).collect());
        self.debiased
            .push((0..k).map(|c| (debiased[c] - truth[c]).abs()).collect());
        if let Some(oracle) = self.oracle {
            self.add_noisy(&oracle, fold, &devices, &truth, rng);
        }
    }

    /// Through the channel: its unbiased estimate is normal around the devices' mix, with the
    /// oracle's variance for each share at n reports; the devices' estimate is then projected
    /// onto the simplex, the debiased one corrected from it.
    fn add_noisy(&mut self, oracle: &Oracle, fold: &Fold, devices: &[f64], truth: &[f64], rng: &mut SplitMix) {
        let (p, q) = oracle.support_probabilities();
        for (level, &n) in REPORTS.iter().enumerate() {
            for _ in 0..NOISE_DRAWS {
                let noisy: Vec<f64> = devices
                    .iter()
                    .map(|&s| {
                        let variance = (s * p * (1.0 - p) + (1.0 - s) * q * (1.0 - q)) / ((p - q).powi(2) * n as f64);
                        s + variance.sqrt() * gaussian(rng)
                    })
                    .collect();
                let corrected = debias(&noisy, &fold.confusion, ITERATIONS);
                self.noisy[level].0 += tvd(&project_to_simplex(&noisy), truth);
                self.noisy[level].1 += tvd(&corrected, truth);
            }
        }
    }

    fn finish(self) -> Option<DebiasValidation> {
        let n = self.tvd[0].len();
        if n == 0 {
            return None;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let draws = (n * NOISE_DRAWS) as f64;
        let noisy = match self.oracle {
            None => Vec::new(),
            Some(_) => REPORTS
                .iter()
                .zip(&self.noisy)
                .map(|(&reports, &(devices, debiased))| AtReports {
                    reports,
                    tvd_devices: devices / draws,
                    tvd_debiased: debiased / draws,
                })
                .collect(),
        };
        let band = |errors: &[Vec<f64>]| -> Vec<f64> {
            (0..self.classes)
                .map(|c| {
                    let mut column: Vec<f64> = errors.iter().map(|e| e[c]).collect();
                    column.sort_by(f64::total_cmp);
                    column[((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1]
                })
                .collect()
        };
        Some(DebiasValidation {
            mixes: n,
            tvd_devices: mean(&self.tvd[0]),
            tvd_debiased: mean(&self.tvd[1]),
            tvd_counted: mean(&self.tvd[2]),
            noisy,
            band: band(&self.devices),
            debiased_rms_error: (0..self.classes)
                .map(|c| (self.debiased.iter().map(|e| e[c] * e[c]).sum::<f64>() / n as f64).sqrt())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::classifier::TrainOptions;
    use super::super::regressions::Regressions;
    use super::super::training::{cross_validate_vectors, train_category_model, Labelled};
    use super::validate_debiasing;

    /// Three noisy classes in two dimensions, five folds of 24 sampled items each.
    fn items() -> (Vec<Vec<f32>>, Vec<usize>, Vec<Option<usize>>) {
        let xs: Vec<Vec<f32>> = (0..120)
            .map(|i| {
                let c = (i % 3) as f32;
                vec![c + ((i * 37) % 11) as f32 / 8.0, c * 0.5 - ((i * 17) % 7) as f32 / 6.0]
            })
            .collect();
        let ys = (0..120).map(|i| i % 3).collect();
        let folds = (0..120).map(|i| Some((i / 3) % 5)).collect();
        (xs, ys, folds)
    }

    /// Compiling trains each distinct regression once: everything, each fold left out (the
    /// confusion's and the nested validation's outer models), each pair of folds left out (the
    /// nested validation's inner models, (a, b) as (b, a)). The memo gives what training again
    /// gives (`regressions::tests`), so the results are those of training every time.
    #[test]
    fn compiling_trains_each_distinct_regression_once() {
        let (xs, ys, fold_of) = items();
        let options = TrainOptions {
            iterations: 50,
            ..TrainOptions::default()
        };
        let regressions = Regressions::default();
        let set = Labelled {
            vectors: &xs,
            labels: &ys,
            fold_of: &fold_of,
            classes: 3,
            folds: 5,
            by_fold: None,
            regressions: &regressions,
        };
        let validated = cross_validate_vectors(&set, options, None);
        assert_eq!(regressions.len(), 5);
        train_category_model(&set, options, None, &validated);
        let validation = validate_debiasing(&set, options, None, None);
        assert!(validation.is_some());
        assert_eq!(regressions.len(), 1 + 5 + 10, "instead of 1 + 5 + 5 × (1 + 4)");
    }
}
