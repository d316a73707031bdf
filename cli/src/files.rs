//! Where this machine keeps Chorus's files, and loading the model and study from them.

use crate::progress::Progress;
use crate::StudyArgs;
use chorus_shared::embed::pins::pins;
use chorus_shared::embed::Embedder;
use chorus_shared::study::tuning::{self, Tuning, TUNING_FORMAT};
use chorus_shared::study::{CompiledStudy, Study, StudyContents, TrainOptions, COMPILED_FORMAT, CONFUSION_FOLDS};
use chorus_shared::{Analyzer, SOURCE_DIGEST};
use std::path::{Path, PathBuf};

const DEFAULT_STUDY: &str = include_str!("../../studies/default/study.toml");
const DEFAULT_EXAMPLES: &str = include_str!("../../studies/default/examples.jsonl");
const DEFAULT_CODEBOOK: &str = include_str!("../../studies/default/codebook.json");

/// `$CHORUS_CACHE_DIR`, else `$XDG_CACHE_HOME/chorus`, else `~/.cache/chorus`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHORUS_CACHE_DIR") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("chorus")
}

pub fn load_embedder(args: &StudyArgs) -> Result<Embedder, String> {
    let dir = args.model_dir.clone().unwrap_or_else(|| cache_dir().join("model"));
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read the model file {}: {e}. Run `cargo xtask fetch` to download the pinned model.",
                path.display()
            )
        })
    };
    let model = read(&pins().model.file)?;
    let tokenizer = read(&pins().tokenizer.file)?;
    Embedder::new(&model, &tokenizer).map_err(|e| e.to_string())
}

/// Reads the study file named by `args` (or the default study) and the files it names.
pub fn load_study(args: &StudyArgs) -> Result<Study, String> {
    let Some(path) = &args.study else {
        let contents = StudyContents {
            labelled_examples: Some(DEFAULT_EXAMPLES),
            codebook: Some(DEFAULT_CODEBOOK),
        };
        return Study::parse(DEFAULT_STUDY, contents).map_err(|e| format!("default study: {e}"));
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let files = Study::files(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let read = |relative: &Option<String>, what: &str| -> Result<Option<String>, String> {
        let Some(relative) = relative else { return Ok(None) };
        let named = path.parent().unwrap_or(Path::new(".")).join(relative);
        std::fs::read_to_string(&named)
            .map(Some)
            .map_err(|e| format!("cannot read the {what} {}: {e}", named.display()))
    };
    let examples = read(&files.labelled_examples, "labelled examples")?;
    let codebook = read(&files.codebook, "codebook")?;
    let contents = StudyContents {
        labelled_examples: examples.as_deref(),
        codebook: codebook.as_deref(),
    };
    Study::parse(&text, contents).map_err(|e| format!("{}: {e}", path.display()))
}

/// The study compiled against the embedder, from the cache when this build compiled it before
/// (compiling embeds every labelled example, which takes a while); keyed by the code's
/// [`SOURCE_DIGEST`] too, so that new training code never serves a study the old one compiled.
pub fn compiled_study(study: &Study, embedder: &Embedder) -> Result<CompiledStudy, String> {
    let model = &pins().model.sha256[..16];
    let name = format!(
        "{}-{}-{model}-f{COMPILED_FORMAT}-{SOURCE_DIGEST}.json",
        study.id, study.version
    );
    cached(&cache_dir().join("studies").join(name), || {
        let tuning = study_tuning(study, embedder, CONFUSION_FOLDS)?;
        let mut progress = Progress::new("compiling the study", None);
        let compiled = CompiledStudy::compile(
            study,
            embedder,
            TrainOptions::default(),
            tuning.as_ref(),
            |done, total| progress.update(done as u64, total as u64),
        )
        .map_err(|e| format!("cannot compile study `{}`: {e}", study.id))?;
        progress.finish();
        Ok(compiled)
    })
}

/// The study's fine-tuned layers for `folds` folds (none when it tunes none), from the cache
/// when they were tuned before: tuning is the slow part of compiling (minutes per fold), and
/// `chorus study compile` and `chorus study evaluate` share it. Keyed by what the tuning reads
/// ([`tuning::inputs_digest`]), not by the study's version: a study edited elsewhere (a
/// description, its privacy settings) is not tuned again.
pub fn study_tuning(study: &Study, embedder: &Embedder, folds: usize) -> Result<Option<Tuning>, String> {
    if study.fine_tune_layers == 0 {
        return Ok(None);
    }
    let model = &pins().model.sha256[..16];
    let inputs = tuning::inputs_digest(study, folds);
    let name = format!("{inputs}-{model}-t{TUNING_FORMAT}-k{folds}-{SOURCE_DIGEST}.json");
    cached(&cache_dir().join("tuning").join(name), || {
        let mut progress = Progress::new("fine-tuning the upper layers", Some("runs"));
        let tuning = tuning::tune(study, embedder, folds, |done, total| {
            progress.update_with_count(done as u64, total as u64, Some(done as u64))
        })
        .map_err(|e| format!("cannot fine-tune study `{}`: {e}", study.id))?;
        progress.finish();
        Ok(tuning)
    })
}

/// What `compute` gives, read from the cache file `path` when an earlier run wrote it there.
/// The file is written whole and then renamed, so that a crash never leaves half an entry,
/// under a name of its own first, so that processes computing it at once never write into
/// one file.
fn cached<T: serde::Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    compute: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    if let Some(value) = std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        return Ok(value);
    }
    let value = compute()?;
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&tmp, serde_json::to_vec(&value).expect("a cache entry serialises")).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
    Ok(value)
}

pub fn load_analyzer(args: &StudyArgs) -> Result<Analyzer, String> {
    let study = load_study(args)?;
    let embedder = load_embedder(args)?;
    let compiled = compiled_study(&study, &embedder)?;
    Analyzer::new(embedder, compiled).map_err(|e| e.to_string())
}

/// What taking part costs, in words, for the stderr of the commands that analyse exports.
pub fn privacy_statement(study: &chorus_shared::study::CompiledStudy) -> String {
    let a = &study.privacy.accounting;
    format!(
        "study {}: each report costs ε = {:.3} (δ = {:e}); a contributor sends at most {} report{} and spends at most ε = {:.3}, δ = {:e} in all",
        study.key(),
        a.per_report.epsilon,
        a.per_report.delta,
        study.privacy.reports_per_contributor,
        if study.privacy.reports_per_contributor == 1 { "" } else { "s" },
        a.contributor.epsilon,
        a.contributor.delta,
    )
}
