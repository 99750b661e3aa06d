"""The evaluate stage: every stage's saved artifact scored on the held-out test split, with its size,
stored parameters, and end-to-end / forward-only latency and throughput measured interleaved in one
process; ratios against the teacher, curves for `dvc plots`, and the summary tables.

Two reference rows stand for what a user could deploy without this pipeline: the teacher exported
to ONNX Runtime (teacher_onnx_fp32) and that export with dynamic INT8 (teacher_onnx_int8), both
made with the quantize stage's own methods at their defaults (graph fusion included). Every row is
compared with the PyTorch teacher and with teacher_onnx_int8, the strongest of the two references.

Quality and size (metrics/summary.*, plots/evaluate) are reproducible to the byte; timings
(metrics/speed.*, plots/speed) are not, so they are kept apart: an unchanged rerun changes only those."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from .artifact import count_stored_params, load_artifact, save_artifact
from .data import load_split
from .inference import TextClassifier
from .measure import artifact_size, digest, measure_speed
from .quantize import QUANT_METHODS
from .scoring import agreement
from .train import score_split


def stage_row(stage: str, model, metrics: dict, path) -> dict:
    return {"stage": stage, **{k: v for k, v in metrics.items() if k != "per_label"},
            **artifact_size(path), **count_stored_params(model), "per_label": metrics["per_label"]}


REFERENCES = {"teacher_onnx_fp32": "onnx_fp32", "teacher_onnx_int8": "onnx_int8"}  # row -> quantize method
STRONGEST = "teacher_onnx_int8"


def add_teacher_ratios(rows: dict, predictions: dict, task: str, reference: str = "teacher") -> None:
    """compression, F1 retained and decision agreement of every row against the PyTorch teacher, and
    compression against the strongest reference (teacher_onnx_int8) when it is there."""
    ref = rows[reference]
    for stage, row in rows.items():
        row["compression"] = ref["size_bytes"] / row["size_bytes"]
        if STRONGEST in rows:
            row[f"compression_vs_{STRONGEST}"] = rows[STRONGEST]["size_bytes"] / row["size_bytes"]
        row["f1_retained"] = row["macro_f1"] / ref["macro_f1"] if ref["macro_f1"] else None
        row["agreement_with_teacher"] = agreement(task, predictions[reference], predictions[stage])


def add_speedups(speed: dict, reference: str = "teacher") -> None:
    """speedup: the reference's batch-1 end-to-end p50 latency over each row's; forward_speedup: the
    same for the forward pass alone; and both against teacher_onnx_int8 when it was timed (same run,
    interleaved)."""
    for base, suffix in ((reference, ""), (STRONGEST, f"_vs_{STRONGEST}")):
        if base not in speed:
            continue
        for row in speed.values():
            row[f"speedup{suffix}"] = speed[base]["e2e_ms_p50"] / row["e2e_ms_p50"]
            row[f"forward_speedup{suffix}"] = speed[base]["latency_ms_p50"] / row["latency_ms_p50"]


QUALITY_COLUMNS = ["stage", "macro_f1", "accuracy", "size_bytes", "gzip_bytes", "params", "nonzero_params",
                   "compression", f"compression_vs_{STRONGEST}", "agreement_with_teacher"]
SPEED_COLUMNS = ["stage", "e2e_ms_p50", "e2e_ms_p95", "e2e_throughput_b64", "speedup", f"speedup_vs_{STRONGEST}",
                 "latency_ms_p50", "throughput_per_s", "forward_speedup", f"forward_speedup_vs_{STRONGEST}"]


def markdown_table(rows: dict, cols: list[str] = QUALITY_COLUMNS) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for stage, row in rows.items():
        cells = []
        for c in cols:
            v = stage if c == "stage" else row.get(c)
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
    """plots/evaluate/{roc,precision_recall,confusion}/<stage>_<label>.json and tradeoff.json (F1 vs size)."""
    directory = Path(directory)
    for stage, kinds in per_stage.items():
        for kind, by_label in kinds.items():
            (directory / kind).mkdir(parents=True, exist_ok=True)
            for label, data in by_label.items():
                (directory / kind / f"{stage}_{label}.json").write_text(json.dumps(data), encoding="utf-8")
    tradeoff = [{"stage": r["stage"], "macro_f1": r["macro_f1"], "size_mb": r["size_bytes"] / 1e6} for r in rows.values()]
    (directory / "tradeoff.json").write_text(json.dumps(tradeoff, indent=1), encoding="utf-8")


def write_speed_plots(directory, rows: dict, speed: dict) -> None:
    """plots/speed/latency_tradeoff.json: F1 against batch-1 latency (a timing: not reproducible to the byte)."""
    points = [{"stage": name, "macro_f1": rows[name]["macro_f1"], "latency_ms_p50": speed[name]["latency_ms_p50"]}
              for name in rows]
    (Path(directory) / "latency_tradeoff.json").write_text(json.dumps(points, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------- the stage
STAGE_DIRS = {"teacher": "models/teacher", "student": "models/student", "pruned": "models/pruned",
              "quantized": "models/quantized"}


def reference_models(teacher, tokenizer, info: dict, directory: Path) -> dict:
    """The deploy-the-teacher references, saved under `directory` (so their size counts every file a
    user would ship, like the stage rows): {row name: directory}."""
    out = {}
    for name, method in REFERENCES.items():
        model = QUANT_METHODS[method].quantize(teacher, name=method)
        save_artifact(directory / name, method, model, tokenizer, {**info, "quantization": method})
        out[name] = directory / name
    return out


def evaluate_stages(stage_dirs: dict, cfg: dict, *, prepared: str | Path, max_length: int, seed: int,
                    references: bool = True) -> tuple:
    """Score every model on test, time them all interleaved, and add the ratios against the teacher
    and teacher_onnx_int8. stage_dirs: {row name: model directory}, teacher first; references: also
    build and measure the two teacher-in-ONNX-Runtime rows. Returns (rows: quality and size, speed:
    timings, plot rows, header), header being what the summary says about the measurement."""
    texts, y_test, meta = load_split(prepared, "test")
    classifiers, rows, predictions, plots, digests = {}, {}, {}, {}, {}

    def score(stage: str, model, tokenizer, info: dict, path) -> None:
        metrics, predictions[stage], probs = score_split(model, tokenizer, info, texts, y_test, max_length)
        plots[stage] = curve_plots(meta["task"], meta["label_names"], y_test, probs, predictions[stage])
        rows[stage] = stage_row(stage, model, metrics, path)
        classifiers[stage] = TextClassifier(model, tokenizer, info, max_length)
        digests[stage] = digest(path)
        print(f"[evaluate] {stage}: test macro-F1 {metrics['macro_f1']:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        for stage, path in stage_dirs.items():
            model, tokenizer, info = load_artifact(path)
            score(stage, model, tokenizer, info, path)
            if references and stage == "teacher":  # right after the teacher, built from the model just loaded
                for name, ref_path in reference_models(model, tokenizer, info, Path(tmp)).items():
                    score(name, *load_artifact(ref_path), ref_path)  # scored as saved, like every stage
    add_teacher_ratios(rows, predictions, meta["task"])
    names = list(stage_dirs)
    if "quantized" in rows:
        # Against the FP32 model it was made from: models/pruned, or the stage before whose copy that is.
        fp32 = names[names.index("quantized") - 1]
        rows["quantized"]["agreement_with_fp32"] = agreement(meta["task"], predictions[fp32], predictions["quantized"])

    rng = np.random.default_rng(seed)
    sample = [texts[i] for i in rng.choice(len(texts), min(cfg["latency_samples"], len(texts)), replace=False)]
    # Each distinct artifact is timed once; a row whose files are identical to an earlier one's gets its numbers.
    first = {}
    for stage, d in digests.items():
        first.setdefault(d, stage)
    timed = measure_speed({s: classifiers[s] for s in dict.fromkeys(first.values())}, sample,
                          threads=cfg["threads"], latency_threads=cfg.get("latency_threads"),
                          batch_size=cfg["batch_size"], seed=seed)
    speed = {s: dict(timed[first[digests[s]]], **({"timed_as": first[digests[s]]} if first[digests[s]] != s else {}))
             for s in rows}
    add_speedups(speed)
    header = {"task": meta["task"], "test_rows": len(texts), "threads": cfg["threads"],
              "latency_threads": cfg.get("latency_threads") or cfg["threads"], "latency_samples": len(sample),
              "sample": sample}  # the texts timed, for benchmarks that time something else on the same ones
    return rows, speed, plots, header
