//! The privacy accountant: what one report costs, and what a contributor who sends up to `m`
//! reports spends in all, as a contributor-level (ε, δ).
//!
//! A report carries pure-ε channels (the frequency oracles) and, optionally, a ρ-zCDP channel
//! (the Gaussian embedding). Two sound compositions are computed and the smaller ε is used:
//!
//! - **basic**: the pure parts add up (m·Σε), and the Gaussian part, m·ρ-zCDP, is converted to
//!   (ε_G, δ) with OpenDP's conversion; total (m·Σε + ε_G, δ);
//! - **zCDP**: every pure ε-DP channel is also ε²/2-zCDP (Bun & Steinke 2016, Prop. 1.4), so the
//!   whole contribution is m·(Σε²/2 + ρ)-zCDP, converted to (ε, δ) by OpenDP.
//!
//! Channels in one of the study's sampled pools are not all sent: each report carries one
//! channel of each pool, chosen uniformly at random, so a report pays for the most expensive
//! channel of each pool only.

use opendp::combinators::make_zCDP_to_approxDP;
use opendp::domains::AtomDomain;
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::{AbsoluteDistance, L2Distance};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Guarantee {
    pub epsilon: f64,
    pub delta: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// What one report costs.
    pub per_report: Guarantee,
    /// What a contributor sending up to `reports_per_contributor` reports spends.
    pub contributor: Guarantee,
    /// Which composition gave the contributor-level figure: "pure", "basic" or "zcdp".
    pub composition: String,
}

/// The costs of one report's channels (the default: a report that carries nothing).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportCost {
    /// ε of each pure-DP channel every report carries.
    pub pure: Vec<f64>,
    /// ε of each pure-DP channel of each sampled pool (a report carries one channel per pool).
    pub pools: Vec<Vec<f64>>,
    /// ρ of the Gaussian channel (0 when there is none).
    pub rho: f64,
}

/// ρ of OpenDP's Gaussian mechanism adding noise `sigma` to vectors of `dimensions` values at
/// L2 distance `sensitivity` (its map includes the rounding to the noise grid).
pub fn gaussian_rho(sensitivity: f64, sigma: f64, dimensions: usize) -> f64 {
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    use opendp::domains::VectorDomain;
    let measurement = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<f64>::new_non_nan()).with_size(dimensions),
        L2Distance::<f64>::default(),
        sigma,
        Some(super::noise::GAUSSIAN_GRANULARITY),
    )
    .expect("a Gaussian measurement with a positive scale");
    measurement.map(&sensitivity).expect("the Gaussian privacy map")
}

/// The smallest ε such that ρ-zCDP implies (ε, δ)-DP (OpenDP's conversion).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> f64 {
    if rho == 0.0 {
        return 0.0;
    }
    if rho.is_infinite() || delta <= 0.0 {
        return f64::INFINITY;
    }
    // A unit-sensitivity Gaussian measurement whose privacy map gives exactly ρ.
    let scale = 1.0 / (2.0 * rho).sqrt();
    let measurement = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<f64>::new_non_nan(),
        AbsoluteDistance::<f64>::default(),
        scale,
        None,
    )
    .and_then(make_zCDP_to_approxDP)
    .expect("a Gaussian measurement with a positive scale");
    measurement
        .map(&1.0)
        .and_then(|profile| profile.epsilon(delta))
        .unwrap_or(f64::INFINITY)
}

/// Accounts for `reports` reports per contributor, at the study's δ.
pub fn account(cost: &ReportCost, reports: u32, delta: f64) -> Accounting {
    let (per_report, _) = compose_reports(std::slice::from_ref(cost), delta);
    let (contributor, composition) = compose_reports(&vec![cost.clone(); reports as usize], delta);
    Accounting {
        per_report,
        contributor,
        composition: composition.to_owned(),
    }
}

/// What sending all these reports spends together, with the name of the composition that gave
/// the smaller ε ("pure", "basic" or "zcdp"); nothing at all for no reports.
pub fn compose_reports(costs: &[ReportCost], delta: f64) -> (Guarantee, &'static str) {
    // A pool costs its dearest channel (each report carries one, chosen independently of the data).
    let paid: Vec<f64> = costs
        .iter()
        .flat_map(|cost| {
            let dearest = cost.pools.iter().map(|pool| pool.iter().cloned().fold(0.0, f64::max));
            cost.pure.iter().cloned().chain(dearest)
        })
        .collect();
    let pure = paid.iter().sum::<f64>();
    let pure_rho = paid.iter().map(|e| e * e / 2.0).sum::<f64>();
    let rho = costs.iter().map(|c| c.rho).sum::<f64>();
    let (basic, basic_name) = if rho == 0.0 {
        // Pure only: basic composition is exact, and δ = 0.
        (
            Guarantee {
                epsilon: pure,
                delta: 0.0,
            },
            "pure",
        )
    } else {
        (
            Guarantee {
                epsilon: pure + zcdp_epsilon(rho, delta),
                delta,
            },
            "basic",
        )
    };
    let zcdp = Guarantee {
        epsilon: zcdp_epsilon(pure_rho + rho, delta),
        delta,
    };
    if basic.epsilon <= zcdp.epsilon || pure_rho + rho == 0.0 {
        (basic, basic_name)
    } else {
        (zcdp, "zcdp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_rho_matches_the_closed_form() {
        for (sensitivity, sigma) in [(2.0, 10.0), (2.0, 70.0), (1.0, 1.0)] {
            let rho = gaussian_rho(sensitivity, sigma, 32);
            let closed = (sensitivity / sigma).powi(2) / 2.0;
            // The rounding to the noise grid adds 2^-20·√32 to the sensitivity.
            assert!((rho - closed).abs() <= 1e-4 * closed, "{rho} vs {closed}");
            assert!(rho >= closed, "OpenDP rounds towards more privacy loss, never less");
        }
    }

    #[test]
    fn zcdp_conversion_is_at_least_as_tight_as_the_classic_bound() {
        for rho in [1e-4, 0.01, 0.5, 2.0] {
            let delta: f64 = 1e-6;
            let classic = rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt();
            let eps = zcdp_epsilon(rho, delta);
            assert!(
                eps <= classic + 1e-9 && eps > rho,
                "rho {rho}: {eps} vs classic {classic}"
            );
        }
    }

    #[test]
    fn pure_channels_add_and_m_reports_multiply() {
        let cost = ReportCost {
            pure: vec![1.5, 0.3, 0.2],
            pools: vec![],
            rho: 0.0,
        };
        let a = account(&cost, 3, 1e-6);
        assert!((a.per_report.epsilon - 2.0).abs() < 1e-12 && a.per_report.delta == 0.0);
        assert!((a.contributor.epsilon - 6.0).abs() < 1e-12, "{a:?}");
        // A pool of channels of which each report carries one costs its dearest channel.
        let pooled = ReportCost {
            pure: vec![1.5],
            pools: vec![vec![0.3, 0.2], vec![1.0, 1.0, 0.5]],
            rho: 0.0,
        };
        assert!((account(&pooled, 3, 1e-6).contributor.epsilon - 8.4).abs() < 1e-12);
    }

    #[test]
    fn many_small_channels_compose_better_in_zcdp() {
        let cost = ReportCost {
            pure: vec![0.1; 10],
            pools: vec![],
            rho: 0.001,
        };
        let a = account(&cost, 50, 1e-6);
        assert_eq!(a.composition, "zcdp");
        assert!(a.contributor.epsilon < 50.0 * 1.0, "{a:?}");
    }
}
