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
//!
//! The ledger is cumulative per study version: every release lists every central spending of
//! the version so far. A release spends `central_epsilon` while the version's
//! `central_epsilon_total` allows it; after that, releases re-publish the last noisy counts
//! (post-processing, free) instead of drawing fresh noise that averaging would remove, and only
//! over the reports those counts were drawn for: a release scales its shares by the number of
//! reports (cell counts, the threshold k / reports, the correction's verdict), so another set
//! of reports under the old count would publish numbers of neither (see `release::cut`).

use crate::storage::Storage;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::release::document::{Counts, DayCount, LedgerEntry, Suppressed};
use chorus_shared::study::CompiledStudy;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;
use serde_json::Value;

/// What earlier releases of the same study version spent and published.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every central spending of the version so far, oldest first.
    pub entries: Vec<LedgerEntry>,
    /// The latest release of the version: its id and its published counts.
    pub last: Option<(String, Counts)>,
    /// The digest of the batches the latest release counted (kept by the server alone; `None`
    /// when it was stored before servers kept it).
    pub last_counted: Option<String>,
}

impl History {
    /// Reads the version's earlier releases from the store (they are immutable and signed, so
    /// they are the ledger).
    pub fn read(storage: &dyn Storage, study: &CompiledStudy) -> Result<History, super::ReleaseError> {
        let damaged = |id: &str, e: serde_json::Error| super::ReleaseError::Failed(format!("release {id}: {e}"));
        let mut history = History::default();
        for summary in storage.releases()?.iter().filter(|s| s.study_id == study.id) {
            let Some(text) = storage.release(&summary.id)? else {
                continue;
            };
            let document: Value = serde_json::from_str(&text).map_err(|e| damaged(&summary.id, e))?;
            // Only the version and the two parts read here: releases of other versions (and
            // other layouts) are not this version's ledger.
            let release = &document["release"];
            if release["study"]["version"] != study.version.as_str() {
                continue;
            }
            let central: Vec<LedgerEntry> =
                serde_json::from_value(release["ledger"]["central"].clone()).map_err(|e| damaged(&summary.id, e))?;
            let counts: Counts =
                serde_json::from_value(release["counts"].clone()).map_err(|e| damaged(&summary.id, e))?;
            for mut entry in central {
                if entry.release.is_empty() {
                    entry.release = summary.id.clone();
                }
                if !history.entries.contains(&entry) {
                    history.entries.push(entry);
                }
            }
            history.last = Some((summary.id.clone(), counts));
        }
        if let Some((id, _)) = &history.last {
            history.last_counted = storage.release_counted(id)?;
        }
        Ok(history)
    }

    pub fn spent(&self) -> f64 {
        self.entries.iter().map(|e| e.epsilon).sum()
    }

    /// Whether the version's central budget has no room for another release's spending: from
    /// then on a release re-publishes the last noisy counts.
    pub fn budget_spent(&self, study: &CompiledStudy) -> bool {
        let config = &study.release;
        self.spent() + config.central_epsilon > config.central_epsilon_total + 1e-9
    }
}

/// What the server counts un-noised, before the central mechanism.
pub struct ExactCounts<'a> {
    pub contributors: i64,
    pub reports: i64,
    /// Reports per day from the study's start to the release's day (none without a start).
    pub per_day: Option<(i64, Vec<i64>)>,
    /// Contributors by the number of reports they sent (1..=m).
    pub by_reports_sent: Vec<i64>,
    pub m: i64,
    pub release: &'a str,
}

/// The counts a release publishes and the ledger after it.
pub struct Central {
    pub counts: Counts,
    /// The noisy number of reports, which cell counts scale shares by.
    pub reports: f64,
    pub ledger: Vec<LedgerEntry>,
    /// What this release spent (0 when it re-published earlier counts).
    pub spent_now: f64,
}

/// Fresh noisy counts while the version's budget allows, else the last release's counts again.
pub fn central_counts(
    study: &CompiledStudy,
    exact: &ExactCounts<'_>,
    history: &History,
    k: f64,
    noise: &mut Noise,
) -> Result<Central, String> {
    let config = &study.release;
    let mut ledger = history.entries.clone();
    if history.budget_spent(study) {
        if let Some((id, counts)) = &history.last {
            // The release whose noise these counts carry (an earlier re-publication names it).
            let mut counts = counts.clone();
            counts.republished_from.get_or_insert_with(|| id.clone());
            let reports = counts.reports as f64;
            return Ok(Central {
                counts,
                reports,
                ledger,
                spent_now: 0.0,
            });
        }
        return Err("the study version's central budget is spent and no earlier release holds counts".into());
    }
    let histograms = if exact.per_day.is_some() { 4.0 } else { 3.0 };
    let epsilon = config.central_epsilon / histograms;
    let mut noisy = |quantity: &str, counts: &[i64], sensitivity: i64| -> Result<Vec<i64>, String> {
        let (values, mut entry) = noisy_counts(quantity, counts, sensitivity, epsilon, noise)?;
        entry.release = exact.release.to_owned();
        ledger.push(entry);
        Ok(values)
    };
    let contributors = noisy("contributors", &[exact.contributors], 1)?[0].max(0);
    let reports = noisy("reports", &[exact.reports], exact.m)?[0].max(0);
    let by_sent = noisy("contributors by reports sent", &exact.by_reports_sent, 1)?;
    let reports_per_day = match &exact.per_day {
        Some((start, days)) => Some(
            noisy("reports per day", days, exact.m)?
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let count = if (n as f64) >= k {
                        DayCount::Count(n)
                    } else {
                        DayCount::Withheld(Suppressed::Suppressed)
                    };
                    (super::date(start + i as i64), count)
                })
                .collect(),
        ),
        None => None,
    };
    let counts = Counts {
        contributors,
        reports,
        contributors_by_reports_sent: by_sent
            .iter()
            .enumerate()
            .map(|(i, &n)| ((i + 1).to_string(), n.max(0)))
            .collect(),
        reports_per_day,
        republished_from: None,
    };
    Ok(Central {
        counts,
        reports: reports as f64,
        ledger,
        spent_now: config.central_epsilon,
    })
}

/// `counts` with discrete Laplace noise for a pure-ε guarantee at the given sensitivity.
pub fn noisy_counts(
    quantity: &str,
    counts: &[i64],
    sensitivity: i64,
    epsilon: f64,
    noise: &mut Noise,
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
    let noisy = if noise.is_secure() {
        measurement.invoke(&counts.to_vec()).map_err(|e| e.to_string())?
    } else {
        // A simulation's seeded draws of the same distribution (never for a stored release).
        counts
            .iter()
            .map(|&c| Ok(c + noise.discrete_laplace(scale)?))
            .collect::<Result<_, chorus_shared::privacy::noise::NoiseError>>()
            .map_err(|e| e.to_string())?
    };
    Ok((
        noisy,
        LedgerEntry {
            release: String::new(),
            quantity: quantity.to_owned(),
            mechanism: "discrete Laplace (OpenDP make_laplace), central".into(),
            sensitivity,
            scale,
            epsilon: spent,
            delta: 0.0,
        },
    ))
}
