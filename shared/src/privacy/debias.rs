//! Debiasing for the classifier's errors: from the estimated distribution of *reported*
//! categories back to the distribution of *true* categories.
//!
//! The device reports a category drawn from the classifier's predicted probabilities (not the
//! most probable one), so the server sees probabilistic classify-and-count; M[i][j] is the mean
//! probability the classifier gives category j to an example of true category i, measured by
//! cross-validation. With π the true mix, the reported mix is q = Mᵀπ (probabilistic adjusted
//! classify-and-count). On the default study's held-out examples this "soft" M corrects shifted
//! mixes far better than the counts of hard predictions, which are too few per class to invert.
//! Inverting M directly is unstable when M is estimated from a few dozen examples per class,
//! so π is estimated by expectation–maximisation (Richardson–Lucy / iterative Bayesian
//! unfolding): π ← π ⊙ M (q ⊘ Mᵀπ), which stays on the simplex, starting from the prediction
//! mix itself and stopping early (a regularised inversion). M's rows are smoothed towards
//! uniform with a pseudo-count, so that a class with few examples does not claim certainty.
//!
//! M comes from cross-validating the classifier on the study's public labelled examples.

/// Pseudo-count spread over each row of the confusion matrix.
pub const ROW_PSEUDO_COUNT: f64 = 1.0;
/// EM steps: enough to undo most of the confusion, few enough not to amplify noise.
pub const ITERATIONS: usize = 20;

/// The row-normalised, smoothed confusion matrix from cross-validation sums.
pub fn confusion_probabilities(sums: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let k = sums.len() as f64;
    sums.iter()
        .map(|row| {
            let total: f64 = row.iter().sum::<f64>() + ROW_PSEUDO_COUNT;
            row.iter().map(|&c| (c + ROW_PSEUDO_COUNT / k) / total).collect()
        })
        .collect()
}

/// The true-category mix behind `predicted` (a distribution over reported categories).
pub fn debias(predicted: &[f64], confusion_counts: &[Vec<f64>], iterations: usize) -> Vec<f64> {
    debias_observed(predicted, &confusion_probabilities(confusion_counts), iterations)
}

/// The true-category mix behind privatized reports of the predicted category made with k-ary
/// randomized response (keep probability `keep`, any other value `lie`): EM on the likelihood
/// of what was actually observed, through both the classifier's confusion and the noise. This
/// uses the report counts themselves rather than a noisy unbiased estimate, so the noise is
/// modelled instead of amplified.
pub fn debias_randomized_response(
    report_shares: &[f64],
    keep: f64,
    lie: f64,
    confusion_counts: &[Vec<f64>],
    iterations: usize,
) -> Vec<f64> {
    let m = confusion_probabilities(confusion_counts);
    let k = report_shares.len();
    // P(report y | true i) = Σ_j P(predicted j | true i) · P(report y | predicted j)
    let likelihood: Vec<Vec<f64>> = m
        .iter()
        .map(|row| {
            (0..k)
                .map(|y| (0..k).map(|j| row[j] * if j == y { keep } else { lie }).sum())
                .collect()
        })
        .collect();
    debias_observed(report_shares, &likelihood, iterations)
}

/// EM for a mixture with known components: the distribution π over sources such that
/// Σᵢ πᵢ·likelihood[i] best explains the `observed` distribution (maximum likelihood, stopped
/// after `iterations` steps from the observed distribution itself).
pub fn debias_observed(observed: &[f64], likelihood: &[Vec<f64>], iterations: usize) -> Vec<f64> {
    let k = observed.len();
    let total: f64 = observed.iter().map(|p| p.max(0.0)).sum();
    let q: Vec<f64> = observed
        .iter()
        .map(|p| p.max(0.0) / total.max(f64::MIN_POSITIVE))
        .collect();
    // Start from the observed mix, kept away from zero so that every source can grow back.
    let mut pi: Vec<f64> = q.iter().map(|x| (x + 1e-3) / (1.0 + 1e-3 * k as f64)).collect();
    for _ in 0..iterations {
        let implied: Vec<f64> = (0..k).map(|y| (0..k).map(|i| pi[i] * likelihood[i][y]).sum()).collect();
        let next: Vec<f64> = (0..k)
            .map(|i| {
                pi[i]
                    * (0..k)
                        .map(|y| {
                            if implied[y] > 0.0 {
                                likelihood[i][y] * q[y] / implied[y]
                            } else {
                                0.0
                            }
                        })
                        .sum::<f64>()
            })
            .collect();
        let norm: f64 = next.iter().sum();
        pi = next.iter().map(|x| x / norm.max(f64::MIN_POSITIVE)).collect();
    }
    pi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_mix_through_a_known_confusion() {
        // A classifier that confuses class 0 with 1 a quarter of the time, 2 is perfect.
        let counts = vec![vec![750.0, 250.0, 0.0], vec![100.0, 900.0, 0.0], vec![0.0, 0.0, 1000.0]];
        let m = confusion_probabilities(&counts);
        let truth = [0.6, 0.1, 0.3];
        let predicted: Vec<f64> = (0..3).map(|j| (0..3).map(|i| truth[i] * m[i][j]).sum()).collect();
        let naive_error: f64 = predicted.iter().zip(&truth).map(|(a, b)| (a - b).abs()).sum();
        let pi = debias(&predicted, &counts, 500);
        let error: f64 = pi.iter().zip(&truth).map(|(a, b)| (a - b).abs()).sum();
        assert!(error < 0.01 && error < naive_error / 10.0, "{pi:?} from {predicted:?}");
        assert!((pi.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
