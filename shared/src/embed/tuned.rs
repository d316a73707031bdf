//! A study's tuned upper layers on the device and at compile time: the pinned graph cut after
//! its lower layers, the upper layers planned apart with the study's weights, so that one run of
//! the lower layers gives both the pinned embedding and the tuned one.

use super::{layer, load_plan, pinned_graph, pool, run, split, token_states_of, weights, EmbedError, Embedder};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// A text's embedding by the pinned model and through a study's tuned upper layers.
pub struct TunedEmbedding {
    pub pinned: Vec<f32>,
    pub tuned: Vec<f32>,
}

/// The upper layers with a study's weights, planned apart ([`split::above`]).
pub(super) struct TunedPlan {
    pub(super) plan: Arc<TypedRunnableModel>,
    /// As `input_roles`, with 3 = the hidden states at the cut.
    pub(super) input_roles: Vec<usize>,
}

impl Embedder {
    /// This embedder with a study's own weights for its layers from `tuned.first` up, for
    /// [`Embedder::embed_tuned`]; [`Embedder::embed`] still gives the pinned model's embedding.
    /// Refuses weights that are not the shape of the pinned ones they replace.
    pub fn with_tuned_layers(&self, tuned: &weights::TunedLayers) -> Result<Embedder, EmbedError> {
        let graph = pinned_graph(&self.model)?;
        let boundary = split::hidden_state_after(&graph, tuned.first)
            .filter(|_| tuned.first > 0)
            .ok_or_else(|| EmbedError::Load(format!("the model has no layer {} to tune", tuned.first)))?;
        let mut tuned_graph = graph;
        weights::replace_initializers(&mut tuned_graph, tuned).map_err(EmbedError::Load)?;
        let upper_graph = split::above(&tuned_graph, &boundary);
        let load = |e: TractError| EmbedError::Load(format!("{e:#}"));
        let (upper, upper_roles) = load_plan(&self.model, |g| {
            *g = upper_graph;
            Ok(Some(boundary.clone()))
        })
        .map_err(load)?;
        let (plan, input_roles) = load_plan(&self.model, |g| {
            *g = split::with_extra_output(g, &boundary);
            Ok(None)
        })
        .map_err(load)?;
        Ok(Embedder {
            tokenizer: self.tokenizer.clone(),
            plan,
            input_roles,
            model: self.model.clone(),
            tokenizer_json: self.tokenizer_json.clone(),
            tuned: Some(TunedPlan {
                plan: upper,
                input_roles: upper_roles,
            }),
        })
    }

    /// For each text, its pinned embedding and its embedding through the study's tuned upper
    /// layers (run on the pinned lower layers' hidden states, computed once). None without
    /// tuned layers ([`Embedder::with_tuned_layers`]).
    pub fn embed_tuned(&self, texts: &[&str]) -> Result<Option<Vec<TunedEmbedding>>, EmbedError> {
        let Some(tuned) = &self.tuned else { return Ok(None) };
        if texts.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let encoded = self.encode(texts)?;
        let mut outputs = run(&self.plan, &self.input_roles, &encoded, None)?;
        let boundary = outputs.remove(1);
        let pinned = token_states_of(&outputs[0], &encoded.lengths)?;
        let upper = run(&tuned.plan, &tuned.input_roles, &encoded, Some(boundary))?;
        let tuned = token_states_of(&upper[0], &encoded.lengths)?;
        Ok(Some(
            (pinned.iter().zip(&tuned))
                .map(|(p, t)| TunedEmbedding {
                    pinned: pool(&p.view()),
                    tuned: pool(&t.view()),
                })
                .collect(),
        ))
    }

    /// The pinned model's first `layers` transformer layers only: its [`Embedder::token_states`]
    /// are the hidden states after them (what fine-tuned upper layers start from).
    pub fn lower_layers(&self, layers: usize) -> Result<Self, EmbedError> {
        Self::with_graph(&self.model, &self.tokenizer_json, |graph| {
            let boundary = split::hidden_state_after(graph, layers)
                .ok_or_else(|| format!("the model has fewer than {layers} layers"))?;
            *graph = split::below(graph, &boundary);
            Ok(None)
        })
    }

    /// The pinned graph's transformer layers from `first` up, as plain arrays.
    pub fn pinned_layers(&self, first: usize) -> Result<Vec<layer::Layer>, EmbedError> {
        let graph = pinned_graph(&self.model)?;
        let count = (0..)
            .take_while(|&l| split::hidden_state_after(&graph, l + 1).is_some())
            .count();
        (first..count)
            .map(|l| weights::read_layer(&graph, l).map_err(EmbedError::Load))
            .collect()
    }

    /// `layers` as the pinned graph's layers from `first` up, in the form a study ships them
    /// (int8 matrices, [`weights::TunedLayers`]), and the weights that form gives back: what
    /// [`Embedder::embed_tuned`] computes with.
    pub fn quantized_layers(
        &self,
        first: usize,
        layers: &[layer::Layer],
    ) -> Result<(weights::TunedLayers, Vec<layer::Layer>), EmbedError> {
        let graph = pinned_graph(&self.model)?;
        let tuned = weights::tuned_layers(&graph, first, layers).map_err(EmbedError::Load)?;
        let shipped = self.tuned_weights(&tuned)?;
        Ok((tuned, shipped))
    }

    /// The weights of the layers from `tuned.first` up once `tuned` replaces the pinned ones.
    pub fn tuned_weights(&self, tuned: &weights::TunedLayers) -> Result<Vec<layer::Layer>, EmbedError> {
        let mut graph = pinned_graph(&self.model)?;
        weights::replace_initializers(&mut graph, tuned).map_err(EmbedError::Load)?;
        (tuned.first..)
            .take_while(|&l| split::hidden_state_after(&graph, l + 1).is_some())
            .map(|l| weights::read_layer(&graph, l).map_err(EmbedError::Load))
            .collect()
    }
}
