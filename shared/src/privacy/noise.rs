//! Where the randomness of privatization comes from.
//!
//! [`Noise::Secure`] draws every sample from OpenDP's vetted measurements and samplers, whose
//! bits come from a cryptographically secure source (OpenSSL natively; in the browser a
//! ChaCha20 generator seeded from `crypto.getRandomValues`). It is the only noise a report that
//! leaves the device may carry: a [`chorus_messages::ReportBatch`] is only ever sealed
//! ([`crate::device::seal`]) from reports privatized with it.
//!
//! With the `seeded-noise` feature, [`Noise::Seeded`] samples the same distributions from a
//! seeded generator, so that a simulation is reproducible. It exists for `chorus simulate` and for
//! statistical tests; it is never compiled into the browser client.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_randomized_response};
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::L2Distance;
use opendp::traits::samplers::{sample_bernoulli_float, sample_from_uniform_bytes, sample_uniform_uint_below};
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
#[error("the noise sampler failed: {0}")]
pub struct NoiseError(String);

fn opendp_err(e: opendp::error::Error) -> NoiseError {
    NoiseError(e.to_string())
}

/// OpenDP adds discrete Gaussian noise on a grid of 2^k; rounding to it is part of its privacy
/// map. 2^-20 ≈ 10⁻⁶ is far below any noise scale used here, and sampling on it is about a
/// hundred times faster than on the finest grid a 64-bit float allows.
pub const GAUSSIAN_GRANULARITY: i32 = -20;

pub enum Noise {
    Secure,
    #[cfg(feature = "seeded-noise")]
    Seeded(Box<rand_chacha::ChaCha20Rng>),
}

impl Noise {
    /// Reproducible noise for simulations and tests (never for reports that are sent).
    #[cfg(feature = "seeded-noise")]
    pub fn seeded(seed: u64) -> Noise {
        use rand::SeedableRng;
        Noise::Seeded(Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(seed)))
    }

    pub fn is_secure(&self) -> bool {
        matches!(self, Noise::Secure)
    }

    /// k-ary randomized response over `0..domain`: `value` with probability `keep`, otherwise
    /// one of the other `domain - 1` values uniformly (OpenDP's `make_randomized_response`).
    pub fn randomized_response(&mut self, value: usize, domain: usize, keep: f64) -> Result<usize, NoiseError> {
        match self {
            Noise::Secure => {
                let categories: HashSet<u32> = (0..domain as u32).collect();
                let measurement = make_randomized_response(categories, keep).map_err(opendp_err)?;
                Ok(measurement.invoke(&(value as u32)).map_err(opendp_err)? as usize)
            }
            #[cfg(feature = "seeded-noise")]
            Noise::Seeded(rng) => {
                use rand::Rng;
                if rng.gen_bool(keep) {
                    Ok(value)
                } else {
                    let lie = rng.gen_range(0..domain - 1);
                    Ok(if lie >= value { lie + 1 } else { lie })
                }
            }
        }
    }

    /// `true` with probability `prob` (OpenDP's `sample_bernoulli_float`).
    pub fn bernoulli(&mut self, prob: f64) -> Result<bool, NoiseError> {
        match self {
            Noise::Secure => sample_bernoulli_float(prob, false).map_err(opendp_err),
            #[cfg(feature = "seeded-noise")]
            Noise::Seeded(rng) => {
                use rand::Rng;
                Ok(rng.gen_bool(prob))
            }
        }
    }

    /// `values` plus independent Gaussian noise of standard deviation `scale` on each
    /// coordinate (OpenDP's `make_gaussian`: discrete Gaussian noise on a fine grid).
    pub fn gaussian(&mut self, values: &[f64], scale: f64) -> Result<Vec<f64>, NoiseError> {
        match self {
            Noise::Secure => {
                let measurement = make_gaussian::<_, _, ZeroConcentratedDivergence>(
                    VectorDomain::new(AtomDomain::<f64>::new_non_nan()).with_size(values.len()),
                    L2Distance::<f64>::default(),
                    scale,
                    Some(GAUSSIAN_GRANULARITY),
                )
                .map_err(opendp_err)?;
                measurement.invoke(&values.to_vec()).map_err(opendp_err)
            }
            #[cfg(feature = "seeded-noise")]
            Noise::Seeded(rng) => {
                use rand_distr::{Distribution, Normal};
                let normal = Normal::new(0.0, scale).map_err(|e| NoiseError(e.to_string()))?;
                Ok(values.iter().map(|v| v + normal.sample(rng.as_mut())).collect())
            }
        }
    }

    /// An index drawn with the given probabilities (which sum to 1), by a chain of OpenDP
    /// Bernoulli draws: index i is taken with probability pᵢ / (pᵢ + … + p_last).
    pub fn categorical(&mut self, probabilities: &[f32]) -> Result<usize, NoiseError> {
        let mut remaining: f64 = probabilities.iter().map(|&p| p.max(0.0) as f64).sum();
        for (i, &p) in probabilities
            .iter()
            .enumerate()
            .take(probabilities.len().saturating_sub(1))
        {
            let p = p.max(0.0) as f64;
            if remaining > 0.0 && self.bernoulli((p / remaining).min(1.0))? {
                return Ok(i);
            }
            remaining -= p;
        }
        Ok(probabilities.len().saturating_sub(1))
    }

    /// An integer from the discrete Laplace distribution, P(x) ∝ e^(−|x|/scale) (OpenDP's
    /// `make_laplace` on an integer, for a server's central noise; seeded, the difference of two
    /// geometric draws).
    pub fn discrete_laplace(&mut self, scale: f64) -> Result<i64, NoiseError> {
        match self {
            Noise::Secure => {
                let measurement = opendp::measurements::make_laplace::<_, _, opendp::measures::MaxDivergence>(
                    AtomDomain::<i64>::default(),
                    opendp::metrics::AbsoluteDistance::<i64>::default(),
                    scale,
                    None,
                )
                .map_err(opendp_err)?;
                measurement.invoke(&0).map_err(opendp_err)
            }
            #[cfg(feature = "seeded-noise")]
            Noise::Seeded(rng) => {
                use rand::Rng;
                let alpha = (-1.0 / scale).exp();
                let mut geometric = || {
                    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                    (u.ln() / alpha.ln()).floor() as i64
                };
                Ok(geometric() - geometric())
            }
        }
    }

    /// A uniformly random 64-bit value (for the public hash seed of local hashing).
    pub fn uniform_u64(&mut self) -> Result<u64, NoiseError> {
        match self {
            Noise::Secure => sample_from_uniform_bytes::<u64, 8>().map_err(opendp_err),
            #[cfg(feature = "seeded-noise")]
            Noise::Seeded(rng) => {
                use rand::RngCore;
                Ok(rng.next_u64())
            }
        }
    }

    /// A uniformly random index below `upper`.
    pub fn uniform_below(&mut self, upper: usize) -> Result<usize, NoiseError> {
        match self {
            Noise::Secure => Ok(sample_uniform_uint_below::<u64, 8>(upper as u64).map_err(opendp_err)? as usize),
            #[cfg(feature = "seeded-noise")]
            Noise::Seeded(rng) => {
                use rand::Rng;
                Ok(rng.gen_range(0..upper))
            }
        }
    }

    /// A uniform random subset of `m` of the indices `0..n`, in increasing order (all of them
    /// when `n <= m`), by a partial Fisher–Yates shuffle.
    pub fn sample_indices(&mut self, n: usize, m: usize) -> Result<Vec<usize>, NoiseError> {
        let mut indices: Vec<usize> = (0..n).collect();
        let m = m.min(n);
        for i in 0..m {
            let j = i + self.uniform_below(n - i)?;
            indices.swap(i, j);
        }
        indices.truncate(m);
        indices.sort_unstable();
        Ok(indices)
    }
}
