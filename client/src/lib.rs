//! The contributor's on-device pipeline, compiled to WebAssembly: the same `chorus-shared`
//! code that the `chorus` command runs natively, behind a small JavaScript API.
//!
//! ```js
//! const client = new Client(modelBytes, tokenizerBytes, compiledStudyJson);
//! const analysed = JSON.parse(client.analyze(exportBytes, false, (readBytes, totalBytes, done) => {}));
//! // analysed.conversations: [{id, title, created, preview, language, category, concern, topic_path, turns,
//! //   chars, has_code}] (created: the day, preview: the first words of the request; for review only)
//! // analysed.summary: {conversations, skipped, truncated}
//! const privacy = JSON.parse(client.privacy());          // what a report and a contributor cost
//! // For a study that admits invited contributors only: token requests, stored before sending.
//! const pending = client.tokenRequests(tokenKeyJson);     // store it, then post
//! const redemption = redemptionBody(pending, invitationCode); // to POST …/tokens
//! const tokens = client.finishTokens(pending, answerJson); // JSON array of tokens
//! const prepared = JSON.parse(client.report(memoJson, JSON.stringify(excludedIds), tokens));
//! // prepared.needs_tokens: n when the study needs tokens and neither the memo nor `tokens` has them;
//! // prepared.batch: the ReportBatch to send, as JSON text (send these very bytes);
//! // prepared.memo: to store on the device and hand back next time; prepared.sampled: the ids of
//! // the conversations reported; prepared.cost, .lifetime_before, .lifetime_after: (ε, δ)
//! const { memo } = JSON.parse(client.commit(prepared.memo, batchKey)); // before sending it
//! verifyRelease(releaseJson, publicKeyJson);              // the release id, or an error
//! ```
//!
//! In the contributor's page each Web Worker reads the export through `analyzeFile` (a window
//! at a time) and analyses its share of the conversations; one worker gathers the others'
//! analyses (`takeAnalyses` → `addAnalyses`) and builds the batch.

use chorus_messages::BlindSignatures;
use chorus_shared::device::{digest, DeviceError, Memo, PendingTokens};
use chorus_shared::embed::Embedder;
use chorus_shared::import::{read_export_with_progress, ImportProgress, ImportSummary};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_shared::tokens::{Token, TokenPublicKey};
use chorus_shared::{Analysis, Analyzer};
use reader::JsFile;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::{Cursor, Read, Seek};
use wasm_bindgen::prelude::*;

mod reader;
mod text_embedder;

pub use text_embedder::TextEmbedder;

#[wasm_bindgen]
pub struct Client {
    analyzer: Analyzer,
    /// The last export's conversations (this worker's share of them, and any other worker's
    /// handed over with `addAnalyses`), in export order.
    kept: Vec<KeptConversation>,
}

/// One analysed conversation as the tab keeps it. The digest and the embedding never leave the
/// tab; the title, the day and the request's first words are for the contributor's eyes (the
/// review) only.
#[derive(Serialize, Deserialize)]
struct KeptConversation {
    index: u64,
    digest: String,
    title: Option<String>,
    created: Option<String>,
    preview: String,
    analysis: Analysis,
}

/// How many words of the first request the review shows.
const PREVIEW_WORDS: usize = 16;

#[derive(Serialize)]
struct AnalyzeResult {
    conversations: Vec<ReviewRow>,
    summary: Summary,
}

/// A conversation as the review shows it: its analysis (no embedding), title, day and first words.
#[derive(Serialize)]
struct ReviewRow {
    index: u64,
    #[serde(flatten)]
    analysis: Analysis,
    title: Option<String>,
    created: Option<String>,
    preview: String,
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
            kept: Vec::new(),
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
        self.run(Cursor::new(export), embeddings, progress.as_ref(), 0, 1)
    }

    /// Analyses an export the page reads for it: `readAt(offset, length)` returns a `Uint8Array`
    /// of the file's bytes (in a worker, `FileReaderSync` over `File.slice`), so the export is
    /// never held whole. Only conversation `i` with `i % shards == shard` is analysed (the others
    /// are read and skipped), so that several workers can share one export.
    #[wasm_bindgen(js_name = analyzeFile)]
    pub fn analyze_file(
        &mut self,
        size: f64,
        read_at: js_sys::Function,
        progress: Option<js_sys::Function>,
        shard: u32,
        shards: u32,
    ) -> Result<String, JsError> {
        if shards == 0 || shard >= shards {
            return Err(JsError::new("shard must be below shards"));
        }
        let reader = JsFile::new(size as u64, read_at);
        self.run(reader, false, progress.as_ref(), shard, shards)
    }

    /// This worker's analyses, whole (digests and embeddings included), for the worker that
    /// builds the batch (`addAnalyses`). They move between the tab's workers only.
    #[wasm_bindgen(js_name = takeAnalyses)]
    pub fn take_analyses(&mut self) -> String {
        serde_json::to_string(&std::mem::take(&mut self.kept)).expect("analyses serialise")
    }

    /// Adds another worker's analyses (from `takeAnalyses`) to this one's, in export order.
    #[wasm_bindgen(js_name = addAnalyses)]
    pub fn add_analyses(&mut self, json: &str) -> Result<(), JsError> {
        let more: Vec<KeptConversation> =
            serde_json::from_str(json).map_err(|e| JsError::new(&format!("not a worker's analyses: {e}")))?;
        self.kept.extend(more);
        self.kept.sort_by_key(|a| a.index);
        Ok(())
    }

    fn run<R: Read + Seek>(
        &mut self,
        reader: R,
        embeddings: bool,
        progress: Option<&js_sys::Function>,
        shard: u32,
        shards: u32,
    ) -> Result<String, JsError> {
        let mut analysed = Vec::new();
        let mut failure = None;
        let mut index = 0u64;
        let read = ImportProgress::default();
        let summary: ImportSummary = read_export_with_progress(reader, "the export", &read, &mut |conversation| {
            let mine = index % u64::from(shards) == u64::from(shard);
            index += 1;
            if failure.is_some() || !mine {
                return;
            }
            match self.analyzer.analyze(&conversation, true) {
                Ok(analysis) => analysed.push(KeptConversation {
                    index: index - 1,
                    digest: digest(&conversation),
                    title: conversation.title.clone(),
                    created: conversation.created.clone(),
                    preview: first_words(conversation.first_user_text().unwrap_or_default()),
                    analysis,
                }),
                Err(e) => failure = Some(e),
            }
            if let Some(callback) = progress {
                let ((bytes, total), done) = (read.bytes(), analysed.len() as f64);
                let _ = callback.call3(
                    &JsValue::NULL,
                    &(bytes as f64).into(),
                    &(total as f64).into(),
                    &done.into(),
                );
            }
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        self.kept = analysed;
        let conversations = self
            .kept
            .iter()
            .map(|a| {
                let mut shown = a.analysis.clone();
                if !embeddings {
                    shown.embedding = None;
                    shown.category_probabilities = None;
                }
                ReviewRow {
                    index: a.index,
                    analysis: shown,
                    title: a.title.clone(),
                    created: a.created.clone(),
                    preview: a.preview.clone(),
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
    /// (empty for a new device). The result is JSON: `batch` (the `ReportBatch` as JSON text:
    /// post these very bytes, never a re-serialisation), `memo` (JSON text to store before
    /// anything is sent), `sampled` (the ids of the conversations reported, in batch order),
    /// `sent` (this batch was sent before), `cost`, `lifetime_before`, `lifetime_after` ((ε, δ)
    /// of sending it and of the device's total in the study) and `lifetime_cap`.
    /// `tokens_json` (a JSON array of tokens from `finishTokens`, or empty) is for a study that
    /// admits invited contributors only; without tokens, and none in the memo for this version,
    /// the result is `{"needs_tokens": n}`.
    pub fn report(&self, memo_json: &str, excluded_ids_json: &str, tokens_json: &str) -> Result<String, JsError> {
        let study = self.analyzer.study();
        let excluded: std::collections::HashSet<String> = serde_json::from_str(excluded_ids_json)
            .map_err(|e| JsError::new(&format!("excluded ids must be a JSON array of strings: {e}")))?;
        let tokens: Vec<String> = match tokens_json.trim() {
            "" => Vec::new(),
            text => serde_json::from_str(text)
                .map_err(|e| JsError::new(&format!("tokens must be a JSON array of strings: {e}")))?,
        };
        let tokens = tokens
            .iter()
            .map(|t| Token::from_hex(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JsError::new(&e.to_string()))?;
        let mut noise = Noise::Secure;
        let mut memo = load_memo(memo_json, &mut noise)?;
        let included: Vec<&KeptConversation> = self
            .kept
            .iter()
            .filter(|a| !excluded.contains(&a.analysis.id))
            .collect();
        let candidates: Vec<(String, &Analysis)> = included
            .iter()
            .map(|a| (memo.key(&study.id, &a.digest), &a.analysis))
            .collect();
        let prepared = match memo.prepare_with_tokens(study, &candidates, &tokens, &mut noise) {
            Err(DeviceError::NeedsTokens { needed }) => return Ok(json!({ "needs_tokens": needed }).to_string()),
            other => other?,
        };
        let sampled: Vec<&str> = prepared
            .sampled
            .iter()
            .map(|&i| included[i].analysis.id.as_str())
            .collect();
        Ok(json!({
            "batch": serde_json::to_string(&prepared.batch).expect("a batch serialises"),
            "memo": serde_json::to_string(&memo).expect("the memo serialises"),
            "sampled": sampled,
            "sent": prepared.sent,
            "cost": prepared.cost,
            "lifetime_before": prepared.lifetime_before,
            "lifetime_after": prepared.lifetime_after,
            "lifetime_cap": prepared.lifetime_cap,
        })
        .to_string())
    }

    /// Records in the memo that the prepared batch with this key is being sent (its values have
    /// left the device; the ledger gains what they cost); refused past the study's lifetime cap.
    /// Returns JSON `{memo, spend}`; store the memo before sending the batch.
    pub fn commit(&self, memo_json: &str, batch_key: &str) -> Result<String, JsError> {
        let mut noise = Noise::Secure;
        let mut memo = load_memo(memo_json, &mut noise)?;
        let spend = memo.commit(self.analyzer.study(), batch_key)?;
        Ok(json!({
            "memo": serde_json::to_string(&memo).expect("the memo serialises"),
            "spend": spend,
        })
        .to_string())
    }

    /// Token requests for the study's version under its issuer key (the JSON of
    /// `GET /api/v1/studies/{id}/token-key`), one per report the study takes: JSON to store on
    /// the device before anything is sent, and to hand to `redemptionBody` and `finishTokens`.
    #[wasm_bindgen(js_name = tokenRequests)]
    pub fn token_requests(&self, token_key_json: &str) -> Result<String, JsError> {
        let study = self.analyzer.study();
        let key: serde_json::Value = serde_json::from_str(token_key_json)
            .map_err(|e| JsError::new(&format!("the token key is not JSON: {e}")))?;
        if key["study_version"] != study.version.as_str() {
            return Err(JsError::new(
                "the server's token key is for another version of the study: reload the page",
            ));
        }
        let spki = key["spki"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| JsError::new("the token key answer holds no key"))?;
        let key = TokenPublicKey::from_spki(&spki).map_err(|e| JsError::new(&e.to_string()))?;
        let pending = PendingTokens::new(study, &key, &mut Noise::Secure)?;
        Ok(serde_json::to_string(&pending).expect("pending tokens serialise"))
    }

    /// The tokens (a JSON array) from stored token requests and the issuer's answer (JSON text
    /// of `BlindSignatures`); every signature is checked against the key.
    #[wasm_bindgen(js_name = finishTokens)]
    pub fn finish_tokens(&self, pending_json: &str, answer_json: &str) -> Result<String, JsError> {
        let pending = parse_pending(pending_json)?;
        let answer: BlindSignatures = serde_json::from_str(answer_json)
            .map_err(|e| JsError::new(&format!("the issuer's answer is not valid: {e}")))?;
        let tokens: Vec<String> = pending.finish(&answer)?.iter().map(Token::to_hex).collect();
        Ok(serde_json::to_string(&tokens).expect("tokens serialise"))
    }

    /// The compiled study's id and version, e.g. `chorus-default@3f2a…`.
    #[wasm_bindgen(js_name = studyVersion)]
    pub fn study_version(&self) -> String {
        self.analyzer.study().key()
    }
}

/// The device's memo from its stored JSON (a new one when nothing is stored).
fn load_memo(json: &str, noise: &mut Noise) -> Result<Memo, JsError> {
    if json.trim().is_empty() {
        return Ok(Memo::new(noise)?);
    }
    Ok(Memo::from_json(json)?)
}

/// The first words of a request, for the review (… when there is more).
fn first_words(text: &str) -> String {
    let mut words = text.split_whitespace();
    let shown: Vec<&str> = words.by_ref().take(PREVIEW_WORDS).collect();
    let more = if words.next().is_some() { " …" } else { "" };
    format!("{}{more}", shown.join(" "))
}

fn parse_pending(json: &str) -> Result<PendingTokens, JsError> {
    serde_json::from_str(json).map_err(|e| JsError::new(&format!("the stored token requests are damaged: {e}")))
}

/// The request body that redeems `invitation` for stored token requests (JSON text of an
/// `InvitationRedemption`): the same bytes however often it is sent.
#[wasm_bindgen(js_name = redemptionBody)]
pub fn redemption_body(pending_json: &str, invitation: &str) -> Result<String, JsError> {
    let redemption = parse_pending(pending_json)?.redemption(invitation);
    Ok(serde_json::to_string(&redemption).expect("a redemption serialises"))
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
