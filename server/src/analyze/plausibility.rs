//! Plausibility checks: do the stored reports look as honest devices make them? Local noise
//! hides each contributor's data, and it hides a liar's too: a fabricated report moves an
//! estimate 1/(p−q) times as far as an honest one. These tests look only at what the noise
//! fixes whatever the data, so they never test a contributor's data:
//!
//! - **pools**: each report carries one channel of a sampled pool, drawn uniformly: the counts
//!   per channel follow a multinomial with equal shares (a χ² test).
//! - **OLH buckets**: an honest OLH report's bucket is uniform over the buckets whatever its
//!   value (the seed is random, so the hash of the value is) — a χ² test; and an honest report
//!   supports its value with probability p and each other value with probability 1/g, so a
//!   report supports p + (d−1)/g values on average, with variance p(1−p) + (d−1)(1/g)(1−1/g): a
//!   one-sided z-test of the total catches reports whose seed was chosen to support several
//!   targets at once (Cao, Jia and Gong 2021).
//! - **embedding norms**: ‖y‖²/σ² of a noised embedding y = x + e is a noncentral χ² with d
//!   degrees of freedom and noncentrality ‖x‖²/σ² ≤ clip²/σ²: its mean lies in [d, d + clip²/σ²]
//!   and its variance is at most 2d + 4·clip²/σ²; a two-sided z-test of the sum (a few hundred
//!   vectors at the validation's norm bound, or vectors without noise, are flagged).
//!
//! Every check runs at the same level, the release's false-alarm rate divided by the number of
//! checks (Bonferroni): a release of honest reports flags any check with probability below
//! [`FALSE_ALARM_RATE`]. A check needs at least five expected reports in each of its cells (or
//! 30 reports for a z-test); below that it is not run. What a check cannot see: fabricated
//! reports that follow the honest noise exactly and only claim other values; only restricting
//! who may contribute stops those.

use super::tally::Tally;
use chorus_shared::privacy::oracle::Oracle;
use chorus_shared::release::document::{Check, Plausibility};
use chorus_shared::study::CompiledStudy;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// The chance that a release of honest reports flags any check.
pub const FALSE_ALARM_RATE: f64 = 0.001;

/// A test before the release's level is applied.
struct Test {
    name: String,
    what: String,
    statistic: f64,
    p_value: f64,
}

/// Every check the study's reports allow, each flagged at the release's level.
pub fn plausibility(study: &CompiledStudy, tally: &Tally) -> Plausibility {
    let mut tests = pool_tests(study, tally);
    tests.extend(olh_tests(tally));
    tests.extend(norm_test(study, tally));
    let level = FALSE_ALARM_RATE / tests.len().max(1) as f64;
    let checks: Vec<Check> = tests
        .into_iter()
        .map(|t| Check {
            flagged: t.p_value < level,
            name: t.name,
            what: t.what,
            statistic: round4(t.statistic),
            p_value: t.p_value.clamp(0.0, 1.0),
        })
        .collect();
    Plausibility {
        method: format!(
            "each check tests what the devices' noise fixes whatever the data (the sampled pools' uniform choice, OLH buckets and supports, the embeddings' noise), at level {FALSE_ALARM_RATE}/{} each (Bonferroni): a release of honest reports flags any check with probability below {FALSE_ALARM_RATE}; a flag means reports that honest devices are very unlikely to have made. Fabricated reports that imitate the noise exactly are not caught by any check",
            checks.len().max(1)
        ),
        false_alarm_rate: FALSE_ALARM_RATE,
        flagged: checks.iter().any(|c| c.flagged),
        checks,
    }
}

/// Each sampled pool: are its channels carried equally often?
fn pool_tests(study: &CompiledStudy, tally: &Tally) -> Vec<Test> {
    study
        .privacy
        .pools()
        .iter()
        .filter_map(|(name, pool)| {
            let counts: Vec<f64> = pool
                .iter()
                .map(|plan| {
                    tally
                        .channels
                        .iter()
                        .find(|c| c.plan.channel == plan.channel)
                        .map_or(0.0, |c| c.n as f64)
                })
                .collect();
            let (statistic, p_value) = chi_square_uniform(&counts)?;
            Some(Test {
                name: format!("pool {name}"),
                what: format!("each report carries one channel of the pool `{name}`, drawn uniformly"),
                statistic,
                p_value,
            })
        })
        .collect()
}

/// Each OLH channel: uniform buckets, and as many supported values as honest seeds give.
fn olh_tests(tally: &Tally) -> Vec<Test> {
    let mut tests = Vec::new();
    for c in &tally.channels {
        let Oracle::Olh { domain, buckets, .. } = c.plan.oracle else {
            continue;
        };
        let name = c.plan.channel.name();
        if let Some((statistic, p_value)) = chi_square_uniform(&c.buckets) {
            tests.push(Test {
                name: format!("buckets {name}"),
                what: format!("an honest `{name}` report's bucket is uniform over the {buckets} buckets"),
                statistic,
                p_value,
            });
        }
        if c.n >= 30 {
            let (p, g, d, n) = (
                c.plan.oracle.support_probabilities().0,
                buckets as f64,
                domain as f64,
                c.n as f64,
            );
            let mean = p + (d - 1.0) / g;
            let variance = p * (1.0 - p) + (d - 1.0) / g * (1.0 - 1.0 / g);
            let z = (c.supported_values - n * mean) / (n * variance).sqrt();
            tests.push(Test {
                name: format!("supports {name}"),
                what: format!(
                    "an honest `{name}` report supports {mean:.2} of the {domain} values on average; the statistic is the z-score of the total (one-sided: chosen seeds support more)"
                ),
                statistic: z,
                p_value: normal_sf(z),
            });
        }
    }
    tests
}

/// The noised embeddings' squared norms against the noise's noncentral χ².
fn norm_test(study: &CompiledStudy, tally: &Tally) -> Option<Test> {
    let e = study.privacy.embedding.as_ref()?;
    let sums = &tally.norms;
    if sums.n < 30 {
        return None;
    }
    let (d, n) = (e.dimensions() as f64, sums.n as f64);
    let lambda = (e.clip / e.sigma).powi(2);
    let high = (sums.sum - n * (d + lambda)) / (n * (2.0 * d + 4.0 * lambda)).sqrt();
    let low = (n * d - sums.sum) / (n * 2.0 * d).sqrt();
    Some(Test {
        name: "embedding norms".into(),
        what: format!(
            "‖y‖²/σ² of an honest embedding averages between {d} and {:.4}; the statistic is the mean over the reports (two-sided)",
            d + lambda
        ),
        statistic: sums.sum / n,
        p_value: (2.0 * normal_sf(high.max(low))).min(1.0),
    })
}

/// Pearson's χ² against equal shares, with its p-value; none when a cell expects fewer than
/// five reports (the χ² approximation needs more).
fn chi_square_uniform(counts: &[f64]) -> Option<(f64, f64)> {
    let total: f64 = counts.iter().sum();
    let expected = total / counts.len() as f64;
    if counts.len() < 2 || expected < 5.0 {
        return None;
    }
    let statistic: f64 = counts.iter().map(|o| (o - expected).powi(2) / expected).sum();
    let chi = ChiSquared::new((counts.len() - 1) as f64).ok()?;
    Some((statistic, chi.sf(statistic)))
}

fn normal_sf(z: f64) -> f64 {
    Normal::new(0.0, 1.0).map_or(f64::NAN, |n| n.sf(z))
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}
