//! A study's tuned upper layers on the device and at compile time: the pinned graph cut after
//! its lower layers, and the layers above the cut planned twice, with the pinned weights and
//! with the study's, so that one run of the lower layers gives both the pinned embedding and
//! the tuned one, and a text that needs only the tuned one runs no layer twice.

use super::{
    layer, layered, load_plan, pinned_graph, pool, pooled_states, split, token_states_of, weights, Cut, EmbedError,
    Embedder, Stage,
};
use std::sync::OnceLock;
use tract_onnx::pb::GraphProto;

/// A text's embedding by the pinned model and through a study's tuned upper layers.
pub struct TunedEmbedding {
    /// The pinned model's embedding followed by its layers' means ([`Embedder::embed_layers`]).
    pub pinned: Vec<f32>,
    pub tuned: Vec<f32>,
}

/// The layers above the cut, each planned apart ([`split::above`]) to take the hidden states
/// the lower layers output.
pub(super) struct TunedPlans {
    /// With the pinned weights: the lower layers and these compute the pinned model (and the
    /// hidden states after the pooled layers above the cut, as more outputs).
    pub(super) pinned: Stage,
    /// With the study's weights.
    pub(super) tuned: Stage,
}

impl Embedder {
    /// This embedder with a study's own weights for its layers from `tuned.first` up, for
    /// [`Embedder::embed_tuned`]; [`Embedder::embed`] and [`Embedder::embed_layers`] still
    /// give the pinned model's embedding (and means). Refuses weights that are not the shape of the
    /// pinned ones they replace.
    pub fn with_tuned_layers(self, tuned: &weights::TunedLayers) -> Result<Embedder, EmbedError> {
        let tuned_first = tuned.first;
        let graph = pinned_graph(&self.model)?;
        let boundary = split::hidden_state_after(&graph, tuned.first)
            .filter(|_| tuned.first > 0)
            .ok_or_else(|| EmbedError::Load(format!("the model has no layer {} to tune", tuned.first)))?;
        let mut tuned_graph = graph.clone();
        weights::replace_initializers(&mut tuned_graph, tuned).map_err(EmbedError::Load)?;
        let upper = |graph: &_| {
            let upper = split::above(graph, &boundary);
            load_plan(&self.model, |g| {
                *g = upper;
                Ok(Some(boundary.clone()))
            })
        };
        let pooled_above = pooled_states(&graph, |l| l > tuned.first).map_err(EmbedError::Load)?;
        let tuned = TunedPlans {
            pinned: upper(&split::with_outputs(&graph, &pooled_above))?,
            tuned: upper(&tuned_graph)?,
        };
        // The lower layers are planned at their first use: the whole model never is.
        Ok(Embedder {
            cut: Some(Cut {
                name: boundary,
                layer: tuned_first,
            }),
            plan: OnceLock::new(),
            tuned: Some(tuned),
            ..self
        })
    }

    /// For each text, its pinned embedding with its layers' means and its embedding through the
    /// study's tuned upper layers (both from one run of the lower layers). None without tuned
    /// layers ([`Embedder::with_tuned_layers`]).
    pub fn embed_tuned(&self, texts: &[&str]) -> Result<Option<Vec<TunedEmbedding>>, EmbedError> {
        let Some(plans) = &self.tuned else { return Ok(None) };
        let Some(run) = self.run_pinned(texts)? else {
            return Ok(Some(Vec::new()));
        };
        let boundary = run
            .boundary
            .ok_or_else(|| EmbedError::Run("the tuned layers need the cut's states".into()))?;
        let tuned = plans.tuned.run(&run.encoded, Some(boundary))?;
        let tuned = token_states_of(&tuned[0], &run.encoded.lengths)?;
        Ok(Some(
            (layered(&run.outputs, &run.encoded.lengths)?.into_iter().zip(&tuned))
                .map(|(pinned, t)| TunedEmbedding {
                    pinned,
                    tuned: pool(&t.view()),
                })
                .collect(),
        ))
    }

    /// The pinned model's first `layers` transformer layers only: its [`Embedder::token_states`]
    /// are the hidden states after them (what fine-tuned upper layers start from).
    pub fn lower_layers(&self, layers: usize) -> Result<Self, EmbedError> {
        let boundary = split::hidden_state_after(&pinned_graph(&self.model)?, layers)
            .ok_or_else(|| EmbedError::Load(format!("the model has fewer than {layers} layers")))?;
        Ok(Embedder {
            cut: Some(Cut {
                name: boundary,
                layer: layers,
            }),
            ..Embedder::new(&self.model, &self.tokenizer_json)?
        })
    }

    /// How many transformer layers the pinned model has.
    pub fn layer_count(&self) -> Result<usize, EmbedError> {
        Ok(layers_in(&pinned_graph(&self.model)?))
    }

    /// The pinned graph's transformer layers from `first` up, as plain arrays.
    pub fn pinned_layers(&self, first: usize) -> Result<Vec<layer::Layer>, EmbedError> {
        let graph = pinned_graph(&self.model)?;
        (first..layers_in(&graph))
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
        (tuned.first..layers_in(&graph))
            .map(|l| weights::read_layer(&graph, l).map_err(EmbedError::Load))
            .collect()
    }
}

/// How many transformer layers `graph` has.
fn layers_in(graph: &GraphProto) -> usize {
    (0..)
        .take_while(|&l| split::hidden_state_after(graph, l + 1).is_some())
        .count()
}
