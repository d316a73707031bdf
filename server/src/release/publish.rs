//! Which cells a release publishes. A cell is published only when its count is reliably at
//! least `k`: each cell's estimate is tested one-sided against "the true count is below k", and
//! Holm's step-down procedure over every cell tested in the release holds the chance of
//! publishing even one cell whose true count is below k (a phantom) under [`FAMILY_ERROR`]. This
//! is about reliability, not privacy: privacy comes from the devices' local noise and the
//! central mechanism on the counts the server sees un-noised.
//!
//! A cross-tab tests a row or column only when it is expected to hold at least
//! `crosstab_min_reports` of the reports that carry both of its channels: with fewer, a cell's
//! estimate is an average of a handful of products of noisy indicators, whose distribution is
//! far from normal, and no cell of it could be published honestly.

/// The chance, per release, of publishing any cell whose true count is below `k`.
pub const FAMILY_ERROR: f64 = 0.05;

/// One cell's estimate, as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Unbiased estimate of the cell's share.
    pub unbiased: f64,
    pub se: f64,
    /// Whether the cell is tested at all (a cross-tab's row or column may hold too few reports).
    pub tested: bool,
    /// Its 95% interval when it is not the normal one around `unbiased` (a bootstrap's).
    pub interval: Option<(f64, f64)>,
}

/// P(Z ≥ z) for a standard normal Z.
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The one-sided p-value of "the cell's count is below k", with `total` the reports its share
/// is of (its count is share × total).
pub fn p_value(c: &Candidate, k: f64, total: f64) -> f64 {
    if !c.tested || c.se.is_nan() || c.se <= 0.0 || !c.unbiased.is_finite() {
        return 1.0;
    }
    normal_upper_tail((c.unbiased - k / total) / c.se)
}

/// Holm's step-down procedure: which of these p-values are rejected with the family-wise error
/// held at `alpha` (over the hypotheses tested, those with p < 1).
pub fn holm(p_values: &[f64], alpha: f64) -> Vec<bool> {
    let tested = p_values.iter().filter(|&&p| p < 1.0).count();
    let mut order: Vec<usize> = (0..p_values.len()).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut rejected = vec![false; p_values.len()];
    for (rank, &i) in order.iter().enumerate().take(tested) {
        if p_values[i] > alpha / (tested - rank) as f64 {
            break;
        }
        rejected[i] = true;
    }
    rejected
}

/// Which candidates are published: Holm over all of them at [`FAMILY_ERROR`].
pub fn publish(candidates: &[Candidate], k: f64, total: f64) -> Vec<bool> {
    let p: Vec<f64> = candidates.iter().map(|c| p_value(c, k, total)).collect();
    holm(&p, FAMILY_ERROR)
}

/// The rule in words, for the release itself.
pub fn rule(k: u32, min_reports: u32) -> String {
    format!(
        "A cell is published only when its count is reliably at least k = {k}: each cell is tested \
         one-sided against 'the true count is below {k}' (normal approximation of its unbiased \
         estimate), and Holm's step-down procedure over every cell tested in this release keeps \
         the chance of publishing any cell whose true count is below {k} under {:.0}%. A cross-tab \
         tests a row or column only when it is expected to hold at least {min_reports} of the \
         reports that carry both of its channels. This threshold is about reliability, not \
         privacy: privacy comes from the noise each device adds and from the central mechanism \
         on the counts the server sees.",
        FAMILY_ERROR * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_steps_down() {
        // Four tests at α = 0.05: thresholds 0.0125, 0.0167, 0.025, 0.05.
        let rejected = holm(&[0.01, 0.04, 0.012, 0.03, 1.0], 0.05);
        assert_eq!(rejected, [true, false, true, false, false]);
        assert_eq!(holm(&[0.001, 0.002, 0.02, 0.04], 0.05), [true, true, true, true]);
        assert!((normal_upper_tail(1.959964) - 0.025).abs() < 1e-6);
        assert!((normal_upper_tail(3.719016) - 1e-4).abs() < 1e-8);
    }
}
