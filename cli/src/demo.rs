//! First run: demo contributions, so that a newcomer sees a real auditor page at once.
//!
//! When `chorus serve --demo-corpus PUBLIC_EXPORT` starts on a store with nothing for its first
//! study, it marks the data directory as holding demo data, then (in the background, while the
//! server already answers) runs the real client pipeline on the first conversations of the
//! public corpus — one contributor each: analysis, memoised sampling, OpenDP's secure noise, a
//! fresh pseudonym — posts each batch to its own HTTP API exactly as a browser would, and cuts a
//! first release. Every release from a demo data directory says `"demo": true`.

use crate::contribute::{agent, with_retries};
use crate::files::load_embedder;
use crate::StudyArgs;
use chorus_server::release::{cut, sign::Signer, ReleaseOptions};
use chorus_server::storage::Storage;
use chorus_shared::device::{digest, Memo};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_shared::{Analysis, Analyzer, Conversation};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The file in the data directory that marks its contents as demo data.
const MARKER: &str = "DEMO";

#[derive(clap::Args, Clone)]
pub struct DemoArgs {
    /// On a store with nothing for the first study: seed it with demo contributions from this
    /// public export (through the real client pipeline) and cut a first release labelled demo.
    #[arg(long, value_name = "PUBLIC_EXPORT")]
    pub demo_corpus: Option<PathBuf>,
    /// Demo contributors (one conversation each) to seed.
    #[arg(long, value_name = "N", default_value_t = 3000)]
    pub demo_contributors: usize,
}

/// Whether the data directory holds demo data (seeded now or before).
pub fn is_demo(data_dir: &Path) -> bool {
    data_dir.join(MARKER).exists()
}

/// Decides whether to seed: only with a demo corpus and a store holding nothing for the study.
/// Marks the data directory before any demo report is stored.
pub fn should_seed(
    args: &DemoArgs,
    storage: &dyn Storage,
    study: &CompiledStudy,
    data_dir: &Path,
) -> Result<bool, String> {
    let Some(corpus) = &args.demo_corpus else {
        return Ok(false);
    };
    if !corpus.exists() {
        return Err(format!(
            "the demo corpus {} does not exist; `cargo xtask fetch --corpus` downloads it",
            corpus.display()
        ));
    }
    let (batches, _) = storage.totals(&study.id, &study.version).map_err(|e| e.to_string())?;
    let releases = storage.release_count(&study.id).map_err(|e| e.to_string())?;
    if batches > 0 || releases > 0 {
        return Ok(false);
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    std::fs::write(
        data_dir.join(MARKER),
        "The reports in this store are demo contributions: public conversations run through the client pipeline.\n",
    )
    .map_err(|e| format!("cannot mark {} as demo data: {e}", data_dir.display()))?;
    Ok(true)
}

/// What the background seeding needs.
pub struct Seeding {
    pub args: DemoArgs,
    pub study: CompiledStudy,
    pub storage: Arc<dyn Storage>,
    pub signing_key: PathBuf,
    pub model_dir: Option<PathBuf>,
    /// `http://host:port` of the server itself.
    pub base_url: String,
}

/// Seeds in a background thread; failures are reported on stderr (the server keeps running).
pub fn seed_in_background(seeding: Seeding) {
    std::thread::spawn(move || match seed(&seeding) {
        Ok(message) => eprintln!("chorus: demo: {message}"),
        Err(message) => eprintln!("chorus: demo seeding failed: {message}"),
    });
}

fn seed(s: &Seeding) -> Result<String, String> {
    let started = Instant::now();
    let corpus = s.args.demo_corpus.as_ref().expect("seeding has a corpus");
    let conversations = first_conversations(corpus, s.args.demo_contributors)?;
    let embedder = load_embedder(&StudyArgs {
        study: None,
        model_dir: s.model_dir.clone(),
    })?;
    let analyzer = Analyzer::new(embedder, s.study.clone()).map_err(|e| e.to_string())?;
    eprintln!(
        "chorus: demo: analysing {} public conversations, one demo contributor each",
        conversations.len()
    );
    let analysed = analyze_all(&analyzer, &conversations);
    wait_until_healthy(&s.base_url)?;
    let url = format!("{}/api/v1/studies/{}/reports", s.base_url, s.study.id);
    let queue = Mutex::new(analysed.into_iter());
    let (posted, refused) = (Mutex::new(0usize), Mutex::new(Vec::<String>::new()));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let agent = agent();
                let mut noise = Noise::Secure;
                loop {
                    let Some((digest, analysis)) = queue.lock().expect("queue").next() else {
                        break;
                    };
                    // Each demo contributor is a device of its own: its own memo and pseudonym.
                    let batch = Memo::new(&mut noise).map_err(|e| e.to_string()).and_then(|mut memo| {
                        let prepared = memo
                            .prepare(&s.study, &[(digest, &analysis)], &mut noise)
                            .map_err(|e| e.to_string())?;
                        Ok(prepared.batch)
                    });
                    let result = batch.and_then(|batch| {
                        let body = serde_json::to_string(&batch).expect("a batch serialises");
                        with_retries("posting a demo batch", || {
                            agent
                                .post(&url)
                                .header("Content-Type", "application/json")
                                .send(body.as_str())
                        })
                    });
                    match result {
                        Ok((status, _)) if (200..300).contains(&status) => *posted.lock().expect("count") += 1,
                        Ok((status, body)) => refused.lock().expect("errors").push(format!("{status}: {body}")),
                        Err(e) => refused.lock().expect("errors").push(e),
                    }
                }
            });
        }
    });
    let (posted, refused) = (
        posted.into_inner().expect("count"),
        refused.into_inner().expect("errors"),
    );
    if let Some(first) = refused.first() {
        return Err(format!(
            "{} demo batches were refused, the first: {first}",
            refused.len()
        ));
    }
    let signer = Signer::load_or_create(&s.signing_key)?;
    let (summary, _) =
        cut(s.storage.as_ref(), &s.study, &signer, &ReleaseOptions { demo: true }).map_err(|e| e.to_string())?;
    Ok(format!(
        "{posted} demo contributions stored and release {} cut in {:.0} s",
        summary.id,
        started.elapsed().as_secs_f64()
    ))
}

fn first_conversations(corpus: &Path, n: usize) -> Result<Vec<Conversation>, String> {
    let file = std::fs::File::open(corpus).map_err(|e| format!("cannot open {}: {e}", corpus.display()))?;
    let mut out = Vec::with_capacity(n);
    chorus_shared::import::read_export(file, &corpus.display().to_string(), &mut |c| {
        if out.len() < n {
            out.push(c)
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Every conversation's digest and analysis (with its embedding), on all cores.
fn analyze_all(analyzer: &Analyzer, conversations: &[Conversation]) -> Vec<(String, Analysis)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = conversations.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = conversations
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|c| Some((digest(c), analyzer.analyze(c, true).ok()?)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an analysis thread"))
            .collect()
    })
}

fn wait_until_healthy(base_url: &str) -> Result<(), String> {
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = agent.get(&format!("{base_url}/healthz")).call() {
            if response.status() == 200 {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("the server at {base_url} did not come up"))
}

/// The URL the server can reach itself at, from the address it binds.
pub fn own_url(bind: &str) -> String {
    let (host, port) = bind.rsplit_once(':').unwrap_or((bind, "8080"));
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("http://{host}:{port}")
}
