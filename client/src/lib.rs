//! The contributor's on-device pipeline, compiled to WebAssembly: the same `chorus-shared`
//! code that the `chorus` command runs natively, behind a small JavaScript API.
//!
//! ```js
//! const client = new Client(modelBytes, tokenizerBytes, compiledStudyJson);
//! const analysed = JSON.parse(client.analyze(exportBytes, false, (readBytes, totalBytes, done) => {}));
//! // analysed.conversations: [{id, title, language, category, concern, topic_path, turns, chars, has_code}]
//! // analysed.summary: {conversations, skipped, truncated}
//! const privacy = JSON.parse(client.privacy());          // what a report and a contributor cost
//! const { batch, memo } = JSON.parse(client.report(memoJson, JSON.stringify(excludedIds)));
//! // batch: the ReportBatch to send; memo: to store on the device and hand back next time
//! verifyRelease(releaseJson, publicKeyJson);              // the release id, or an error
//! ```

use chorus_shared::embed::Embedder;
use chorus_shared::import::{read_export, ImportSummary};
use chorus_shared::privacy::memo::{digest, study_key, Memo};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_shared::{Analysis, Analyzer};
use serde::Serialize;
use serde_json::json;
use std::cell::Cell;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Client {
    analyzer: Analyzer,
    /// The last export's conversations: their digest (never leaves the tab) and analysis.
    analysed: Vec<(String, Analysis)>,
    /// Their titles, for the review table.
    titles: Vec<Option<String>>,
}

#[derive(Serialize)]
struct AnalyzeResult {
    conversations: Vec<Row>,
    summary: Summary,
}

/// A conversation as the review table shows it: its analysis and its title (from the export,
/// for the contributor's eyes only; never part of a report).
#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    analysis: Analysis,
    title: Option<String>,
}

#[derive(Serialize)]
struct Summary {
    conversations: u64,
    skipped: u64,
    truncated: bool,
}

#[wasm_bindgen]
impl Client {
    /// Loads the pinned model (its SHA-256 is checked) and a compiled study (JSON).
    #[wasm_bindgen(constructor)]
    pub fn new(model_onnx: &[u8], tokenizer_json: &[u8], compiled_study_json: &str) -> Result<Client, JsError> {
        let embedder = Embedder::new(model_onnx, tokenizer_json)?;
        let study: CompiledStudy = serde_json::from_str(compiled_study_json)
            .map_err(|e| JsError::new(&format!("the compiled study is not valid: {e}")))?;
        Ok(Client {
            analyzer: Analyzer::new(embedder, study)?,
            analysed: Vec::new(),
            titles: Vec::new(),
        })
    }

    /// Analyses an export's bytes and returns a JSON string of `{conversations, summary}`.
    /// `progress(readBytes, totalBytes, conversationsDone)` is called after each conversation.
    /// With `embeddings`, each conversation also carries its embedding and category probabilities.
    pub fn analyze(
        &mut self,
        export: &[u8],
        embeddings: bool,
        progress: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        let total = export.len() as f64;
        let furthest = Rc::new(Cell::new(0u64));
        let reader = ProgressCursor {
            inner: Cursor::new(export),
            furthest: furthest.clone(),
        };
        let mut analysed = Vec::new();
        let mut titles = Vec::new();
        let mut failure = None;
        let summary: ImportSummary = read_export(reader, "the export", &mut |conversation| {
            if failure.is_some() {
                return;
            }
            match self.analyzer.analyze(&conversation, true) {
                Ok(analysis) => {
                    analysed.push((digest(&conversation), analysis));
                    titles.push(conversation.title.clone());
                }
                Err(e) => failure = Some(e),
            }
            if let Some(callback) = &progress {
                let (read, done) = (furthest.get() as f64, analysed.len() as f64);
                let _ = callback.call3(&JsValue::NULL, &read.into(), &total.into(), &done.into());
            }
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        self.analysed = analysed;
        self.titles = titles;
        let conversations = self
            .analysed
            .iter()
            .zip(&self.titles)
            .map(|((_, a), title)| {
                let mut shown = a.clone();
                if !embeddings {
                    shown.embedding = None;
                    shown.category_probabilities = None;
                }
                Row {
                    analysis: shown,
                    title: title.clone(),
                }
            })
            .collect();
        let result = AnalyzeResult {
            conversations,
            summary: Summary {
                conversations: summary.conversations,
                skipped: summary.skipped,
                truncated: summary.truncated,
            },
        };
        Ok(serde_json::to_string(&result).expect("analysis serialises"))
    }

    /// What taking part costs: the per-report and contributor-level (ε, δ), the channels and
    /// their mechanisms, as JSON.
    pub fn privacy(&self) -> String {
        let plan = &self.analyzer.study().privacy;
        let channels: Vec<_> = plan
            .channels
            .iter()
            .map(|c| json!({"channel": c.channel, "values": c.labels.len(), "oracle": c.oracle, "pool": c.pool}))
            .collect();
        json!({
            "per_report": plan.accounting.per_report,
            "contributor": plan.accounting.contributor,
            "reports_per_contributor": plan.reports_per_contributor,
            "channels": channels,
            "embedding": plan.embedding.as_ref().map(|e| json!({"dimensions": e.dimensions(), "clip": e.clip, "sigma": e.sigma})),
        })
        .to_string()
    }

    /// The batch to send for the last analysed export, leaving out the conversations whose ids
    /// are in `excluded_ids_json` (a JSON array). `memo_json` is the memo this device stored
    /// last time (empty for a new device); the result is `{batch, memo}`, and the new memo must
    /// be stored before the batch is sent, so that a retry re-sends the same batch.
    pub fn report(&self, memo_json: &str, excluded_ids_json: &str) -> Result<String, JsError> {
        let study = self.analyzer.study();
        let excluded: Vec<String> = serde_json::from_str(excluded_ids_json)
            .map_err(|e| JsError::new(&format!("excluded ids must be a JSON array of strings: {e}")))?;
        let mut noise = Noise::Secure;
        let mut memo = if memo_json.trim().is_empty() {
            Memo::new(&mut noise)?
        } else {
            serde_json::from_str(memo_json).map_err(|e| JsError::new(&format!("the stored memo is damaged: {e}")))?
        };
        let version = study_key(study);
        let candidates: Vec<(String, &Analysis)> = self
            .analysed
            .iter()
            .filter(|(_, a)| !excluded.contains(&a.id))
            .map(|(d, a)| (memo.key(&version, d), a))
            .collect();
        let batch = memo.batch(study, &candidates, &mut noise)?;
        Ok(json!({ "batch": batch, "memo": memo }).to_string())
    }

    /// The compiled study's id and version, e.g. `chorus-default@3f2a…`.
    #[wasm_bindgen(js_name = studyVersion)]
    pub fn study_version(&self) -> String {
        format!("{}@{}", self.analyzer.study().id, self.analyzer.study().version)
    }
}

/// Checks a signed release document (its JSON text) against the server's public key (hex, or
/// the JSON of `/api/v1/public-key`); returns the release's id, or an error saying what failed.
/// The same code as `chorus verify`, for the auditor's page.
#[wasm_bindgen(js_name = verifyRelease)]
pub fn verify_release(document: &str, public_key: &str) -> Result<String, JsError> {
    let key = match serde_json::from_str::<serde_json::Value>(public_key) {
        Ok(v) => v["public_key"].as_str().unwrap_or_default().to_owned(),
        Err(_) => public_key.trim().to_owned(),
    };
    let signed = chorus_shared::release::verify(document, &key).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(signed.release["id"].as_str().unwrap_or_default().to_owned())
}

/// A cursor that remembers the furthest point read, for progress.
struct ProgressCursor<'a> {
    inner: Cursor<&'a [u8]>,
    furthest: Rc<Cell<u64>>,
}

impl Read for ProgressCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.furthest.set(self.furthest.get().max(self.inner.position()));
        Ok(n)
    }
}

impl Seek for ProgressCursor<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}
