//! Frequency oracles: local differential privacy for one categorical value, and the server's
//! unbiased estimate of the distribution of those values from many privatized reports.
//!
//! Each oracle is ε-differentially private for one report: for any two inputs `a`, `b` and any
//! output `y`, P[y | a] ≤ e^ε · P[y | b] (pure ε-LDP, "replace one value").
//!
//! - **k-RR** (k-ary randomized response): reports the true value with probability
//!   p = e^ε / (e^ε + k − 1), any other value with probability q = 1 / (e^ε + k − 1). p/q = e^ε.
//! - **OLH** (optimized local hashing, Wang et al. 2017): picks a public random hash seed, hashes
//!   the value into g = ⌈e^ε⌉ + 1 buckets, and applies k-RR on the g buckets. For fixed seed the
//!   output is k-RR over g buckets, so the ratio is at most e^ε. Better than k-RR for large domains.
//! - **OUE** (optimized unary encoding): one bit per value; the true value's bit is 1 with
//!   probability 1/2, every other bit is 1 with probability q = 1 / (e^ε + 1). Two inputs differ
//!   in two bits, and the ratio over both is (1/2)/q · (1 − q)/(1/2) = (1 − q)/q = e^ε.
//!
//! The estimator counts, for each value v, the reports that "support" v (k-RR: reported v; OLH:
//! the report's bucket is v's hash; OUE: v's bit is set). A report supports its true value with
//! probability p* and any other value with probability q*, so with S_v supports among n reports
//!     ĉ_v = (S_v − n q*) / (p* − q*)                                  (unbiased for n_v)
//!     Var ĉ_v = (n_v p*(1 − p*) + (n − n_v) q*(1 − q*)) / (p* − q*)²  (exact; n_v plugged in)

use super::noise::{Noise, NoiseError};
use chorus_messages::Privatized;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Oracle {
    Krr {
        domain: usize,
        epsilon: f64,
    },
    Olh {
        domain: usize,
        epsilon: f64,
        buckets: usize,
    },
    Oue {
        domain: usize,
        epsilon: f64,
    },
}

/// Which oracle a channel uses: `auto` picks the one with the smaller estimator variance for
/// the domain size (k-RR while k < 3e^ε + 2, else OLH, which has OUE's variance in fewer bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OracleChoice {
    #[default]
    Auto,
    Krr,
    Olh,
    Oue,
}

/// The server's estimate of a distribution over a channel's domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrequencyEstimate {
    /// Reports the estimate is made from.
    pub n: usize,
    /// Unbiased estimates of each value's share (may be negative or above 1).
    pub shares: Vec<f64>,
    /// Standard error of each share.
    pub standard_errors: Vec<f64>,
    /// The shares projected onto the probability simplex (non-negative, summing to 1).
    pub projected: Vec<f64>,
}

impl FrequencyEstimate {
    /// This estimate when each device drew the value it reported from its own probabilities
    /// (the category: [`super::PrivacyPlan::privatize_channel`]), and what is estimated is the
    /// mean of those probabilities. The draws add their own variance, Σᵢ πᵢ(1 − πᵢ) over the
    /// devices' probabilities πᵢ of a value, to what the oracle's noise gives; the server does
    /// not see the πᵢ, but that sum is at most n·f(1 − f) for the value's share f (x(1 − x) is
    /// concave), so each share's variance grows by f(1 − f)/n with f its estimate in [0, 1]:
    /// without it, the category's published intervals covered 0.932 of 1,164 in 300 simulated
    /// releases instead of 0.95.
    pub fn with_drawn_values(mut self) -> FrequencyEstimate {
        let n = self.n.max(1) as f64;
        for (se, &share) in self.standard_errors.iter_mut().zip(&self.shares) {
            let f = share.clamp(0.0, 1.0);
            *se = (*se * *se + f * (1.0 - f) / n).sqrt();
        }
        self
    }

    /// 95% confidence interval of each share (normal approximation), clipped to [0, 1].
    pub fn ci95(&self) -> Vec<(f64, f64)> {
        self.shares
            .iter()
            .zip(&self.standard_errors)
            .map(|(&s, &se)| share_ci95(s, se))
            .collect()
    }
}

/// The normal 95% interval of a share from its unbiased estimate and standard error, clipped
/// to [0, 1].
pub fn share_ci95(estimate: f64, se: f64) -> (f64, f64) {
    (
        (estimate - 1.96 * se).clamp(0.0, 1.0),
        (estimate + 1.96 * se).clamp(0.0, 1.0),
    )
}

impl Oracle {
    pub fn new(choice: OracleChoice, domain: usize, epsilon: f64) -> Oracle {
        assert!(domain >= 2, "a channel needs at least two values");
        let olh = Oracle::Olh {
            domain,
            epsilon,
            buckets: olh_buckets(epsilon),
        };
        match choice {
            OracleChoice::Krr => Oracle::Krr { domain, epsilon },
            OracleChoice::Oue if epsilon.is_finite() => Oracle::Oue { domain, epsilon },
            OracleChoice::Olh if epsilon.is_finite() => olh,
            OracleChoice::Auto if epsilon.is_finite() && domain as f64 >= 3.0 * epsilon.exp() + 2.0 => olh,
            // ε = ∞ (no noise, for simulations) is exact k-RR.
            _ => Oracle::Krr { domain, epsilon },
        }
    }

    pub fn domain(&self) -> usize {
        match *self {
            Oracle::Krr { domain, .. } | Oracle::Olh { domain, .. } | Oracle::Oue { domain, .. } => domain,
        }
    }

    pub fn epsilon(&self) -> f64 {
        match *self {
            Oracle::Krr { epsilon, .. } | Oracle::Olh { epsilon, .. } | Oracle::Oue { epsilon, .. } => epsilon,
        }
    }

    /// Probabilities (p*, q*) that a report supports its true value, and any other value.
    pub fn support_probabilities(&self) -> (f64, f64) {
        let e = self.epsilon().exp();
        match *self {
            // ε = ∞ (no noise, for simulations): the truth always, nothing else.
            Oracle::Krr { .. } if e.is_infinite() => (1.0, 0.0),
            Oracle::Krr { domain, .. } => (e / (e + domain as f64 - 1.0), 1.0 / (e + domain as f64 - 1.0)),
            Oracle::Olh { buckets, .. } => (e / (e + buckets as f64 - 1.0), 1.0 / buckets as f64),
            Oracle::Oue { .. } => (0.5, 1.0 / (e + 1.0)),
        }
    }

    /// Privatizes `value` (an index into the domain).
    pub fn privatize(&self, value: usize, noise: &mut Noise) -> Result<Privatized, NoiseError> {
        assert!(
            value < self.domain(),
            "value {value} outside a domain of {}",
            self.domain()
        );
        match *self {
            Oracle::Krr { domain, .. } => {
                let (keep, _) = self.support_probabilities();
                Ok(Privatized::Value(noise.randomized_response(value, domain, keep)? as u32))
            }
            Oracle::Olh { .. } => self.privatize_with_seed(value, noise.uniform_u64()?, noise),
            Oracle::Oue { domain, .. } => {
                let (p, q) = self.support_probabilities();
                let mut bits = Vec::new();
                for v in 0..domain {
                    if noise.bernoulli(if v == value { p } else { q })? {
                        bits.push(v as u32);
                    }
                }
                Ok(Privatized::Bits(bits))
            }
        }
    }

    /// An OLH report whose hash seed is given rather than drawn: a seed fixed before the device
    /// sees its data (derived from its contribution token), so that it cannot be chosen to
    /// support several values. The randomization of the bucket is the same as [`Oracle::privatize`].
    pub fn privatize_with_seed(&self, value: usize, seed: u64, noise: &mut Noise) -> Result<Privatized, NoiseError> {
        let Oracle::Olh { epsilon, buckets, .. } = *self else {
            return self.privatize(value, noise);
        };
        let inner = Oracle::Krr {
            domain: buckets,
            epsilon,
        };
        let (keep, _) = inner.support_probabilities();
        let bucket = noise.randomized_response(local_hash(seed, value, buckets), buckets, keep)?;
        Ok(Privatized::Hashed {
            seed,
            bucket: bucket as u32,
        })
    }

    /// Whether a report is well formed for this oracle (the server checks before storing).
    pub fn accepts(&self, report: &Privatized) -> bool {
        match (*self, report) {
            (Oracle::Krr { domain, .. }, Privatized::Value(v)) => (*v as usize) < domain,
            (Oracle::Olh { buckets, .. }, Privatized::Hashed { bucket, .. }) => (*bucket as usize) < buckets,
            (Oracle::Oue { domain, .. }, Privatized::Bits(bits)) => {
                bits.windows(2).all(|w| w[0] < w[1]) && bits.last().is_none_or(|&b| (b as usize) < domain)
            }
            _ => false,
        }
    }

    /// Does `report` support `value`?
    fn supports(&self, report: &Privatized, value: usize) -> bool {
        match (*self, report) {
            (Oracle::Krr { .. }, Privatized::Value(v)) => *v as usize == value,
            (Oracle::Olh { buckets, .. }, Privatized::Hashed { seed, bucket }) => {
                local_hash(*seed, value, buckets) == *bucket as usize
            }
            (Oracle::Oue { .. }, Privatized::Bits(bits)) => bits.binary_search(&(value as u32)).is_ok(),
            _ => false,
        }
    }

    /// One report's unbiased estimate of the indicator "the true value is `value`":
    /// (1[report supports value] − q*) / (p* − q*). Its mean over reports is the value's share;
    /// the product of two channels' indicators (independent noise) estimates a joint share.
    pub fn support_indicator(&self, report: &Privatized, value: usize) -> f64 {
        let (p, q) = self.support_probabilities();
        (f64::from(u8::from(self.supports(report, value))) - q) / (p - q)
    }

    /// Marks in `supported` (one flag per value of the domain) the values `report` supports.
    /// One pass per report for k-RR and OUE; OLH must hash every value.
    pub fn mark_supported(&self, report: &Privatized, supported: &mut [bool]) {
        match (*self, report) {
            (Oracle::Krr { .. }, Privatized::Value(v)) => {
                supported.fill(false);
                if let Some(s) = supported.get_mut(*v as usize) {
                    *s = true;
                }
            }
            (Oracle::Oue { .. }, Privatized::Bits(bits)) => {
                supported.fill(false);
                for &b in bits {
                    if let Some(s) = supported.get_mut(b as usize) {
                        *s = true;
                    }
                }
            }
            _ => {
                for (value, s) in supported.iter_mut().enumerate() {
                    *s = self.supports(report, value);
                }
            }
        }
    }

    /// Unbiased estimate of the distribution of the true values behind `reports`.
    pub fn estimate<'a>(&self, reports: impl IntoIterator<Item = &'a Privatized>) -> FrequencyEstimate {
        let (supports, n) = self.support_counts(reports);
        self.estimate_from_supports(&supports, n)
    }

    /// How many of `reports` support each value, and how many reports there are.
    pub fn support_counts<'a>(&self, reports: impl IntoIterator<Item = &'a Privatized>) -> (Vec<f64>, usize) {
        let mut supported = vec![false; self.domain()];
        let mut supports = vec![0f64; self.domain()];
        let mut n = 0usize;
        for report in reports {
            n += 1;
            self.mark_supported(report, &mut supported);
            for (s, &yes) in supports.iter_mut().zip(&supported) {
                *s += f64::from(u8::from(yes));
            }
        }
        (supports, n)
    }

    /// The estimate from `supports` (how many of `n` reports support each value): the same as
    /// [`Oracle::estimate`] over those reports, for running sums kept elsewhere.
    pub fn estimate_from_supports(&self, supports: &[f64], n: usize) -> FrequencyEstimate {
        let (p, q) = self.support_probabilities();
        let nf = n as f64;
        let counts: Vec<f64> = supports.iter().map(|s| (s - nf * q) / (p - q)).collect();
        let variances: Vec<f64> = counts
            .iter()
            .map(|&c| count_variance(c.clamp(0.0, nf), nf, p, q))
            .collect();
        let shares: Vec<f64> = counts.iter().map(|c| if n == 0 { 0.0 } else { c / nf }).collect();
        let standard_errors = variances
            .iter()
            .map(|v| if n == 0 { 0.0 } else { v.sqrt() / nf })
            .collect();
        let projected = project_to_simplex(&shares);
        FrequencyEstimate {
            n,
            shares,
            standard_errors,
            projected,
        }
    }

    /// Exact variance of the estimated count of a value held by `count` of `n` reports.
    pub fn count_variance(&self, count: f64, n: f64) -> f64 {
        let (p, q) = self.support_probabilities();
        count_variance(count, n, p, q)
    }
}

fn count_variance(count: f64, n: f64, p: f64, q: f64) -> f64 {
    (count * p * (1.0 - p) + (n - count) * q * (1.0 - q)) / (p - q).powi(2)
}

/// OLH's number of buckets, g = ⌈e^ε⌉ + 1 (the optimum e^ε + 1, rounded up).
fn olh_buckets(epsilon: f64) -> usize {
    (epsilon.exp().ceil() as usize + 1).max(2)
}

/// The public hash family of OLH: a 64-bit mix of seed and value, reduced to `buckets`.
pub fn local_hash(seed: u64, value: usize, buckets: usize) -> usize {
    let mut x = seed ^ (value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % buckets as u64) as usize
}

/// Euclidean projection onto the probability simplex (Duchi et al. 2008).
pub fn project_to_simplex(v: &[f64]) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut theta = 0.0;
    for (i, u) in sorted.iter().enumerate() {
        cumulative += u;
        let t = (cumulative - 1.0) / (i + 1) as f64;
        if u - t > 0.0 {
            theta = t;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}
