//! The on-device pipeline for one conversation: facets from the text, the embedding of its
//! request text (and of its first reply's opening when the study's category classifier reads
//! it), and the study's classifiers on those embeddings. The browser, the `chorus`
//! command and the tests all analyse conversations through this one function.

use crate::analysis::Analysis;
use crate::conversation::Conversation;
use crate::embed::{EmbedError, Embedder, DIM, MAX_TOKENS};
use crate::facets;
use crate::study::{argmax, tuned_request, CategoryInput, CategoryTexts, CompiledStudy, COMPILED_FORMAT};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    #[error("the compiled study was trained with model {study}, not the pinned model {pinned}; compile it again")]
    ModelMismatch { study: String, pinned: String },
    #[error("the compiled study has format {found}, this code reads format {COMPILED_FORMAT}; compile it again")]
    FormatMismatch { found: u32 },
    #[error("the compiled study was trained on texts read to {found} tokens, this code reads {MAX_TOKENS}; compile it again")]
    ReadingLengthMismatch { found: usize },
    #[error("the compiled study's codebook was made from requests read to {found} tokens, this code reads {MAX_TOKENS}; recentre it (`chorus codebook recentre`) and compile the study again")]
    CodebookReadingLengthMismatch { found: usize },
    #[error("the compiled study is malformed: {0}")]
    Malformed(String),
}

pub struct Analyzer {
    embedder: Embedder,
    study: CompiledStudy,
}

impl Analyzer {
    pub fn new(embedder: Embedder, study: CompiledStudy) -> Result<Analyzer, AnalyzerError> {
        let pinned = &crate::embed::pins::pins().model.sha256;
        if &study.model_sha256 != pinned {
            return Err(AnalyzerError::ModelMismatch {
                study: study.model_sha256,
                pinned: pinned.clone(),
            });
        }
        if study.format != COMPILED_FORMAT {
            return Err(AnalyzerError::FormatMismatch { found: study.format });
        }
        if study.max_tokens != MAX_TOKENS {
            return Err(AnalyzerError::ReadingLengthMismatch {
                found: study.max_tokens,
            });
        }
        // The device's request embeddings are compared with the codebook's centroids.
        if let Some(codebook) = study.codebook.as_ref().filter(|c| c.max_tokens != MAX_TOKENS) {
            return Err(AnalyzerError::CodebookReadingLengthMismatch {
                found: codebook.max_tokens,
            });
        }
        study.check_shapes().map_err(AnalyzerError::Malformed)?;
        let embedder = match &study.tuned_layers {
            Some(tuned) => embedder
                .with_tuned_layers(tuned)
                .map_err(|e| AnalyzerError::Malformed(format!("its tuned layers: {e}")))?,
            None => embedder,
        };
        Ok(Analyzer { embedder, study })
    }

    pub fn study(&self) -> &CompiledStudy {
        &self.study
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Analyses one conversation.
    pub fn analyze(&self, conversation: &Conversation, keep_embedding: bool) -> Result<Analysis, EmbedError> {
        let text = facets::text_facets(conversation);
        let request = facets::request_text(conversation);
        // With the layered input, the request's embedding followed by its layers' means; with
        // the study's tuned layers, its tuned embedding before them, from the same run of the
        // lower layers. The pinned embedding is what topics, concern and the embedding channel read.
        let layered = self.study.category_input.layered();
        let (request_for_category, embedding) = match self.embedder.embed_tuned(&[&request])? {
            Some(mut both) => {
                let both = both.remove(0);
                (tuned_request(&both.tuned, &both.pinned), both.pinned[..DIM].to_vec())
            }
            None => {
                let embedded = if layered {
                    self.embedder.embed_layers(&[&request])?.remove(0)
                } else {
                    self.embedder.embed(&[&request])?.remove(0)
                };
                let embedding = embedded[..DIM].to_vec();
                (embedded, embedding)
            }
        };
        // Embedded apart from the request: in one batch the shorter text would be padded.
        let reply_text = match self.study.category_input {
            CategoryInput::Request => None,
            _ => facets::reply_text(conversation),
        };
        let reply = match reply_text.as_deref() {
            None => None,
            Some(reply) if layered => Some(self.embedder.embed_layers(&[reply])?.remove(0)),
            Some(reply) => Some(self.embedder.embed(&[reply])?.remove(0)),
        };
        let user_text: String = conversation.user_texts().collect::<Vec<_>>().join("\n");
        // Only a classifier that reads the replies' words needs them cut and scrubbed.
        let replies_text = (self.study.words.as_ref())
            .filter(|w| w.replies)
            .and_then(|_| facets::replies_text(conversation));
        let texts = CategoryTexts {
            request: &request,
            reply: reply_text.as_deref(),
            replies: replies_text.as_deref(),
        };
        let probabilities = self
            .study
            .category_probabilities(&request_for_category, reply.as_deref(), texts);
        Ok(Analysis {
            id: conversation.id.clone(),
            language: text.language.to_owned(),
            category: self.study.categories[argmax(&probabilities)].id.clone(),
            concern: self.study.concern(&embedding, &user_text),
            topic_path: self.study.topic_path(&embedding),
            turns: text.turns,
            chars: text.chars,
            has_code: text.has_code,
            category_probabilities: keep_embedding.then_some(probabilities),
            embedding: keep_embedding.then_some(embedding),
        })
    }
}
