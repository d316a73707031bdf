//! What the server accepts: a batch is checked against the study version it names before
//! anything is stored. Every check has its own rejection, so that a client (or its developer)
//! knows what to fix.

use super::Rejection;
use chorus_messages::{Report, ReportBatch, PROTOCOL_VERSION};
use chorus_shared::privacy::PrivacyPlan;
use chorus_shared::study::CompiledStudy;

/// How far beyond the clip bound a noised embedding may lie: a Gaussian vector's norm exceeds
/// σ(√d′ + t) with probability below e^(−t²/2); t = 8 makes a false rejection a 10⁻¹⁴ event.
const NORM_TAIL: f64 = 8.0;

fn is_random_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a batch posted to `study` (the study the URL names, in its current version).
pub fn validate(batch: &ReportBatch, study: &CompiledStudy) -> Result<(), Rejection> {
    check_envelope(batch, study)?;
    let plan = &study.privacy;
    let m = plan.reports_per_contributor as usize;
    if batch.reports.is_empty() {
        return Err(Rejection::invalid("a batch needs at least one report".into()));
    }
    if batch.reports.len() > m {
        return Err(Rejection::over_cap(format!(
            "{} reports in one batch; this study takes at most {m} per contributor",
            batch.reports.len()
        )));
    }
    for (i, report) in batch.reports.iter().enumerate() {
        let bad = |what: String| Rejection::invalid(format!("report {i}: {what}"));
        check_channels(report, plan).map_err(bad)?;
        check_embedding(report, plan).map_err(bad)?;
    }
    Ok(())
}

/// The batch's protocol, study, version and identifiers.
fn check_envelope(batch: &ReportBatch, study: &CompiledStudy) -> Result<(), Rejection> {
    if batch.protocol != PROTOCOL_VERSION {
        return Err(Rejection::invalid(format!(
            "protocol version {} is not supported (this server speaks {PROTOCOL_VERSION})",
            batch.protocol
        )));
    }
    if batch.study_id != study.id {
        return Err(Rejection::wrong_study(format!(
            "the batch was made for study `{}`, not `{}`",
            batch.study_id, study.id
        )));
    }
    if batch.study_version != study.version {
        return Err(Rejection::wrong_study(format!(
            "the batch was made for version {} of study `{}`; the current version is {} — reload the study and analyse again",
            batch.study_version, study.id, study.version
        )));
    }
    if !is_random_id(&batch.contributor) || !is_random_id(&batch.idempotency_key) {
        return Err(Rejection::invalid(
            "contributor and idempotency_key must each be 32 lowercase hex digits".into(),
        ));
    }
    Ok(())
}

/// Every channel the study has, outside pools; exactly one of each pool; every value in its
/// domain.
fn check_channels(report: &Report, plan: &PrivacyPlan) -> Result<(), String> {
    for (channel, value) in &report.channels {
        let Some(c) = plan.channel(*channel) else {
            return Err(format!("this study has no `{}` channel", channel.name()));
        };
        if !c.oracle.accepts(value) {
            return Err(format!("the `{}` value is outside its domain", channel.name()));
        }
    }
    for c in plan.channels.iter().filter(|c| c.pool.is_none()) {
        if !report.channels.contains_key(&c.channel) {
            return Err(format!("the `{}` channel is missing", c.channel.name()));
        }
    }
    for (name, pool) in &plan.pools() {
        let pooled = pool.iter().filter(|c| report.channels.contains_key(&c.channel)).count();
        if pooled != 1 {
            return Err(format!(
                "{pooled} channels of the sampled pool `{name}`; a report carries exactly one"
            ));
        }
    }
    Ok(())
}

/// The embedding the study takes: its dimensions, finite values, and a norm that clipping and
/// the noise can give.
fn check_embedding(report: &Report, plan: &PrivacyPlan) -> Result<(), String> {
    match (&plan.embedding, &report.embedding) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err("this study takes no embedding".into()),
        (Some(_), None) => Err("the embedding is missing".into()),
        (Some(e), Some(v)) => {
            let d = e.dimensions();
            if v.len() != d {
                return Err(format!("the embedding has {} dimensions, not {d}", v.len()));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err("the embedding holds a NaN or infinite value".into());
            }
            let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let bound = e.clip + e.sigma * ((d as f64).sqrt() + NORM_TAIL);
            if norm > bound {
                return Err(format!(
                    "the embedding's norm {norm:.1} is beyond what clipping to {} and noise of σ = {:.1} can give ({bound:.1})",
                    e.clip, e.sigma
                ));
            }
            Ok(())
        }
    }
}
