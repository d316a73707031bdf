#!/usr/bin/env python3
"""Chorus side by side with the tools people would otherwise use, on this machine, in one run.

    bench/run.py [--rounds N] [--only NAME ...]

Installs its peers into bench/.peers/ (a Python venv from PyPI; ignored by git), builds what
Chorus needs, runs each pair interleaved A B A B ..., and writes the medians and A/B ratios to
bench/RESULTS.md (with the command, date and machine line) and bench/.peers/results.json.
Pairs: `embed` (native embedding: Chorus/tract vs onnxruntime, 1 and 2 threads), `browser`
(in-browser embedding in headless Chromium: Chorus's wasm bundle vs transformers.js, 1 and 2
workers), `cluster` (noisy projected embeddings, 100k and 1M points: Chorus's noise-aware fit vs
faiss and scikit-learn k-means) and `end_to_end` (an ~11k-conversation export to a verified
release, stage by stage; Chorus alone).
Standard library only: it runs before the venv exists.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / ".peers"
VENV = PEERS / "venv"
PYTHON = VENV / "bin" / "python"
# Pinned so that a rerun measures the same peers.
PYPI = ["onnxruntime==1.31.1", "tokenizers==0.23.3", "numpy==2.4.6", "faiss-cpu==1.15.1", "scikit-learn==1.9.1"]
NODE = PEERS / "browser"
WORK = PEERS / "work"
CACHE = Path(os.environ.get("CHORUS_CACHE_DIR", Path.home() / ".cache" / "chorus"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def sh(*args, capture=False, **kwargs):
    print("bench:", " ".join(str(a) for a in args), file=sys.stderr, flush=True)
    out = subprocess.run([str(a) for a in args], check=True, text=True,
                         stdout=subprocess.PIPE if capture else None, cwd=ROOT, **kwargs)
    return out.stdout if capture else None


def install():
    if not PYTHON.exists():
        sh(sys.executable, "-m", "venv", VENV)
    sh(PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PYPI)
    NODE.mkdir(parents=True, exist_ok=True)
    package = (ROOT / "bench" / "peers" / "browser" / "package.json").read_text()
    if not (NODE / "package.json").exists() or (NODE / "package.json").read_text() != package:
        (NODE / "package.json").write_text(package)
        sh("npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", NODE)
    sh("cargo", "xtask", "fetch", "--corpus")
    sh("cargo", "build", "--release", "-p", "chorus-cli", "-p", "chorus-tests", "--examples", "--bins")
    sh("cargo", "xtask", "wasm")


def example(name):
    return TARGET / "release" / "examples" / name


def last_json(*cmd, **kwargs):
    """Runs a command whose last line of output is a JSON object."""
    return json.loads(sh(*cmd, capture=True, **kwargs).strip().splitlines()[-1])


def machine():
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    memory = next((int(l.split()[1]) // (1 << 20) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return (f"{cpu}, {os.cpu_count()} cores, {memory} GiB; {platform.system()} {platform.release()}; "
            f"{first(['rustc', '--version'])}; Python {platform.python_version()}; node {first(['node', '--version'])}")


def interleaved(name, sides, rounds):
    """Runs each of `sides` (label -> function returning a time) in turn, `rounds` times:
    A B A B ... Returns each side's times and median."""
    times = {label: [] for label in sides}
    for r in range(rounds):
        for label, run in sides.items():
            times[label].append(run())
        print(f"bench: {name} round {r}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items()),
              file=sys.stderr, flush=True)
    return {label: {"times": t, "median": statistics.median(t)} for label, t in times.items()}


def pair(name, a, b, rounds):
    """Two sides interleaved: their times, medians and the A/B ratio."""
    both = interleaved(name, {"a": a, "b": b}, rounds)
    ma, mb = both["a"]["median"], both["b"]["median"]
    return {"a_ms": both["a"]["times"], "b_ms": both["b"]["times"], "a_median": ma, "b_median": mb, "ratio": ma / mb}


def lowest_cosine(ours_file, theirs_file):
    ours, theirs = json.load(open(ours_file)), json.load(open(theirs_file))
    if len(ours) != len(theirs):
        raise SystemExit(f"{ours_file} has {len(ours)} vectors, {theirs_file} {len(theirs)}")
    lowest = min(cosine(u, v) for u, v in zip(ours, theirs))
    if lowest < 0.999:
        raise SystemExit(f"embeddings disagree ({ours_file}, {theirs_file}): lowest cosine {lowest}")
    return lowest


def cosine(u, v):
    dot = sum(x * y for x, y in zip(u, v))
    nu = sum(x * x for x in u) ** 0.5
    nv = sum(x * x for x in v) ** 0.5
    return dot / max(nu * nv, 1e-30)


def request_texts(n=300, name="texts.json"):
    """The request texts of the corpus's first n conversations, as the device prepares them."""
    WORK.mkdir(parents=True, exist_ok=True)
    texts = WORK / name
    sh(example("embed_texts"), "texts", CACHE / "corpus" / "sharegpt.json", n, texts)
    return texts


def embed_pair(rounds):
    """Native embedding of the same texts with the same model file: Chorus vs onnxruntime."""
    work = WORK
    texts = request_texts()
    chorus = example("embed_texts")
    model, tokenizer = CACHE / "model" / "model.onnx", CACHE / "model" / "tokenizer.json"
    ort = [PYTHON, ROOT / "bench" / "peers" / "embed_ort.py", model, tokenizer, texts]

    def run(cmd):
        return json.loads(sh(*cmd, capture=True).strip().splitlines()[-1])["ms_per_text"]

    # The vectors must agree before the times mean anything.
    sh(chorus, "embed", texts, 1, work / "chorus.json", capture=True)
    sh(*ort, 1, work / "ort.json", capture=True)
    lowest = lowest_cosine(work / "chorus.json", work / "ort.json")
    result = {"texts": len(json.load(open(texts))), "lowest_cosine": lowest}
    for threads in (1, 2):
        result[f"threads_{threads}"] = pair(
            f"embed, {threads} thread(s)",
            lambda: run([chorus, "embed", texts, threads]),
            lambda: run([*ort, threads]),
            rounds,
        )
    return result


def browser_pair(rounds):
    """In-browser embedding in the same headless Chromium: Chorus's wasm bundle vs transformers.js."""
    texts = request_texts()
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        sh("apt-get", "install", "-y", "chromium")
    env = {**os.environ, "CHORUS_BENCH_NODE_MODULES": str(NODE), "CHROMIUM": chromium}

    def run(side, workers, vectors=None):
        cmd = ["node", ROOT / "bench" / "peers" / "browser" / "run.mjs", side, workers, texts,
               CACHE / "model", ROOT / "www"] + ([vectors] if vectors else [])
        return last_json(*cmd, env=env)["ms_per_text"]

    run("chorus", 2, WORK / "browser-chorus.json")
    run("transformers", 2, WORK / "browser-transformers.json")
    lowest = lowest_cosine(WORK / "browser-chorus.json", WORK / "browser-transformers.json")
    result = {"texts": len(json.load(open(texts))), "lowest_cosine": lowest}
    for workers in (1, 2):
        result[f"workers_{workers}"] = pair(
            f"browser, {workers} worker(s)",
            lambda: run("chorus", workers),
            lambda: run("transformers", workers),
            rounds,
        )
    return result


CLUSTERS = 8
CLUSTER_METHODS = ["chorus", "faiss", "kmeans", "minibatch"]
# The default study's σ (the server's real data), and far less noise than any study here would
# add (an illustration of how the methods differ once there is structure to find).
CLUSTER_SIGMAS = ["study", "0.3"]


def cluster_pair(rounds):
    """The same noisy projected embeddings clustered by Chorus and by faiss and scikit-learn."""
    work = WORK / "cluster"
    work.mkdir(parents=True, exist_ok=True)
    vectors = work / "vectors.json"
    if not vectors.exists():
        texts = request_texts(100_000, "cluster/texts.json")
        sh(example("embed_texts"), "embed", texts, 2, vectors)
    peers = [PYTHON, ROOT / "bench" / "peers" / "cluster_peers.py"]
    result = {"clusters": CLUSTERS}
    for sigma, size in [(s, n) for s in CLUSTER_SIGMAS for n in (100_000, 1_000_000)]:
        points = work / f"{sigma}-{size}"
        meta = last_json(example("cluster_points"), "points", vectors, size, sigma, 7, points)
        noisy, d = points / "noisy.f32", meta["dimensions"]
        discovery = {}

        def run(method, r):
            out = points / f"{method}.json"
            if method == "chorus":
                found = last_json(example("cluster_points"), "cluster", noisy, CLUSTERS, sigma, 100 + r, out)
                discovery.update(found)
            else:
                found = last_json(*peers, method, noisy, d, CLUSTERS, 100 + r, out)
            return found["seconds"]

        counter = iter(range(10 ** 6))
        sides = {m: (lambda m=m: run(m, next(counter))) for m in CLUSTER_METHODS}
        timed = interleaved(f"cluster σ {sigma}, {size}", sides, rounds)
        judged = last_json(*peers, "evaluate", points / "clean.f32", noisy, d, CLUSTERS,
                           *[points / f"{m}.json" for m in CLUSTER_METHODS])
        result[f"{sigma}-{size}"] = {
            **meta,
            "reference_clean_objective": judged["reference_clean_objective"],
            "discovery": {k: discovery[k] for k in ("discover_seconds", "discover_points", "discover_fitted", "discover_clusters")},
            "methods": {m: {**timed[m], **judged["methods"][str(points / f"{m}.json")]} for m in CLUSTER_METHODS},
        }
    return result


def end_to_end(_rounds):
    """An ~11k-conversation export to a verified release, stage by stage (one run)."""
    return last_json(example("end_to_end"), 11_000, WORK / "end-to-end")


def pair_rows(result, unit):
    """Table rows of a pair measured at 1 and 2 threads or workers."""
    rows = []
    for n in (1, 2):
        r = result[f"{unit}_{n}"]
        rows.append(f"| {n} | {r['a_median']:.2f} | {r['b_median']:.2f} | {r['ratio']:.2f} |")
    return rows


def render(results, command):
    lines = ["# Benchmarks against peers", "",
             f"Latest run: {results['date']}, `{command}`; each section names the run that measured it.", "",
             f"Machine: {results['machine']}.", "",
             "Each pair ran interleaved (A B A B …); the figures are medians, the ratio is A/B "
             "(below 1: Chorus is faster). Where Chorus is slower, [PROFILES.md](PROFILES.md) says "
             "where the time goes.", ""]
    embed = results.get("embed")
    if embed:
        lines += ["## Native embedding", "", f"Measured {embed.get('run', '?')}.", "",
                  f"The request texts of the first {embed['texts']} public ShareGPT conversations "
                  "(PII-scrubbed, truncated as on the device), one text at a time, no padding, same "
                  "model file and tokenizer; lowest cosine between the two sets of vectors "
                  f"{embed['lowest_cosine']:.7f}.", "",
                  "| threads | Chorus (tract), ms/text | onnxruntime (Python), ms/text | ratio |",
                  "|---|---|---|---|"]
        lines += pair_rows(embed, "threads")
        lines += ["", "Chorus runs one embedder per thread over different texts; onnxruntime runs "
                  "each text on that many intra-op threads.", ""]
    browser = results.get("browser")
    if browser:
        lines += ["## In-browser embedding", "", f"Measured {browser.get('run', '?')}.", "",
                  f"The same {browser['texts']} request texts (one per conversation: what the device "
                  "embeds), in Debian's headless Chromium, every file served from one local origin "
                  "(remote models disabled; any other request fails the run). Chorus: the wasm "
                  "bundle the contributor's page picks (relaxed SIMD here). transformers.js 4.3.1 "
                  "(onnxruntime-web, one thread per worker) on the same model file and tokenizer; "
                  "its own truncation drops the final [SEP] of a long text, so its worker truncates "
                  "the ids as Chorus does and mean-pools the model's output. Lowest cosine between "
                  f"the two sets of vectors {browser['lowest_cosine']:.7f}. Model loading excluded.", "",
                  "| workers | Chorus (wasm), ms/conversation | transformers.js, ms/conversation | ratio |",
                  "|---|---|---|---|"]
        lines += pair_rows(browser, "workers")
        lines.append("")
    cluster = results.get("cluster")
    if cluster:
        lines += ["## Clustering noisy projected embeddings", "", f"Measured {cluster.get('run', '?')}.", "",
                  "The request embeddings of all public ShareGPT conversations, projected and clipped "
                  "by the default study's public projection and noised as the device noises them "
                  "(Gaussian, the study's σ per coordinate), drawn with fresh noise up to the size. "
                  f"Every method looks for {cluster['clusters']} clusters with 3 starts. Chorus: the "
                  "server's noise-aware mixture fit (`discover::fit_clusters`); every method uses both "
                  "cores. Objectives are mean squared distances to the nearest "
                  "centroid: on the noisy points (what k-means minimises) and on the clean points "
                  "(how well the centroids describe the structure under the noise; the reference "
                  "k-means on the clean points, 10 starts, sets its floor). ARI: each noisy point's "
                  "nearest centroid against its clean point's reference cluster.", ""]
        for key in [f"{s}-{n}" for s in CLUSTER_SIGMAS for n in (100_000, 1_000_000)]:
            c = cluster.get(key)
            if not c:
                continue
            chorus = c["methods"]["chorus"]["median"]
            which = "the default study's σ" if key.startswith("study") else "illustrative σ"
            lines += [f"### {c['points']:,} points, {which} ({c['distinct']:,} distinct embeddings, {c['dimensions']} "
                      f"dimensions, σ = {c['sigma']:.1f}, clip {c['clip']})", "",
                      "| method | time, s | ratio (Chorus/method) | objective, noisy | objective, clean | ARI |",
                      "|---|---|---|---|---|---|"]
            names = {"chorus": "Chorus (noise-aware EM)", "faiss": "faiss-cpu 1.15.1 k-means",
                     "kmeans": "scikit-learn 1.9.1 KMeans", "minibatch": "scikit-learn 1.9.1 MiniBatchKMeans"}
            for m, r in c["methods"].items():
                lines.append(f"| {names[m]} | {r['median']:.2f} | {chorus / r['median']:.2f} | "
                             f"{r['noisy_objective']:.2f} | {r['clean_objective']:.4f} | {r['ari'] + 0.0:.4f} |".replace("-0.0000", "0.0000"))
            d = c["discovery"]
            lines += ["", f"Reference clean objective {c['reference_clean_objective']:.4f}. Chorus's whole "
                      f"discovery (its own number of clusters by BIC, support checks) on a "
                      f"{d['discover_points']:,}-point sample: {d['discover_seconds']:.2f} s, "
                      f"{d['discover_fitted']} component(s) fitted, {d['discover_clusters']} reported.", ""]
    e2e = results.get("end_to_end")
    if e2e:
        stages = ["server_start", "import", "analyse", "privatize", "ingest", "release", "fetch_and_verify"]
        lines += ["## End to end", "", f"Measured {e2e.get('run', '?')}.", "",
                  f"A ChatGPT `conversations.json` of {e2e['conversations']:,} conversations "
                  f"({e2e['export_bytes'] / 1e6:.0f} MB) from the public corpus, each donated as by its own "
                  "contributor (the default study takes one report per contributor), through "
                  "`chorus serve` with SQLite on this machine (`tests/examples/end_to_end.rs`):", "",
                  "| stage | seconds |", "|---|---|"]
        lines += [f"| {s} | {e2e[s]:.2f} |" for s in stages]
        lines += [f"| total | {e2e['total']:.2f} |", ""]
    return "\n".join(lines)


PAIRS = {"embed": embed_pair, "browser": browser_pair, "cluster": cluster_pair, "end_to_end": end_to_end}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(PAIRS), default=sorted(PAIRS))
    args = parser.parse_args()
    command = "bench/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    install()
    stored = PEERS / "results.json"
    results = json.load(open(stored)) if stored.exists() else {}
    for name in args.only:
        results[name] = PAIRS[name](args.rounds)
        results[name]["run"] = f"{datetime.date.today().isoformat()}, `{command}`"
    results["date"] = datetime.date.today().isoformat()
    results["machine"] = machine()
    json.dump(results, open(stored, "w"), indent=1)
    (ROOT / "bench" / "RESULTS.md").write_text(render(results, command))
    print((ROOT / "bench" / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
