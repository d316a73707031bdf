//! `chorus analyze`: the contributor's pipeline, run natively over export files, with the
//! conversations spread over worker threads and the output kept in export order.

use crate::local::load_analyzer;
use crate::progress::Progress;
use crate::StudyArgs;
use chorus_shared::import::{read_export, ImportSummary};
use chorus_shared::{Analysis, Analyzer, Conversation};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

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
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let mut totals = ImportSummary::default();
    let mut failed_files = 0;
    let mut failed_conversations = 0u64;
    for path in &args.exports {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("cannot open {name}: {e}"))?;
        match analyze_file(
            &analyzer,
            file,
            &name,
            threads,
            args.embeddings,
            &mut stdout,
        ) {
            Ok((summary, failed)) => {
                totals.conversations += summary.conversations;
                totals.skipped += summary.skipped;
                totals.truncated |= summary.truncated;
                failed_conversations += failed;
                if summary.truncated {
                    eprintln!(
                        "chorus: warning: {name} ends in the middle of a conversation (cut short?)"
                    );
                }
            }
            Err(message) => {
                eprintln!("chorus: {message}");
                failed_files += 1;
            }
        }
    }
    stdout
        .flush()
        .map_err(|e| format!("cannot write the output: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "chorus: analysed {} conversations from {} of {} files in {seconds:.1} s ({:.1} conversations/s); skipped {} unreadable records{}",
        totals.conversations - failed_conversations,
        args.exports.len() - failed_files,
        args.exports.len(),
        (totals.conversations - failed_conversations) as f64 / seconds.max(1e-9),
        totals.skipped + failed_conversations,
        if totals.truncated { "; input cut short" } else { "" },
    );
    Ok(if failed_files > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Imports on one thread, analyses on `threads` workers, writes results in export order.
/// Returns the import summary and how many conversations failed to analyse.
fn analyze_file(
    analyzer: &Arc<Analyzer>,
    file: File,
    name: &str,
    threads: usize,
    embeddings: bool,
    out: &mut impl Write,
) -> Result<(ImportSummary, u64), String> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let position = Arc::new(AtomicU64::new(0));
    let reader = CountingReader {
        inner: file,
        position: position.clone(),
    };
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Conversation)>(threads * 4);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<(u64, Result<Analysis, String>)>();

    std::thread::scope(|scope| {
        let importer = scope.spawn(move || {
            let mut seq = 0u64;
            read_export(reader, name, &mut |conversation| {
                // A closed channel means the writer stopped; the import then just runs out.
                let _ = work_tx.send((seq, conversation));
                seq += 1;
            })
        });
        for _ in 0..threads {
            let (rx, tx, analyzer) = (work_rx.clone(), done_tx.clone(), analyzer.clone());
            scope.spawn(move || loop {
                let next = rx.lock().expect("work queue lock").recv();
                let Ok((seq, conversation)) = next else { break };
                let result = analyzer
                    .analyze(&conversation, embeddings)
                    .map_err(|e| format!("{}: {e}", conversation.id));
                if tx.send((seq, result)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);

        let mut progress = Progress::new("analysing", Some("conversations"));
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut failed = 0u64;
        for (seq, result) in done_rx {
            pending.insert(seq, result);
            while let Some(result) = pending.remove(&next) {
                next += 1;
                match result {
                    Ok(analysis) => {
                        serde_json::to_writer(&mut *out, &analysis)
                            .map_err(|e| format!("cannot write the output: {e}"))?;
                        out.write_all(b"\n")
                            .map_err(|e| format!("cannot write the output: {e}"))?;
                    }
                    Err(message) => {
                        eprintln!("chorus: cannot analyse conversation {message}");
                        failed += 1;
                    }
                }
            }
            progress.update_with_count(position.load(Ordering::Relaxed), size, Some(next));
        }
        progress.finish();
        let summary = importer
            .join()
            .expect("import thread")
            .map_err(|e| e.to_string())?;
        Ok((summary, failed))
    })
}

/// Counts how far into the file the import has read, for the progress bar.
struct CountingReader {
    inner: File,
    position: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for CountingReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.position.store(at, Ordering::Relaxed);
        Ok(at)
    }
}
