//! The true category mix, corrected for the classifier's errors, with intervals that carry every
//! source of error the estimate has: the devices' local noise and the sampling of reports
//! (through the estimate's full covariance, or the multinomial of k-RR report counts), and the
//! uncertainty of the confusion matrix, which was measured on a few dozen labelled examples per
//! category (each row redrawn from a Dirichlet distribution with its examples as counts). A
//! parametric bootstrap redraws both and recomputes the correction; the interval is the middle
//! 95% of the replicates.

use chorus_shared::privacy::debias::{debias, debias_randomized_response, ITERATIONS, ROW_PSEUDO_COUNT};
use chorus_shared::privacy::oracle::{Oracle, Privatized};
use chorus_shared::privacy::ChannelPlan;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, Gamma, StandardNormal};

/// Bootstrap replicates behind a debiased interval.
pub const BOOTSTRAP: usize = 400;

#[derive(Debug, Clone)]
pub struct Debiased {
    pub shares: Vec<f64>,
    pub ci95: Vec<(f64, f64)>,
    /// The standard deviation of each share over the replicates.
    pub se: Vec<f64>,
}

/// The true category mix behind the category channel's `values`, through the noise and the
/// classifier's `confusion` (soft cross-validation sums, `[true][reported]`).
pub fn debias_category(plan: &ChannelPlan, values: &[&Privatized], confusion: &[Vec<f64>], seed: u64) -> Debiased {
    let k = plan.labels.len();
    let krr = matches!(plan.oracle, Oracle::Krr { .. });
    let point = |observed: &[f64], confusion: &[Vec<f64>]| -> Vec<f64> {
        if krr {
            let (keep, lie) = plan.oracle.support_probabilities();
            debias_randomized_response(observed, keep, lie, confusion, ITERATIONS)
        } else {
            debias(observed, confusion, ITERATIONS)
        }
    };
    let n = values.len() as f64;
    // What is observed: k-RR's report shares, else the unbiased estimate with its covariance.
    let indicators: Vec<Vec<f64>> = values
        .iter()
        .map(|v| {
            (0..k)
                .map(|c| match (krr, v) {
                    (true, Privatized::Value(x)) => f64::from(u8::from(*x as usize == c)),
                    _ => plan.oracle.support_indicator(v, c),
                })
                .collect()
        })
        .collect();
    let mean: Vec<f64> = (0..k)
        .map(|c| indicators.iter().map(|x| x[c]).sum::<f64>() / n)
        .collect();
    let covariance: Vec<Vec<f64>> = (0..k)
        .map(|a| {
            (0..k)
                .map(|b| {
                    let s: f64 = indicators.iter().map(|x| (x[a] - mean[a]) * (x[b] - mean[b])).sum();
                    s / (n - 1.0).max(1.0) / n
                })
                .collect()
        })
        .collect();
    let root = cholesky(&covariance);
    let shares = point(&mean, confusion);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let replicates: Vec<Vec<f64>> = (0..BOOTSTRAP)
        .map(|_| {
            let observed = if krr {
                multinomial(&mut rng, values.len() as u64, &mean)
            } else {
                let z: Vec<f64> = (0..k).map(|_| rng.sample(StandardNormal)).collect();
                (0..k)
                    .map(|a| mean[a] + (0..=a).map(|b| root[a][b] * z[b]).sum::<f64>())
                    .collect()
            };
            point(&observed, &redraw_confusion(&mut rng, confusion))
        })
        .collect();
    let mut ci95 = Vec::with_capacity(k);
    let mut se = Vec::with_capacity(k);
    for c in 0..k {
        let mut column: Vec<f64> = replicates.iter().map(|r| r[c]).collect();
        let m = column.iter().sum::<f64>() / BOOTSTRAP as f64;
        se.push((column.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (BOOTSTRAP - 1) as f64).sqrt());
        column.sort_by(f64::total_cmp);
        let at = |q: f64| column[((q * (BOOTSTRAP - 1) as f64).round() as usize).min(BOOTSTRAP - 1)];
        ci95.push((at(0.025), at(0.975)));
    }
    Debiased { shares, ci95, se }
}

/// Report shares of `n` reports drawn from `shares` (sequential binomials).
fn multinomial(rng: &mut impl Rng, n: u64, shares: &[f64]) -> Vec<f64> {
    let k = shares.len();
    let (mut left, mut mass) = (n, 1.0f64);
    let mut sample = vec![0f64; k];
    for (i, &p) in shares.iter().enumerate() {
        if left == 0 {
            break;
        }
        let draw = if i == k - 1 || mass <= 0.0 {
            left
        } else {
            Binomial::new(left, (p.max(0.0) / mass).clamp(0.0, 1.0)).map_or(0, |b| b.sample(rng))
        };
        sample[i] = draw as f64 / n as f64;
        left -= draw;
        mass -= p.max(0.0);
    }
    sample
}

/// Each row of the confusion sums redrawn from a Dirichlet distribution with those sums (plus
/// the smoothing pseudo-count) as its parameters, scaled back to the row's total: the
/// uncertainty of a row measured on that many examples.
fn redraw_confusion(rng: &mut impl Rng, confusion: &[Vec<f64>]) -> Vec<Vec<f64>> {
    confusion
        .iter()
        .map(|row| {
            let total: f64 = row.iter().sum();
            let alpha = ROW_PSEUDO_COUNT / row.len() as f64;
            let draws: Vec<f64> = row
                .iter()
                .map(|&s| Gamma::new(s + alpha, 1.0).map_or(0.0, |g| g.sample(rng)))
                .collect();
            let sum: f64 = draws.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            draws.iter().map(|d| d / sum * total).collect()
        })
        .collect()
}

/// The lower-triangular L with L·Lᵀ = `a` (a covariance matrix; a vanishing pivot gets a
/// vanishing column, so a rank-deficient covariance still yields a valid draw).
fn cholesky(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let k = a.len();
    let mut l = vec![vec![0f64; k]; k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = (0..j).map(|m| l[i][m] * l[j][m]).sum();
            if i == j {
                l[i][j] = (a[i][i] - s).max(0.0).sqrt();
            } else if l[j][j] > 1e-15 {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_recovers_the_matrix() {
        let a = vec![vec![4.0, 2.0, 0.4], vec![2.0, 3.0, 0.5], vec![0.4, 0.5, 1.0]];
        let l = cholesky(&a);
        for i in 0..3 {
            for j in 0..3 {
                let back: f64 = (0..3).map(|m| l[i][m] * l[j][m]).sum();
                assert!((back - a[i][j]).abs() < 1e-12, "{i},{j}: {back}");
            }
        }
    }
}
