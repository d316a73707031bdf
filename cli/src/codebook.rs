//! `chorus codebook build --corpus PUBLIC_EXPORT`: the public topic codebook of a study, from
//! the request texts and embeddings of a public corpus (never from contributions).
//! `chorus codebook name CODEBOOK NAMES`: the names and descriptions a person wrote for its topics.
//! `chorus codebook recentre --corpus PUBLIC_EXPORT CODEBOOK`: its centroids from the same public
//! requests as this code embeds them, its topics and their names kept.

use crate::exports::analyze_exports;
use crate::files::load_analyzer;
use crate::files::load_embedder;
use crate::StudyArgs;
use chorus_shared::codebook::{apply_names, build, recentre, Codebook, EmbeddedBy};
use chorus_shared::embed::{pins::pins, MAX_TOKENS};
use chorus_shared::facets::request_text;
use chorus_shared::import::read_export;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build a codebook: k-means leaves, parents by clustering the leaves, c-TF-IDF names.
    Build {
        #[command(flatten)]
        study: StudyArgs,
        /// A public export (e.g. the ShareGPT corpus `cargo xtask fetch --corpus` downloads).
        #[arg(long, required = true, value_name = "PUBLIC_EXPORT")]
        corpus: Vec<PathBuf>,
        /// Topics per level, from the leaves up (at least three levels).
        #[arg(long, value_delimiter = ',', default_value = "48,12,4")]
        levels: Vec<usize>,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Write the codebook here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Give a codebook's topics the names and one-line descriptions a person wrote: NAMES has one
    /// line per topic, `id<TAB>name<TAB>description` (`#` starts a comment); every topic needs one.
    Name {
        /// The codebook (JSON), rewritten in place.
        codebook: PathBuf,
        /// The names (tab-separated).
        names: PathBuf,
    },
    /// Compute a codebook's centroids again from the public requests it was built from, as this
    /// code embeds them (after the embedder reads more or less of each request): each request
    /// joins its nearest leaf, each topic moves to its requests' mean; the topics, their
    /// parents, names and descriptions stay.
    Recentre {
        #[command(flatten)]
        study: StudyArgs,
        /// The public export the codebook was built from.
        #[arg(long, required = true, value_name = "PUBLIC_EXPORT")]
        corpus: Vec<PathBuf>,
        /// The codebook (JSON), rewritten in place.
        codebook: PathBuf,
    },
}

pub fn run(command: Command) -> Result<ExitCode, String> {
    let (study, corpus, levels, seed, out) = match command {
        Command::Name { codebook, names } => return name(&codebook, &names),
        Command::Recentre {
            study,
            corpus,
            codebook,
        } => return recentre_in_place(&study, &corpus, &codebook),
        Command::Build {
            study,
            corpus,
            levels,
            seed,
            out,
        } => (study, corpus, levels, seed, out),
    };
    let analyzer = Arc::new(load_analyzer(&study)?);
    let (mut texts, mut embeddings) = (Vec::new(), Vec::new());
    analyze_exports(&analyzer, &corpus, None, true, &mut |conversation, analysis| {
        let text = request_text(&conversation);
        if let Some(e) = analysis.embedding {
            if !text.trim().is_empty() {
                texts.push(text);
                embeddings.push(e);
            }
        }
        Ok(())
    })?;
    let codebook = build(
        &texts,
        &embeddings,
        &levels,
        seed,
        EmbeddedBy {
            model_sha256: &pins().model.sha256,
            max_tokens: MAX_TOKENS,
        },
        &source(texts.len(), &corpus),
    )
    .map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&codebook).expect("a codebook serialises");
    match out {
        Some(path) => std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => println!("{json}"),
    }
    for (depth, level) in codebook.levels.iter().enumerate() {
        eprintln!("chorus: level {}: {} topics", depth + 1, level.len());
    }
    for topic in &codebook.levels[0] {
        eprintln!(
            "chorus:   {} {:.1}% {}",
            topic.id,
            topic.public_share * 100.0,
            topic.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `codebook recentre`: the public requests of `corpus` embedded by the pinned embedder alone
/// (a study's analyzer would refuse a codebook made at another reading length).
fn recentre_in_place(study: &StudyArgs, corpus: &[PathBuf], path: &std::path::Path) -> Result<ExitCode, String> {
    let codebook = read_codebook(path)?;
    if codebook.model_sha256 != pins().model.sha256 {
        return Err(format!(
            "{} was built with model {}, not the pinned model; recentring moves centroids within one model's space: build it again with `chorus codebook build`",
            path.display(),
            codebook.model_sha256
        ));
    }
    let embedder = load_embedder(study)?;
    let mut texts = Vec::new();
    for export in corpus {
        let file = std::fs::File::open(export).map_err(|e| format!("cannot open {}: {e}", export.display()))?;
        read_export(file, &export.display().to_string(), &mut |conversation| {
            texts.push(request_text(&conversation));
        })
        .map_err(|e| e.to_string())?;
    }
    texts.retain(|t| !t.trim().is_empty());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embeddings = embedder.embed_many(&refs, |_| {}).map_err(|e| e.to_string())?;
    let recentred = Codebook {
        source: source(texts.len(), corpus),
        ..recentre(&codebook, &texts, &embeddings, MAX_TOKENS).map_err(|e| e.to_string())?
    };
    let changed = (embeddings.iter())
        .filter(|e| codebook.leaf(e) != recentred.leaf(e))
        .count();
    let json = serde_json::to_string_pretty(&recentred).expect("a codebook serialises");
    std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "chorus: recentred {} on {} public requests read to {MAX_TOKENS} tokens; {changed} of them are nearest another leaf than before",
        path.display(),
        texts.len(),
    );
    Ok(ExitCode::SUCCESS)
}

/// What a codebook says it was made from: the number of public requests and the files' names.
fn source(requests: usize, corpus: &[PathBuf]) -> String {
    let files: Vec<String> = (corpus.iter())
        .map(|p| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    format!("{requests} public requests from {}", files.join(", "))
}

fn read_codebook(path: &std::path::Path) -> Result<Codebook, String> {
    let json = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&json).map_err(|e| format!("{} is not a codebook: {e}", path.display()))
}

fn name(path: &std::path::Path, names: &std::path::Path) -> Result<ExitCode, String> {
    let mut codebook = read_codebook(path)?;
    let names_tsv = std::fs::read_to_string(names).map_err(|e| format!("cannot read {}: {e}", names.display()))?;
    apply_names(&mut codebook, &names_tsv).map_err(|e| format!("{}: {e}", names.display()))?;
    let json = serde_json::to_string_pretty(&codebook).expect("a codebook serialises");
    std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "chorus: named the {} topics of {}",
        codebook.levels.iter().map(Vec::len).sum::<usize>(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
