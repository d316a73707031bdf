//! The embedding channel: the request embedding, projected onto the study's public principal
//! components, clipped, and noised with the Gaussian mechanism.
//!
//! Guarantee: with the projected vector clipped to L2 norm C, any two inputs are at L2 distance
//! at most 2C, so Gaussian noise of standard deviation σ on each coordinate is ρ-zCDP with
//! ρ = (2C)² / (2σ²) (Bun & Steinke 2016). OpenDP's `make_gaussian` draws the noise and its
//! privacy map is the ρ the accountant uses.
//!
//! An embedding alone can be inverted into much of its text, which is why no un-noised
//! embedding ever leaves the device; the projection keeps the few dimensions that carry most of
//! the public variance, so that the noise budget buys the most signal.

use super::noise::{Noise, NoiseError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingPlan {
    /// Mean of the public example embeddings, subtracted before projecting.
    pub mean: Vec<f32>,
    /// `dimensions` rows of 384 values: the top principal components of the public examples.
    pub components: Vec<Vec<f32>>,
    /// L2 norm bound C of the projected vector.
    pub clip: f64,
    /// Standard deviation σ of the noise on each coordinate.
    pub sigma: f64,
}

impl EmbeddingPlan {
    /// σ for a per-report budget of ρ: σ = 2C / √(2ρ).
    pub fn sigma_for(rho: f64, clip: f64) -> f64 {
        if rho.is_infinite() {
            0.0
        } else {
            2.0 * clip / (2.0 * rho).sqrt()
        }
    }

    pub fn dimensions(&self) -> usize {
        self.components.len()
    }

    /// The projected, clipped vector (before noise).
    pub fn project(&self, embedding: &[f32]) -> Vec<f64> {
        let centred: Vec<f64> = embedding
            .iter()
            .zip(&self.mean)
            .map(|(x, m)| (*x - *m) as f64)
            .collect();
        let mut z: Vec<f64> = self
            .components
            .iter()
            .map(|c| c.iter().zip(&centred).map(|(a, b)| *a as f64 * b).sum())
            .collect();
        let norm = z.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > self.clip {
            z.iter_mut().for_each(|x| *x *= self.clip / norm);
        }
        z
    }

    /// The vector a report carries.
    pub fn privatize(&self, embedding: &[f32], noise: &mut Noise) -> Result<Vec<f32>, NoiseError> {
        let z = self.project(embedding);
        let noised = if self.sigma == 0.0 {
            z
        } else {
            noise.gaussian(&z, self.sigma)?
        };
        Ok(noised.iter().map(|&x| x as f32).collect())
    }
}

/// Mean of noisy vectors with the standard error of each coordinate (the noise is independent
/// of the data, so the sample variance already includes it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanEstimate {
    pub n: usize,
    pub mean: Vec<f64>,
    pub standard_errors: Vec<f64>,
}

pub fn estimate_mean<'a>(vectors: impl IntoIterator<Item = &'a [f32]>) -> MeanEstimate {
    let mut sums = MeanSums::default();
    vectors.into_iter().for_each(|v| sums.add(v));
    sums.estimate()
}

/// Running sums of vectors, for [`estimate_mean`] over a stream read once.
#[derive(Debug, Clone, Default)]
pub struct MeanSums {
    n: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl MeanSums {
    pub fn add(&mut self, v: &[f32]) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; v.len()];
            self.sum_sq = vec![0.0; v.len()];
        }
        self.n += 1;
        for ((s, q), x) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(v) {
            *s += f64::from(*x);
            *q += f64::from(*x).powi(2);
        }
    }

    pub fn estimate(&self) -> MeanEstimate {
        let (n, nf) = (self.n, self.n as f64);
        let mean: Vec<f64> = self.sum.iter().map(|s| s / nf.max(1.0)).collect();
        let standard_errors = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                if n < 2 {
                    f64::INFINITY
                } else {
                    ((sq - nf * m * m) / (nf - 1.0)).max(0.0).sqrt() / nf.sqrt()
                }
            })
            .collect();
        MeanEstimate {
            n,
            mean,
            standard_errors,
        }
    }
}

/// The top `dimensions` principal components of `vectors` (unit rows), by orthogonal iteration
/// from a fixed start: deterministic for the same input.
pub fn principal_components(vectors: &[Vec<f32>], dimensions: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    let d = vectors.first().map_or(0, Vec::len);
    let n = vectors.len().max(1) as f64;
    let mut mean = vec![0f64; d];
    for v in vectors {
        mean.iter_mut().zip(v).for_each(|(m, x)| *m += *x as f64 / n);
    }
    let mut covariance = vec![0f64; d * d];
    for v in vectors {
        let c: Vec<f64> = v.iter().zip(&mean).map(|(x, m)| *x as f64 - m).collect();
        for i in 0..d {
            let ci = c[i] / n;
            let row = &mut covariance[i * d..(i + 1) * d];
            row.iter_mut().zip(&c).for_each(|(r, cj)| *r += ci * cj);
        }
    }
    let k = dimensions.min(d);
    // Start from the first k unit vectors; iterate Q ← orth(C Q).
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..d).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _ in 0..200 {
        let mut next: Vec<Vec<f64>> = q
            .iter()
            .map(|col| {
                (0..d)
                    .map(|i| covariance[i * d..(i + 1) * d].iter().zip(col).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect();
        orthonormalise(&mut next);
        q = next;
    }
    (
        mean.iter().map(|&m| m as f32).collect(),
        q.iter().map(|c| c.iter().map(|&x| x as f32).collect()).collect(),
    )
}

/// Gram–Schmidt, in place.
fn orthonormalise(columns: &mut [Vec<f64>]) {
    for i in 0..columns.len() {
        for j in 0..i {
            let dot: f64 = columns[i].iter().zip(&columns[j]).map(|(a, b)| a * b).sum();
            let (before, rest) = columns.split_at_mut(i);
            rest[0].iter_mut().zip(&before[j]).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = columns[i]
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        columns[i].iter_mut().for_each(|x| *x /= norm);
    }
}
