"""What a saved model costs: bytes on disk (and gzip, where unstructured zeros show), and batch-1
latency / batch throughput measured with every model taking turns on the same real texts."""
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


def _single_inputs(tokenizer, texts, max_length):
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
            for ids in enc]


def _batched_inputs(tokenizer, texts, max_length, batch_size):
    return [dict(tokenizer(list(texts[i: i + batch_size]), truncation=True, max_length=max_length,
                           padding=True, return_tensors="pt"))
            for i in range(0, len(texts), batch_size)]


@torch.inference_mode()
def measure_speed(models: dict, tokenizers: dict, texts: list[str], max_length: int, *, threads: int,
                  batch_size: int = 32, warmup: int = 10, rounds: int = 1) -> dict:
    """Latency of each model on the same real texts, one at a time (batch 1, forward pass only:
    tokenization excluded), and throughput at `batch_size`. Models take turns on every input, in
    rotating order, so machine noise hits them all alike."""
    torch.set_num_threads(threads)
    names = list(models)
    singles = {n: _single_inputs(tokenizers[n], texts, max_length) for n in names}
    batches = {n: _batched_inputs(tokenizers[n], texts, max_length, batch_size) for n in names}
    for n in names:
        for x in singles[n][:warmup]:
            models[n](**x)
    times = {n: [] for n in names}
    for r in range(rounds):
        for i in progress(range(len(texts)), desc="latency"):
            k = (i + r) % len(names)
            for n in names[k:] + names[:k]:
                start = time.perf_counter()
                models[n](**singles[n][i])
                times[n].append(time.perf_counter() - start)
    batch_times = {n: 0.0 for n in names}
    for j in range(len(batches[names[0]])):
        for n in names[j % len(names):] + names[: j % len(names)]:
            start = time.perf_counter()
            models[n](**batches[n][j])
            batch_times[n] += time.perf_counter() - start
    return {n: {"latency_ms_p50": float(np.percentile(times[n], 50) * 1e3),
                "latency_ms_p95": float(np.percentile(times[n], 95) * 1e3),
                "latency_ms_mean": float(np.mean(times[n]) * 1e3),
                "throughput_per_s": float(len(texts) / batch_times[n])} for n in names}


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
