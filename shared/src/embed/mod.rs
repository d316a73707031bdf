//! Embed: the all-MiniLM-L6-v2 sentence embedding (384 floats, mean-pooled, L2-normalised),
//! run with tract from the pinned int8 ONNX file. The same code runs natively and in wasm.

mod elementwise;
pub mod layer;
pub mod pins;
pub mod split;
mod surgery;
mod tuned;
pub mod weights;

pub use tuned::TunedEmbedding;
use tuned::TunedPlans;

use std::sync::{Arc, OnceLock};
use tokenizers::{Tokenizer, TruncationParams};
use tract_onnx::pb::GraphProto;
use tract_onnx::prelude::tract_ndarray::{Array2, ArrayView2, Axis};
use tract_onnx::prelude::*;

/// Dimensions of an embedding.
pub const DIM: usize = 384;
/// Longest input, in tokens. The model was fine-tuned for sentence similarity at 128 (its
/// tokenizer file says 128 too; sentence-transformers runs it at 256, and reading 256 made the
/// analysis 1.6× slower). At 64 the category classifier is as accurate on unseen requests as at
/// 128 (held out, 0.743 against 0.744): what a long request says past its first 64 tokens
/// reaches it through the request's words, which are counted over the whole kept text. 64 cuts
/// a fifth of the tokens the page embeds per conversation (a request and a reply opening: 71
/// against 88 on average over 1,000 public conversations). A compiled study records the length
/// it was made at ([`crate::study::CompiledStudy::max_tokens`]); a device refuses another.
pub const MAX_TOKENS: usize = 64;
/// The pinned layers after which [`Embedder::embed_layers`] also pools the hidden states. The
/// category classifier reads them besides the last layer's: the middle layers keep more of what
/// a request is about (its words, its domain) than the last one, which was tuned for sentence
/// similarity. On the default study's labelled examples the regression on the request's and
/// reply's means of these layers besides their embeddings classifies about four points more
/// right than on the embeddings alone, and the device computes these layers anyway.
pub const POOLED_LAYERS: [usize; 3] = [3, 4, 5];

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{file} has SHA-256 {found}, but the pinned file has {expected}; the file is damaged or not the pinned model. Fetch it again with `cargo xtask fetch`.")]
    WrongFile {
        file: String,
        expected: String,
        found: String,
    },
    #[error("cannot load the model: {0}")]
    Load(String),
    #[error("cannot tokenize: {0}")]
    Tokenize(String),
    #[error("the model failed to run: {0}")]
    Run(String),
}

pub struct Embedder {
    tokenizer: Tokenizer,
    /// Where the planned graph ends: the whole pinned model without a cut; with a study's tuned
    /// layers, the hidden states below them, which both `tuned` plans take.
    cut: Option<Cut>,
    /// The graph up to `cut`, planned at its first use, so that an embedder that is given tuned
    /// layers before it runs never plans the whole model for nothing.
    plan: OnceLock<Stage>,
    /// The pinned model file, from which a study's tuned upper layers are planned.
    model: Arc<[u8]>,
    tokenizer_json: Arc<[u8]>,
    /// The pinned model's upper layers and a study's own, when it has them.
    tuned: Option<TunedPlans>,
}

/// The hidden states between two layers at which the graph is cut.
#[derive(Clone)]
struct Cut {
    /// The tensor that holds them.
    name: String,
    /// How many layers are below it.
    layer: usize,
}

/// A graph planned for batches of any size and length, and what each of its inputs takes.
struct Stage {
    plan: Arc<TypedRunnableModel>,
    /// For each input in order: 0 = token ids, 1 = attention mask, 2 = token type ids, 3 = the
    /// hidden states at a cut between layers.
    input_roles: Vec<usize>,
}

/// The tensors a batch of texts gives the model: token ids, attention mask, token type ids
/// (batch × longest, padded after each text), and each text's length in tokens.
struct Encoded {
    batch: usize,
    seq: usize,
    inputs: [Vec<i64>; 3],
    lengths: Vec<usize>,
}

/// The pinned model's outputs for a batch, and the batch.
struct PinnedRun {
    /// Without a cut, or with the pinned upper layers above it: the last layer's hidden states,
    /// then those after each of [`POOLED_LAYERS`] (what the whole graph's plan outputs). Below
    /// a cut without upper layers ([`Embedder::lower_layers`]): the hidden states at the cut.
    outputs: TVec<TValue>,
    encoded: Encoded,
    /// With tuned layers, the hidden states at the cut, which they take.
    boundary: Option<TValue>,
}

impl Embedder {
    /// Loads the model and tokenizer from their bytes, refusing any file that is not the pinned one.
    pub fn new(model_onnx: &[u8], tokenizer_json: &[u8]) -> Result<Self, EmbedError> {
        let pins = pins::pins();
        for (pin, bytes) in [(&pins.model, model_onnx), (&pins.tokenizer, tokenizer_json)] {
            let found = pins::sha256_hex(bytes);
            if found != pin.sha256 {
                return Err(EmbedError::WrongFile {
                    file: pin.file.clone(),
                    expected: pin.sha256.clone(),
                    found,
                });
            }
        }
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json).map_err(|e| EmbedError::Load(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Load(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Embedder {
            tokenizer,
            cut: None,
            plan: OnceLock::new(),
            model: model_onnx.into(),
            tokenizer_json: tokenizer_json.into(),
            tuned: None,
        })
    }

    /// The graph up to the cut (the whole model without one), planned on first use.
    fn plan(&self) -> Result<&Stage, EmbedError> {
        if let Some(stage) = self.plan.get() {
            return Ok(stage);
        }
        // The pooled layers' hidden states (those below the cut, with one) as outputs after the
        // last layer's: computed anyway, so an embedding that ignores them costs nothing more.
        let stage = load_plan(&self.model, |graph| {
            match &self.cut {
                Some(cut) => {
                    let pooled = pooled_states(graph, |l| l < cut.layer)?;
                    *graph = split::with_outputs(&split::below(graph, &cut.name), &pooled);
                }
                None => *graph = split::with_outputs(graph, &pooled_states(graph, |_| true)?),
            }
            Ok(None)
        })?;
        Ok(self.plan.get_or_init(|| stage))
    }

    /// Embeds a batch of texts, padded to the longest of them. Each result has [`DIM`] floats
    /// and unit length.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.token_states(texts)?.iter().map(|s| pool(&s.view())).collect())
    }

    /// The model's output for each token of each text (its tokens × [`DIM`]; padding left out),
    /// the texts run as one batch padded to the longest.
    pub fn token_states(&self, texts: &[&str]) -> Result<Vec<Array2<f32>>, EmbedError> {
        match self.run_pinned(texts)? {
            Some(run) => token_states_of(&run.outputs[0], &run.encoded.lengths),
            None => Ok(Vec::new()),
        }
    }

    /// Each text's embedding followed by the mean of its hidden states after each of
    /// [`POOLED_LAYERS`], each at unit length: `(1 + POOLED_LAYERS.len()) × DIM` floats. Needs
    /// the pinned model's every layer: [`Embedder::lower_layers`] refuses.
    pub fn embed_layers(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if self.cut.is_some() && self.tuned.is_none() {
            return Err(EmbedError::Run(
                "an embedder of the lower layers does not pool the upper ones".into(),
            ));
        }
        match self.run_pinned(texts)? {
            Some(run) => layered(&run.outputs, &run.encoded.lengths),
            None => Ok(Vec::new()),
        }
    }

    /// The pinned model's outputs for a batch of texts, with tuned layers the pinned upper
    /// layers run on the cut's output ([`PinnedRun`]); `None` for no texts.
    fn run_pinned(&self, texts: &[&str]) -> Result<Option<PinnedRun>, EmbedError> {
        if texts.is_empty() {
            return Ok(None);
        }
        let encoded = self.encode(texts)?;
        let lower = self.plan()?.run(&encoded, None)?;
        let (Some(tuned), Some(cut)) = (&self.tuned, &self.cut) else {
            return Ok(Some(PinnedRun {
                outputs: lower,
                encoded,
                boundary: None,
            }));
        };
        let boundary = lower[0].clone();
        let upper = tuned.pinned.run(&encoded, Some(boundary.clone()))?;
        // In the whole graph's order: the last layer's states, then each pooled layer's, from
        // below the cut (after the cut's own states), at the cut, or above it.
        let (mut below, mut above) = (lower[1..].iter(), upper[1..].iter());
        let mut outputs: TVec<TValue> = tvec![upper[0].clone()];
        for &l in &POOLED_LAYERS {
            let states = match l.cmp(&cut.layer) {
                std::cmp::Ordering::Less => below.next(),
                std::cmp::Ordering::Equal => Some(&boundary),
                std::cmp::Ordering::Greater => above.next(),
            };
            outputs.push(
                states
                    .ok_or_else(|| EmbedError::Run(format!("no hidden states after layer {l}")))?
                    .clone(),
            );
        }
        Ok(Some(PinnedRun {
            outputs,
            encoded,
            boundary: Some(boundary),
        }))
    }

    fn encode(&self, texts: &[&str]) -> Result<Encoded, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        let batch = encodings.len();
        let seq = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let mut inputs = [
            vec![0i64; batch * seq],
            vec![0i64; batch * seq],
            vec![0i64; batch * seq],
        ];
        for (b, e) in encodings.iter().enumerate() {
            for (t, ((&id, &mask), &kind)) in e
                .get_ids()
                .iter()
                .zip(e.get_attention_mask())
                .zip(e.get_type_ids())
                .enumerate()
            {
                inputs[0][b * seq + t] = id as i64;
                inputs[1][b * seq + t] = mask as i64;
                inputs[2][b * seq + t] = kind as i64;
            }
        }
        let lengths = (encodings.iter())
            .map(|e| e.get_attention_mask().iter().filter(|&&m| m == 1).count())
            .collect();
        Ok(Encoded {
            batch,
            seq,
            inputs,
            lengths,
        })
    }
}

impl Stage {
    /// Runs the plan on a batch; `hidden` is the input of role 3 (hidden states at a cut).
    fn run(&self, encoded: &Encoded, mut hidden: Option<TValue>) -> Result<TVec<TValue>, EmbedError> {
        let shape = (encoded.batch, encoded.seq);
        let tensors = (self.input_roles.iter())
            .map(|&role| match role {
                3 => hidden
                    .take()
                    .ok_or_else(|| EmbedError::Run("the upper layers need their input".into())),
                _ => tract_ndarray::Array2::from_shape_vec(shape, encoded.inputs[role].clone())
                    .map(|a| a.into_tensor().into_tvalue())
                    .map_err(|e| EmbedError::Run(e.to_string())),
            })
            .collect::<Result<TVec<_>, _>>()?;
        self.plan.run(tensors).map_err(|e| EmbedError::Run(format!("{e:#}")))
    }
}

/// Each text's rows of a batch's output (batch × longest × width).
fn token_states_of(output: &TValue, lengths: &[usize]) -> Result<Vec<Array2<f32>>, EmbedError> {
    let hidden = output
        .to_plain_array_view::<f32>()
        .and_then(|h| Ok(h.into_dimensionality::<tract_ndarray::Ix3>()?))
        .map_err(|e| EmbedError::Run(e.to_string()))?;
    // Tokenizers put the padding after the text, so its tokens are the first `length`.
    Ok((lengths.iter().enumerate())
        .map(|(b, &length)| {
            hidden
                .index_axis(Axis(0), b)
                .slice(tract_ndarray::s![..length, ..])
                .to_owned()
        })
        .collect())
}

/// Each text's pooled outputs, one after the other ([`Embedder::embed_layers`]).
fn layered(outputs: &[TValue], lengths: &[usize]) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut layered = vec![Vec::with_capacity(outputs.len() * DIM); lengths.len()];
    for output in outputs {
        for (text, states) in layered.iter_mut().zip(token_states_of(output, lengths)?) {
            text.extend(pool(&states.view()));
        }
    }
    Ok(layered)
}

/// The tensors of the hidden states after each of [`POOLED_LAYERS`] that `keep` keeps.
fn pooled_states(graph: &GraphProto, keep: impl Fn(usize) -> bool) -> Result<Vec<String>, String> {
    (POOLED_LAYERS.iter().filter(|&&l| keep(l)))
        .map(|&l| split::hidden_state_after(graph, l))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| "the model has fewer layers than the pooled ones".to_string())
}

/// The sentence embedding of one text's token states: their mean, scaled to unit length.
pub fn pool(states: &ArrayView2<f32>) -> Vec<f32> {
    let mut pooled = vec![0f32; states.ncols()];
    for token in states.rows() {
        pooled.iter_mut().zip(token).for_each(|(p, t)| *p += t);
    }
    let count = states.nrows().max(1) as f32;
    pooled.iter_mut().for_each(|p| *p /= count);
    normalize(&mut pooled);
    pooled
}

impl Embedder {
    /// Embeds many texts, in batches of similar length so that little padding is computed, on
    /// every core natively (one thread in the browser). Results come back in the order of
    /// `texts`, and do not depend on the number of threads: every batch is the same.
    pub fn embed_many(&self, texts: &[&str], progress: impl FnMut(usize)) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.many(texts, |batch| self.embed(batch), progress)
    }

    /// [`Embedder::embed_layers`] of many texts, batched as [`Embedder::embed_many`] batches.
    pub fn embed_layers_many(&self, texts: &[&str], progress: impl FnMut(usize)) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.many(texts, |batch| self.embed_layers(batch), progress)
    }

    /// [`Embedder::token_states`] of many texts, batched as [`Embedder::embed_many`] batches.
    pub fn token_states_many(
        &self,
        texts: &[&str],
        progress: impl FnMut(usize),
    ) -> Result<Vec<Array2<f32>>, EmbedError> {
        self.many(texts, |batch| self.token_states(batch), progress)
    }

    fn many<T: Clone + Send>(
        &self,
        texts: &[&str],
        run: impl Fn(&[&str]) -> Result<Vec<T>, EmbedError> + Sync,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<T>, EmbedError> {
        const BATCH: usize = 16;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let chunks: Vec<&[usize]> = order.chunks(BATCH).collect();
        let results = crate::parallel::map(
            chunks.len(),
            |c| run(&chunks[c].iter().map(|&i| texts[i]).collect::<Vec<_>>()),
            |c, _| progress(chunks[c].len()),
        );
        let mut out = vec![None; texts.len()];
        for (chunk, values) in chunks.iter().zip(results) {
            for (&i, v) in chunk.iter().zip(values?) {
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().map(|v| v.expect("every text was run")).collect())
    }
}

/// Scales `v` to unit L2 length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

/// The pinned file's graph.
fn pinned_graph(model_onnx: &[u8]) -> Result<GraphProto, EmbedError> {
    let onnx = tract_onnx::onnx();
    let proto = (onnx.proto_model_for_read(&mut &*model_onnx)).map_err(|e| EmbedError::Load(format!("{e:#}")))?;
    proto
        .graph
        .ok_or_else(|| EmbedError::Load("the ONNX file has no graph".into()))
}

/// The model planned for batches of any size and length, after `edit` (which returns the name of
/// the input that takes hidden states at a cut, when it makes one) and the load-time rewrites.
fn load_plan(
    model_onnx: &[u8],
    edit: impl FnOnce(&mut GraphProto) -> Result<Option<String>, String>,
) -> Result<Stage, EmbedError> {
    let plan = || -> TractResult<Stage> {
        let onnx = tract_onnx::onnx().with_ignore_value_info(true);
        let mut proto = onnx.proto_model_for_read(&mut &*model_onnx)?;
        let graph = proto
            .graph
            .as_mut()
            .ok_or_else(|| TractError::msg("the ONNX file has no graph"))?;
        let hidden_input = edit(graph).map_err(TractError::msg)?;
        surgery::gather_before_dequantize(graph);
        let mut model = onnx.model_for_proto_model(&proto)?;

        let batch = model.symbols.sym("B");
        let seq = model.symbols.sym("S");
        let mut roles = Vec::new();
        for (i, outlet) in model.input_outlets()?.to_vec().into_iter().enumerate() {
            let role = match model.node(outlet.node).name.as_str() {
                "input_ids" => 0,
                "attention_mask" => 1,
                "token_type_ids" => 2,
                other if hidden_input.as_deref() == Some(other) => 3,
                other => return Err(TractError::msg(format!("unexpected model input `{other}`"))),
            };
            roles.push(role);
            let fact = match role {
                3 => f32::fact([batch.to_dim(), seq.to_dim(), DIM.to_dim()]),
                _ => i64::fact([batch.to_dim(), seq.to_dim()]),
            };
            model.set_input_fact(i, fact.into())?;
        }
        let mut model = model.into_optimized()?;
        elementwise::replace_generic_binaries(&mut model)?;
        Ok(Stage {
            plan: model.into_runnable()?,
            input_roles: roles,
        })
    };
    plan().map_err(|e| EmbedError::Load(format!("{e:#}")))
}
