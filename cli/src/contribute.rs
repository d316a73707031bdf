//! `chorus contribute --server URL --study ID EXPORT...`: the browser's donation flow run
//! natively. Fetches the study from the server, analyses the exports on this machine, prepares
//! the batch from the memo (leaving out `--exclude`d conversations), records in the memo that it
//! is being sent (the device's ledger, the study's lifetime cap), and posts exactly what the
//! browser would post; a retry re-sends the same batch with the same key, so it is stored once.

use crate::files::{load_embedder, privacy_statement};
use crate::report::{memo_path, prepare_batch, write_memo, DeviceArgs};
use crate::StudyArgs;
use chorus_shared::embed::pins::pins;
use chorus_shared::study::CompiledStudy;
use chorus_shared::Analyzer;
use std::path::PathBuf;
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
    let (prepared, mut memo, failed_files) = prepare_batch(&analyzer, &args.exports, &args.device)?;
    // The memo first: once it says the batch is sent, a retry re-sends this very batch, and the
    // ledger holds what it cost even if the process dies before the server answers.
    memo.commit(analyzer.study(), &prepared.batch.idempotency_key)
        .map_err(|e| e.to_string())?;
    write_memo(&memo_path(&args.device), &memo)?;
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
