//! How far a classifier's stated confidence is from how often it is right: the expected
//! calibration error over held-out predictions. The category channel and the correction of the
//! category mix both read the classifier's probabilities, so an over- or under-confident
//! classifier shows here before it shows in a release.

use serde::Serialize;

/// Equal-width bins of the top probability.
const BINS: usize = 10;

/// Held-out predictions gathered for calibration: per bin of the most probable category's
/// probability, the sum of that probability, how many were right, and how many there were.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    bins: [(f64, u32, u32); BINS],
}

/// What `chorus study evaluate` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CalibrationSummary {
    /// Expected calibration error: Σ over bins of (bin's share of predictions) × |accuracy −
    /// mean confidence| (10 equal-width bins of the top probability).
    pub expected_calibration_error: f64,
    /// Mean top probability and the accuracy it should match.
    pub mean_confidence: f64,
    pub accuracy: f64,
}

impl Calibration {
    /// One held-out prediction: the probability given to the predicted category, and whether
    /// that category was the true one.
    pub fn add(&mut self, confidence: f64, correct: bool) {
        let bin = ((confidence * BINS as f64) as usize).min(BINS - 1);
        let (sum, right, n) = &mut self.bins[bin];
        *sum += confidence;
        *right += u32::from(correct);
        *n += 1;
    }

    pub fn summary(&self) -> CalibrationSummary {
        let total: u32 = self.bins.iter().map(|b| b.2).sum();
        if total == 0 {
            return CalibrationSummary {
                expected_calibration_error: 0.0,
                mean_confidence: 0.0,
                accuracy: 0.0,
            };
        }
        let total = f64::from(total);
        let error = self
            .bins
            .iter()
            .filter(|b| b.2 > 0)
            .map(|&(sum, right, n)| {
                (f64::from(n) / total) * (f64::from(right) / f64::from(n) - sum / f64::from(n)).abs()
            })
            .sum();
        CalibrationSummary {
            expected_calibration_error: error,
            mean_confidence: self.bins.iter().map(|b| b.0).sum::<f64>() / total,
            accuracy: f64::from(self.bins.iter().map(|b| b.1).sum::<u32>()) / total,
        }
    }
}

/// The temperature T that makes `softmax(scores / T)` fit held-out labels best (least mean
/// negative log-likelihood), searched between 1/20 and 20. The likelihood is concave in 1/T, so
/// a golden-section search over 1/T finds its one maximum.
pub fn fit_temperature(scores: &[Vec<f64>], labels: &[usize]) -> f64 {
    let loss = |inverse: f64| -> f64 {
        scores
            .iter()
            .zip(labels)
            .map(|(s, &y)| {
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let log_total = s.iter().map(|v| ((v - max) * inverse).exp()).sum::<f64>().ln();
                log_total - (s[y] - max) * inverse
            })
            .sum()
    };
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (1.0 / 20.0, 20.0);
    for _ in 0..80 {
        let a = hi - ratio * (hi - lo);
        let b = lo + ratio * (hi - lo);
        if loss(a) <= loss(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    2.0 / (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::{fit_temperature, Calibration};

    #[test]
    fn the_fitted_temperature_undoes_a_known_sharpening() {
        // Labels drawn from softmax(s) exactly (each score vector repeated in proportion to its
        // probabilities), then shown to the fit as 3·s: the best temperature is 3.
        let (mut scores, mut labels) = (Vec::new(), Vec::new());
        for base in [[0.0, 1.0, 2.0], [1.5, 0.0, 0.2], [0.3, 0.3, -1.0]] {
            let total: f64 = base.iter().map(|v: &f64| v.exp()).sum();
            for (y, v) in base.iter().enumerate() {
                for _ in 0..(1000.0 * v.exp() / total).round() as usize {
                    scores.push(base.iter().map(|v| 3.0 * v).collect());
                    labels.push(y);
                }
            }
        }
        let t = fit_temperature(&scores, &labels);
        assert!((t - 3.0).abs() < 0.02, "{t}");
    }

    #[test]
    fn a_calibrated_classifier_scores_zero_and_an_overconfident_one_its_gap() {
        let mut calibrated = Calibration::default();
        // At 0.75 confidence, right three times in four; at 0.35, right seven times in twenty.
        for i in 0..400 {
            calibrated.add(0.75, i % 4 != 0);
        }
        for i in 0..200 {
            calibrated.add(0.35, i % 20 < 7);
        }
        assert!(calibrated.summary().expected_calibration_error < 1e-12);
        let mut overconfident = Calibration::default();
        for i in 0..100 {
            overconfident.add(0.95, i % 2 == 0);
        }
        let summary = overconfident.summary();
        assert!((summary.expected_calibration_error - 0.45).abs() < 1e-12, "{summary:?}");
        assert!((summary.mean_confidence - 0.95).abs() < 1e-12);
        assert!((summary.accuracy - 0.5).abs() < 1e-12);
        assert_eq!(Calibration::default().summary().expected_calibration_error, 0.0);
    }
}
