//! `chorus report`: the exact batch this device would send for a study, built from the memo as
//! the browser client builds it, and printed instead of sent. Running it again prints the same
//! batch while the same conversations are included; excluding a reported conversation
//! (`--exclude`) replaces it by another drawn at random, and an excluded conversation is never
//! in the batch. Reports are drawn once and kept in the memo file; nothing is spent until
//! `chorus contribute` sends them.

use crate::exports::analyze_exports;
use crate::files::{cache_dir, load_analyzer, privacy_statement};
use crate::StudyArgs;
use chorus_shared::device::{digest, Memo, Prepared};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::tokens::Token;
use chorus_shared::{Analysis, Analyzer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    study: StudyArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(required = true, value_name = "EXPORT")]
    exports: Vec<PathBuf>,
}

/// What `report` and `contribute` share: the memo and the conversations left out.
#[derive(clap::Args)]
pub struct DeviceArgs {
    /// The memo file [default: memo.json in the cache directory].
    #[arg(long, value_name = "FILE")]
    pub memo: Option<PathBuf>,
    /// Leave out the conversation with this id (as `chorus analyze` prints it); repeatable.
    #[arg(long, value_name = "ID")]
    pub exclude: Vec<String>,
    /// Leave out the conversations whose ids this file lists, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Option<PathBuf>,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let analyzer = Arc::new(load_analyzer(&args.study)?);
    eprintln!("chorus: {}", privacy_statement(analyzer.study()));
    let (prepared, memo, failed_files) = prepare_batch(&analyzer, &args.exports, &args.device, &[])?;
    write_memo(&memo_path(&args.device), &memo)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&prepared.batch).expect("the batch serialises")
    );
    Ok(if failed_files > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn memo_path(args: &DeviceArgs) -> PathBuf {
    args.memo.clone().unwrap_or_else(|| cache_dir().join("memo.json"))
}

/// Analyses the exports and prepares this device's batch for the analyzer's study from the
/// conversations not excluded, with the memo it came from (not yet written back). Also returns
/// the number of export files that could not be read.
pub fn prepare_batch(
    analyzer: &Arc<Analyzer>,
    exports: &[PathBuf],
    args: &DeviceArgs,
    tokens: &[Token],
) -> Result<(Prepared, Memo, usize), String> {
    let study = analyzer.study();
    let path = memo_path(args);
    let mut noise = Noise::Secure;
    let mut memo = match std::fs::read_to_string(&path) {
        Ok(text) => Memo::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(_) => Memo::new(&mut noise).map_err(|e| e.to_string())?,
    };
    let excluded = excluded_ids(args)?;
    let mut candidates: Vec<(String, Analysis)> = Vec::new();
    let mut seen = 0usize;
    let summary = analyze_exports(analyzer, exports, args.threads, true, &mut |conversation, analysis| {
        seen += 1;
        if !excluded.contains(&analysis.id) {
            candidates.push((memo.key(&study.id, &digest(&conversation)), analysis));
        }
        Ok(())
    })?;
    let refs: Vec<(String, &Analysis)> = candidates.iter().map(|(k, a)| (k.clone(), a)).collect();
    let prepared = memo
        .prepare_with_tokens(study, &refs, tokens, &mut noise)
        .map_err(|e| e.to_string())?;
    let sampled: BTreeSet<&str> = prepared.sampled.iter().map(|&i| candidates[i].1.id.as_str()).collect();
    eprintln!(
        "chorus: {} report{} of {} conversation{} ({} included, {} excluded){}; sending {} ε = {:.3}, δ = {:e}; this device's total for the study would be ε = {:.3}; reported: {}",
        prepared.batch.reports.len(),
        plural(prepared.batch.reports.len()),
        sampled.len(),
        plural(sampled.len()),
        candidates.len(),
        seen - candidates.len(),
        if prepared.sent { " (sent before: the same batch again)" } else { "" },
        if prepared.sent { "again costs" } else { "costs" },
        prepared.cost.epsilon,
        prepared.cost.delta,
        prepared.lifetime_after.epsilon,
        sampled.iter().copied().collect::<Vec<_>>().join(", "),
    );
    Ok((prepared, memo, summary.failed_files))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The ids named by `--exclude` and `--exclude-file`.
fn excluded_ids(args: &DeviceArgs) -> Result<BTreeSet<String>, String> {
    let mut ids: BTreeSet<String> = args.exclude.iter().cloned().collect();
    if let Some(path) = &args.exclude_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        ids.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or_default().trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(ids)
}

/// Writes the memo through a temporary file and a rename, so a crash never leaves half a memo.
pub fn write_memo(path: &Path, memo: &Memo) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let bytes = serde_json::to_vec(memo).expect("the memo serialises");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
