"""Quantization benchmark (not a test): every format applied to the pruned student (models/pruned) by the
quantize stage's own function (artifact.quantize_and_verify: quantize, save, reload with load_artifact,
check on val), each variant into its own directory; then reloaded and scored once on test; agreement with
the FP32 pruned model and with the teacher; bytes on disk of the whole artifact directory; batch-1 latency
and batch-32 throughput, all models timed interleaved in one process with the same threads (the teacher too).

    nice -n 10 .venv/bin/python bench/bench_quant.py                 # the real run
    .venv/bin/python bench/bench_quant.py --samples 30 --out /tmp/bq  # smoke run

Waits for models/pruned/inference.json (the pipeline writes it). Writes <out>.json and <out>.md
(default bench/quant_results). Choices between variants (quantize.method, quantize.embedding_bits) are
made on the val columns; test is reported, never used to choose; thresholds are the pruned model's (val)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from banglacompress.artifact import count_stored_params, load_artifact, quantize_and_verify
from banglacompress.config import UserError, load_params
from banglacompress.data import load_split
from banglacompress.inference import TextClassifier
from banglacompress.measure import artifact_size, digest, measure_speed, wait_for
from banglacompress.quantize import OPTION_KEYS
from banglacompress.scoring import agreement
from banglacompress.train import score_split

# name -> (method, options). v1..v4 are the predecessor's quant_* names; the rest separate the
# runtime's effect (onnx_fp32) from the quantization's, and show what quantizing the embedding
# table (most of this student's bytes) adds. Options not named here are null (the method's default).
VARIANTS = {
    "quant_v1_dynamic": ("dynamic", {}),
    "quant_v2_static": ("static", {}),
    "quant_v3_int4": ("int4", {}),
    "quant_v4_fp16": ("fp16", {}),
    "onnx_int8": ("onnx_int8", {}),
    "onnx_fp32": ("onnx_fp32", {}),
    "dynamic_emb": ("dynamic", {"embeddings": True, "per_channel": True}),
    "static_emb": ("static", {"embeddings": True}),
    "int4_emb": ("int4", {"embeddings": True}),
    "onnx_int8_pc": ("onnx_int8", {"per_channel": True}),
    "onnx_int8_emb4": ("onnx_int8", {"embedding_bits": 4}),  # the default (params.yaml)
    "onnx_int8_nofuse": ("onnx_int8", {"fuse": False}),
    "onnx_int8_emb4_nofuse": ("onnx_int8", {"embedding_bits": 4, "fuse": False}),
}
TARGETS = {"compression": 15.0, "speedup": 4.0, "f1_retained": 0.97}


def quantize_params(base: dict, method: str, options: dict, calib_batches: int) -> dict:
    """params.yaml's quantize group for one variant: its method, its options, every other method option
    null (quantize_and_verify rejects a set option the method does not take)."""
    return {**base, "method": method, **{k: None for k in OPTION_KEYS}, **options, "calib_batches": calib_batches}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pruned", default="models/pruned")
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--samples", type=int, default=300, help="test texts timed at batch 1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-batches", type=int, default=100)
    ap.add_argument("--only", nargs="*", help="a subset of the variants")
    ap.add_argument("--wait", type=float, default=3600, help="seconds to wait for the pruned model")
    ap.add_argument("--out", default="bench/quant_results")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    wait_for(Path(args.pruned) / "inference.json", args.wait)
    torch.set_num_threads(args.threads)
    params = load_params()  # params.yaml of the working directory, as the stage scripts read it
    seed, max_length = params["seed"], params["data"]["max_length"]

    val_texts, y_val, meta = load_split(args.prepared, "val")
    test_texts, y_test, _ = load_split(args.prepared, "test")
    rows, models, preds = {}, {}, {}

    def score(name, model, tokenizer, inf, path, extra=None):
        val, _, _ = score_split(model, tokenizer, inf, val_texts, y_val, max_length, desc=f"{name} val")
        metrics, preds[name], _ = score_split(model, tokenizer, inf, test_texts, y_test, max_length,
                                              desc=f"{name} test")
        rows[name] = {"name": name, "val_macro_f1": val["macro_f1"], "macro_f1": metrics["macro_f1"],
                      "accuracy": metrics["accuracy"], **artifact_size(path), **count_stored_params(model),
                      **(extra or {})}
        models[name] = TextClassifier(model, tokenizer, inf, max_length)
        print(f"[bench] {name}: val macro-F1 {val['macro_f1']:.4f}, test macro-F1 {metrics['macro_f1']:.4f}, "
              f"{rows[name]['size_bytes']:,} bytes", file=sys.stderr)

    score("teacher", *load_artifact(args.teacher), args.teacher, {"method": "teacher (FP32)"})
    score("pruned_fp32", *load_artifact(args.pruned), args.pruned, {"method": "none"})

    work = Path(tempfile.mkdtemp(prefix="bench_quant_"))
    configs, refused = {}, {}
    for name, (method, opts) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        cfg = configs[name] = quantize_params(params["quantize"], method, opts, args.calib_batches)
        start = time.perf_counter()
        try:
            stage = quantize_and_verify(cfg, prepared=args.prepared, source=args.pruned, out_dir=work / name,
                                        max_length=max_length, seed=seed)
        except UserError as err:  # the stage refuses it (e.g. below quantize.min_agreement on val): say so
            refused[name] = str(err)
            print(f"[bench] {name}: refused by the quantize stage: {err}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - start
        # What is measured is what was saved: reloaded with the documented loader.
        score(name, *load_artifact(work / name), work / name,
              {"method": method, "options": stage["options"], "quantize_and_verify_seconds": seconds,
               "val_macro_f1_change": stage["val_macro_f1_change"],
               "val_agreement_with_fp32": stage["val_agreement_with_fp32"],
               "fp32_modules": stage["fp32_module_count"],
               **({"int4_bits_per_weight": stage["int4_bits_per_weight"]} if "int4_bits_per_weight" in stage
                  else {})})

    rng = np.random.default_rng(seed)
    sample = [test_texts[i] for i in rng.choice(len(test_texts), min(args.samples, len(test_texts)), replace=False)]
    load_before = os.getloadavg()
    speed = measure_speed(models, sample, threads=args.threads, batch_size=32,
                          latency_threads=params["evaluate"].get("latency_threads"))
    load_after = os.getloadavg()
    ref = rows["teacher"]
    for name, row in rows.items():
        row.update(speed[name])
        row["agreement_with_fp32"] = agreement(meta["task"], preds["pruned_fp32"], preds[name])
        row["agreement_with_teacher"] = agreement(meta["task"], preds["teacher"], preds[name])
        row["compression"] = ref["size_bytes"] / row["size_bytes"]
        row["speedup"] = ref["e2e_ms_p50"] / row["e2e_ms_p50"]  # end to end, as evaluate's `speedup`
        row["forward_speedup"] = ref["latency_ms_p50"] / row["latency_ms_p50"]
        row["throughput_speedup"] = row["throughput_per_s"] / ref["throughput_per_s"]
        row["val_f1_retained"] = row["val_macro_f1"] / ref["val_macro_f1"]
        row["f1_retained"] = row["macro_f1"] / ref["macro_f1"]
        row["meets_targets"] = all(row[k] >= v for k, v in TARGETS.items())

    result = {"task": meta["task"], "val_rows": len(val_texts), "test_rows": len(test_texts),
              "latency_samples": len(sample), "threads": args.threads,
              "latency_threads": params["evaluate"].get("latency_threads") or args.threads,
              "targets_vs_teacher": TARGETS, "pruned_digest": digest(Path(args.pruned)),
              "teacher_digest": digest(Path(args.teacher)), "quantize_params": configs, "refused": refused,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
                          "torch": torch.__version__},
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    shutil.rmtree(work, ignore_errors=True)  # the artifacts: the results are in the json / md


def markdown(result: dict) -> str:
    cols = [("name", "variant"), ("val_macro_f1", "val macro-F1"), ("val_macro_f1_change", "val Δ vs FP32"),
            ("val_agreement_with_fp32", "val agree FP32"), ("macro_f1", "test macro-F1"),
            ("f1_retained", "test F1 / teacher"),
            ("agreement_with_fp32", "test agree FP32"), ("agreement_with_teacher", "test agree teacher"),
            ("size_bytes", "bytes on disk"), ("compression", "smaller than teacher"),
            ("params", "stored params"), ("e2e_ms_p50", "e2e p50 ms (b=1)"), ("e2e_ms_p95", "e2e p95 ms (b=1)"),
            ("speedup", "e2e p50 speedup vs teacher"), ("e2e_throughput_b64", "e2e texts/s (b=64)"),
            ("latency_ms_p50", "forward p50 ms (b=1)"), ("throughput_per_s", "forward texts/s (b=32)"),
            ("meets_targets", "meets all targets")]
    m = result["machine"]
    lines = [f"Val split: {result['val_rows']} rows; test split: {result['test_rows']} rows. Every variant is made "
             "by the quantize stage's own function (`banglacompress.artifact.quantize_and_verify`, the variant's "
             "quantize params: `quantize_params` in the json) and reloaded with `load_artifact`. Choices between "
             "variants (quantize.method, quantize.embedding_bits) are made on the **val** columns (with size and "
             f"latency); test is reported only, never used to choose. Latency: {result['latency_samples']} test "
             f"texts at batch 1 on {result.get('latency_threads', result['threads'])} thread(s), batches on "
             f"{result['threads']}, every model taking turns in random order, timed warm, in one process; e2e is "
             "text in, label out through the path predict runs, forward the model alone. Load average before/after: "
             f"{m['loadavg_before'][0]:.1f} / {m['loadavg_after'][0]:.1f} on {m['cpus']} CPUs (shared machine). "
             f"Targets vs teacher: ≥{result['targets_vs_teacher']['compression']:.0f}× smaller, "
             f"≥{result['targets_vs_teacher']['speedup']:.0f}× faster p50, ≥"
             f"{result['targets_vs_teacher']['f1_retained']:.0%} of teacher macro-F1.", "",
             "| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in result["rows"].values():
        cells = []
        for key, _ in cols:
            v = row.get(key)
            if v is None:
                cells.append("–")
            elif key == "val_macro_f1_change":
                cells.append(f"{v:+.4f}")
            elif key in ("val_macro_f1", "macro_f1", "f1_retained", "agreement_with_fp32", "agreement_with_teacher",
                         "val_agreement_with_fp32"):
                cells.append(f"{v:.4f}")
            elif key in ("compression", "speedup"):
                cells.append(f"{v:.2f}×")
            elif isinstance(v, bool):
                cells.append("yes" if v else "no")
            elif isinstance(v, float):
                cells.append(f"{v:.2f}")
            elif isinstance(v, int):
                cells.append(f"{v:,}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    for name, why in (result.get("refused") or {}).items():
        lines.append(f"\n`{name}`: refused by the quantize stage ({why}).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
