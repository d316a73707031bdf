//! Spherical k-means (cosine similarity on unit vectors), deterministic for a given seed:
//! k-means++ starts from a small built-in generator, then Lloyd iterations with weights.

/// SplitMix64: a tiny deterministic generator for starts and resampling (no privacy role:
/// privacy noise comes from OpenDP).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(super) fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = dot(&v, &v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Index of the centroid most similar to `x`.
pub fn nearest(centroids: &[Vec<f32>], x: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let s = dot(c, x);
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

/// Clusters unit `points` (with `weights`) into at most `k` groups. Returns unit centroids and
/// each point's cluster; empty clusters are dropped and the assignment renumbered.
pub fn spherical_kmeans(points: &[Vec<f32>], weights: &[f64], k: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
    let n = points.len();
    let k = k.min(n).max(1);
    let mut rng = SplitMix(seed);
    // k-means++ on cosine distance 1 − s.
    let mut centroids = vec![points[(rng.next_u64() % n as u64) as usize].clone()];
    let mut distance: Vec<f64> = points
        .iter()
        .map(|p| (1.0 - dot(p, &centroids[0]) as f64).max(0.0))
        .collect();
    while centroids.len() < k {
        let total: f64 = distance.iter().zip(weights).map(|(d, w)| d * w).sum();
        if total <= 0.0 {
            break;
        }
        let mut u = rng.unit() * total;
        let next = (0..n)
            .find(|&i| {
                u -= distance[i] * weights[i];
                u <= 0.0
            })
            .unwrap_or(n - 1);
        centroids.push(points[next].clone());
        for (d, p) in distance.iter_mut().zip(points) {
            *d = d.min((1.0 - dot(p, &points[next]) as f64).max(0.0));
        }
    }
    let mut assignment = vec![0usize; n];
    for _ in 0..50 {
        let mut changed = false;
        for (a, p) in assignment.iter_mut().zip(points) {
            let c = nearest(&centroids, p);
            changed |= *a != c;
            *a = c;
        }
        let d = points[0].len();
        let mut sums = vec![vec![0f32; d]; centroids.len()];
        for ((p, &a), &w) in points.iter().zip(&assignment).zip(weights) {
            for (s, x) in sums[a].iter_mut().zip(p) {
                *s += x * w as f32;
            }
        }
        for (c, s) in centroids.iter_mut().zip(sums) {
            if s.iter().any(|x| *x != 0.0) {
                *c = normalised(s);
            }
        }
        if !changed {
            break;
        }
    }
    // Drop empty clusters, keeping the order of the rest.
    let mut used: Vec<usize> = assignment.clone();
    used.sort_unstable();
    used.dedup();
    let renumber: std::collections::HashMap<usize, usize> =
        used.iter().enumerate().map(|(new, &old)| (old, new)).collect();
    let centroids = used.iter().map(|&i| centroids[i].clone()).collect();
    let assignment = assignment.iter().map(|a| renumber[a]).collect();
    (centroids, assignment)
}
