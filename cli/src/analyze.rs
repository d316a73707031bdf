//! `chorus analyze`: the contributor's pipeline over export files, one JSON object per
//! conversation on stdout, and what the study's reports would cost on stderr.

use crate::exports::analyze_exports;
use crate::files::load_analyzer;
use crate::StudyArgs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    study: StudyArgs,
    /// Add each conversation's request embedding (384 floats) to its line.
    #[arg(long)]
    embeddings: bool,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Export files: a ChatGPT or Claude export (.zip or conversations.json), ShareGPT JSON, or
    /// OpenAI-style JSON Lines.
    #[arg(required = true, value_name = "EXPORT")]
    exports: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let analyzer = Arc::new(load_analyzer(&args.study)?);
    eprintln!("chorus: {}", crate::files::privacy_statement(analyzer.study()));
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let summary = analyze_exports(
        &analyzer,
        &args.exports,
        args.threads,
        args.embeddings,
        &mut |_, analysis| {
            serde_json::to_writer(&mut stdout, &analysis).map_err(|e| format!("cannot write the output: {e}"))?;
            stdout
                .write_all(b"\n")
                .map_err(|e| format!("cannot write the output: {e}"))
        },
    )?;
    stdout.flush().map_err(|e| format!("cannot write the output: {e}"))?;
    Ok(if summary.failed_files > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
