//! `chorus codebook build --corpus PUBLIC_EXPORT`: the public topic codebook of a study, from
//! the request texts and embeddings of a public corpus (never from contributions).
//! `chorus codebook name CODEBOOK NAMES`: the names and descriptions a person wrote for its topics.

use crate::exports::analyze_exports;
use crate::files::load_analyzer;
use crate::StudyArgs;
use chorus_shared::codebook::{apply_names, build, Codebook};
use chorus_shared::embed::pins::pins;
use chorus_shared::facets::request_text;
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
}

pub fn run(command: Command) -> Result<ExitCode, String> {
    if let Command::Name { codebook, names } = command {
        return name(&codebook, &names);
    }
    let Command::Build {
        study,
        corpus,
        levels,
        seed,
        out,
    } = command
    else {
        unreachable!("handled above")
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
    let source: Vec<String> = corpus
        .iter()
        .map(|p| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let codebook = build(
        &texts,
        &embeddings,
        &levels,
        seed,
        &pins().model.sha256,
        &format!("{} public requests from {}", texts.len(), source.join(", ")),
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

fn name(path: &std::path::Path, names: &std::path::Path) -> Result<ExitCode, String> {
    let read =
        |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let mut codebook: Codebook =
        serde_json::from_str(&read(path)?).map_err(|e| format!("{} is not a codebook: {e}", path.display()))?;
    apply_names(&mut codebook, &read(names)?).map_err(|e| format!("{}: {e}", names.display()))?;
    let json = serde_json::to_string_pretty(&codebook).expect("a codebook serialises");
    std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "chorus: named the {} topics of {}",
        codebook.levels.iter().map(Vec::len).sum::<usize>(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
