"""The peer side of the native embedding comparison: onnxruntime (CPU) on the same model file,
with the same tokenizer file, truncation (64 tokens, its MAX_TOKENS) and padding policy (one text at a time,
no padding), mean pooling over the attention mask and L2 normalisation — what Chorus computes.

    python embed_ort.py MODEL.onnx TOKENIZER.json TEXTS.json THREADS [VECTORS.json]

Prints {"texts", "threads", "ms_per_text"} (session creation excluded): onnxruntime runs each
text on THREADS intra-op threads.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main():
    model, tokenizer_file, texts_file, threads = sys.argv[1:5]
    threads = int(threads)
    texts = json.load(open(texts_file, encoding="utf-8"))
    tokenizer = Tokenizer.from_file(tokenizer_file)
    tokenizer.enable_truncation(64)  # shared/src/embed/mod.rs: MAX_TOKENS
    tokenizer.no_padding()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    vectors = []
    started = time.perf_counter()
    for text in texts:
        encoding = tokenizer.encode(text)
        feed = {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        hidden = session.run(None, {k: v for k, v in feed.items() if k in names})[0][0]
        mask = feed["attention_mask"][0][:, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=0) / max(mask.sum(), 1.0)
        vectors.append(pooled / max(np.linalg.norm(pooled), 1e-12))
    seconds = time.perf_counter() - started
    if len(sys.argv) > 5:
        json.dump([v.tolist() for v in vectors], open(sys.argv[5], "w"))
    print(json.dumps({"texts": len(texts), "threads": threads, "ms_per_text": round(seconds * 1000 / len(texts), 3)}))


if __name__ == "__main__":
    main()
