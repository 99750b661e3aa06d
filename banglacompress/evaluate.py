"""Honest measurements of saved artifacts: test metrics, bytes on disk (and gzip), stored
parameters, and batch-1 latency / batch-32 throughput measured interleaved in one process."""
from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import torch

from .data import Encoded
from .quantize import count_stored_params
from .scoring import agreement, classification_metrics, decide, probabilities
from .train import predict_logits, progress

SUMMARY_COLUMNS = ["stage", "macro_f1", "accuracy", "roc_auc", "size_bytes", "gzip_bytes", "params",
                   "nonzero_params", "latency_ms_p50", "latency_ms_p95", "throughput_per_s", "speedup",
                   "compression", "agreement_with_teacher"]


def artifact_size(path: str | Path) -> dict:
    """Bytes on disk of every file in the artifact directory (weights, config, tokenizer), and the
    same files gzip-compressed (where unstructured zeros show)."""
    files = [f for f in sorted(Path(path).rglob("*")) if f.is_file()]
    raw = sum(f.stat().st_size for f in files)
    packed = sum(len(gzip.compress(f.read_bytes(), compresslevel=6)) for f in files)
    return {"size_bytes": raw, "gzip_bytes": packed}


def score_split(model, tokenizer, info: dict, texts, y_true, max_length: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics, decisions (with the artifact's own thresholds) and probabilities on the given split."""
    dataset = Encoded(tokenizer, texts, None, max_length)
    probs = probabilities(info["task"], predict_logits(model, dataset, desc="test"))
    metrics = classification_metrics(info["task"], info["label_names"], y_true, probs, info.get("thresholds"))
    return metrics, decide(info["task"], probs, info.get("thresholds")), probs


def test_scores(model, tokenizer, info: dict, texts, y_true, max_length: int) -> tuple[dict, np.ndarray]:
    """Metrics and decisions on the given split."""
    return score_split(model, tokenizer, info, texts, y_true, max_length)[:2]


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


def stage_row(stage: str, model, metrics: dict, path) -> dict:
    return {"stage": stage, **{k: v for k, v in metrics.items() if k != "per_label"},
            **artifact_size(path), **count_stored_params(model), "per_label": metrics["per_label"]}


def add_ratios(rows: dict, predictions: dict, task: str, reference: str = "teacher") -> None:
    ref = rows[reference]
    for stage, row in rows.items():
        row["speedup"] = ref["latency_ms_p50"] / row["latency_ms_p50"]
        row["compression"] = ref["size_bytes"] / row["size_bytes"]
        row["f1_retained"] = row["macro_f1"] / ref["macro_f1"] if ref["macro_f1"] else None
        row["agreement_with_teacher"] = agreement(task, predictions[reference], predictions[stage])


def markdown_table(rows: dict) -> str:
    cols = ["stage", "macro_f1", "accuracy", "size_bytes", "gzip_bytes", "params", "nonzero_params",
            "latency_ms_p50", "latency_ms_p95", "throughput_per_s", "speedup", "compression",
            "agreement_with_teacher"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows.values():
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append(f"{v:.4f}" if isinstance(v, float) and c in ("macro_f1", "accuracy", "agreement_with_teacher")
                         else f"{v:.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots for `dvc plots`
def _thin(rows: list[dict], most: int = 200) -> list[dict]:
    step = max(1, len(rows) // most)
    return rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])


def curve_plots(task: str, label_names: list[str], y_true: np.ndarray, probs: np.ndarray, pred: np.ndarray) -> dict:
    """ROC, precision-recall and confusion rows per label (one-vs-rest per class for multi-class),
    as {kind: {label: rows}} for DVC's simple / confusion templates."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    if task == "multiclass":
        columns = [(n, (y_true == j).astype(int), probs[:, j]) for j, n in enumerate(label_names)]
        confusion = {"all": [{"actual": label_names[a], "predicted": label_names[p]} for a, p in zip(y_true, pred)]}
    else:
        columns = [(n, y_true[:, j].astype(int), probs[:, j]) for j, n in enumerate(label_names[: probs.shape[1]])]
        confusion = {n: [{"actual": int(a), "predicted": int(p)} for a, p in zip(y_true[:, j], pred[:, j])]
                     for j, n in enumerate(label_names[: probs.shape[1]])}
    out = {"roc": {}, "precision_recall": {}, "confusion": confusion}
    for name, y, score in columns:
        if y.min() == y.max():
            continue
        fpr, tpr, _ = roc_curve(y, score)
        precision, recall, _ = precision_recall_curve(y, score)
        out["roc"][name] = _thin([{"fpr": float(a), "tpr": float(b)} for a, b in zip(fpr, tpr)])
        out["precision_recall"][name] = _thin([{"recall": float(r), "precision": float(p)}
                                               for r, p in zip(recall, precision)])
    return out


def write_plots(directory, per_stage: dict, rows: dict) -> None:
    """plots/evaluate/{roc,precision_recall,confusion}/<stage>_<label>.json and tradeoff.json."""
    import json
    directory = Path(directory)
    for stage, kinds in per_stage.items():
        for kind, by_label in kinds.items():
            (directory / kind).mkdir(parents=True, exist_ok=True)
            for label, data in by_label.items():
                (directory / kind / f"{stage}_{label}.json").write_text(json.dumps(data), encoding="utf-8")
    tradeoff = [{"stage": r["stage"], "macro_f1": r["macro_f1"], "size_mb": r["size_bytes"] / 1e6,
                 "latency_ms_p50": r["latency_ms_p50"]} for r in rows.values()]
    (directory / "tradeoff.json").write_text(json.dumps(tradeoff, indent=1), encoding="utf-8")
