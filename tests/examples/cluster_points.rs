//! Chorus's side of the clustering comparison in `bench/`: the study's projection and Gaussian
//! noise applied to real request embeddings, then the server's noise-aware clustering.
//!
//! ```text
//! cluster_points points VECTORS.json SIZE SIGMA SEED OUT_DIR
//! cluster_points cluster NOISY.f32 K SIGMA SEED CENTROIDS.json
//! ```
//! `points` projects and clips each embedding as the device does (`clean.f32`, one row per
//! distinct embedding) and writes SIZE noisy reports (`noisy.f32`; row i comes from clean row
//! i mod N) with noise σ = SIGMA per coordinate (`study` for the default study's σ); rows are
//! little-endian f32. `cluster` times the noise-aware fit at K clusters (`discover::fit_clusters`)
//! and the whole discovery (its own choice of K by BIC on a sample, support checks), writes the
//! fitted centroids and prints the times.

use chorus_server::discover::{discover, fit_clusters};
use chorus_shared::privacy::embedding::EmbeddingPlan;
use chorus_shared::privacy::noise::Noise;
use chorus_tests::compile_study;
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("points") if args.len() == 6 => points(&args[1], &args[2], &args[3], &args[4], &args[5]),
        Some("cluster") if args.len() == 6 => cluster(&args[1], &args[2], &args[3], &args[4], &args[5]),
        _ => {
            eprintln!(
                "usage: cluster_points points VECTORS.json SIZE SIGMA|study SEED OUT_DIR | cluster_points cluster NOISY.f32 K SIGMA SEED CENTROIDS.json"
            );
            std::process::exit(2);
        }
    }
}

fn plan_with_sigma(sigma: &str) -> EmbeddingPlan {
    let mut plan = compile_study(None)
        .privacy
        .embedding
        .expect("the default study privatizes embeddings");
    if sigma != "study" {
        plan.sigma = sigma.parse().expect("SIGMA is a number or `study`");
    }
    plan
}

fn points(vectors: &str, size: &str, sigma: &str, seed: &str, out: &str) {
    let vectors: Vec<Vec<f32>> = serde_json::from_slice(&std::fs::read(vectors).unwrap()).unwrap();
    let size: usize = size.parse().expect("SIZE is a number");
    let plan = plan_with_sigma(sigma);
    let mut noise = Noise::seeded(seed.parse().expect("SEED is a number"));
    let out = Path::new(out);
    std::fs::create_dir_all(out).unwrap();
    let clean: Vec<f32> = vectors
        .iter()
        .flat_map(|v| plan.project(v).into_iter().map(|x| x as f32))
        .collect();
    write_f32(&out.join("clean.f32"), &clean);
    let mut noisy = Vec::with_capacity(size * plan.dimensions());
    for i in 0..size {
        noisy.extend(plan.privatize(&vectors[i % vectors.len()], &mut noise).unwrap());
    }
    write_f32(&out.join("noisy.f32"), &noisy);
    println!(
        r#"{{"distinct": {}, "points": {size}, "dimensions": {}, "sigma": {}, "clip": {}}}"#,
        vectors.len(),
        plan.dimensions(),
        plan.sigma,
        plan.clip
    );
}

fn cluster(noisy: &str, k: &str, sigma: &str, seed: &str, centroids_out: &str) {
    let plan = plan_with_sigma(sigma);
    let d = plan.dimensions();
    let raw = std::fs::read(noisy).unwrap();
    let values: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let rows: Vec<&[f32]> = values.chunks_exact(d).collect();
    let points: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|&x| x as f64).collect()).collect();
    let k: usize = k.parse().expect("K is a number");
    let seed: u64 = seed.parse().expect("SEED is a number");
    let started = Instant::now();
    let (means, _) = fit_clusters(&points, k, plan.sigma, seed);
    let fit_s = started.elapsed().as_secs_f64();
    let mut study = compile_study(None);
    study.privacy.embedding = Some(plan);
    let started = Instant::now();
    let found = discover(&study, &rows, rows.len(), 0.0, seed).expect("enough points");
    let discover_s = started.elapsed().as_secs_f64();
    std::fs::write(centroids_out, serde_json::to_vec(&means).unwrap()).unwrap();
    println!(
        r#"{{"seconds": {fit_s:.3}, "discover_seconds": {discover_s:.3}, "discover_points": {}, "discover_fitted": {}, "discover_clusters": {}}}"#,
        found.points,
        found.fitted,
        found.clusters.len()
    );
}

fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}
