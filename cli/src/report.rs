//! `chorus report`: the exact batch this device would send for a study, built and memoised as
//! the browser client does, and printed instead of sent. Running it again prints the same
//! batch: the sample of conversations, every report, the pseudonym and the batch key are drawn
//! once and kept in the memo file.

use crate::exports::analyze_exports;
use crate::local::{cache_dir, load_analyzer, privacy_statement};
use crate::StudyArgs;
use chorus_shared::privacy::memo::{digest, study_key, Memo};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::protocol::ReportBatch;
use chorus_shared::{Analysis, Analyzer};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    study: StudyArgs,
    /// The memo file [default: memo.json in the cache directory].
    #[arg(long, value_name = "FILE")]
    memo: Option<PathBuf>,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[arg(required = true, value_name = "EXPORT")]
    exports: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let analyzer = Arc::new(load_analyzer(&args.study)?);
    eprintln!("chorus: {}", privacy_statement(analyzer.study()));
    let memo_path = args.memo.clone().unwrap_or_else(|| cache_dir().join("memo.json"));
    let (batch, failed_files) = memoised_batch(&analyzer, &args.exports, args.threads, &memo_path)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&batch).expect("the batch serialises")
    );
    Ok(if failed_files > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Analyses the exports and returns this device's batch for the analyzer's study: drawn on the
/// first run and kept in the memo file, re-read unchanged on every later run. Also returns the
/// number of export files that could not be read.
pub fn memoised_batch(
    analyzer: &Arc<Analyzer>,
    exports: &[PathBuf],
    threads: Option<usize>,
    memo_path: &PathBuf,
) -> Result<(ReportBatch, usize), String> {
    let study = analyzer.study();
    let mut noise = Noise::Secure;
    let mut memo = match std::fs::read(memo_path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("the memo {} is damaged: {e}", memo_path.display()))?
        }
        Err(_) => Memo::new(&mut noise).map_err(|e| e.to_string())?,
    };
    let version = study_key(study);
    let mut candidates: Vec<(String, Analysis)> = Vec::new();
    let summary = analyze_exports(analyzer, exports, threads, true, &mut |conversation, analysis| {
        candidates.push((memo.key(&version, &digest(&conversation)), analysis));
        Ok(())
    })?;
    let refs: Vec<(String, &Analysis)> = candidates.iter().map(|(k, a)| (k.clone(), a)).collect();
    let first_run = memo.studies.get(&version).is_none_or(|m| m.selected.is_empty());
    let batch = memo.batch(study, &refs, &mut noise).map_err(|e| e.to_string())?;
    write_atomically(memo_path, &serde_json::to_vec(&memo).expect("the memo serialises"))?;
    eprintln!(
        "chorus: {} of {} conversations reported ({}); memo {}",
        batch.reports.len(),
        candidates.len(),
        if first_run { "drawn now" } else { "the same as before" },
        memo_path.display()
    );
    Ok((batch, summary.failed_files))
}

/// Writes through a temporary file and a rename, so a crash never leaves half a memo.
fn write_atomically(path: &PathBuf, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
