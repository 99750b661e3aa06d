"""Quantization benchmark (not a test): every format applied to the pruned student (models/pruned),
saved, reloaded with load_artifact and scored once on test; agreement with the FP32 pruned model and
with the teacher; bytes on disk of the whole artifact directory; batch-1 latency and batch-32
throughput, all models timed interleaved in one process with the same threads (the teacher too).

    nice -n 10 .venv/bin/python bench/bench_quant.py                 # the real run
    .venv/bin/python bench/bench_quant.py --samples 30 --out /tmp/bq  # smoke run

Waits for models/pruned/inference.json (the pipeline writes it). Writes <out>.json and <out>.md
(default bench/quant_results). Nothing is tuned on test: thresholds are the pruned model's (val)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import digest, wait_for  # noqa: E402
from banglacompress.data import load_split  # noqa: E402
from banglacompress.evaluate import artifact_size, measure_speed, test_scores  # noqa: E402
from banglacompress.quantize import (QUANT_METHODS, calibration_batches, count_stored_params, load_artifact,  # noqa: E402
                                     read_quant_record, save_artifact)
from banglacompress.scoring import agreement  # noqa: E402

# name -> (method, options). v1..v4 are the predecessor's quant_* names; the rest separate the
# runtime's effect (onnx_fp32) from the quantization's, and show what quantizing the embedding
# table (most of this student's bytes) adds.
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
    "onnx_int8_emb4": ("onnx_int8", {"embedding_bits": 4}),
}
TARGETS = {"compression": 15.0, "speedup": 4.0, "f1_retained": 0.97}




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pruned", default="models/pruned")
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--samples", type=int, default=300, help="test texts timed at batch 1")
    ap.add_argument("--rounds", type=int, default=2, help="latency passes over the samples")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-batches", type=int, default=100)
    ap.add_argument("--only", nargs="*", help="a subset of the variants")
    ap.add_argument("--wait", type=float, default=3600, help="seconds to wait for the pruned model")
    ap.add_argument("--out", default=str(ROOT / "bench" / "quant_results"))
    args = ap.parse_args()
    os.chdir(ROOT)
    warnings.simplefilter("ignore")
    wait_for(Path(args.pruned) / "inference.json", args.wait)
    torch.set_num_threads(args.threads)
    seed = 42

    test_texts, y_test, meta = load_split(args.prepared, "test")
    train_texts, _, _ = load_split(args.prepared, "train")
    teacher, teacher_tok, teacher_info = load_artifact(args.teacher)
    fp32, tok, info = load_artifact(args.pruned)
    max_length = info.get("max_length", 128)

    rows, models, toks, preds = {}, {}, {}, {}

    def score(name, model, tokenizer, inf, path, extra=None):
        metrics, preds[name] = test_scores(model, tokenizer, inf, test_texts, y_test, max_length)
        rows[name] = {"name": name, "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"],
                      **artifact_size(path), **count_stored_params(model), **(extra or {})}
        models[name], toks[name] = model, tokenizer
        print(f"[bench] {name}: test macro-F1 {metrics['macro_f1']:.4f}, {rows[name]['size_bytes']:,} bytes",
              file=sys.stderr)

    score("teacher", teacher, teacher_tok, teacher_info, args.teacher, {"method": "teacher (FP32)"})
    score("pruned_fp32", fp32, tok, info, args.pruned, {"method": "none"})

    calib = calibration_batches(tok, train_texts, args.calib_batches, 32, max_length, seed)
    work = Path(tempfile.mkdtemp(prefix="bench_quant_"))
    for name, (method, opts) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        spec = QUANT_METHODS[method]
        start = time.perf_counter()
        quantized = spec.quantize(fp32, calib if spec.calibrated else None, **opts)
        seconds = time.perf_counter() - start
        save_artifact(work / name, method, quantized, tok, info)
        reloaded, rtok, rinfo = load_artifact(work / name)  # what is measured is what was saved
        record = read_quant_record(work / name)
        score(name, reloaded, rtok, rinfo, work / name,
              {"method": method, "options": record["options"], "quantize_seconds": seconds,
               "fp32_modules": len(record["fp32_modules"]),
               **({"int4_bits_per_weight": record["int4_bits_per_weight"]} if "int4_bits_per_weight" in record
                  else {})})

    rng = np.random.default_rng(seed)
    sample = [test_texts[i] for i in rng.choice(len(test_texts), min(args.samples, len(test_texts)), replace=False)]
    load_before = os.getloadavg()
    speed = measure_speed(models, toks, sample, max_length, threads=args.threads, batch_size=32, rounds=args.rounds)
    load_after = os.getloadavg()
    ref = rows["teacher"]
    for name, row in rows.items():
        row.update(speed[name])
        row["agreement_with_fp32"] = agreement(meta["task"], preds["pruned_fp32"], preds[name])
        row["agreement_with_teacher"] = agreement(meta["task"], preds["teacher"], preds[name])
        row["compression"] = ref["size_bytes"] / row["size_bytes"]
        row["speedup"] = ref["latency_ms_p50"] / row["latency_ms_p50"]
        row["throughput_speedup"] = row["throughput_per_s"] / ref["throughput_per_s"]
        row["f1_retained"] = row["macro_f1"] / ref["macro_f1"]
        row["meets_targets"] = all(row[k] >= v for k, v in TARGETS.items())

    result = {"task": meta["task"], "test_rows": len(test_texts), "latency_samples": len(sample),
              "rounds": args.rounds, "threads": args.threads, "targets_vs_teacher": TARGETS,
              "pruned_digest": digest(Path(args.pruned)), "teacher_digest": digest(Path(args.teacher)),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
                          "torch": torch.__version__},
              "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


def markdown(result: dict) -> str:
    cols = [("name", "variant"), ("macro_f1", "test macro-F1"), ("f1_retained", "F1 / teacher"),
            ("agreement_with_fp32", "agree FP32"), ("agreement_with_teacher", "agree teacher"),
            ("size_bytes", "bytes on disk"), ("compression", "smaller than teacher"),
            ("params", "stored params"), ("latency_ms_p50", "p50 ms (b=1)"), ("latency_ms_p95", "p95 ms (b=1)"),
            ("speedup", "p50 speedup vs teacher"), ("throughput_per_s", "texts/s (b=32)"),
            ("meets_targets", "meets all targets")]
    m = result["machine"]
    lines = [f"Test split: {result['test_rows']} rows. Latency: {result['latency_samples']} test texts at batch 1, "
             f"{result['rounds']} rounds, {result['threads']} threads, every model interleaved in one process; "
             f"throughput at batch 32 over the same texts. Load average before/after: "
             f"{m['loadavg_before'][0]:.1f} / {m['loadavg_after'][0]:.1f} on {m['cpus']} CPUs (shared machine). "
             f"Targets vs teacher: ≥{result['targets_vs_teacher']['compression']:.0f}× smaller, "
             f"≥{result['targets_vs_teacher']['speedup']:.0f}× faster p50, ≥"
             f"{result['targets_vs_teacher']['f1_retained']:.0%} of teacher macro-F1.", "",
             "| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in result["rows"].values():
        cells = []
        for key, _ in cols:
            v = row.get(key)
            if key in ("macro_f1", "f1_retained", "agreement_with_fp32", "agreement_with_teacher"):
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
