#!/usr/bin/env python3
"""Chorus side by side with the tools people would otherwise use, on this machine, in one run.

    bench/run.py [--rounds N] [--only NAME ...]

Installs its peers into bench/.peers/ (a Python venv from PyPI; ignored by git), builds what
Chorus needs, runs each pair interleaved A B A B ..., and writes the medians and A/B ratios to
bench/RESULTS.md (with the command, date and machine line) and bench/.peers/results.json.
Pairs: `embed` (native embedding: Chorus/tract vs onnxruntime, 1 and 2 threads).
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
PYPI = ["onnxruntime==1.31.1", "tokenizers==0.23.3", "numpy==2.4.6"]
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
    sh("cargo", "xtask", "fetch", "--corpus")
    sh("cargo", "build", "--release", "-p", "chorus-tests", "--example", "embed_texts")


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


def interleaved(name, a, b, rounds):
    """Runs a() and b() alternately; each returns ms per item. Medians and the A/B ratio."""
    times = {"a": [], "b": []}
    for r in range(rounds):
        times["a"].append(a())
        times["b"].append(b())
        print(f"bench: {name} round {r}: A {times['a'][-1]:.2f}, B {times['b'][-1]:.2f} ms", file=sys.stderr, flush=True)
    ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
    return {"a_ms": times["a"], "b_ms": times["b"], "a_median": ma, "b_median": mb, "ratio": ma / mb}


def cosine(u, v):
    dot = sum(x * y for x, y in zip(u, v))
    nu = sum(x * x for x in u) ** 0.5
    nv = sum(x * x for x in v) ** 0.5
    return dot / max(nu * nv, 1e-30)


def embed_pair(rounds):
    """Native embedding of the same texts with the same model file: Chorus vs onnxruntime."""
    work = PEERS / "work"
    work.mkdir(parents=True, exist_ok=True)
    texts = work / "texts.json"
    chorus = TARGET / "release" / "examples" / "embed_texts"
    sh(chorus, "texts", CACHE / "corpus" / "sharegpt.json", 300, texts)
    model, tokenizer = CACHE / "model" / "model.onnx", CACHE / "model" / "tokenizer.json"
    ort = [PYTHON, ROOT / "bench" / "peers" / "embed_ort.py", model, tokenizer, texts]

    def run(cmd):
        return json.loads(sh(*cmd, capture=True).strip().splitlines()[-1])["ms_per_text"]

    # The vectors must agree before the times mean anything.
    sh(chorus, "embed", texts, 1, work / "chorus.json", capture=True)
    sh(*ort, 1, work / "ort.json", capture=True)
    ours, theirs = json.load(open(work / "chorus.json")), json.load(open(work / "ort.json"))
    lowest = min(cosine(u, v) for u, v in zip(ours, theirs))
    if lowest < 0.999:
        raise SystemExit(f"embeddings disagree: lowest cosine {lowest}")
    result = {"texts": len(ours), "lowest_cosine": lowest}
    for threads in (1, 2):
        result[f"threads_{threads}"] = interleaved(
            f"embed, {threads} thread(s)",
            lambda: run([chorus, "embed", texts, threads]),
            lambda: run([*ort, threads]),
            rounds,
        )
    return result


def render(results, command):
    lines = ["# Benchmarks against peers", "",
             f"Latest run: {results['date']}, `{command}`.", "",
             f"Machine: {results['machine']}.", "",
             "Each pair ran interleaved (A B A B …); the figures are medians, the ratio is A/B "
             "(below 1: Chorus is faster).", ""]
    embed = results.get("embed")
    if embed:
        lines += ["## Native embedding", "",
                  f"The request texts of the first {embed['texts']} public ShareGPT conversations "
                  "(PII-scrubbed, truncated as on the device), one text at a time, no padding, same "
                  "model file and tokenizer; lowest cosine between the two sets of vectors "
                  f"{embed['lowest_cosine']:.7f}.", "",
                  "| threads | Chorus (tract), ms/text | onnxruntime (Python), ms/text | ratio |",
                  "|---|---|---|---|"]
        for threads in (1, 2):
            r = embed[f"threads_{threads}"]
            lines.append(f"| {threads} | {r['a_median']:.2f} | {r['b_median']:.2f} | {r['ratio']:.2f} |")
        lines += ["", "Chorus runs one embedder per thread over different texts; onnxruntime runs "
                  "each text on that many intra-op threads.", ""]
    return "\n".join(lines)


PAIRS = {"embed": embed_pair}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(PAIRS), default=sorted(PAIRS))
    args = parser.parse_args()
    install()
    stored = PEERS / "results.json"
    results = json.load(open(stored)) if stored.exists() else {}
    for name in args.only:
        results[name] = PAIRS[name](args.rounds)
    results["date"] = datetime.date.today().isoformat()
    results["machine"] = machine()
    json.dump(results, open(stored, "w"), indent=1)
    command = "bench/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    (ROOT / "bench" / "RESULTS.md").write_text(render(results, command))
    print((ROOT / "bench" / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
