//! The sentence embedder alone, for the browser benchmark that sets Chorus's in-browser
//! embedding side by side with transformers.js (`bench/`): the same model and code the
//! contributor's analysis runs, without facets or a study.
//!
//! ```js
//! const embedder = new TextEmbedder(modelBytes, tokenizerBytes);
//! const vector = embedder.embed("a request");   // Float32Array, unit length
//! ```
//! Nothing here leaves the tab: it returns the vector to the page that asked.

use chorus_shared::embed::Embedder;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct TextEmbedder {
    embedder: Embedder,
}

#[wasm_bindgen]
impl TextEmbedder {
    /// Loads the pinned model (its SHA-256 is checked) and tokenizer.
    #[wasm_bindgen(constructor)]
    pub fn new(model_onnx: &[u8], tokenizer_json: &[u8]) -> Result<TextEmbedder, JsError> {
        Ok(TextEmbedder {
            embedder: Embedder::new(model_onnx, tokenizer_json)?,
        })
    }

    /// The embedding of one text (truncated as the analysis truncates it, mean-pooled, L2
    /// normalised).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, JsError> {
        Ok(self.embedder.embed(&[text])?.remove(0))
    }
}
