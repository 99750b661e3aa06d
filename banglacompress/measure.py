"""What a saved model costs: bytes on disk (and gzip, where unstructured zeros show), and end-to-end
and forward-only latency / throughput, measured with every model taking turns on the same real texts."""
from __future__ import annotations

import gzip
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .train import progress


def artifact_size(path: str | Path) -> dict:
    """Bytes on disk of every file in the artifact directory (weights, config, tokenizer), and the
    same files gzip-compressed (where unstructured zeros show)."""
    files = [f for f in sorted(Path(path).rglob("*")) if f.is_file()]
    raw = sum(f.stat().st_size for f in files)
    packed = sum(len(gzip.compress(f.read_bytes(), compresslevel=6)) for f in files)
    return {"size_bytes": raw, "gzip_bytes": packed}


def _interleaved(names: list[str], items: list, call, rng: np.random.Generator, desc: str) -> dict[str, list[float]]:
    """Seconds of call(name, item) for every item and name. On each item the names take turns in a
    fresh random order, so machine drift favours none of them. Each timed call follows an untimed call
    of the same model on the previous item: every model is timed warm (its weights in cache), as on a
    server that runs only it, not cold from the model before it."""
    times = {n: [] for n in names}
    for i in progress(range(len(items)), desc=desc):
        for n in rng.permutation(names):
            call(n, items[i - 1])
            start = time.perf_counter()
            call(n, items[i])
            times[n].append(time.perf_counter() - start)
    return times


def measure_speed(classifiers: dict, texts: list[str], *, threads: int, latency_threads: int | None = None,
                  batch_size: int = 32, e2e_batch: int = 64, rounds: int = 3, warmup: int = 10, seed: int = 0) -> dict:
    """Speed of each TextClassifier (inference.py) on the same real texts, all in one process:

    - e2e_ms_p50 / e2e_ms_p95: one text at a time, text in, decision out, through the path predict
      runs (clean, tokenize, forward, threshold);
    - e2e_throughput_b64: texts per second through that path, e2e_batch texts per call (the texts
      `rounds` times over: 300 texts are only 5 calls of 64);
    - latency_ms_p50 / p95 / mean and throughput_per_s (at batch_size): the forward pass alone, on
      token ids prepared beforehand (the second view: what the model itself costs).

    Batch-1 calls run on latency_threads (default: threads), batched calls on threads: on 2 cores one
    thread is faster at batch 1 for every model measured here (splitting a 10-token forward pass costs
    more than it saves), two at batch 64. Every model takes turns on every input in random order
    (_interleaved). Pass each distinct artifact once: two names for one file would be two samples of
    one model, and the faster one would be quoted."""
    rng = np.random.default_rng(seed)
    names = list(classifiers)
    singles = {n: [c.pad([ids]) for ids in c.encode(texts)] for n, c in classifiers.items()}
    batches = {n: [c.pad(c.encode(texts[i: i + batch_size])) for i in range(0, len(texts), batch_size)]
               for n, c in classifiers.items()}
    chunks = [texts[i: i + e2e_batch] for i in range(0, len(texts), e2e_batch)]
    for count in dict.fromkeys((latency_threads or threads, threads)):
        torch.set_num_threads(count)
        for n, c in classifiers.items():
            for i in range(min(warmup, len(texts))):
                c.forward(*singles[n][i])
                c(texts[i: i + 1])
    index = list(range(len(texts)))
    torch.set_num_threads(latency_threads or threads)
    e2e = _interleaved(names, texts, lambda n, text: classifiers[n]([text]), rng, "latency, end to end")
    forward = _interleaved(names, index, lambda n, i: classifiers[n].forward(*singles[n][i]), rng, "latency, forward")
    torch.set_num_threads(threads)
    batched = _interleaved(names, list(range(len(batches[names[0]]))) * rounds,
                           lambda n, j: classifiers[n].forward(*batches[n][j]), rng, "throughput, forward")
    e2e_batched = _interleaved(names, chunks * rounds, lambda n, chunk: classifiers[n](chunk, e2e_batch), rng,
                               "throughput, end to end")
    ms = lambda values, q: float(np.percentile(values, q) * 1e3)  # noqa: E731
    return {n: {"e2e_ms_p50": ms(e2e[n], 50), "e2e_ms_p95": ms(e2e[n], 95),
                "e2e_throughput_b64": float(rounds * len(texts) / sum(e2e_batched[n])),
                "latency_ms_p50": ms(forward[n], 50), "latency_ms_p95": ms(forward[n], 95),
                "latency_ms_mean": float(np.mean(forward[n]) * 1e3),
                "throughput_per_s": float(rounds * len(texts) / sum(batched[n]))} for n in names}


def digest(path: str | Path) -> str:
    """Short content hash of a model directory (file names and bytes), to record which model was measured."""
    h = hashlib.sha256()
    for f in sorted(Path(path).rglob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def wait_for(path: str | Path, timeout_s: float) -> None:
    """The pipeline may still be writing a model: poll for `path` (its inference.json, written last,
    atomically) and exit if it does not appear within timeout_s (benchmark scripts)."""
    path, start = Path(path), time.time()
    while not path.exists():
        if time.time() - start > timeout_s:
            sys.exit(f"{path} did not appear within {timeout_s:.0f}s")
        print(f"[bench] waiting for {path} ...", file=sys.stderr, flush=True)
        time.sleep(30)
