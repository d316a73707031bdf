//! What the server accepts: a batch is checked against the study version it names before
//! anything is stored. Every check has its own rejection, so that a client (or its developer)
//! knows what to fix.

use super::Rejection;
use chorus_messages::{Privatized, Report, ReportBatch, PROTOCOL_VERSION};
use chorus_shared::privacy::PrivacyPlan;
use chorus_shared::study::{Access, CompiledStudy};
use chorus_shared::tokens::{challenge_digest, Token, TokenPublicKey};
use std::collections::HashSet;

/// The chance that an honest device's embedding is refused for its norm. The noise e of an
/// honest vector y = x + e (‖x‖ ≤ clip) has ‖e‖²/σ² ~ χ² with d′ degrees of freedom, so
/// ‖y‖ ≤ clip + σ·√q except with probability P(χ²_d′ > q); q is that distribution's upper
/// 10⁻⁹ quantile (for the default study's 16 dimensions and σ = 54.2, a bound of 470 where
/// honest vectors sit near 217).
pub const NORM_FALSE_REJECTION: f64 = 1e-9;

/// The largest norm an honest device's noised embedding has, but with probability
/// [`NORM_FALSE_REJECTION`].
pub fn embedding_norm_bound(dimensions: usize, clip: f64, sigma: f64) -> f64 {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    static QUANTILES: OnceLock<Mutex<BTreeMap<usize, f64>>> = OnceLock::new();
    let mut quantiles = QUANTILES.get_or_init(Default::default).lock().expect("quantile cache");
    let q = *quantiles
        .entry(dimensions)
        .or_insert_with(|| chi_square_upper_quantile(dimensions as f64, NORM_FALSE_REJECTION));
    clip + sigma * q.sqrt()
}

/// The q with P(χ²_k > q) = `tail` (bisection on the survival function, which keeps its
/// precision far into the tail).
fn chi_square_upper_quantile(k: f64, tail: f64) -> f64 {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    let chi = ChiSquared::new(k).expect("positive degrees of freedom");
    let (mut low, mut high) = (k, k + 100.0 * (1.0 + k.sqrt()));
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if chi.sf(mid) > tail {
            low = mid;
        } else {
            high = mid;
        }
    }
    high
}

/// Whether `s` is a random identifier as devices make them: 32 lowercase hexadecimal digits.
pub fn is_random_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a batch posted to `study` (the study the URL names, in its current version); `key`
/// is the version's token key when the study admits invited contributors only.
pub fn validate(batch: &ReportBatch, study: &CompiledStudy, key: Option<&TokenPublicKey>) -> Result<(), Rejection> {
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
    check_tokens(batch, study, key)
}

/// An open study takes no tokens; an invited one one valid, unspent-looking token per report,
/// each fixing its report's OLH hash seeds. (Whether a token was spent before is the store's
/// check, in the transaction that stores the batch.)
fn check_tokens(batch: &ReportBatch, study: &CompiledStudy, key: Option<&TokenPublicKey>) -> Result<(), Rejection> {
    let refused = |message: String| Rejection::new(403, "token_refused", message);
    if study.access == Access::Open {
        if !batch.tokens.is_empty() {
            return Err(Rejection::invalid(
                "this study is open to anyone and takes no tokens".into(),
            ));
        }
        return Ok(());
    }
    let key = key.ok_or_else(|| Rejection::new(503, "unavailable", "this study's token key is not loaded"))?;
    if batch.tokens.len() != batch.reports.len() {
        return Err(refused(format!(
            "this study admits invited contributors only: {} reports need {} tokens, the batch carries {}",
            batch.reports.len(),
            batch.reports.len(),
            batch.tokens.len()
        )));
    }
    let challenge = challenge_digest(&study.id, &study.version);
    let mut nonces = HashSet::new();
    for (i, (text, report)) in batch.tokens.iter().zip(&batch.reports).enumerate() {
        let token = Token::from_hex(text).map_err(|e| refused(format!("token {i}: {e}")))?;
        key.verify(&token, &challenge)
            .map_err(|e| refused(format!("token {i}: {e}")))?;
        if !nonces.insert(token.nonce) {
            return Err(refused(format!("token {i} is in the batch twice")));
        }
        for (channel, value) in &report.channels {
            if let Privatized::Hashed { seed, .. } = value {
                if *seed != token.olh_seed(channel.name()) {
                    return Err(refused(format!(
                        "report {i}: the `{}` hash seed is not the one its token fixes",
                        channel.name()
                    )));
                }
            }
        }
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
            let bound = embedding_norm_bound(d, e.clip, e.sigma);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_norm_bound_is_the_noise_distributions_quantile() {
        // χ² with 2 degrees of freedom has P(X > x) = e^(−x/2): its 10⁻⁹ quantile is −2 ln 10⁻⁹.
        assert!((chi_square_upper_quantile(2.0, 1e-9) - (-2.0 * 1e-9f64.ln())).abs() < 1e-6);
        // The tables' 95% point of χ² with 16 degrees of freedom.
        assert!((chi_square_upper_quantile(16.0, 0.05) - 26.296).abs() < 1e-3);
        // The shipped default study: 16 dimensions, clip 1, σ = 54.23: honest vectors sit near
        // σ·√16 = 217; the bound is about 470 (it was 652 with a Gaussian concentration bound).
        let bound = embedding_norm_bound(16, 1.0, 54.23);
        assert!((460.0..480.0).contains(&bound), "{bound}");
    }
}
