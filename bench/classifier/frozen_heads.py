"""Other heads on the frozen embedder's features: do word counts or a hidden layer add to what
ships?

A reference measurement outside the product (onnxruntime and scikit-learn). Features are the
shipped classifier's: each text's embedding (the mean of the last layer's token states) and the
means after layers 3, 4 and 5, for the request and the reply's opening, standardised, with a
logistic regression at the product's penalty (C = 0.005 here). The neighbours' vote is the
product's: cosine in a 64-dimensional PCA of the two embeddings, weights exp(20 cos), blended
with the regression's probabilities. Five stratified folds over every labelled example (the
product's own folds are over the sampled ones only, so figures sit about a point above its).

    cargo run --release -p chorus-tests --example embed_texts -- examples studies/default/examples.jsonl /tmp/examples.json
    pip install onnx onnxruntime tokenizers scikit-learn
    python bench/classifier/frozen_heads.py /tmp/examples.json MODEL.onnx TOKENIZER.json

MODEL.onnx and TOKENIZER.json are the pinned files (`~/.cache/chorus/model/`).
"""
import json, sys
import numpy as np, onnx, onnxruntime
from tokenizers import Tokenizer
from scipy.sparse import csr_matrix, hstack
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

EXAMPLES, MODEL, TOKENIZER = sys.argv[1:4]
# The outputs of layers 3, 4 and 5, counting from one (each layer ends in its second layer norm).
LAYER_OUTPUTS = ["layer_norm_6", "layer_norm_8", "layer_norm_10"]

graph = onnx.load(MODEL)
for name in LAYER_OUTPUTS:
    graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 2
session = onnxruntime.InferenceSession(graph.SerializeToString(), options)
tokenizer = Tokenizer.from_file(TOKENIZER)
tokenizer.enable_truncation(128)
tokenizer.no_padding()


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def layered(texts):
    """Each text's embedding and layers' means, each at unit length: (texts, 4, 384)."""
    out = []
    for text in texts:
        ids = np.array([tokenizer.encode(text).ids], np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        out.append(np.stack([o[0].mean(0) for o in session.run(["last_hidden_state"] + LAYER_OUTPUTS, feeds)]))
    return unit(np.array(out))


def features(items):
    request = layered([e["text"] for e in items])
    reply = layered([e["reply"] or e["text"] for e in items])
    embeddings = np.hstack([request[:, 0], reply[:, 0]])
    return embeddings, np.hstack([embeddings] + [request[:, k] for k in (1, 2, 3)] + [reply[:, k] for k in (1, 2, 3)])


examples = json.load(open(EXAMPLES))
classes = sorted({e["category"] for e in examples})
y = np.array([classes.index(e["category"]) for e in examples])
embeddings, X = features(examples)
pca = PCA(64).fit(embeddings)
Z = unit(pca.transform(embeddings))


def vote(queries, points, labels):
    cosine = queries @ points.T
    weights = np.exp(20 * (cosine - cosine.max(1, keepdims=True)))
    v = np.stack([weights[:, labels == c].sum(1) for c in range(len(classes))], 1)
    return v / v.sum(1, keepdims=True)


def regression(train_x, train_y, test_x, c=0.005, weight=None):
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(train_x), train_y, sample_weight=weight)
    return model.predict_proba(scaler.transform(test_x)), model, scaler


def words(train, test):
    """Tf-idf of each text's words (sublinear counts, words in at least two examples)."""
    parts = []
    for key in ("text", "reply"):
        vectorizer = TfidfVectorizer(min_df=2, sublinear_tf=True).fit([examples[i][key] or "" for i in train])
        parts.append([vectorizer.transform([examples[i][key] or "" for i in rows]) for rows in (train, test)])
    return [hstack([p[k] for p in parts]).tocsr() for k in (0, 1)]


heads = {}
for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
    v = vote(Z[test], Z[train], y[train])
    p, _, scaler = regression(X[train], y[train], X[test])
    heads.setdefault("shipped: regression", []).append(p)
    heads.setdefault("shipped: + vote 0.4", []).append(0.6 * p + 0.4 * v)
    # Words and embeddings in one regression; the features' scale sets their relative penalty.
    word_train, word_test = words(train, test)
    stacked = LogisticRegression(C=2, max_iter=3000).fit(
        hstack([csr_matrix(0.03 * scaler.transform(X[train])), word_train]).tocsr(), y[train]
    )
    q = stacked.predict_proba(hstack([csr_matrix(0.03 * scaler.transform(X[test])), word_test]).tocsr())
    heads.setdefault("with words: regression", []).append(q)
    heads.setdefault("with words: + vote 0.4", []).append(0.6 * q + 0.4 * v)
    mlp = MLPClassifier((256,), alpha=3.0, max_iter=300, random_state=0)
    m = mlp.fit(scaler.transform(X[train]), y[train]).predict_proba(scaler.transform(X[test]))
    heads.setdefault("hidden layer of 256: alone", []).append(m)
    heads.setdefault("hidden layer of 256: + vote 0.4", []).append(0.6 * m + 0.4 * v)
    heads.setdefault("truth", []).append(y[test])
truth = np.concatenate(heads.pop("truth"))
for name, probabilities in heads.items():
    print(f"{name}: {(np.concatenate(probabilities).argmax(1) == truth).mean():.3f}")
