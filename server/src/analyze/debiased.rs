//! The true category mix, corrected for the classifier's errors, with intervals that carry both
//! sources of error the estimate has: the devices' local noise and the sampling of reports (a
//! parametric bootstrap through the estimate's full covariance, or the multinomial of k-RR report
//! counts, recomputing the correction each time: the middle 95% of the replicates), and the error
//! the correction itself leaves, which the study's validation measured on held-out labelled
//! conversations (its root mean square error, as a normal error of that size added to each side
//! in quadrature: two independent errors).

use chorus_messages::Privatized;
use chorus_shared::privacy::debias::{debias, debias_randomized_response, ITERATIONS};
use chorus_shared::privacy::oracle::Oracle;
use chorus_shared::privacy::ChannelPlan;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, StandardNormal};

/// Bootstrap replicates behind a debiased interval.
pub const BOOTSTRAP: usize = 400;

#[derive(Debug, Clone)]
pub struct Debiased {
    pub shares: Vec<f64>,
    pub ci95: Vec<(f64, f64)>,
    /// The standard error of each share: the replicates' spread and the correction's error, together.
    pub se: Vec<f64>,
}

/// The true category mix behind the category channel's `values`, through the noise and the
/// classifier's `confusion` (soft cross-validation sums, `[true][reported]`); `rms_error` is the
/// validation's root mean square error of the correction, per category (none: noise only).
pub fn debias_category(
    plan: &ChannelPlan,
    values: &[&Privatized],
    confusion: &[Vec<f64>],
    rms_error: Option<&[f64]>,
    seed: u64,
) -> Debiased {
    let mut moments = CategoryMoments::new(plan);
    let mut supported = vec![false; plan.labels.len()];
    for v in values {
        plan.oracle.mark_supported(v, &mut supported);
        moments.add(&supported);
    }
    moments.debias(confusion, rms_error, seed)
}

/// What the correction needs from the category reports, as running sums over them (one pass,
/// no per-report copies): k-RR's report shares, else the unbiased indicators, with their
/// second moments for the covariance of the mean.
#[derive(Debug, Clone)]
pub struct CategoryMoments {
    plan: ChannelPlan,
    krr: bool,
    n: u64,
    sum: Vec<f64>,
    /// The lower triangle of Σ xᵃxᵇ.
    products: Vec<Vec<f64>>,
    indicator: Vec<f64>,
}

impl CategoryMoments {
    pub fn new(plan: &ChannelPlan) -> CategoryMoments {
        let k = plan.labels.len();
        CategoryMoments {
            plan: plan.clone(),
            krr: matches!(plan.oracle, Oracle::Krr { .. }),
            n: 0,
            sum: vec![0f64; k],
            products: vec![vec![0f64; k]; k],
            indicator: vec![0f64; k],
        }
    }

    /// Adds one report, given as the categories it supports.
    pub fn add(&mut self, supported: &[bool]) {
        let (p, q) = self.plan.oracle.support_probabilities();
        for (x, &yes) in self.indicator.iter_mut().zip(supported) {
            let raw = f64::from(u8::from(yes));
            *x = if self.krr { raw } else { (raw - q) / (p - q) };
        }
        self.n += 1;
        let x = &self.indicator;
        for a in 0..x.len() {
            self.sum[a] += x[a];
            for b in 0..=a {
                self.products[a][b] += x[a] * x[b];
            }
        }
    }

    /// Reports added.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The corrected mix with its intervals (see [`debias_category`]).
    pub fn debias(&self, confusion: &[Vec<f64>], rms_error: Option<&[f64]>, seed: u64) -> Debiased {
        let (plan, krr, k) = (&self.plan, self.krr, self.sum.len());
        let point = |observed: &[f64]| -> Vec<f64> {
            if krr {
                let (keep, lie) = plan.oracle.support_probabilities();
                debias_randomized_response(observed, keep, lie, confusion, ITERATIONS)
            } else {
                debias(observed, confusion, ITERATIONS)
            }
        };
        let (mean, covariance) = self.mean_and_covariance();
        let root = cholesky(&covariance);
        let shares = point(&mean);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let replicates: Vec<Vec<f64>> = (0..BOOTSTRAP)
            .map(|_| {
                let observed = if krr {
                    multinomial(&mut rng, self.n, &mean)
                } else {
                    let z: Vec<f64> = (0..k).map(|_| rng.sample(StandardNormal)).collect();
                    (0..k)
                        .map(|a| mean[a] + (0..=a).map(|b| root[a][b] * z[b]).sum::<f64>())
                        .collect()
                };
                point(&observed)
            })
            .collect();
        let (ci95, se) = intervals(&shares, &replicates, rms_error);
        Debiased { shares, ci95, se }
    }

    /// What is observed (the mean) and the covariance of that mean:
    /// (Σxᵃxᵇ − n·x̄ᵃx̄ᵇ) / (n − 1) / n.
    fn mean_and_covariance(&self) -> (Vec<f64>, Vec<Vec<f64>>) {
        let (k, n) = (self.sum.len(), self.n as f64);
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let covariance = (0..k)
            .map(|a| {
                (0..k)
                    .map(|b| {
                        let s = self.products[a.max(b)][a.min(b)] - n * mean[a] * mean[b];
                        s / (n - 1.0).max(1.0) / n
                    })
                    .collect()
            })
            .collect();
        (mean, covariance)
    }
}

/// Each share's 95% interval (the replicates' percentiles around the point estimate, widened by
/// the correction's measured error) and standard error.
fn intervals(shares: &[f64], replicates: &[Vec<f64>], rms_error: Option<&[f64]>) -> (Vec<(f64, f64)>, Vec<f64>) {
    let mut ci95 = Vec::with_capacity(shares.len());
    let mut se = Vec::with_capacity(shares.len());
    for (c, &share) in shares.iter().enumerate() {
        let mut column: Vec<f64> = replicates.iter().map(|r| r[c]).collect();
        let m = column.iter().sum::<f64>() / BOOTSTRAP as f64;
        let spread = (column.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (BOOTSTRAP - 1) as f64).sqrt();
        column.sort_by(f64::total_cmp);
        let at = |q: f64| column[((q * (BOOTSTRAP - 1) as f64).round() as usize).min(BOOTSTRAP - 1)];
        let b = 1.96 * rms_error.map_or(0.0, |e| e[c]);
        let (below, above) = ((share - at(0.025)).max(0.0), (at(0.975) - share).max(0.0));
        ci95.push(((share - below.hypot(b)).max(0.0), (share + above.hypot(b)).min(1.0)));
        se.push(spread.hypot(b / 1.96));
    }
    (ci95, se)
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
