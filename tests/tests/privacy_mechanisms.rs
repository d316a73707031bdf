//! The mechanisms against their claims, with OpenDP's secure noise: every frequency oracle's
//! observed log-likelihood ratio between neighbouring inputs stays within its ε, the Gaussian
//! noise has the σ its ρ was computed from, and the seeded sampler used by simulations draws
//! from the same distributions as OpenDP.

use chorus_messages::Privatized;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::privacy::oracle::{local_hash, Oracle, OracleChoice};

/// How many standard errors the bounds below stand off. Each oracle's check compares at most
/// eight (event, direction) ratios, and the test checks four oracles: at most 32 comparisons,
/// of which only those at the bound (about two per oracle) can exceed it by chance. One-sided
/// at 4 SE a comparison exceeds with probability 3.2e-5, so the "within ε" check fails by chance
/// less than 32 × 3.2e-5 ≈ 1e-3 even counting every comparison, and in practice ~3e-4. The "not
/// far below ε" check uses the same stand-off above the point: an oracle at its stated ε fails
/// it only if the point falls 0.2 ε + 4 SE short (for k-RR on two values at ε = 0.05 with 60,000
/// draws, SE ≈ 0.008 against a true spread of 0.006: over 8 spreads, never in practice).
const STANDOFF: f64 = 4.0;

/// The largest observed log-likelihood ratio over the events, discounted by [`STANDOFF`]
/// standard errors; the largest not discounted (the point); and the largest plus the stand-off.
fn observed_llr(counts_a: &[f64], counts_b: &[f64]) -> (f64, f64, f64) {
    let mut lower = f64::NEG_INFINITY;
    let mut point = f64::NEG_INFINITY;
    let mut upper = f64::NEG_INFINITY;
    for (a, b) in counts_a.iter().zip(counts_b) {
        if *a < 30.0 || *b < 30.0 {
            continue;
        }
        for (x, y) in [(a, b), (b, a)] {
            let llr = (x / y).ln();
            let se = (1.0 / x + 1.0 / y).sqrt();
            lower = lower.max(llr - STANDOFF * se);
            point = point.max(llr);
            upper = upper.max(llr + STANDOFF * se);
        }
    }
    (lower, point, upper)
}

/// Counts of the events that decide every oracle's likelihood: whether an output supports
/// value `a`, value `b`, both or neither.
fn support_events(oracle: &Oracle, input: usize, a: usize, b: usize, draws: usize, noise: &mut Noise) -> Vec<f64> {
    let mut counts = vec![0f64; 4];
    for _ in 0..draws {
        let report = oracle.privatize(input, noise).unwrap();
        let supports = |v: usize| match (&report, oracle) {
            (Privatized::Value(x), _) => *x as usize == v,
            (Privatized::Hashed { seed, bucket }, Oracle::Olh { buckets, .. }) => {
                local_hash(*seed, v, *buckets) == *bucket as usize
            }
            (Privatized::Bits(bits), _) => bits.contains(&(v as u32)),
            _ => unreachable!(),
        };
        counts[usize::from(supports(a)) * 2 + usize::from(supports(b))] += 1.0;
    }
    counts
}

#[test]
fn every_oracle_stays_within_its_epsilon() {
    let mut noise = Noise::Secure;
    for (oracle, draws) in [
        (Oracle::new(OracleChoice::Krr, 16, 1.55), 60_000),
        (Oracle::new(OracleChoice::Krr, 2, 0.05), 60_000),
        (Oracle::new(OracleChoice::Olh, 200, 1.0), 60_000),
        (Oracle::new(OracleChoice::Oue, 16, 1.0), 30_000),
    ] {
        let (a, b) = (0, 1);
        let from_a = support_events(&oracle, a, a, b, draws, &mut noise);
        let from_b = support_events(&oracle, b, a, b, draws, &mut noise);
        let (lower, point, upper) = observed_llr(&from_a, &from_b);
        let eps = oracle.epsilon();
        assert!(
            lower <= eps,
            "{oracle:?}: observed LLR {point:.3} (lower bound {lower:.3}) exceeds ε = {eps}"
        );
        assert!(
            upper >= eps * 0.8,
            "{oracle:?}: observed LLR {point:.3} (upper bound {upper:.3}) is far below ε = {eps}: is the mechanism random at all?"
        );
        eprintln!(
            "{oracle:?}: ε = {eps}, largest observed LLR {point:.4}, within ±{STANDOFF} SE: {lower:.4}–{upper:.4}"
        );
    }
}

#[test]
fn gaussian_noise_has_the_stated_sigma() {
    let mut noise = Noise::Secure;
    let sigma = 70.0;
    let values = vec![0.25; 32];
    let mut samples = Vec::new();
    for _ in 0..400 {
        samples.extend(
            noise
                .gaussian(&values, sigma)
                .unwrap()
                .into_iter()
                .map(|x| (x - 0.25) / sigma),
        );
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let within_one = samples.iter().filter(|x| x.abs() <= 1.0).count() as f64 / n;
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 0.05, "variance {var} (in units of σ²)");
    assert!((within_one - 0.6827).abs() < 0.02, "share within one σ: {within_one}");
}

#[test]
fn seeded_and_secure_noise_draw_the_same_distributions() {
    // k-RR output frequencies, chi-square against the exact probabilities, for both sources.
    let oracle = Oracle::new(OracleChoice::Krr, 16, 1.55);
    let (p, q) = oracle.support_probabilities();
    for mut noise in [Noise::Secure, Noise::seeded(7)] {
        let draws = 40_000;
        let mut counts = [0f64; 16];
        for _ in 0..draws {
            if let Privatized::Value(v) = oracle.privatize(3, &mut noise).unwrap() {
                counts[v as usize] += 1.0;
            }
        }
        let chi2: f64 = counts
            .iter()
            .enumerate()
            .map(|(v, c)| {
                let expected = draws as f64 * if v == 3 { p } else { q };
                (c - expected).powi(2) / expected
            })
            .sum();
        // 15 degrees of freedom: the 99.9th percentile is 37.7.
        assert!(
            chi2 < 37.7,
            "chi-square {chi2} for {}",
            if noise.is_secure() { "OpenDP" } else { "seeded" }
        );
    }
    let mut seeded = Noise::seeded(3);
    let draws: Vec<f64> = (0..20_000)
        .flat_map(|_| seeded.gaussian(&[0.0], 2.0).unwrap())
        .collect();
    let var = draws.iter().map(|x| x * x).sum::<f64>() / draws.len() as f64;
    assert!((var / 4.0 - 1.0).abs() < 0.05, "seeded Gaussian variance {var}");
}
