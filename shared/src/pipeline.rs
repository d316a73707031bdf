//! The on-device pipeline for one conversation: facets from the text, the embedding of its
//! request text (and of its first reply's opening when the study's category classifier reads
//! it), and the study's classifiers on those embeddings. The browser, the `chorus`
//! command and the tests all analyse conversations through this one function.

use crate::analysis::Analysis;
use crate::conversation::Conversation;
use crate::embed::{EmbedError, Embedder};
use crate::facets;
use crate::study::{argmax, CategoryInput, CompiledStudy, COMPILED_FORMAT};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    #[error("the compiled study was trained with model {study}, not the pinned model {pinned}; compile it again")]
    ModelMismatch { study: String, pinned: String },
    #[error("the compiled study has format {found}, this code reads format {COMPILED_FORMAT}; compile it again")]
    FormatMismatch { found: u32 },
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
        study
            .check_shapes(crate::embed::DIM)
            .map_err(AnalyzerError::Malformed)?;
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
        let embedding = self.embedder.embed(&[&request])?.remove(0);
        // Embedded apart from the request: in one batch the shorter text would be padded.
        let reply = match self.study.category_input {
            CategoryInput::Request => None,
            CategoryInput::RequestAndReply => match facets::reply_text(conversation) {
                Some(reply) => Some(self.embedder.embed(&[&reply])?.remove(0)),
                None => None,
            },
        };
        let user_text: String = conversation.user_texts().collect::<Vec<_>>().join("\n");
        let probabilities = self.study.category_probabilities(&embedding, reply.as_deref());
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
