//! Discovery: clusters in the noisy embeddings, found with a method that knows the noise.
//!
//! Each report carries y = x + e, with x the clipped projection of a request embedding and e
//! Gaussian noise of known standard deviation σ on each of the d′ coordinates. Plain k-means on
//! y mistakes the noise for structure and pulls every centroid toward the mean. Here the
//! clusters of x are modelled as spherical Gaussians N(μₖ, τₖ²I), so y follows a mixture of
//! N(μₖ, (τₖ² + σ²)I): EM fits it with the noise variance added and subtracted back
//! (deconvolution), the number of clusters is chosen by BIC, and a cluster is reported only
//! when the data support it — its count reliably at least k and its centroid separated from
//! every other by more than its standard error allows. Otherwise discovery reports nothing,
//! and says how many contributors per cluster the noise would need: a centroid's standard
//! error is √((σ² + τ²)/nₖ) per coordinate.
//!
//! Names come only from public material: each centroid is mapped back into the embedding space
//! through the study's public projection, named by the study's classifier and matched to the
//! nearest leaves of the study's public topic codebook.

use chorus_shared::release::document::Cluster;
use chorus_shared::study::CompiledStudy;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Largest number of clusters tried.
pub const MAX_CLUSTERS: usize = 8;
/// Points used to fit (a uniform sample when there are more).
pub const SAMPLE: usize = 100_000;
/// Points used to choose the number of clusters (several starts each).
pub const SELECTION_SAMPLE: usize = 20_000;
const ITERATIONS: usize = 100;
const RESTARTS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    /// Reports the fit used.
    pub points: usize,
    pub sigma: f64,
    /// Clusters chosen by BIC before the support checks.
    pub fitted: usize,
    /// Clusters the data support (empty when none: noise alone explains the data).
    pub clusters: Vec<Cluster>,
    /// Why nothing (or less) is reported, in words.
    pub note: String,
}

struct Fit {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    /// Total variance per coordinate of each component (τ² + σ²).
    variances: Vec<f64>,
    log_likelihood: f64,
    responsibilities_sum: Vec<f64>,
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++ starting centres.
fn seed_means(points: &[Vec<f64>], k: usize, rng: &mut rand_chacha::ChaCha20Rng) -> Vec<Vec<f64>> {
    let n = points.len();
    let mut means = vec![points[rng.gen_range(0..n)].clone()];
    while means.len() < k {
        let distances: Vec<f64> = points
            .iter()
            .map(|p| {
                means
                    .iter()
                    .map(|m| squared_distance(p, m))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        let total: f64 = distances.iter().sum();
        let mut u = rng.gen::<f64>() * total;
        let next = distances.iter().position(|&x| {
            u -= x;
            u <= 0.0
        });
        means.push(points[next.unwrap_or(n - 1)].clone());
    }
    means
}

/// Points per unit of work in the E-step. Partial sums are added in chunk order, so a fit is
/// the same whatever the number of threads.
const CHUNK: usize = 4096;

/// One chunk's share of an E-step: responsibility-weighted sums for the M-step.
struct Partial {
    means: Vec<Vec<f64>>,
    spread: Vec<f64>,
    sums: Vec<f64>,
    log_likelihood: f64,
}

fn e_step(chunk: &[Vec<f64>], weights: &[f64], means: &[Vec<f64>], variances: &[f64]) -> Partial {
    let (d, k) = (means[0].len(), means.len());
    // The parts of each component's log density that do not depend on the point.
    let constant: Vec<f64> = (0..k)
        .map(|j| weights[j].ln() - 0.5 * d as f64 * (2.0 * std::f64::consts::PI * variances[j]).ln())
        .collect();
    let mut partial = Partial {
        means: vec![vec![0f64; d]; k],
        spread: vec![0f64; k],
        sums: vec![0f64; k],
        log_likelihood: 0.0,
    };
    let (mut r, mut distance) = (vec![0f64; k], vec![0f64; k]);
    for p in chunk {
        let mut max = f64::NEG_INFINITY;
        for j in 0..k {
            distance[j] = squared_distance(p, &means[j]);
            r[j] = constant[j] - distance[j] / (2.0 * variances[j]);
            max = max.max(r[j]);
        }
        r.iter_mut().for_each(|x| *x = (*x - max).exp());
        let total: f64 = r.iter().sum();
        partial.log_likelihood += max + total.ln();
        for j in 0..k {
            let w = r[j] / total;
            partial.sums[j] += w;
            for (m, x) in partial.means[j].iter_mut().zip(p) {
                *m += w * x;
            }
            partial.spread[j] += w * distance[j];
        }
    }
    partial
}

/// The E-step over all points, chunks shared among the machine's cores.
fn e_step_parallel(points: &[Vec<f64>], weights: &[f64], means: &[Vec<f64>], variances: &[f64]) -> Partial {
    let chunks: Vec<&[Vec<f64>]> = points.chunks(CHUNK).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len());
    let mut partials: Vec<Option<Partial>> = (0..chunks.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let chunks = &chunks;
                scope.spawn(move || {
                    (t..chunks.len())
                        .step_by(threads)
                        .map(|c| (c, e_step(chunks[c], weights, means, variances)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (c, partial) in handle.join().expect("an E-step thread") {
                partials[c] = Some(partial);
            }
        }
    });
    let mut parts = partials.into_iter().map(|p| p.expect("every chunk"));
    let mut total = parts.next().expect("at least one point");
    for part in parts {
        for j in 0..total.sums.len() {
            total.sums[j] += part.sums[j];
            total.spread[j] += part.spread[j];
            for (m, x) in total.means[j].iter_mut().zip(&part.means[j]) {
                *m += x;
            }
        }
        total.log_likelihood += part.log_likelihood;
    }
    total
}

/// EM for a mixture of spherical Gaussians whose variances are at least σ², from `means`.
fn fit(points: &[Vec<f64>], mut means: Vec<Vec<f64>>, sigma2: f64) -> Fit {
    let (n, d, k) = (points.len(), points[0].len(), means.len());
    let mut weights = vec![1.0 / k as f64; k];
    let mut variances = vec![sigma2 * 1.1; k];
    let mut log_likelihood = f64::NEG_INFINITY;
    let mut sums = vec![0f64; k];
    for _ in 0..ITERATIONS {
        let step = e_step_parallel(points, &weights, &means, &variances);
        let mut new_means = step.means;
        sums = step.sums;
        for j in 0..k {
            let nj = sums[j].max(1e-9);
            weights[j] = nj / n as f64;
            new_means[j].iter_mut().for_each(|m| *m /= nj);
            // Deconvolution: the noise accounts for σ² of the spread; the cluster keeps the rest.
            variances[j] = (step.spread[j] / (nj * d as f64)).max(sigma2);
        }
        means = new_means;
        let ll = step.log_likelihood;
        let converged = (ll - log_likelihood).abs() < 1e-6 * ll.abs();
        log_likelihood = ll;
        if converged {
            break;
        }
    }
    Fit {
        weights,
        means,
        variances,
        log_likelihood,
        responsibilities_sum: sums,
    }
}

/// The best of several starts (EM finds local optima; a poor fit of the right number of
/// clusters would let BIC prefer a spurious extra one).
fn best_fit(points: &[Vec<f64>], k: usize, sigma2: f64, rng: &mut rand_chacha::ChaCha20Rng) -> Fit {
    (0..RESTARTS)
        .map(|_| fit(points, seed_means(points, k, rng), sigma2))
        .max_by(|a, b| a.log_likelihood.total_cmp(&b.log_likelihood))
        .expect("at least one start")
}

/// The noise-aware fit at a fixed number of clusters `k` (best of several starts), without the
/// choice of `k` or the support checks: the means and weights. Plain k-means on the same points
/// is its natural comparison (`bench/`).
pub fn fit_clusters(points: &[Vec<f64>], k: usize, sigma: f64, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let fit = best_fit(points, k, sigma * sigma, &mut rng);
    (fit.means, fit.weights)
}

/// Finds the clusters the noisy embeddings support, from `sample`, a uniform sample of the
/// `embeddings` reports that carry one (a fit uses at most [`SAMPLE`] points); a cluster's
/// count over all of them must reliably reach `min_count` (the study's k).
pub fn discover(
    study: &CompiledStudy,
    sample: &[&[f32]],
    embeddings: usize,
    min_count: f64,
    seed: u64,
) -> Option<Discovery> {
    let plan = study.privacy.embedding.as_ref()?;
    if sample.len() < 10 {
        return None;
    }
    let sigma2 = plan.sigma * plan.sigma;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let points = sample_points(sample, &mut rng);
    let (n, d) = (points.len() as f64, plan.dimensions() as f64);
    // Choose the number of clusters by BIC on a subsample, then fit all points from that start.
    let chosen = choose_by_bic(&points[..points.len().min(SELECTION_SAMPLE)], sigma2, d, &mut rng);
    let fit = fit(&points, chosen.means, sigma2);
    let fitted = fit.weights.len();
    let (clusters, note) = if fitted == 1 {
        let se = (sigma2 / n).sqrt();
        let note = format!(
            "one component explains the data: with noise σ = {:.1} per coordinate, a centroid's standard error is {se:.3} even over all {n} reports; clusters one unit apart would need about {:.0} contributors each",
            plan.sigma,
            (2.0 * 1.96 * plan.sigma).powi(2)
        );
        (Vec::new(), note)
    } else {
        let reports = embeddings.max(sample.len()) as f64;
        separated_clusters(supported_clusters(study, &fit, n, reports, min_count, sigma2), d)
    };
    Some(Discovery {
        points: points.len(),
        sigma: plan.sigma,
        fitted,
        clusters,
        note,
    })
}

/// The embeddings as points, a uniform sample of at most `SAMPLE` of them.
fn sample_points(embeddings: &[&[f32]], rng: &mut rand_chacha::ChaCha20Rng) -> Vec<Vec<f64>> {
    let mut points: Vec<Vec<f64>> = embeddings
        .iter()
        .map(|e| e.iter().map(|&x| x as f64).collect())
        .collect();
    if points.len() > SAMPLE {
        for i in 0..SAMPLE {
            let j = rng.gen_range(i..points.len());
            points.swap(i, j);
        }
        points.truncate(SAMPLE);
    }
    points
}

/// The best fit over numbers of clusters by BIC, stopping after two more clusters fail to pay
/// for themselves.
fn choose_by_bic(selection: &[Vec<f64>], sigma2: f64, d: f64, rng: &mut rand_chacha::ChaCha20Rng) -> Fit {
    let ns = selection.len() as f64;
    let mut best: Option<(f64, Fit)> = None;
    let mut worse = 0;
    for k in 1..=MAX_CLUSTERS.min(selection.len() / 10) {
        let fit = best_fit(selection, k, sigma2, rng);
        let parameters = (k as f64) * (d + 2.0) - 1.0;
        let bic = -2.0 * fit.log_likelihood + parameters * ns.ln();
        if best.as_ref().is_none_or(|(b, _)| bic < *b) {
            best = Some((bic, fit));
            worse = 0;
        } else {
            // Two more clusters that do not pay for themselves: more will not either.
            worse += 1;
            if worse == 2 {
                break;
            }
        }
    }
    best.expect("at least one fit").1
}

/// The fitted components whose count over all `reports` is reliably at least `min_count`.
fn supported_clusters(
    study: &CompiledStudy,
    fit: &Fit,
    n: f64,
    reports: f64,
    min_count: f64,
    sigma2: f64,
) -> Vec<Cluster> {
    let mut clusters = Vec::new();
    for j in 0..fit.weights.len() {
        let nj = fit.responsibilities_sum[j];
        let share = fit.weights[j];
        let share_se = (share * (1.0 - share) / n).sqrt();
        let centroid_se = (fit.variances[j] / nj.max(1.0)).sqrt();
        if (share - 1.96 * share_se) * reports < min_count {
            continue;
        }
        clusters.push(Cluster {
            share,
            share_se,
            centroid: fit.means[j].clone(),
            centroid_se,
            tau: (fit.variances[j] - sigma2).max(0.0).sqrt(),
            names: names(study, &fit.means[j]),
            topics: nearest_topics(study, &fit.means[j]),
        });
    }
    clusters
}

/// Keeps a cluster only if it is distinguishable from every other kept one; fewer than two
/// left is no discovery (with a note saying why).
fn separated_clusters(mut clusters: Vec<Cluster>, d: f64) -> (Vec<Cluster>, String) {
    let separated = |a: &Cluster, b: &Cluster| {
        let se2 = a.centroid_se.powi(2) + b.centroid_se.powi(2);
        squared_distance(&a.centroid, &b.centroid) > se2 * (d + 3.0 * (2.0 * d).sqrt())
    };
    let all = clusters.clone();
    clusters.retain(|c| all.iter().all(|o| o.centroid == c.centroid || separated(c, o)));
    if clusters.len() < 2 {
        return (
            Vec::new(),
            "the fitted clusters are not separated beyond their standard errors".into(),
        );
    }
    (clusters, String::new())
}

/// The embedding a projected centroid stands for: mapped back through the study's public
/// projection, normalised.
fn back_project(study: &CompiledStudy, centroid: &[f64]) -> Option<Vec<f32>> {
    let plan = study.privacy.embedding.as_ref()?;
    let mut x: Vec<f32> = plan.mean.clone();
    for (c, component) in centroid.iter().zip(&plan.components) {
        for (xi, ci) in x.iter_mut().zip(component) {
            *xi += (*c as f32) * ci;
        }
    }
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    x.iter_mut().for_each(|v| *v /= norm);
    Some(x)
}

/// The study's categories most probable for the embedding a projected centroid stands for.
fn names(study: &CompiledStudy, centroid: &[f64]) -> Vec<(String, f64)> {
    let Some(x) = back_project(study, centroid) else {
        return Vec::new();
    };
    let probabilities = study.category_probabilities_of_embedding(&x);
    let mut ranked: Vec<(String, f64)> = study
        .categories
        .iter()
        .zip(probabilities)
        .map(|(c, p)| (c.id.clone(), (p as f64 * 1e4).round() / 1e4))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(3);
    ranked
}

/// The codebook leaves nearest the embedding a projected centroid stands for.
fn nearest_topics(study: &CompiledStudy, centroid: &[f64]) -> Vec<(String, String, f64)> {
    let (Some(codebook), Some(x)) = (&study.codebook, back_project(study, centroid)) else {
        return Vec::new();
    };
    codebook
        .nearest_leaves(&x, 3)
        .into_iter()
        .map(|(i, cosine)| {
            let leaf = &codebook.leaves()[i];
            (leaf.id.clone(), leaf.name.clone(), (cosine as f64 * 1e4).round() / 1e4)
        })
        .collect()
}
