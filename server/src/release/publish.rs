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

/// The z with P(Z ≥ z) = p (by bisection; p in (0, 1)).
pub fn normal_upper_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if normal_upper_tail(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Holm's step-down procedure: for each of these p-values, the level it was rejected at, with
/// the family-wise error held at `alpha` over the hypotheses tested (those with p < 1); none
/// for the hypotheses kept.
pub fn holm(p_values: &[f64], alpha: f64) -> Vec<Option<f64>> {
    let tested = p_values.iter().filter(|&&p| p < 1.0).count();
    let mut order: Vec<usize> = (0..p_values.len()).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut rejected = vec![None; p_values.len()];
    for (rank, &i) in order.iter().enumerate().take(tested) {
        let level = alpha / (tested - rank) as f64;
        if p_values[i] > level {
            break;
        }
        rejected[i] = Some(level);
    }
    rejected
}

/// Takes out of the test every cell whose estimate would have to exceed a share of 1 to clear its
/// bar at the strictest level of the release (k over the total, plus the critical value of
/// [`FAMILY_ERROR`] over every cell tested, in standard errors): only noise that carries its
/// estimate past anything a share can be could publish such a cell, so publishing it would say
/// nothing about its count. Its channel holds too few reports for its noise (the pooled facets
/// of a young study, at ε = 0.35 on a quarter of the reports: a standard error of 0.3 at 1,200).
pub fn leave_out_the_unreachable(candidates: &mut [Candidate], k: f64, total: f64) {
    let tested = candidates.iter().filter(|c| c.tested).count();
    if tested == 0 {
        return;
    }
    let z = normal_upper_quantile(FAMILY_ERROR / tested as f64);
    for c in candidates.iter_mut().filter(|c| c.tested) {
        if k / total + z * c.se > 1.0 {
            c.tested = false;
        }
    }
}

/// Which candidates are published: Holm over all of them at [`FAMILY_ERROR`]. For each published
/// cell, the share its estimate had to reach (k over the total, plus its critical value in
/// standard errors): the truncation point of its selective interval.
pub fn publish(candidates: &[Candidate], k: f64, total: f64) -> Vec<Option<f64>> {
    let p: Vec<f64> = candidates.iter().map(|c| p_value(c, k, total)).collect();
    holm(&p, FAMILY_ERROR)
        .into_iter()
        .zip(candidates)
        .map(|(level, c)| level.map(|level| k / total + normal_upper_quantile(level) * c.se))
        .collect()
}

/// The 95% interval and median of a normal estimate `x` (standard error `se`) that is reported
/// only because it cleared `threshold`: the values μ for which x sits between the 2.5% and
/// 97.5% points of N(μ, se²) truncated below at the threshold (Lee et al. 2016). Far above the
/// threshold this is x ± 1.96 se; just above it, the interval reaches down to where an estimate
/// this high is the rule rather than luck, so published cells do not lean towards overestimates.
pub fn selective_interval(x: f64, se: f64, threshold: f64) -> (f64, f64, f64) {
    // The probability, given that the estimate cleared the threshold, of an estimate below x.
    let below = |mu: f64| {
        let (t, z) = ((threshold - mu) / se, (x - mu) / se);
        let tail = normal_upper_tail(t);
        if tail <= 0.0 {
            return 0.0;
        }
        1.0 - normal_upper_tail(z) / tail
    };
    // `below` falls as μ grows: bisect for each level.
    let solve = |level: f64| {
        let (mut lo, mut hi) = (x - 40.0 * se, x + 10.0 * se);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if below(mid) > level {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    (solve(0.975), solve(0.5), solve(0.025))
}

/// The rule in words, for the release itself.
pub fn rule(k: u32, min_reports: u32) -> String {
    format!(
        "A cell is published only when its count is reliably at least k = {k}: each cell is tested \
         one-sided against 'the true count is below {k}' (normal approximation of its unbiased \
         estimate), and Holm's step-down procedure over every cell tested in this release keeps \
         the chance of publishing any cell whose true count is below {k} under {:.0}%. A cross-tab \
         tests a row or column only when it is expected to hold at least {min_reports} of the \
         reports that carry both of its channels, and a cell is not tested when its estimate would \
         have to exceed a share of 1 to clear its bar (its channel holds too few reports for its \
         noise). This threshold is about reliability, not privacy: privacy comes from the noise \
         each device adds and from the central mechanism on the counts the server sees.",
        FAMILY_ERROR * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_steps_down() {
        // Four tests at α = 0.05: thresholds 0.0125, 0.0167, 0.025, 0.05.
        let rejected: Vec<bool> = holm(&[0.01, 0.04, 0.012, 0.03, 1.0], 0.05)
            .iter()
            .map(Option::is_some)
            .collect();
        assert_eq!(rejected, [true, false, true, false, false]);
        let all = holm(&[0.001, 0.002, 0.02, 0.04], 0.05);
        assert_eq!(all, [Some(0.0125), Some(0.05 / 3.0), Some(0.025), Some(0.05)]);
        assert!((normal_upper_tail(1.959964) - 0.025).abs() < 1e-6);
        assert!((normal_upper_tail(3.719016) - 1e-4).abs() < 1e-8);
        assert!((normal_upper_quantile(1e-4) - 3.719016).abs() < 1e-5);
    }

    #[test]
    fn selective_intervals_widen_only_near_the_threshold() {
        let (lo, mid, hi) = selective_interval(10.0, 1.0, 0.0);
        assert!((lo - 8.04).abs() < 0.01 && (mid - 10.0).abs() < 0.01 && (hi - 11.96).abs() < 0.01);
        let (lo, mid, hi) = selective_interval(3.2, 1.0, 3.0);
        assert!(lo < 0.0 && mid < 3.2 && hi < 3.2 + 1.96, "{lo} {mid} {hi}");
    }
}
