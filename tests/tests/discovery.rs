//! Discovery knows the noise: with a noise level at which clusters are resolvable it finds them
//! (right number, centroids within their standard errors, right shares); with the default
//! study's noise it reports nothing rather than inventing clusters.

use chorus_server::discover::discover;
use chorus_tests::compile_study;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

fn sample(centres: &[(Vec<f64>, f64)], n: usize, spread: f64, sigma: f64, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let (spread, noise) = (Normal::new(0.0, spread).unwrap(), Normal::new(0.0, sigma).unwrap());
    (0..n)
        .map(|_| {
            let mut u: f64 = rng.gen();
            let (centre, _) = centres
                .iter()
                .find(|(_, w)| {
                    u -= w;
                    u < 0.0
                })
                .unwrap_or(centres.last().unwrap());
            centre
                .iter()
                .map(|c| (c + spread.sample(&mut rng) + noise.sample(&mut rng)) as f32)
                .collect()
        })
        .collect()
}

fn centre(d: usize, axis: usize, value: f64) -> Vec<f64> {
    (0..d).map(|i| if i == axis { value } else { 0.0 }).collect()
}

#[test]
fn finds_resolvable_clusters_and_nothing_in_noise() {
    let mut study = compile_study(None);
    let default_sigma = study.privacy.embedding.as_ref().unwrap().sigma;
    let d = study.privacy.embedding.as_ref().unwrap().dimensions();
    let centres = vec![
        (centre(d, 0, 0.6), 0.5),
        (centre(d, 1, 0.6), 0.3),
        (centre(d, 2, -0.6), 0.2),
    ];

    // A study with a generous embedding budget: σ = 0.15.
    study.privacy.embedding.as_mut().unwrap().sigma = 0.15;
    let points = sample(&centres, 20_000, 0.05, 0.15, 1);
    let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
    let found = discover(&study, &refs, refs.len(), 10.0, 7).unwrap();
    assert_eq!(found.clusters.len(), 3, "{found:?}");
    for (c, share) in &centres {
        let nearest = found
            .clusters
            .iter()
            .min_by(|a, b| {
                let da: f64 = a.centroid.iter().zip(c).map(|(x, y)| (x - y).powi(2)).sum();
                let db: f64 = b.centroid.iter().zip(c).map(|(x, y)| (x - y).powi(2)).sum();
                da.total_cmp(&db)
            })
            .unwrap();
        let error: f64 = nearest
            .centroid
            .iter()
            .zip(c)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        // The error's norm over d coordinates: about √d standard errors.
        assert!(
            error < nearest.centroid_se * ((d as f64).sqrt() + 4.0),
            "centroid off by {error}"
        );
        assert!(
            (nearest.share - share).abs() < 4.0 * nearest.share_se + 0.01,
            "share {} vs {share}",
            nearest.share
        );
        assert!((nearest.tau - 0.05).abs() < 0.03, "spread {}", nearest.tau);
        assert!(!nearest.names.is_empty());
    }

    // The default study's noise (σ ≈ 54 on a unit ball): the same structure is invisible.
    study.privacy.embedding.as_mut().unwrap().sigma = default_sigma;
    let points = sample(&centres, 20_000, 0.05, default_sigma, 2);
    let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
    let started = std::time::Instant::now();
    let found = discover(&study, &refs, refs.len(), 10.0, 7).unwrap();
    eprintln!(
        "discovery over 20,000 noisy points: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(found.clusters.is_empty(), "clusters invented from noise: {found:?}");
    assert!(!found.note.is_empty());
}
