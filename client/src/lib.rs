//! The contributor's on-device pipeline, compiled to WebAssembly: the same `chorus-shared`
//! code that `chorus analyze` runs natively, behind a small JavaScript API.
//!
//! ```js
//! const client = new Client(modelBytes, tokenizerBytes, compiledStudyJson);
//! const result = JSON.parse(client.analyze(exportBytes, false, (readBytes, totalBytes, conversations) => {}));
//! // result.conversations: [{id, language, category, concern, turns, chars, has_code}], result.summary
//! ```

use chorus_shared::embed::Embedder;
use chorus_shared::import::{read_export, ImportSummary};
use chorus_shared::study::CompiledStudy;
use chorus_shared::{Analysis, Analyzer};
use serde::Serialize;
use std::cell::Cell;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Client {
    analyzer: Analyzer,
}

#[derive(Serialize)]
struct AnalyzeResult {
    conversations: Vec<Analysis>,
    summary: Summary,
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
    pub fn new(
        model_onnx: &[u8],
        tokenizer_json: &[u8],
        compiled_study_json: &str,
    ) -> Result<Client, JsError> {
        let embedder = Embedder::new(model_onnx, tokenizer_json)?;
        let study: CompiledStudy = serde_json::from_str(compiled_study_json)
            .map_err(|e| JsError::new(&format!("the compiled study is not valid: {e}")))?;
        Ok(Client {
            analyzer: Analyzer::new(embedder, study)?,
        })
    }

    /// Analyses an export's bytes and returns a JSON string of `{conversations, summary}`.
    /// `progress(readBytes, totalBytes, conversationsDone)` is called after each conversation.
    pub fn analyze(
        &self,
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
        let mut conversations = Vec::new();
        let mut failure = None;
        let summary: ImportSummary = read_export(reader, "the export", &mut |conversation| {
            if failure.is_some() {
                return;
            }
            match self.analyzer.analyze(&conversation, embeddings) {
                Ok(analysis) => conversations.push(analysis),
                Err(e) => failure = Some(e),
            }
            if let Some(callback) = &progress {
                let (read, done) = (furthest.get() as f64, conversations.len() as f64);
                let _ = callback.call3(&JsValue::NULL, &read.into(), &total.into(), &done.into());
            }
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
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

    /// The compiled study's id and version, e.g. `chorus-default@3f2a…`.
    #[wasm_bindgen(js_name = studyVersion)]
    pub fn study_version(&self) -> String {
        format!(
            "{}@{}",
            self.analyzer.study().id,
            self.analyzer.study().version
        )
    }
}

/// A cursor that remembers the furthest point read, for progress.
struct ProgressCursor<'a> {
    inner: Cursor<&'a [u8]>,
    furthest: Rc<Cell<u64>>,
}

impl Read for ProgressCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.furthest
            .set(self.furthest.get().max(self.inner.position()));
        Ok(n)
    }
}

impl Seek for ProgressCursor<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}
