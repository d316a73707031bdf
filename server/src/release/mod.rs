//! Release: a signed, immutable JSON document of everything the study may publish — estimates
//! with 95% intervals, cells withheld unless their count is reliably at least `k` (with false
//! discoveries controlled across the release), central-DP counts, the study's privacy parameters
//! and the cumulative ledger of the version's central spending.

pub mod cells;
pub mod central;
pub mod csv;
pub mod publish;
pub mod sign;
mod write;

use crate::analyze::{collect, plausibility, CrossTab, FacetEstimate, GroupEstimate, Tally};
use crate::discover::discover;
use crate::storage::{ReleaseSummary, Storage, StorageError};
use cells::{round, Cells, TableRange};
use central::{central_counts, ExactCounts, History};
use chorus_messages::Channel;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::release::document::{Discovery, EmbeddingMean, Facet, Publication};
use chorus_shared::release::Release;
use chorus_shared::release::SignedRelease;
use chorus_shared::study::CompiledStudy;
use publish::Candidate;
use sign::Signer;
use std::collections::BTreeMap;

pub use chorus_shared::release::RELEASE_FORMAT;

/// Why a release could not be cut.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("study `{study}` has no reports in version {version} yet")]
    NoReports { study: String, version: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The version's central budget is spent, so a release would re-publish the noisy counts
    /// of release `last`, but the stored reports are no longer those it counted.
    #[error(
        "the central budget of study `{study}` version {version} is spent, and its reports have changed since \
         {last}, whose noisy counts a new release would re-publish: its shares would be scaled by the count of \
         other reports. {last} stands; to publish the reports stored now, release a new version of the study \
         (with a budget of its own)"
    )]
    BudgetSpent {
        study: String,
        version: String,
        last: String,
    },
    /// A mechanism or an earlier release document failed.
    #[error("{0}")]
    Failed(String),
}

impl ReleaseError {
    /// What may be shown and logged: a storage error without the database's own message.
    pub fn redacted(&self) -> String {
        match self {
            ReleaseError::Storage(e) => e.redacted(),
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReleaseOptions {
    /// Marks every number as coming from demo contributions (public conversations run through
    /// the client pipeline), not from real contributors.
    pub demo: bool,
}

/// Cuts the next release of `study`: reads every stored report once (running sums, see
/// [`Tally`]), estimates, decides what is
/// published, adds central noise within the version's budget, signs, and stores the document.
/// Returns its summary and the signed document.
pub fn cut(
    storage: &dyn Storage,
    study: &CompiledStudy,
    signer: &Signer,
    options: &ReleaseOptions,
) -> Result<(ReleaseSummary, SignedRelease), ReleaseError> {
    let number = storage.release_count(&study.id)? + 1;
    let now = now_secs();
    let summary = ReleaseSummary {
        id: format!("{}-r{number}", study.id),
        study_id: study.id.clone(),
        created: timestamp(now),
    };
    let tally = collect(storage, study, seed_from(&summary.id))?;
    if tally.reports == 0 {
        return Err(ReleaseError::NoReports {
            study: study.id.clone(),
            version: study.version.clone(),
        });
    }
    let history = History::read(storage, study)?;
    if let Some((last, _)) = history.last.as_ref().filter(|_| history.budget_spent(study)) {
        if history.last_counted.as_deref() != Some(tally.counted.as_str()) {
            return Err(ReleaseError::BudgetSpent {
                study: study.id.clone(),
                version: study.version.clone(),
                last: last.clone(),
            });
        }
    }
    let release = build(
        study,
        &tally,
        &summary,
        now.div_euclid(86_400),
        options,
        &history,
        &mut Noise::Secure,
    )
    .map_err(ReleaseError::Failed)?;
    let signed = signer.sign(serde_json::to_value(&release).expect("a release serialises"));
    let document = serde_json::to_string_pretty(&signed).expect("a release serialises");
    storage.insert_release(&summary, &document, &tally.counted)?;
    Ok((summary, signed))
}

/// The release document (unsigned), cut on day `today` (days since 1970-01-01), after the
/// version's earlier releases (`history`). `noise` draws the central noise: OpenDP's secure
/// sampler for a stored release, a seeded one only in simulations.
pub fn build(
    study: &CompiledStudy,
    tally: &Tally,
    summary: &ReleaseSummary,
    today: i64,
    options: &ReleaseOptions,
    history: &History,
    noise: &mut Noise,
) -> Result<Release, String> {
    let k = study.release.k as f64;
    let central = central_counts(
        study,
        &exact_counts(study, tally, &summary.id, today),
        history,
        k,
        noise,
    )?;
    let total = central.reports.max(1.0);
    let seed = seed_from(&summary.id);
    // The topic channels are published as the hierarchy's levels (below), tested once there:
    // the family Holm's procedure controls is exactly the release's cells.
    let facets: Vec<FacetEstimate> = (tally.facets().into_iter()).filter(|f| !f.channel.is_topic()).collect();
    let levels = tally.topic_levels();
    let tabs = tally.crosstabs();

    let mut cells = Cells::default();
    let facet_ranges: Vec<TableRange> = facets
        .iter()
        .map(|f| cells.add(candidates(&f.estimate.shares, &f.estimate.standard_errors)))
        .collect();
    let level_ranges: Vec<TableRange> = levels
        .iter()
        .map(|e| cells.add(candidates(&e.shares, &e.standard_errors)))
        .collect();
    let debiased_range = debiased_candidates(study, tally, total, seed).map(|d| cells.add(d));
    let tab_ranges: Vec<TableRange> = tabs
        .iter()
        .map(|tab| cells.add(crosstab_candidates(study, tab, &facets, &levels, total)))
        .collect();
    cells.decide(k, total);

    let mut release = Release {
        format: RELEASE_FORMAT,
        id: summary.id.clone(),
        created: summary.created.clone(),
        demo: options.demo,
        study: write::study_info(study),
        privacy: write::privacy_parameters(study),
        ledger: write::ledger(study, &central),
        counts: central.counts,
        publication: Publication {
            rule: publish::rule(study.release.k, study.release.crosstab_min_reports),
            family_error: publish::FAMILY_ERROR,
            cells_tested: cells.tested(),
            cells_published: cells.published(),
        },
        plausibility: plausibility(study, tally),
        cells: write::CELLS_METHOD.to_owned(),
        facets: facet_tables(study, &facets, &facet_ranges, &cells, debiased_range, total),
        crosstabs: tabs
            .iter()
            .zip(&tab_ranges)
            .map(|(tab, range)| {
                let name = format!("{}_by_{}", tab.rows, tab.columns);
                (name, write::crosstab(tab, &cells, *range, total))
            })
            .collect(),
        topics: write::topics(study, &cells, &level_ranges, total),
        discovery: None,
        embedding_mean: None,
    };
    add_embedding_findings(&mut release, study, tally, k, seed);
    Ok(release)
}

/// One table per facet (every reported channel but the topic levels'); the category's with what its
/// validation found (and the corrected mix where it is published).
fn facet_tables(
    study: &CompiledStudy,
    facets: &[FacetEstimate],
    ranges: &[TableRange],
    cells: &Cells,
    debiased: Option<TableRange>,
    total: f64,
) -> BTreeMap<String, Facet> {
    let mut tables = BTreeMap::new();
    for (f, range) in facets.iter().zip(ranges) {
        let mut facet = write::facet(f, cells, *range, total);
        if f.channel == Channel::Category {
            write::category_mix(study, &mut facet, &f.labels, cells, debiased, total);
        }
        tables.insert(f.channel.name().to_owned(), facet);
    }
    tables
}

/// The corrected category mix as candidate cells: a table of its own, computed only where the
/// study's validation found that the correction beats the devices' estimate on held-out
/// labelled examples at this many reports.
fn debiased_candidates(study: &CompiledStudy, tally: &Tally, total: f64, seed: u64) -> Option<Vec<Candidate>> {
    study.category_validation.as_ref().filter(|v| v.debias_at(total))?;
    let d = tally.debiased_category(study, seed)?;
    Some(
        d.shares
            .iter()
            .zip(&d.se)
            .zip(&d.ci95)
            .map(|((&unbiased, &se), &ci)| Candidate {
                unbiased,
                se,
                tested: true,
                interval: Some(ci),
            })
            .collect(),
    )
}

/// What the noisy embeddings support: discovered clusters and the mean embedding.
fn add_embedding_findings(release: &mut Release, study: &CompiledStudy, tally: &Tally, k: f64, seed: u64) {
    let (sample, embeddings) = tally.embedding_sample();
    release.discovery = discover(study, &sample, embeddings, k, seed).map(|found| Discovery {
        method: "Gaussian mixture with the known noise variance (deconvolved EM), clusters chosen by BIC, kept when their count is reliably at least k and their centroids are separated beyond their standard errors".into(),
        sigma: found.sigma,
        fitted: found.fitted,
        clusters: found.clusters,
        note: found.note,
    });
    release.embedding_mean = tally.embedding_mean().map(|mean| EmbeddingMean {
        mean: mean.mean.iter().map(|x| round(*x)).collect(),
        standard_errors: mean.standard_errors.iter().map(|x| round(*x)).collect(),
    });
}

/// What the server counts un-noised, for the central mechanism.
fn exact_counts<'a>(study: &CompiledStudy, tally: &Tally, release: &'a str, today: i64) -> ExactCounts<'a> {
    let m = study.privacy.reports_per_contributor as i64;
    let per_day = study.release.start_day().filter(|&start| start <= today).map(|start| {
        let days: Vec<i64> = (start..=today)
            .map(|d| tally.per_day.get(&d).copied().unwrap_or(0) as i64)
            .collect();
        (start, days)
    });
    let mut by_reports_sent = vec![0i64; m as usize];
    for (&n, &contributors) in &tally.contributors_by_reports {
        by_reports_sent[(n.clamp(1, m as u32) - 1) as usize] += contributors as i64;
    }
    ExactCounts {
        contributors: tally.contributors() as i64,
        reports: tally.reports as i64,
        per_day,
        by_reports_sent,
        m,
        release,
    }
}

fn candidates(shares: &[f64], standard_errors: &[f64]) -> Vec<Candidate> {
    shares
        .iter()
        .zip(standard_errors)
        .map(|(&unbiased, &se)| Candidate {
            unbiased,
            se,
            tested: true,
            interval: None,
        })
        .collect()
}

/// A cross-tab's cells as candidates: a row or column is tested only when the reports carrying
/// both channels are expected to hold at least `crosstab_min_reports` of its value (its own
/// estimate's lower 95% bound, times the reports, times the share of reports carrying both).
fn crosstab_candidates(
    study: &CompiledStudy,
    tab: &CrossTab,
    facets: &[FacetEstimate],
    levels: &[GroupEstimate],
    total: f64,
) -> Vec<Candidate> {
    let carried = |channel: Channel| -> f64 {
        let plan = study.privacy.channel(channel);
        let pool = plan.and_then(|c| c.pool.as_deref());
        pool.map_or(1.0, |p| 1.0 / study.privacy.pools()[p].len() as f64)
    };
    let both = total * carried(tab.row_channel) * carried(tab.column_channel);
    // A row or column is tested on its own estimate (a topic level's, or its channel's); a
    // level with too few reports to estimate leaves its rows untested.
    let margin = |name: &str, channel: Channel| -> Vec<bool> {
        let estimate = match name.strip_prefix("topic_level").and_then(|l| l.parse::<usize>().ok()) {
            Some(level) => level
                .checked_sub(1)
                .and_then(|l| levels.get(l))
                .map(|e| (&e.shares, &e.standard_errors)),
            None => facets
                .iter()
                .find(|f| f.channel == channel)
                .map(|f| (&f.estimate.shares, &f.estimate.standard_errors)),
        };
        let Some((shares, errors)) = estimate else {
            return vec![
                false;
                if name == tab.rows {
                    tab.row_labels.len()
                } else {
                    tab.column_labels.len()
                }
            ];
        };
        let min = study.release.crosstab_min_reports as f64;
        shares
            .iter()
            .zip(errors)
            .map(|(s, se)| (s - 1.96 * se).max(0.0) * both >= min)
            .collect()
    };
    let (rows, columns) = (
        margin(&tab.rows, tab.row_channel),
        margin(&tab.columns, tab.column_channel),
    );
    let mut out = Vec::with_capacity(rows.len() * columns.len());
    for (i, row_ok) in rows.iter().enumerate() {
        for (j, column_ok) in columns.iter().enumerate() {
            out.push(Candidate {
                unbiased: tab.shares[i][j],
                se: tab.standard_errors[i][j],
                tested: *row_ok && *column_ok,
                interval: None,
            });
        }
    }
    out
}

/// A deterministic seed for a release's bootstrap (its intervals do not change on re-reading).
fn seed_from(id: &str) -> u64 {
    chorus_shared::stable_hash::fnv1a(id.as_bytes())
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 UTC timestamp of Unix seconds.
pub fn timestamp(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(days),
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(11_016), "2000-02-29");
        assert_eq!(date(20_786), "2026-11-29");
        assert_eq!(timestamp(1_796_000_000), "2026-11-30T00:53:20Z");
        for days in [-1, 0, 11_016, 20_786, 60_000] {
            assert_eq!(chorus_shared::study::days_from_date(&date(days)), Some(days));
        }
    }
}
