//! Runs the on-device pipeline over export files natively: the import on one thread, the
//! analysis on worker threads, results handed on in export order. Used by every command that
//! analyses exports.

use crate::progress::Progress;
use chorus_shared::import::{read_export, ImportSummary};
use chorus_shared::{Analysis, Analyzer, Conversation};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// What a run over several exports did.
pub struct RunSummary {
    pub failed_files: usize,
}

/// Analyses every conversation of `exports`, calling `sink` with each conversation and its
/// analysis in export order. A file that cannot be read is reported and skipped; a summary line
/// goes to stderr at the end.
pub fn analyze_exports(
    analyzer: &Arc<Analyzer>,
    exports: &[PathBuf],
    threads: Option<usize>,
    keep_embeddings: bool,
    sink: &mut dyn FnMut(Conversation, Analysis) -> Result<(), String>,
) -> Result<RunSummary, String> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let mut totals = ImportSummary::default();
    let (mut failed_files, mut failed_conversations) = (0usize, 0u64);
    for path in exports {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("cannot open {name}: {e}"))?;
        match analyze_file(analyzer, file, &name, threads, keep_embeddings, sink) {
            Ok((summary, failed)) => {
                totals.conversations += summary.conversations;
                totals.skipped += summary.skipped;
                totals.truncated |= summary.truncated;
                failed_conversations += failed;
                if summary.truncated {
                    eprintln!("chorus: warning: {name} ends in the middle of a conversation (cut short?)");
                }
            }
            Err(message) => {
                eprintln!("chorus: {message}");
                failed_files += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let analysed = totals.conversations - failed_conversations;
    eprintln!(
        "chorus: analysed {analysed} conversations from {} of {} files in {seconds:.1} s ({:.1} conversations/s); skipped {} unreadable records{}",
        exports.len() - failed_files,
        exports.len(),
        analysed as f64 / seconds.max(1e-9),
        totals.skipped + failed_conversations,
        if totals.truncated { "; input cut short" } else { "" },
    );
    Ok(RunSummary { failed_files })
}

type Done = (u64, Conversation, Result<Analysis, String>);

/// Returns the import summary and how many conversations failed to analyse.
fn analyze_file(
    analyzer: &Arc<Analyzer>,
    file: File,
    name: &str,
    threads: usize,
    keep_embeddings: bool,
    sink: &mut dyn FnMut(Conversation, Analysis) -> Result<(), String>,
) -> Result<(ImportSummary, u64), String> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let position = Arc::new(AtomicU64::new(0));
    let reader = CountingReader {
        inner: file,
        position: position.clone(),
    };
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Conversation)>(threads * 4);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();

    std::thread::scope(|scope| {
        let importer = scope.spawn(move || {
            let mut seq = 0u64;
            read_export(reader, name, &mut |conversation| {
                // A closed channel means the consumer stopped; the import then just runs out.
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
                    .analyze(&conversation, keep_embeddings)
                    .map_err(|e| e.to_string());
                if tx.send((seq, conversation, result)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);

        let mut progress = Progress::new("analysing", Some("conversations"));
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut failed = 0u64;
        let mut sink_error = None;
        for (seq, conversation, result) in done_rx {
            pending.insert(seq, (conversation, result));
            while let Some((conversation, result)) = pending.remove(&next) {
                next += 1;
                match result {
                    Ok(analysis) if sink_error.is_none() => {
                        if let Err(e) = sink(conversation, analysis) {
                            sink_error = Some(e);
                        }
                    }
                    Ok(_) => {}
                    Err(message) => {
                        eprintln!("chorus: cannot analyse conversation {}: {message}", conversation.id);
                        failed += 1;
                    }
                }
            }
            progress.update_with_count(position.load(Ordering::Relaxed), size, Some(next));
        }
        progress.finish();
        let summary = importer.join().expect("import thread").map_err(|e| e.to_string())?;
        match sink_error {
            Some(e) => Err(e),
            None => Ok((summary, failed)),
        }
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
