"""Reference fits on the product's own classifier inputs and folds: what the held-out figure
owes to the folds, and whether another form of the words or of the vote would add to it.

The inputs are dumped by the product (`classifier_features`: the embeddings and layers' means
from tract, the words' tf-idf blocks, the labels and `fold_assignment`'s folds), so that
scikit-learn fits exactly what `chorus study evaluate` fits:

    cargo run --release -p chorus-tests --example classifier_features -- /tmp/features
    pip install scikit-learn
    python bench/classifier/product_features.py /tmp/features [VARIANT...]

VARIANTs: product (the product's form and folds), split_copies (folds drawn at random, which
split the copies of a request), words_raw (the words' blocks unstandardised, scaled),
vocabulary (word blocks rebuilt in Python: the vocabulary also from the replies, 2,000 words,
the replies' own vocabulary), votes (the neighbours' vote in more dimensions, sharper, or
also over the words), words_and_vote (2,000 words and the vote over the words, together),
later_turns (the words of the user's turns after the first as a fourth block, from the public
corpus `cargo xtask fetch` caches), encoders (other sentence encoders that ship their weights
in a package, in place of the pinned one: see `encoders.py`), tuned (the embeddings of two
upper layers tuned without fold 0, `TUNED_DUMP=DIR/tuned-fold0.f32 cargo run --release -p
chorus-tests --example finetune_fold -- 0 2 2`, in the pinned ones' place or beside them, or
the request's alone beside them with the vote in three spaces, scored on fold 0), pooling (the pinned layers' hidden states pooled other ways: the largest value
of each dimension, the first token's, the means of the lower layers; see `encoders.py`),
stacking (a regression over the held-out probabilities of the regression and the vote, in
place of the fixed blend), characters (the request's and opening's character 3- to 5-grams as
two more tf-idf blocks, hashed, beside the product's input), readings (trained without the
examples whose two readings disagreed, scored on every held-out example). Each prints the regression's
held-out accuracy and the blend's with the vote at each weight the product tries.
"""
import json, os, re, sys
import numpy as np
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

DIR = sys.argv[1]
meta = json.load(open(f"{DIR}/meta.json"))
n, d = meta["rows"], meta["width"]
F = np.fromfile(f"{DIR}/features.f32", dtype="<f4").reshape(n, d)
y = np.array(meta["labels"])
fold_of = np.array([-1 if f is None else f for f in meta["fold_of"]])
classes = y.max() + 1
DENSE = 384 * 8  # two texts' embeddings and three layers' means each
dense, words = F[:, :DENSE], F[:, DENSE:]
C = 0.0013  # the product's L2 penalty of 0.1 on the mean loss, for about 7,700 training rows


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pca(x, k):
    return unit(PCA(k, random_state=0).fit(x).transform(x))


EMBEDDINGS = unit(np.hstack([unit(F[:, :384]), unit(F[:, 384:768])]))
PRODUCT_SPACE = pca(EMBEDDINGS, 64)


def product_folds():
    return [(np.where(fold_of != f)[0], np.where(fold_of == f)[0]) for f in range(5)]


def random_folds():
    sampled, always = np.where(fold_of >= 0)[0], np.where(fold_of < 0)[0]
    splits = StratifiedKFold(5, shuffle=True, random_state=0).split(sampled, y[sampled])
    return [(np.concatenate([sampled[a], always]), sampled[b]) for a, b in splits]


def vote(space, train, test, sharpness=20):
    c = space[test] @ space[train].T
    w = np.exp(sharpness * (c - c.max(1, keepdims=True)))
    v = np.stack([w[:, y[train] == k].sum(1) for k in range(classes)], 1)
    return v / v.sum(1, keepdims=True)


def standardised(X):
    def build(train, test):
        s = StandardScaler().fit(X[train])
        return s.transform(X[train]), s.transform(X[test])
    return build


def held_out(build=standardised(F), folds=None, space=PRODUCT_SPACE, sharpness=20):
    """The regression's and the vote's probabilities for every held-out row, and the rows."""
    probs, votes, rows = [], [], []
    for train, test in folds or product_folds():
        xtr, xte = build(train, test)
        probs.append(LogisticRegression(C=C, max_iter=2000).fit(xtr, y[train]).predict_proba(xte))
        votes.append(vote(space, train, test, sharpness))
        rows.append(test)
    return tuple(map(np.concatenate, (probs, votes, rows)))


def run(label, build=standardised(F), folds=None, space=PRODUCT_SPACE, sharpness=20):
    """Prints the held-out accuracies; returns whether each held-out row was right with the
    vote at 0.4, and the rows."""
    p, v, r = held_out(build, folds, space, sharpness)
    t = y[r]
    blends = " ".join(f"{w}: {(((1 - w) * p + w * v).argmax(1) == t).mean():.4f}" for w in (0.2, 0.4, 0.6))
    print(f"{label}: regression {(p.argmax(1) == t).mean():.4f}, with the vote {blends}", flush=True)
    return (0.6 * p + 0.4 * v).argmax(1) == t, r


def example_texts():
    """The request, reply opening and replies of every row as the product reads them (the
    taxonomy's own examples, first in the training set, get empty texts)."""
    examples = [json.loads(l) for l in open("studies/default/examples.jsonl")]
    empty = [""] * (n - len(examples))
    request = empty + [e["text"][:1500] for e in examples]
    opening = empty + [" ".join(e["reply"].split()[:24])[:200] if e.get("reply") else "" for e in examples]
    replies = empty + [e.get("replies") or "" for e in examples]
    opening = [o or r for o, r in zip(opening, request)]
    replies = [r or o for r, o in zip(replies, opening)]
    return {"request": request, "opening": opening, "replies": replies}


def idf(df, texts):
    """The product's smoothed inverse document frequency of words found in `df` of `texts` texts."""
    return np.log((1 + texts) / (1 + df)) + 1


def word_blocks(vocabulary_texts, size, replies_vocabulary_texts=None):
    """The product's three word blocks rebuilt from the study's examples."""
    texts = example_texts()
    tokens = lambda t: [w for w in re.split(r"[^\w]", t.lower()) if len(w) >= 2]

    def fit(keys, size):
        corpus = [t for k in keys for t in texts[k] if t]
        counts = CountVectorizer(tokenizer=tokens, lowercase=False, binary=True, token_pattern=None).fit(corpus)
        df = np.asarray(counts.transform(corpus).sum(0)).ravel()
        names = counts.get_feature_names_out()
        keep = sorted((i for i in range(len(names)) if df[i] >= 2), key=lambda i: (-df[i], names[i]))[:size]
        vocabulary = CountVectorizer(tokenizer=tokens, lowercase=False, vocabulary=[names[i] for i in keep], token_pattern=None)
        return vocabulary, idf(df[keep], len(corpus))

    def block(fitted, key):
        vocabulary, idf = fitted
        c = vocabulary.transform(texts[key]).toarray().astype(float)
        c[c > 0] = 1 + np.log(c[c > 0])
        return unit(c * idf)

    shared = fit(vocabulary_texts, size)
    own = fit(replies_vocabulary_texts, size) if replies_vocabulary_texts else shared
    return np.hstack([block(shared, "request"), block(shared, "opening"), block(own, "replies")])


def later_turns_block(corpus="~/.cache/chorus/corpus/sharegpt.json", size=1000):
    """The words of the user's turns after the first (their first 2,000 characters), looked up
    in the public corpus by each example's id (the file ends mid-record: read record by
    record), as a fourth block with its own vocabulary; the taxonomy's examples get none."""
    text = open(os.path.expanduser(corpus)).read()
    decoder, at, later = json.JSONDecoder(), text.index("[") + 1, {}
    while True:
        while at < len(text) and text[at] in " ,\n\r\t":
            at += 1
        try:
            record, at = decoder.raw_decode(text, at)
        except ValueError:
            break
        users = [t["value"] for t in record.get("conversations", []) if t.get("from") == "human"]
        later[record["id"]] = " ".join(users[1:])[:2000]
    examples = [json.loads(l) for l in open("studies/default/examples.jsonl")]
    texts = [""] * (n - len(examples)) + [later.get(e.get("sharegpt_id"), "") for e in examples]
    tokens = lambda t: [w for w in re.split(r"[^\w]", t.lower()) if len(w) >= 2]
    corpus_texts = [t for t in texts if t]
    counts = CountVectorizer(tokenizer=tokens, lowercase=False, binary=True, token_pattern=None).fit(corpus_texts)
    df = np.asarray(counts.transform(corpus_texts).sum(0)).ravel()
    names = counts.get_feature_names_out()
    keep = sorted((i for i in range(len(names)) if df[i] >= 2), key=lambda i: (-df[i], names[i]))[:size]
    vocabulary = CountVectorizer(tokenizer=tokens, lowercase=False, vocabulary=[names[i] for i in keep], token_pattern=None)
    c = vocabulary.transform(texts).toarray().astype(float)
    c[c > 0] = 1 + np.log(c[c > 0])
    return unit(c * idf(df[keep], len(corpus_texts)))


for variant in sys.argv[2:] or ["product"]:
    if variant == "product":
        run("the product's form and folds")
    elif variant == "readings":
        examples = [json.loads(l) for l in open("studies/default/examples.jsonl")]
        agreed = np.array([True] * (n - len(examples)) + [e.get("agreed") is not False for e in examples])
        cleaned = [(train[agreed[train]], test) for train, test in product_folds()]
        run(f"trained without the {(~agreed).sum()} examples whose two readings disagreed", folds=cleaned)
    elif variant == "split_copies":
        run("folds drawn at random (copies of a request split)", folds=random_folds())
        run("the product's folds", folds=product_folds())
    elif variant == "words_raw":
        for scale in (20, 40):
            s = StandardScaler().fit(dense)
            X = np.hstack([s.transform(dense), scale * words])
            run(f"the words unstandardised, x{scale}", build=lambda a, b, X=X: (X[a], X[b]))
    elif variant == "vocabulary":
        run("word blocks rebuilt as the product builds them", standardised(np.hstack([dense, word_blocks(["request", "opening"], 1000)])))
        run("the vocabulary also from the replies", standardised(np.hstack([dense, word_blocks(["request", "opening", "replies"], 1000)])))
        run("2,000 words, also from the replies", standardised(np.hstack([dense, word_blocks(["request", "opening", "replies"], 2000)])))
        run("the replies' own vocabulary", standardised(np.hstack([dense, word_blocks(["request", "opening"], 1000, ["replies"])])))
    elif variant == "votes":
        run("the vote in 128 dimensions", space=pca(EMBEDDINGS, 128))
        run("the vote sharper (30)", sharpness=30)
        run("the vote over the embeddings and the words", space=pca(np.hstack([EMBEDDINGS, unit(words)]), 128))
    elif variant == "words_and_vote":
        X = np.hstack([dense, word_blocks(["request", "opening", "replies"], 2000)])
        run("2,000 words, also from the replies", standardised(X))
        run("the same, the vote over the embeddings and the words", standardised(X), space=pca(np.hstack([EMBEDDINGS, unit(words)]), 128))
    elif variant == "later_turns":
        run("the words of the user's later turns as a fourth block", standardised(np.hstack([F, later_turns_block()])))
    elif variant == "stacking":
        p, v, rows = held_out()
        t, fold = y[rows], fold_of[rows]
        print(f"the blend at 0.3: {((0.7 * p + 0.3 * v).argmax(1) == t).mean():.4f}", flush=True)
        for name, Z in (("probabilities", np.hstack([p, v])), ("log-probabilities", np.log(np.maximum(np.hstack([p, v]), 1e-6)))):
            for c in (0.03, 0.3, 3.0):
                right = np.zeros(len(t), bool)
                for f in range(5):
                    fit = LogisticRegression(C=c, max_iter=2000).fit(Z[fold != f], t[fold != f])
                    right[fold == f] = fit.predict(Z[fold == f]) == t[fold == f]
                print(f"a regression over the held-out {name}, C = {c}: {right.mean():.4f}", flush=True)
    elif variant == "characters":
        from scipy import sparse
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.preprocessing import normalize
        hashed = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2**15, alternate_sign=False, norm=None)
        texts = example_texts()
        counts = [hashed.transform(texts[k]).tocsr() for k in ("request", "opening")]
        for c in counts:
            c.data = 1 + np.log(c.data)

        def with_characters(train, test, scale=5.0):
            s = StandardScaler().fit(F[train])
            blocks = []
            for c in counts:
                df = np.asarray((c[train] > 0).sum(0)).ravel()
                blocks.append(normalize(c.multiply(np.where(df >= 2, idf(df, len(train)), 0)).tocsr()))
            side = lambda rows, x: sparse.hstack([sparse.csr_matrix(x)] + [scale * b[rows] for b in blocks]).tocsr()
            return side(train, s.transform(F[train])), side(test, s.transform(F[test]))
        run("and the request's and opening's character 3-5-grams (tf-idf, 32,768 hashed)", with_characters)
    elif variant == "tuned":
        T = np.fromfile(f"{DIR}/tuned-fold0.f32", dtype="<f4").reshape(2 * n, 384)
        pair = np.hstack([unit(T[:n]), unit(T[n:])])
        fold0, space = [(np.where(fold_of != 0)[0], np.where(fold_of == 0)[0])], pca(unit(pair), 64)
        run("fold 0: the product's form", folds=fold0)
        G = F.copy()
        G[:, :768] = pair
        run("fold 0: the tuned embeddings in the pinned ones' place, the vote in their space", standardised(G), folds=fold0, space=space)
        run("fold 0: the product's input and the tuned embeddings, the vote in their space", standardised(np.hstack([F, pair])), folds=fold0, space=space)
        # What a device computes without running the pinned upper layers for the reply: the
        # reply's pinned embedding and its mean after layer 5 (columns 384-768, 2688-3072) go.
        lean = np.delete(F, np.r_[384:768, 2688:3072], axis=1)
        run("fold 0: the same without the reply's pinned upper layers", standardised(np.hstack([lean, pair])), folds=fold0, space=space)
        with_request = standardised(np.hstack([F, unit(T[:n])]))
        run("fold 0: the product's input and the tuned request alone", with_request, folds=fold0, space=space)
        run("fold 0: the same, the vote in the product's space", with_request, folds=fold0)
        mixed = pca(unit(np.hstack([unit(T[:n]), unit(F[:, 384:768])])), 64)
        run("fold 0: the same, the vote over the tuned request and the pinned reply", with_request, folds=fold0, space=mixed)
    elif variant == "pooling":
        import encoders
        pooled = encoders.pinned_poolings(DIR, meta["texts"], meta["replies"])
        blocks = lambda way, layers: np.hstack([unit(text[:, k]) for text in pooled[way] for k in layers])
        run("the product's form", standardised(F))
        run("and the largest values after the last layer", standardised(np.hstack([F, blocks("max", [5])])))
        run("and the largest values after layers 4, 5 and 6", standardised(np.hstack([F, blocks("max", [3, 4, 5])])))
        run("and the first token's state after the last layer", standardised(np.hstack([F, blocks("first", [5])])))
        run("and the means after layers 1, 2 and 3", standardised(np.hstack([F, blocks("mean", [0, 1, 2])])))
    elif variant == "encoders":
        import encoders
        own = {"pinned (tract)": (F[:, :384], F[:, 384:768])}
        own.update(encoders.embed_all(DIR, meta["texts"], meta["replies"]))
        agreement = (unit(F[:, :384]) * own["all-MiniLM-L6-v2 int8 (onnxruntime)"][0]).sum(1)
        print(f"tract against onnxruntime, the pinned model: least cosine {agreement.min():.5f}", flush=True)
        letters = [[c for c in t if c.isalpha()] for t in meta["texts"]]
        non_latin = np.array([bool(l) and sum(ord(c) > 127 for c in l) >= 0.2 * len(l) for l in letters])
        for name, (request, reply) in own.items():
            pair = np.hstack([unit(request), unit(reply)])
            space = pca(unit(pair), 64)
            run(f"{name}: the two embeddings", standardised(pair), space=space)
            right, rows = run(f"{name}: the two embeddings and the words", standardised(np.hstack([pair, words])), space=space)
            script = non_latin[rows]
            print(f"  requests mostly outside the Latin script ({script.sum()}): {right[script].mean():.4f}, "
                  f"the others: {right[~script].mean():.4f}", flush=True)
        request, reply = own["paraphrase-MiniLM-L3-v2"]
        pair = np.hstack([unit(request), unit(reply)])
        means = np.hstack(encoders.l3_layer_means(DIR, meta["texts"], meta["replies"]))
        run("paraphrase-MiniLM-L3-v2: the two embeddings, its layers' means and the words",
            standardised(np.hstack([pair, means, words])), space=pca(unit(pair), 64))
        request, reply = own["multilingual-e5-small"]
        run("the product's form and multilingual-e5-small's embeddings", standardised(np.hstack([F, unit(request), unit(reply)])))
