//! Studies: what a study publishes (its taxonomy of categories, its concern scale, its labelled
//! examples), parsed from TOML, and compiled against the embedder into the classifiers that run
//! on the contributor's device.
//!
//! ```toml
//! id = "..."
//! title = "..."
//! labelled_examples = "examples.jsonl"   # optional, relative to the study file
//! codebook = "codebook.json"              # optional: the public topic codebook (`chorus codebook build`)
//! [[category]]
//! id = "software_development"
//! name = "Software development"
//! description = "..."
//! examples = ["...", "..."]
//! [[concern]]                             # optional; levels 2–5 of Clio's concern scale
//! level = 3
//! description = "..."
//! examples = ["..."]
//! terms = ["..."]
//! ```

pub mod calibration;
mod classifier;
mod compiled;
mod design;
mod evaluate;
pub mod finetune;
pub mod neighbours;
mod regressions;
mod shapes;
mod training;
pub mod tuning;
mod validation;
pub mod words;

pub use classifier::{argmax, tuned_request, CategoryInput, Classifier, TrainOptions};
pub use compiled::{CompiledStudy, ConcernPrototype, CATEGORY_MIN_EXAMPLES, COMPILED_FORMAT, CONFUSION_FOLDS};
pub use evaluate::{cross_validate, CategoryScore, Evaluation, FineTunedSteps};
pub use training::{
    category_input, embed_training_set, example_text, fit_words, fold_assignment, training_set, with_words,
    CompileError, EmbeddedSet, TrainingSet, VOCABULARY,
};
pub use validation::{AtReports, DebiasValidation, MARGIN as DEBIAS_MARGIN};
pub use words::CategoryTexts;

use crate::codebook::Codebook;
use crate::embed::pins::sha256_hex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Path of a JSON Lines file of `{"text": ..., "category": ...}`, relative to the study file.
    #[serde(default)]
    pub labelled_examples: Option<String>,
    /// Path of the study's public topic codebook (JSON), relative to the study file; it is
    /// published with the study, and devices report their topic leaf from it.
    #[serde(default, rename = "codebook")]
    pub codebook_file: Option<String>,
    #[serde(rename = "category")]
    pub categories: Vec<Category>,
    #[serde(rename = "concern", default)]
    pub concerns: Vec<ConcernLevel>,
    /// How many of the embedder's upper transformer layers compiling fine-tunes on the labelled
    /// examples for the category classifier (0: none, the classifier reads the pinned
    /// embeddings). Topics, concern and the embedding channel always use the pinned embeddings.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fine_tune_layers: usize,
    /// Cosine similarity to a concern example above which a request takes that example's level.
    #[serde(default = "default_concern_threshold")]
    pub concern_threshold: f32,
    /// Who may contribute: `invited` (the default) or `open`.
    #[serde(default)]
    pub access: Access,
    /// Who runs the study, why, and how long its reports are kept.
    #[serde(default)]
    pub steward: Steward,
    /// What leaves the device and what it costs (the default study's settings when absent).
    #[serde(default)]
    pub privacy: crate::privacy::PrivacyConfig,
    /// What the server may publish (thresholds and central privacy of releases).
    #[serde(default)]
    pub release: ReleaseConfig,
    /// Filled by [`Study::parse`]: the labelled examples read from `labelled_examples`.
    #[serde(skip)]
    pub examples: Vec<LabelledExample>,
    /// Filled by [`Study::parse`]: the codebook read from `codebook_file`.
    #[serde(skip)]
    pub codebook: Option<Codebook>,
    /// Filled by [`Study::parse`]: a hash of what the study means (see `meaning_hash`).
    #[serde(skip)]
    pub version: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Who may contribute to a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone may post reports. Local noise hides a fabricated report as well as an honest one,
    /// so every release of such a study says that it is not robust to fabricated reports.
    Open,
    /// Only holders of an invitation: each report carries an anonymous one-time token
    /// ([`crate::tokens`]) that the server verifies and spends.
    #[default]
    Invited,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Invited => "invited",
        }
    }
}

/// The `[release]` table of a study file: what the server may publish.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseConfig {
    /// A cell is published only when its count is reliably at least `k` (see the server's
    /// publication rule: one-sided tests, Holm's procedure over the whole release).
    pub k: u32,
    /// Central ε spent per release on the counts the server sees un-noised (contributors,
    /// reports, reports per day, reports per contributor), split evenly between them.
    pub central_epsilon: f64,
    /// Central ε all releases of one study version may spend together; once spent, releases
    /// re-publish the last noisy counts.
    pub central_epsilon_total: f64,
    /// The day the study starts collecting (`YYYY-MM-DD`, public): reports per day are published
    /// from it to the release's day. Without it, no per-day counts are published.
    pub start: Option<String>,
    /// A cross-tab tests a row or column only when it is expected to hold this many of the
    /// reports that carry both of its channels.
    pub crosstab_min_reports: u32,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            k: 10,
            central_epsilon: 1.0,
            central_epsilon_total: 3.0,
            start: None,
            crosstab_min_reports: 50,
        }
    }
}

impl ReleaseConfig {
    /// The start day as days since 1970-01-01.
    pub fn start_day(&self) -> Option<i64> {
        self.start.as_deref().and_then(days_from_date)
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian calendar).
pub fn days_from_date(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if date.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConcernLevel {
    pub level: u8,
    pub description: String,
    /// Requests of this level, matched by embedding similarity.
    pub examples: Vec<String>,
    /// Words or phrases that mark a conversation as at least this level, matched as whole
    /// words, ignoring case, in what the user wrote.
    #[serde(default)]
    pub terms: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LabelledExample {
    pub text: String,
    pub category: String,
    /// Where the example came from (e.g. `sample` for a uniform sample of a public corpus);
    /// only `sample` examples are used to measure accuracy, so that the figure is unbiased.
    #[serde(default)]
    pub source: Option<String>,
    /// The opening of the conversation's first assistant reply, when known: the classifier
    /// reads its first words as a device reads a conversation's ([`crate::facets::reply_text`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The conversation's assistant replies, joined, when known (their first
    /// [`crate::facets::MAX_REPLIES_CHARS`] characters are read): the classifier reads their
    /// words as a device reads a conversation's ([`crate::facets::replies_text`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<String>,
    /// Whether two independent readings gave the example this category (`false`: they did
    /// not; the category is the one a third reading agreed with, or the first reading's when
    /// all three differed). Held-out accuracy on the examples the readings agreed on does not
    /// count the labels' own doubt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreed: Option<bool>,
}

/// Who runs a study, why, and how long its reports are kept: what a contributor is told before
/// donating. The server enforces the retention (it deletes a batch `retention_days` after the
/// day it arrived) and takes withdrawals at any time before then.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Steward {
    /// Who runs the study: a person, a lab, an organisation.
    #[serde(default)]
    pub operator: String,
    /// How to reach them (an address or a web page).
    #[serde(default)]
    pub contact: String,
    /// Why the study is run, in a sentence or two.
    #[serde(default)]
    pub purpose: String,
    /// Days a batch of reports is kept after the day it arrived.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

impl Default for Steward {
    fn default() -> Steward {
        Steward {
            operator: String::new(),
            contact: String::new(),
            purpose: String::new(),
            retention_days: default_retention_days(),
        }
    }
}

fn default_retention_days() -> u32 {
    365
}

fn default_concern_threshold() -> f32 {
    0.6
}

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("the study file is not valid: {0}")]
    Toml(String),
    #[error("the study is not valid: {0}")]
    Invalid(String),
    #[error("labelled example on line {line}: {message}")]
    Example { line: usize, message: String },
    #[error("the codebook is not valid: {0}")]
    Codebook(String),
}

/// The files a study file names, relative to it; the caller reads them (this crate does no I/O).
#[derive(Debug, Default, Deserialize)]
pub struct StudyFiles {
    pub labelled_examples: Option<String>,
    pub codebook: Option<String>,
}

/// The content of the files a study names.
#[derive(Debug, Default, Clone, Copy)]
pub struct StudyContents<'a> {
    pub labelled_examples: Option<&'a str>,
    pub codebook: Option<&'a str>,
}

impl Study {
    /// Parses a study file, given the content of the files it names ([`Study::files`]).
    pub fn parse(study_toml: &str, contents: StudyContents<'_>) -> Result<Study, StudyError> {
        let mut study: Study = toml::from_str(study_toml).map_err(|e| StudyError::Toml(e.to_string()))?;
        study.validate()?;
        let missing = |field: &str| {
            Err(StudyError::Invalid(format!(
                "`{field}` names a file, but its content was not given"
            )))
        };
        if study.labelled_examples.is_some() != contents.labelled_examples.is_some() {
            return missing("labelled_examples");
        }
        if study.codebook_file.is_some() != contents.codebook.is_some() {
            return missing("codebook");
        }
        if let Some(jsonl) = contents.labelled_examples {
            study.examples = parse_examples(jsonl, &study.categories)?;
        }
        if let Some(json) = contents.codebook {
            study.codebook = Some(parse_codebook(json)?);
        }
        study.version = study.meaning_hash();
        Ok(study)
    }

    /// The study's version: a hash of what it means, not of how its files are written. Comments,
    /// whitespace, the order of keys and the names of the files it points to leave it unchanged;
    /// any change to the taxonomy, the labelled examples, the codebook or the settings (defaults
    /// included) makes a new version. Devices draw new reports only where a version's
    /// mechanisms changed ([`crate::device`]).
    fn meaning_hash(&self) -> String {
        let mut meaning = serde_json::to_value(self).expect("a study serialises");
        meaning["labelled_examples"] = serde_json::Value::Null;
        meaning["codebook"] = serde_json::Value::Null;
        let parts = [
            serde_json::to_string(&meaning),
            serde_json::to_string(&self.examples),
            serde_json::to_string(&self.codebook),
        ];
        let mut hashed = Vec::new();
        for part in parts {
            let part = part.expect("a study serialises");
            hashed.extend_from_slice(sha256_hex(part.as_bytes()).as_bytes());
        }
        sha256_hex(&hashed)[..16].to_owned()
    }

    /// The files a study file names, read before the whole study is parsed (the caller needs
    /// them to read their content).
    pub fn files(study_toml: &str) -> Result<StudyFiles, StudyError> {
        #[derive(Deserialize)]
        struct Header {
            labelled_examples: Option<String>,
            codebook: Option<String>,
        }
        let header: Header = toml::from_str(study_toml).map_err(|e| StudyError::Toml(e.to_string()))?;
        Ok(StudyFiles {
            labelled_examples: header.labelled_examples,
            codebook: header.codebook,
        })
    }

    fn validate(&self) -> Result<(), StudyError> {
        let invalid = |m: String| Err(StudyError::Invalid(m));
        if !is_identifier(&self.id) {
            return invalid(format!(
                "study id `{}` must be lowercase letters, digits, `_` or `-`",
                self.id
            ));
        }
        if self.steward.retention_days == 0 {
            return invalid("[steward] retention_days must be at least 1: a report must be kept to be counted".into());
        }
        let release = &self.release;
        if release.k == 0 || !(release.central_epsilon > 0.0 && release.central_epsilon.is_finite()) {
            return invalid("[release] needs k ≥ 1 and a positive, finite central_epsilon".into());
        }
        if !(release.central_epsilon_total >= release.central_epsilon && release.central_epsilon_total.is_finite()) {
            return invalid("[release] central_epsilon_total must be finite and at least central_epsilon".into());
        }
        if release.start.is_some() && release.start_day().is_none() {
            return invalid("[release] start must be a date written YYYY-MM-DD".into());
        }
        if self.categories.len() < 2 {
            return invalid("a study needs at least two categories".into());
        }
        if self.fine_tune_layers > tuning::MAX_LAYERS {
            return invalid(format!(
                "fine_tune_layers is {}; at most {} of the embedder's six layers can be fine-tuned",
                self.fine_tune_layers,
                tuning::MAX_LAYERS
            ));
        }
        if self.fine_tune_layers > 0 && self.labelled_examples.is_none() {
            return invalid("fine_tune_layers needs labelled_examples to train on".into());
        }
        for (i, c) in self.categories.iter().enumerate() {
            if !is_identifier(&c.id) {
                return invalid(format!(
                    "category id `{}` must be lowercase letters, digits, `_` or `-`",
                    c.id
                ));
            }
            if self.categories[..i].iter().any(|o| o.id == c.id) {
                return invalid(format!("category id `{}` appears twice", c.id));
            }
            if c.name.trim().is_empty() || c.description.trim().is_empty() {
                return invalid(format!("category `{}` needs a name and a description", c.id));
            }
        }
        for (i, c) in self.concerns.iter().enumerate() {
            if !(2..=5).contains(&c.level) {
                return invalid(format!(
                    "concern level {} is outside 2–5 (level 1 is \"no concern\")",
                    c.level
                ));
            }
            if self.concerns[..i].iter().any(|o| o.level == c.level) || c.examples.is_empty() {
                return invalid(format!("concern level {} must appear once, with examples", c.level));
            }
        }
        if !(0.0..=1.0).contains(&self.concern_threshold) {
            return invalid("concern_threshold must lie between 0 and 1".into());
        }
        Ok(())
    }

    pub fn category_index(&self, id: &str) -> Option<usize> {
        self.categories.iter().position(|c| c.id == id)
    }
}

fn parse_examples(jsonl: &str, categories: &[Category]) -> Result<Vec<LabelledExample>, StudyError> {
    let mut examples = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| StudyError::Example { line: i + 1, message };
        let example: LabelledExample = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
        if !categories.iter().any(|c| c.id == example.category) {
            return Err(err(format!(
                "category `{}` is not in the study's taxonomy",
                example.category
            )));
        }
        if example.text.trim().is_empty() {
            return Err(err("the text is empty".into()));
        }
        examples.push(example);
    }
    Ok(examples)
}

/// A codebook as `chorus codebook build` writes it: at least three levels, every topic below
/// the top with a parent in the level above, centroids of one dimension.
fn parse_codebook(json: &str) -> Result<Codebook, StudyError> {
    let invalid = |m: String| Err(StudyError::Codebook(m));
    let codebook: Codebook = serde_json::from_str(json).map_err(|e| StudyError::Codebook(e.to_string()))?;
    if codebook.format != crate::codebook::CODEBOOK_FORMAT {
        return invalid(format!(
            "format {} (this code reads format {}); build it again",
            codebook.format,
            crate::codebook::CODEBOOK_FORMAT
        ));
    }
    if codebook.levels.len() < 3 || codebook.levels.iter().any(|l| l.len() < 2) {
        return invalid("it needs at least three levels of at least two topics".into());
    }
    let dimension = codebook.levels[0][0].centroid.len();
    for (depth, level) in codebook.levels.iter().enumerate() {
        for topic in level {
            let parent_ok = match (depth, topic.parent) {
                (0, None) => true,
                (0, Some(_)) | (_, None) => false,
                (_, Some(p)) => p < codebook.levels[depth - 1].len(),
            };
            if !parent_ok || topic.centroid.len() != dimension || topic.centroid.iter().any(|x| !x.is_finite()) {
                return invalid(format!("topic `{}` has a bad parent or centroid", topic.id));
            }
        }
    }
    Ok(codebook)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A study of two categories with labelled examples, which other modules' tests vary.
    pub(super) const STUDY: &str = r#"
id = "s1"
title = "T"
labelled_examples = "ex.jsonl"
[[category]]
id = "code"
name = "Code"
description = "Programming"
[[category]]
id = "poems"
name = "Poems"
description = "Poetry"
"#;

    pub(super) fn examples(jsonl: &str) -> StudyContents<'_> {
        StudyContents {
            labelled_examples: Some(jsonl),
            codebook: None,
        }
    }

    #[test]
    fn parses_and_versions_a_study() {
        let s = Study::parse(STUDY, examples("{\"text\":\"fix my loop\",\"category\":\"code\"}\n")).unwrap();
        assert_eq!(s.examples.len(), 1);
        assert_eq!(s.version.len(), 16);
        let other = Study::parse(STUDY, examples("{\"text\":\"a sonnet\",\"category\":\"poems\"}\n")).unwrap();
        assert_ne!(s.version, other.version);
    }

    #[test]
    fn an_example_says_whether_its_readings_agreed() {
        let jsonl = "{\"text\":\"fix my loop\",\"category\":\"code\",\"agreed\":true}\n\
                     {\"text\":\"a sonnet\",\"category\":\"poems\",\"agreed\":false}\n\
                     {\"text\":\"an ode\",\"category\":\"poems\"}\n";
        let s = Study::parse(STUDY, examples(jsonl)).unwrap();
        let agreed: Vec<_> = s.examples.iter().map(|e| e.agreed).collect();
        assert_eq!(agreed, [Some(true), Some(false), None]);
        let err = Study::parse(
            STUDY,
            examples("{\"text\":\"x\",\"category\":\"code\",\"agreed\":\"yes\"}"),
        );
        assert!(err.unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn rejects_bad_studies_with_a_reason() {
        let err = Study::parse(STUDY, examples("{\"text\":\"x\",\"category\":\"nope\"}")).unwrap_err();
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("nope"),
            "{err}"
        );
        let err = Study::parse(&STUDY.replace("id = \"poems\"", "id = \"code\""), examples("")).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        let err = Study::parse(&format!("{STUDY}\ncolour = 1"), examples("")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        assert!(Study::parse(STUDY, StudyContents::default()).is_err());
    }

    #[test]
    fn fine_tuning_needs_labelled_examples_and_leaves_the_lower_layers_pinned() {
        let tuned =
            |layers: usize| STUDY.replace("title = \"T\"", &format!("title = \"T\"\nfine_tune_layers = {layers}"));
        let s = Study::parse(&tuned(2), examples("")).unwrap();
        assert_eq!(s.fine_tune_layers, 2);
        assert_ne!(s.version, Study::parse(STUDY, examples("")).unwrap().version);
        let err = Study::parse(&tuned(5), examples("")).unwrap_err().to_string();
        assert!(err.contains("fine_tune_layers is 5; at most 4"), "{err}");
        let without = tuned(1).replace("labelled_examples = \"ex.jsonl\"\n", "");
        let err = Study::parse(&without, StudyContents::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("fine_tune_layers needs labelled_examples"), "{err}");
    }
}
