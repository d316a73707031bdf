//! Release: a signed, immutable JSON document of everything the study may publish — estimates
//! with 95% intervals, cells withheld unless their count is reliably at least `k` (with false
//! discoveries controlled across the release), central-DP counts, the study's privacy parameters
//! and the cumulative ledger of the version's central spending.

pub mod cells;
pub mod central;
pub mod csv;
pub mod publish;
pub mod sign;

use crate::analyze::{
    collect, cross_tab, debiased_category, embedding_mean, estimate_facets, estimate_groups, Axis, Collected, CrossTab,
    FacetEstimate, GroupEstimate,
};
use crate::discover::discover;
use crate::storage::{ReleaseSummary, Storage, StorageError};
use cells::{round, Cells, TableRange};
use central::{central_counts, Central, ExactCounts, History};
use chorus_messages::Channel;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::release::SignedRelease;
use chorus_shared::study::CompiledStudy;
use publish::Candidate;
use serde_json::{json, Map, Value};
use sign::Signer;

/// Version of the release document's layout.
pub const RELEASE_FORMAT: u32 = 3;

/// Why a release could not be cut.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("study `{study}` has no reports in version {version} yet")]
    NoReports { study: String, version: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
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

/// Cuts the next release of `study`: reads every stored report, estimates, decides what is
/// published, adds central noise within the version's budget, signs, and stores the document.
/// Returns its summary and the signed document.
pub fn cut(
    storage: &dyn Storage,
    study: &CompiledStudy,
    signer: &Signer,
    options: &ReleaseOptions,
) -> Result<(ReleaseSummary, SignedRelease), ReleaseError> {
    let collected = collect(storage, study)?;
    if collected.reports.is_empty() {
        return Err(ReleaseError::NoReports {
            study: study.id.clone(),
            version: study.version.clone(),
        });
    }
    let history = History::read(storage, study)?;
    let number = storage.release_count(&study.id)? + 1;
    let now = now_secs();
    let summary = ReleaseSummary {
        id: format!("{}-r{number}", study.id),
        study_id: study.id.clone(),
        created: timestamp(now),
    };
    let release = build(
        study,
        &collected,
        &summary,
        now.div_euclid(86_400),
        options,
        &history,
        &mut Noise::Secure,
    )
    .map_err(ReleaseError::Failed)?;
    let signed = signer.sign(release);
    let document = serde_json::to_string_pretty(&signed).expect("a release serialises");
    storage.insert_release(&summary, &document)?;
    Ok((summary, signed))
}

/// The release document (unsigned), cut on day `today` (days since 1970-01-01), after the
/// version's earlier releases (`history`). `noise` draws the central noise: OpenDP's secure
/// sampler for a stored release, a seeded one only in simulations.
pub fn build(
    study: &CompiledStudy,
    collected: &Collected,
    summary: &ReleaseSummary,
    today: i64,
    options: &ReleaseOptions,
    history: &History,
    noise: &mut Noise,
) -> Result<Value, String> {
    let k = study.release.k as f64;
    let central = central_counts(
        study,
        &exact_counts(study, collected, &summary.id, today),
        history,
        k,
        noise,
    )?;
    let total = central.reports.max(1.0);
    let seed = seed_from(&summary.id);
    let facets = estimate_facets(study, &collected.reports);
    let levels = topic_levels(study, collected);
    let tabs = crosstabs(study, collected);

    let mut cells = Cells::default();
    let facet_ranges: Vec<TableRange> = facets
        .iter()
        .map(|f| cells.add(candidates(&f.estimate.shares, &f.estimate.standard_errors)))
        .collect();
    let level_ranges: Vec<TableRange> = levels
        .iter()
        .map(|e| cells.add(candidates(&e.shares, &e.standard_errors)))
        .collect();
    let debiased_range = debiased_candidates(study, collected, total, seed).map(|d| cells.add(d));
    let tab_ranges: Vec<TableRange> = tabs
        .iter()
        .map(|tab| cells.add(crosstab_candidates(study, tab, &facets, &levels, total)))
        .collect();
    cells.decide(k, total);

    let mut facets_json = Map::new();
    for (f, range) in facets.iter().zip(&facet_ranges) {
        if !f.channel.is_topic() {
            let mut facet = facet_json(f, &cells, *range, total);
            if f.channel == Channel::Category {
                category_mix(study, &mut facet, &f.labels, &cells, debiased_range, total);
            }
            facets_json.insert(f.channel.name().to_owned(), facet);
        }
    }
    let mut release = json!({
        "format": RELEASE_FORMAT,
        "id": summary.id,
        "created": summary.created,
        "demo": options.demo,
        "study": {"id": study.id, "version": study.version, "title": study.title,
                  "description": study.description, "model_sha256": study.model_sha256},
        "privacy": privacy_json(study),
        "ledger": ledger_json(study, &central),
        "counts": central.counts,
        "publication": {"rule": publish::rule(study.release.k, study.release.crosstab_min_reports),
                        "family_error": publish::FAMILY_ERROR, "cells_tested": cells.tested(),
                        "cells_published": cells.published()},
        "cells": CELLS_METHOD,
        "facets": facets_json,
        "crosstabs": tabs.iter().zip(&tab_ranges)
            .map(|(tab, range)| (format!("{}_by_{}", tab.rows, tab.columns), crosstab_json(tab, &cells, *range, total)))
            .collect::<Map<_, _>>(),
    });
    if let Some(topics) = topics_json(study, &cells, &level_ranges, total) {
        release["topics"] = topics;
    }
    add_embedding_findings(&mut release, study, collected, k, seed);
    Ok(release)
}

/// The corrected category mix as candidate cells: a table of its own, computed only where the
/// study's validation found that the correction beats the devices' estimate on held-out
/// labelled examples at this many reports.
fn debiased_candidates(study: &CompiledStudy, collected: &Collected, total: f64, seed: u64) -> Option<Vec<Candidate>> {
    study.category_validation.as_ref().filter(|v| v.debias_at(total))?;
    let d = debiased_category(study, &collected.reports, seed)?;
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
fn add_embedding_findings(release: &mut Value, study: &CompiledStudy, collected: &Collected, k: f64, seed: u64) {
    let embeddings: Vec<&[f32]> = collected
        .reports
        .iter()
        .filter_map(|r| r.embedding.as_deref())
        .collect();
    if let Some(found) = discover(study, &embeddings, k, seed) {
        release["discovery"] = json!({
            "method": "Gaussian mixture with the known noise variance (deconvolved EM), clusters chosen by BIC, kept when their count is reliably at least k and their centroids are separated beyond their standard errors",
            "sigma": found.sigma,
            "fitted": found.fitted,
            "clusters": found.clusters,
            "note": found.note,
        });
    }
    if let Some(mean) = embedding_mean(&collected.reports) {
        release["embedding_mean"] = json!({
            "mean": mean.mean.iter().map(|x| round(*x)).collect::<Vec<_>>(),
            "standard_errors": mean.standard_errors.iter().map(|x| round(*x)).collect::<Vec<_>>(),
        });
    }
}

/// What the server counts un-noised, for the central mechanism.
fn exact_counts<'a>(study: &CompiledStudy, collected: &Collected, release: &'a str, today: i64) -> ExactCounts<'a> {
    let m = study.privacy.reports_per_contributor as i64;
    let per_day = study.release.start_day().filter(|&start| start <= today).map(|start| {
        let days: Vec<i64> = (start..=today)
            .map(|d| collected.per_day.get(&d).copied().unwrap_or(0) as i64)
            .collect();
        (start, days)
    });
    let mut by_reports_sent = vec![0i64; m as usize];
    for &n in collected.per_contributor.values() {
        by_reports_sent[(n.clamp(1, m as u32) - 1) as usize] += 1;
    }
    ExactCounts {
        contributors: collected.per_contributor.len() as i64,
        reports: collected.reports.len() as i64,
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

/// Every level of the codebook's hierarchy, estimated (top first); empty without a codebook.
fn topic_levels(study: &CompiledStudy, collected: &Collected) -> Vec<GroupEstimate> {
    let depth = study.codebook.as_ref().map_or(0, |c| c.levels.len());
    let levels: Option<Vec<GroupEstimate>> = (0..depth)
        .map(|level| estimate_groups(study, &Axis::topic_level(study, level)?, &collected.reports))
        .collect();
    levels.unwrap_or_default()
}

/// Which categories and topics are over- or under-represented in each language (Clio's
/// cross-language comparison); the leaves are too fine for the reports a language gets.
fn crosstabs(study: &CompiledStudy, collected: &Collected) -> Vec<CrossTab> {
    let Some(language) = Axis::channel(study, Channel::Language) else {
        return Vec::new();
    };
    let depth = study.codebook.as_ref().map_or(0, |c| c.levels.len());
    std::iter::once(Axis::channel(study, Channel::Category))
        .chain((0..depth.saturating_sub(1)).map(|level| Axis::topic_level(study, level)))
        .flatten()
        .filter_map(|row| cross_tab(study, &row, &language, &collected.reports))
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

fn privacy_json(study: &CompiledStudy) -> Value {
    let plan = &study.privacy;
    let a = &plan.accounting;
    json!({
        "per_report": a.per_report, "contributor": a.contributor, "composition": a.composition,
        "reports_per_contributor": plan.reports_per_contributor,
        "lifetime_epsilon_cap": plan.lifetime_epsilon_cap,
        "channels": plan.channels.iter().map(|c| json!({"channel": c.channel, "oracle": c.oracle,
                     "pool": c.pool, "values": c.labels})).collect::<Vec<_>>(),
        "embedding": plan.embedding.as_ref().map(|e| json!({"dimensions": e.dimensions(), "clip": e.clip, "sigma": e.sigma})),
        "k": study.release.k,
        "central_epsilon": study.release.central_epsilon,
        "central_epsilon_total": study.release.central_epsilon_total,
    })
}

fn ledger_json(study: &CompiledStudy, central: &Central) -> Value {
    let a = &study.privacy.accounting;
    json!({
        "local": {"guarantee": a.contributor, "mechanisms": "frequency oracles and the Gaussian mechanism on each device (see privacy); estimates and intervals are post-processing of those reports"},
        "central": central.ledger,
        "central_epsilon_spent": central.ledger.iter().map(|e| e.epsilon).sum::<f64>(),
        "central_epsilon_total": study.release.central_epsilon_total,
        "central_epsilon_this_release": central.spent_now,
        "note": "central spending is cumulative over every release of this study version; once the total is spent, releases re-publish the last noisy counts instead of drawing new noise",
    })
}

/// How to read a cell, in the release itself.
const CELLS_METHOD: &str = "share: the estimate of the value's share, in [0, 1]; ci95: its 95% \
interval. A cell is published only because its estimate cleared the threshold, so share and ci95 \
are those of the estimate given that it did (the median and the middle 95% of a normal estimate \
truncated at the threshold): far above the threshold they are the estimate and ±1.96 standard \
errors, just above it the interval reaches lower. unbiased and se: the raw unbiased estimate \
(its noise can take it slightly outside [0, 1]) and its standard error; count and count_ci95: \
share and interval times the (noisy) number of reports. A withheld cell says why: 'below k' (its \
count is not reliably at least k) or 'too few reports' (its cross-tab row or column holds too few \
reports to test it) — a withheld cell is not a zero. Counts carry noise twice (the reports' local \
noise and the central noise on the total), so published counts can add up to more than the \
reports.";

fn facet_json(f: &FacetEstimate, cells: &Cells, range: TableRange, total: f64) -> Value {
    let cells_json: Vec<Value> = f
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| cells.cell(range, i, l, total))
        .collect();
    json!({"oracle": f.oracle, "cells": cells_json})
}

/// What the category facet says of the true mix of categories: the debiased mix where the
/// study's validation found it beats the devices' estimate, else the devices' estimate with the
/// classifier-error band that validation measured.
fn category_mix(
    study: &CompiledStudy,
    facet: &mut Value,
    labels: &[String],
    cells: &Cells,
    debiased: Option<TableRange>,
    total: f64,
) {
    let Some(v) = &study.category_validation else {
        facet["estimates"] = json!("the categories as the devices' classifier assigns them; the classifier's errors were not measured (the study has no labelled examples)");
        return;
    };
    let validation = json!({"held_out_mixes": v.mixes,
        "without_noise": {"tvd_devices": round(v.tvd_devices), "tvd_debiased": round(v.tvd_debiased),
                          "tvd_classify_and_count": round(v.tvd_counted)},
        "through_the_channel": v.noisy.iter().map(|a| json!({"reports": a.reports,
            "tvd_devices": round(a.tvd_devices), "tvd_debiased": round(a.tvd_debiased)})).collect::<Vec<_>>(),
        "band": labels.iter().zip(&v.band).map(|(l, b)| (l.clone(), json!(round(*b)))).collect::<Map<_, _>>()});
    facet["validation"] = validation;
    if let Some(range) = debiased {
        facet["estimates"] = json!("cells: the categories as the devices' classifier assigns them; debiased: the true mix, corrected for the classifier's errors, which at this many reports beat the devices' estimate on held-out labelled conversations (validation); its intervals carry the devices' noise and the uncertainty of the classifier's measured errors");
        facet["debiased"] = labels
            .iter()
            .enumerate()
            .map(|(i, l)| cells.cell(range, i, l, total))
            .collect::<Vec<_>>()
            .into();
    } else {
        facet["estimates"] = json!(format!(
            "the categories as the devices' classifier assigns them, not the true mix: at this many reports, correcting for the classifier's errors did not beat this estimate on held-out labelled conversations ({} shifted mixes; see validation: the correction amplifies the devices' noise). The true share of a category was within its band of this estimate in 95% of those mixes: read a cell as its interval widened by the band.",
            v.mixes
        ));
    }
}

/// The codebook's hierarchy with an estimate for every topic at every level (top first); a
/// topic's names and public example are public, so a withheld topic keeps them.
fn topics_json(study: &CompiledStudy, cells: &Cells, ranges: &[TableRange], total: f64) -> Option<Value> {
    let codebook = study.codebook.as_ref()?;
    if ranges.len() != codebook.levels.len() {
        return None;
    }
    let levels: Vec<Value> = codebook
        .levels
        .iter()
        .zip(ranges)
        .enumerate()
        .map(|(depth, (topics, range))| {
            let level: Vec<Value> = topics
                .iter()
                .enumerate()
                .map(|(i, topic)| {
                    let mut c = cells.cell(*range, i, &topic.id, total);
                    c["name"] = json!(topic.name);
                    c["parent"] = json!(topic.parent.map(|p| codebook.levels[depth - 1][p].id.clone()));
                    c["keywords"] = json!(topic.keywords);
                    c["example"] = json!(topic.example);
                    c["public_share"] = json!(round(topic.public_share));
                    c
                })
                .collect();
            Value::Array(level)
        })
        .collect();
    Some(json!({
        "method": "each report carries its topic at one level of the codebook (drawn at random) through that level's frequency oracle; a level's shares are the means of the reports' unbiased indicators; a level the study does not report sums its leaves' indicators",
        "source": codebook.source,
        "levels": levels,
    }))
}

fn crosstab_json(tab: &CrossTab, cells: &Cells, range: TableRange, total: f64) -> Value {
    let mut out = Vec::new();
    for (i, row) in tab.row_labels.iter().enumerate() {
        for (j, column) in tab.column_labels.iter().enumerate() {
            // Joint shares of all conversations; counts scale them to all reports.
            let mut c = cells.cell(
                range,
                i * tab.column_labels.len() + j,
                &format!("{row}|{column}"),
                total,
            );
            c["row"] = json!(row);
            c["column"] = json!(column);
            c.as_object_mut().expect("a cell is an object").remove("value");
            out.push(c);
        }
    }
    json!({"rows": tab.rows, "columns": tab.columns, "row_values": tab.row_labels,
           "column_values": tab.column_labels, "cells": out})
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
