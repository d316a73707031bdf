//! The server's estimators against their claims, over many seeded simulations of fixed data:
//! unbiased (mean within 3 standard errors of the truth), stated variance within 10% of the
//! empirical one, and 95% intervals covering the truth 93–97% of the time.

use chorus_shared::privacy::embedding::estimate_mean;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::privacy::oracle::{Oracle, OracleChoice};

/// Values 0..k with a skewed, fixed distribution: exactly n_v items of value v.
fn dataset(k: usize, n: usize) -> Vec<usize> {
    let weights: Vec<f64> = (0..k).map(|v| 1.0 / (v as f64 + 1.5)).collect();
    let total: f64 = weights.iter().sum();
    let mut data = Vec::new();
    for (v, w) in weights.iter().enumerate() {
        data.extend(std::iter::repeat_n(v, (w / total * n as f64).round() as usize));
    }
    data
}

fn check_oracle(oracle: Oracle, n: usize, runs: usize, seed: u64) {
    let k = oracle.domain();
    let data = dataset(k, n);
    let n = data.len();
    let truth: Vec<f64> = (0..k)
        .map(|v| data.iter().filter(|&&x| x == v).count() as f64 / n as f64)
        .collect();
    let mut noise = Noise::seeded(seed);
    let mut sums = vec![0f64; k];
    let mut squares = vec![0f64; k];
    let mut stated = vec![0f64; k];
    let (mut covered, mut intervals) = (0usize, 0usize);
    for _ in 0..runs {
        let reports: Vec<_> = data.iter().map(|&v| oracle.privatize(v, &mut noise).unwrap()).collect();
        let estimate = oracle.estimate(&reports);
        for (v, ((share, se), (lo, hi))) in estimate
            .shares
            .iter()
            .zip(&estimate.standard_errors)
            .zip(estimate.ci95())
            .enumerate()
        {
            sums[v] += share;
            squares[v] += share * share;
            stated[v] += se * se;
            covered += usize::from(lo <= truth[v] && truth[v] <= hi);
            intervals += 1;
        }
    }
    let r = runs as f64;
    for v in 0..k {
        let mean = sums[v] / r;
        let empirical = (squares[v] - r * mean * mean) / (r - 1.0);
        let exact = oracle.count_variance(truth[v] * n as f64, n as f64) / (n * n) as f64;
        assert!(
            (mean - truth[v]).abs() <= 3.0 * (empirical / r).sqrt(),
            "{oracle:?} value {v}: mean {mean:.5} vs truth {:.5}",
            truth[v]
        );
        assert!(
            (exact / empirical - 1.0).abs() < 0.10,
            "{oracle:?} value {v}: exact variance {exact:.3e} vs empirical {empirical:.3e}"
        );
        let plug_in = stated[v] / r;
        assert!(
            (plug_in / empirical - 1.0).abs() < 0.10,
            "{oracle:?} value {v}: stated variance {plug_in:.3e} vs empirical {empirical:.3e}"
        );
    }
    let coverage = covered as f64 / intervals as f64;
    assert!(
        (0.93..=0.97).contains(&coverage),
        "{oracle:?}: 95% intervals cover {coverage:.4}"
    );
    eprintln!("{oracle:?}: n = {n}, {runs} runs, coverage {coverage:.4}");
}

#[test]
fn krr_estimates_are_unbiased_with_honest_errors() {
    check_oracle(Oracle::new(OracleChoice::Krr, 16, 1.55), 2000, 2500, 1);
    check_oracle(Oracle::new(OracleChoice::Krr, 2, 0.05), 2000, 2500, 2);
}

#[test]
fn olh_estimates_are_unbiased_with_honest_errors() {
    check_oracle(Oracle::new(OracleChoice::Olh, 40, 1.0), 1000, 2000, 3);
}

#[test]
fn oue_estimates_are_unbiased_with_honest_errors() {
    check_oracle(Oracle::new(OracleChoice::Oue, 16, 1.0), 1000, 2000, 4);
}

#[test]
fn noisy_embedding_means_are_unbiased_with_honest_errors() {
    let (n, d, sigma, runs) = (500, 8, 5.0, 2000);
    let truth: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..d).map(|j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.4).collect())
        .collect();
    let true_mean: Vec<f64> = (0..d)
        .map(|j| truth.iter().map(|v| v[j]).sum::<f64>() / n as f64)
        .collect();
    let mut noise = Noise::seeded(5);
    let (mut sums, mut squares, mut stated) = (vec![0f64; d], vec![0f64; d], vec![0f64; d]);
    let (mut covered, mut intervals) = (0usize, 0usize);
    for _ in 0..runs {
        let noisy: Vec<Vec<f32>> = truth
            .iter()
            .map(|v| {
                noise
                    .gaussian(v, sigma)
                    .unwrap()
                    .into_iter()
                    .map(|x| x as f32)
                    .collect()
            })
            .collect();
        let estimate = estimate_mean(noisy.iter().map(Vec::as_slice));
        for j in 0..d {
            let (m, se) = (estimate.mean[j], estimate.standard_errors[j]);
            sums[j] += m;
            squares[j] += m * m;
            stated[j] += se * se;
            covered += usize::from((m - true_mean[j]).abs() <= 1.96 * se);
            intervals += 1;
        }
    }
    let r = runs as f64;
    for j in 0..d {
        let mean = sums[j] / r;
        let empirical = (squares[j] - r * mean * mean) / (r - 1.0);
        assert!(
            (mean - true_mean[j]).abs() <= 3.0 * (empirical / r).sqrt(),
            "dimension {j}: {mean} vs {}",
            true_mean[j]
        );
        assert!(
            (stated[j] / r / empirical - 1.0).abs() < 0.10,
            "dimension {j}: stated {} vs empirical {empirical}",
            stated[j] / r
        );
    }
    let coverage = covered as f64 / intervals as f64;
    assert!((0.93..=0.97).contains(&coverage), "coverage {coverage}");
}

/// A device draws the category it reports from its classifier's probabilities, and a release
/// estimates the mean of those probabilities: the category channel's intervals must carry the
/// draws' variance. The hardest case for its bound (at most f(1 − f)/n): every device at 50/50,
/// through k-RR at ε = 3, where the oracle's own noise is a fifth of the draws' variance. Over
/// 2,000 runs (the two values' intervals are the same event) the coverage's standard error is
/// 0.0049, so 0.93–0.97 is a ±4σ band (a chance failure about once in 15,000 runs); the
/// oracle's intervals alone cover about 60%.
#[test]
fn drawn_categories_are_covered() {
    use chorus_messages::Channel;
    use chorus_shared::privacy::ChannelPlan;
    let plan = ChannelPlan {
        channel: Channel::Category,
        pool: None,
        labels: vec!["a".into(), "b".into()],
        oracle: Oracle::new(OracleChoice::Krr, 2, 3.0),
    };
    let (n, runs) = (1000, 2000);
    let mut noise = Noise::seeded(17);
    let (mut covered, mut oracle_covered) = (0usize, 0usize);
    for _ in 0..runs {
        let reports: Vec<_> = (0..n)
            .map(|_| {
                let drawn = noise.categorical(&[0.5, 0.5]).unwrap();
                plan.oracle.privatize(drawn, &mut noise).unwrap()
            })
            .collect();
        let (lo, hi) = plan.estimate(&reports).ci95()[0];
        covered += usize::from(lo <= 0.5 && 0.5 <= hi);
        let (lo, hi) = plan.oracle.estimate(&reports).ci95()[0];
        oracle_covered += usize::from(lo <= 0.5 && 0.5 <= hi);
    }
    let (coverage, oracle_coverage) = (covered as f64 / runs as f64, oracle_covered as f64 / runs as f64);
    eprintln!("drawn categories: coverage {coverage:.4} (the oracle's intervals alone: {oracle_coverage:.4})");
    assert!((0.93..=0.97).contains(&coverage), "coverage {coverage:.4}");
    assert!(oracle_coverage < 0.8, "the oracle alone covers {oracle_coverage:.4}");
}
