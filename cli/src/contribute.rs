//! `chorus contribute --server URL --study ID EXPORT...`: the browser's donation flow run
//! natively. Fetches the study from the server, analyses the exports on this machine, prepares
//! the batch from the memo (leaving out `--exclude`d conversations), records in the memo that it
//! is being sent (the device's ledger, the study's lifetime cap), and posts exactly what the
//! browser would post; a retry re-sends the same batch with the same key, so it is stored once.

use crate::files::{load_embedder, privacy_statement};
use crate::report::{memo_path, prepare_batch, write_memo, DeviceArgs};
use crate::StudyArgs;
use chorus_messages::BlindSignatures;
use chorus_shared::device::PendingTokens;
use chorus_shared::embed::pins::pins;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_shared::tokens::{Token, TokenPublicKey};
use chorus_shared::Analyzer;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The server, e.g. http://127.0.0.1:8080
    #[arg(long, value_name = "URL")]
    server: String,
    /// The study's id on that server.
    #[arg(long, value_name = "ID")]
    study: String,
    /// An invitation code, for a study that admits invited contributors only: redeemed for
    /// anonymous one-time tokens, one per report.
    #[arg(long, value_name = "CODE")]
    invitation: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Directory holding the pinned model.
    #[arg(long, value_name = "DIR", env = "CHORUS_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    #[arg(required = true, value_name = "EXPORT")]
    exports: Vec<PathBuf>,
}

/// Attempts per request before giving up (network errors, 429 and 503 are retried).
const ATTEMPTS: u32 = 6;

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends a request until it gets an answer that is not "try again"; returns status and body.
pub fn with_retries(
    what: &str,
    mut send: impl FnMut() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(250 << attempt));
        }
        match send() {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_string()
                    .map_err(|e| format!("{what}: cannot read the answer: {e}"))?;
                if status == 429 || status == 503 {
                    last = format!("{status}: {body}");
                    continue;
                }
                return Ok((status, body));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{what}: no answer after {ATTEMPTS} attempts ({last})"))
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let base = args.server.trim_end_matches('/');
    let agent = agent();
    let study_url = format!("{base}/api/v1/studies/{}", args.study);
    let (status, body) = with_retries("fetching the study", || agent.get(&study_url).call())?;
    if status != 200 {
        return Err(format!("{study_url} answered {status}: {body}"));
    }
    let study: CompiledStudy =
        serde_json::from_str(&body).map_err(|e| format!("{study_url} did not return a study: {e}"))?;
    if study.model_sha256 != pins().model.sha256 {
        return Err(format!(
            "the server's study was compiled for model {}, this client has {}",
            study.model_sha256,
            pins().model.sha256
        ));
    }
    let embedder = load_embedder(&StudyArgs {
        study: None,
        model_dir: args.model_dir.clone(),
    })?;
    let analyzer = Arc::new(Analyzer::new(embedder, study).map_err(|e| e.to_string())?);
    eprintln!("chorus: {}", privacy_statement(analyzer.study()));
    let pending = pending_path(&memo_path(&args.device));
    let tokens = match &args.invitation {
        Some(code) => redeem(&agent, base, analyzer.study(), code, &pending)?,
        None => Vec::new(),
    };
    let (prepared, mut memo, failed_files) = prepare_batch(&analyzer, &args.exports, &args.device, &tokens)?;
    // The memo first: once it says the batch is sent, a retry re-sends this very batch, and the
    // ledger holds what it cost even if the process dies before the server answers.
    memo.commit(analyzer.study(), &prepared.batch.idempotency_key)
        .map_err(|e| e.to_string())?;
    write_memo(&memo_path(&args.device), &memo)?;
    // The memo holds the batch's tokens now: the requests they came from are done with.
    if args.invitation.is_some() {
        std::fs::remove_file(&pending).ok();
    }
    let body = serde_json::to_string(&prepared.batch).expect("the batch serialises");
    let url = format!("{base}/api/v1/studies/{}/reports", args.study);
    let (status, answer) = with_retries("posting the batch", || {
        agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_str())
    })?;
    if !(200..300).contains(&status) {
        return Err(format!("the server refused the batch ({status}): {answer}"));
    }
    println!("{answer}");
    Ok(if failed_files > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Redeems an invitation for one token per report: the study version's key from the server,
/// fresh nonces from the secure source, blinded here, signed there, unblinded here. The server
/// sees only the blinded inputs, so it cannot tell which invitation a token came from. The
/// requests are written to `pending` before they are sent and sent again from there if a run
/// dies before the answer (the server answers the same request again; new requests would find
/// the invitation spent).
fn redeem(
    agent: &ureq::Agent,
    base: &str,
    study: &CompiledStudy,
    code: &str,
    pending_path: &Path,
) -> Result<Vec<Token>, String> {
    let pending = match read_pending(pending_path, study)? {
        Some(pending) => pending,
        None => {
            let pending = new_requests(agent, base, study)?;
            let text = serde_json::to_vec(&pending).expect("pending tokens serialise");
            if let Some(parent) = pending_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::write(pending_path, text).map_err(|e| format!("cannot write {}: {e}", pending_path.display()))?;
            pending
        }
    };
    let body = serde_json::to_string(&pending.redemption(code)).expect("a redemption serialises");
    let url = format!("{base}/api/v1/studies/{}/tokens", study.id);
    let (status, answer) = with_retries("redeeming the invitation", || {
        agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_str())
    })?;
    if status != 200 {
        return Err(format!("the invitation was not accepted ({status}): {answer}"));
    }
    let answer: BlindSignatures = serde_json::from_str(&answer).map_err(|e| format!("the issuer's answer: {e}"))?;
    pending.finish(&answer).map_err(|e| e.to_string())
}

/// Token requests under the key the server publishes for the study's version.
fn new_requests(agent: &ureq::Agent, base: &str, study: &CompiledStudy) -> Result<PendingTokens, String> {
    let key_url = format!("{base}/api/v1/studies/{}/token-key", study.id);
    let (status, body) = with_retries("fetching the token key", || agent.get(&key_url).call())?;
    if status != 200 {
        return Err(format!("{key_url} answered {status}: {body}"));
    }
    let key: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{key_url}: {e}"))?;
    if key["study_version"] != study.version.as_str() {
        return Err("the server's token key is for another version of the study; try again".into());
    }
    let spki = key["spki"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or("no key in the answer")?;
    let key = TokenPublicKey::from_spki(&spki).map_err(|e| e.to_string())?;
    PendingTokens::new(study, &key, &mut Noise::Secure).map_err(|e| e.to_string())
}

/// Token requests an earlier run wrote for this study version and never finished.
fn read_pending(path: &Path, study: &CompiledStudy) -> Result<Option<PendingTokens>, String> {
    let Ok(text) = std::fs::read(path) else {
        return Ok(None);
    };
    let pending: PendingTokens =
        serde_json::from_slice(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))?;
    Ok((pending.study_id == study.id && pending.study_version == study.version).then_some(pending))
}

/// Where a device's unfinished token requests wait, beside its memo.
fn pending_path(memo: &Path) -> PathBuf {
    memo.with_extension("pending-tokens.json")
}
