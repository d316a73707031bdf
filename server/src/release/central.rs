//! Central differential privacy for what the server sees un-noised: how many contributors and
//! reports there are, on which days reports arrived, and how many reports each contributor
//! sent. The reports' contents are already locally private; these counts are not, because
//! they reveal who took part and when.
//!
//! Guarantee: each histogram gets OpenDP's discrete Laplace mechanism (`make_laplace` on
//! integer vectors under the L1 distance, pure ε-DP), with the sensitivity of one contributor
//! joining or leaving: 1 for the contributor count and the reports-per-contributor histogram,
//! `m` (the cap) for the report count and the reports-per-day histogram. The noise scale is
//! sensitivity / ε, and OpenDP's own privacy map confirms the ε spent, which goes to the ledger.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;
use serde::Serialize;

/// One line of a release's privacy ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    pub quantity: String,
    pub mechanism: String,
    /// L1 sensitivity to one contributor joining or leaving.
    pub sensitivity: i64,
    pub scale: f64,
    pub epsilon: f64,
    pub delta: f64,
}

/// `counts` with discrete Laplace noise for a pure-ε guarantee at the given sensitivity.
pub fn noisy_counts(
    quantity: &str,
    counts: &[i64],
    sensitivity: i64,
    epsilon: f64,
) -> Result<(Vec<i64>, LedgerEntry), String> {
    let scale = sensitivity as f64 / epsilon;
    let measurement = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )
    .map_err(|e| e.to_string())?;
    let spent = measurement.map(&sensitivity).map_err(|e| e.to_string())?;
    let noisy = measurement.invoke(&counts.to_vec()).map_err(|e| e.to_string())?;
    Ok((
        noisy,
        LedgerEntry {
            quantity: quantity.to_owned(),
            mechanism: "discrete Laplace (OpenDP make_laplace), central".into(),
            sensitivity,
            scale,
            epsilon: spent,
            delta: 0.0,
        },
    ))
}
