// One worker of the in-browser embedding pair: Chorus's wasm embedder (the bundle the product
// picks for this browser) or transformers.js (onnxruntime-web, one thread), both on the same
// model file and tokenizer served from local disk; no remote model, no CDN.
let embed = null;
const MAX_TOKENS = 64; // as Chorus's embedder (shared/src/embed/mod.rs)

async function loadChorus() {
  const { default: init, TextEmbedder } = await import('/pkg/chorus_client.js');
  const { BUNDLE } = await import('/js/bundle.js');
  await init({ module_or_path: BUNDLE });
  const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
  const embedder = new TextEmbedder(
    await bytes('/chorus-model/model.onnx'),
    await bytes('/chorus-model/tokenizer.json'),
  );
  return async (text) => Array.from(embedder.embed(text));
}

// transformers.js's own truncation cuts the final [SEP] of a long text; Chorus (and the Rust
// tokenizers library) keep it. To embed the same tokens, the ids are truncated here as Chorus
// truncates them, and the model's output is mean-pooled and normalised as Chorus does.
async function loadTransformers() {
  const { env, AutoTokenizer, AutoModel, Tensor } = await import('/tjs/transformers.js');
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = '/models/';
  env.useBrowserCache = false;
  env.backends.onnx.wasm.wasmPaths = '/ort/';
  env.backends.onnx.wasm.numThreads = 1;
  const tokenizer = await AutoTokenizer.from_pretrained('minilm');
  const model = await AutoModel.from_pretrained('minilm', { dtype: 'fp32', device: 'wasm' });
  return async (text) => {
    let ids = Array.from(tokenizer(text).input_ids.data);
    if (ids.length > MAX_TOKENS) ids = [...ids.slice(0, MAX_TOKENS - 1), ids[ids.length - 1]];
    const n = ids.length;
    const int64 = (values) => new Tensor('int64', BigInt64Array.from(values), [1, n]);
    const { last_hidden_state: hidden } = await model({
      input_ids: int64(ids),
      attention_mask: int64(ids.map(() => 1n)),
      token_type_ids: int64(ids.map(() => 0n)),
    });
    const d = hidden.dims[2];
    const pooled = new Float64Array(d);
    for (let t = 0; t < n; t++) for (let j = 0; j < d; j++) pooled[j] += hidden.data[t * d + j] / n;
    const norm = Math.hypot(...pooled) || 1;
    return Array.from(pooled, (x) => x / norm);
  };
}

self.onmessage = async (event) => {
  try {
    if (event.data.type === 'load') {
      embed = event.data.side === 'chorus' ? await loadChorus() : await loadTransformers();
      postMessage({ ready: true });
    } else {
      const vectors = [];
      for (const text of event.data.texts) vectors.push(await embed(text));
      postMessage({ vectors });
    }
  } catch (e) {
    postMessage({ error: String(e?.stack || e) });
  }
};
