"""Speed of the committed run, repeated, and the levers behind it (not a test).

1. `--runs` repetitions of the evaluate stage's own measurement (`evaluate_stages`: every row, the
   two teacher-in-ONNX-Runtime references included, end to end and forward-only, random order per
   text, timed warm) on the committed models: median and min-max over runs of each row's figures,
   and the goal check against teacher_onnx_int8.
2. Levers, each measured side by side in one process on the same texts:
   - graph fusion (quantize.fuse) on and off, for the final model's source (models/pruned) and the teacher;
   - batch-1 latency on 1 and 2 threads (evaluate.latency_threads);
   - the tokenizer call: transformers' __call__ against the Rust tokenizer called directly (runtime.py, under inference.py).

    .venv/bin/python -m bench.speed              # 5 runs (~6 min on 2 cores)
    .venv/bin/python -m bench.speed --runs 2 --out /tmp/speed

Writes <out>.json and <out>.md (default bench/SPEED). Timings are on test texts, as evaluate's are;
nothing is chosen from them."""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from banglacompress.artifact import load_artifact
from banglacompress.config import load_params
from banglacompress.data import clean_text
from banglacompress.evaluate import STAGE_DIRS, STRONGEST, evaluate_stages
from banglacompress.inference import TextClassifier
from banglacompress.measure import measure_speed
from banglacompress.quantize import QUANT_METHODS, method_options
from banglacompress.train import configure_torch

from .run_bench import machine

GOAL = {"speedup_vs_teacher_onnx_int8": 3.0, "compression_vs_teacher_onnx_int8": 4.0, "f1_retained": 0.99}
KEYS = ("e2e_ms_p50", "e2e_ms_p95", "e2e_throughput_b64", "latency_ms_p50", "throughput_per_s", "speedup",
        "speedup_vs_teacher_onnx_int8", "forward_speedup_vs_teacher_onnx_int8")


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def repeated(params: dict, runs: int) -> tuple[dict, dict, list[str]]:
    """evaluate_stages `runs` times on the committed models: (quality rows of the last run, spread per row,
    the texts the last run timed)."""
    per_run = []
    for r in range(runs):
        rows, speed, _, header = evaluate_stages(STAGE_DIRS, params["evaluate"], prepared="data/prepared",
                                            max_length=params["data"]["max_length"], seed=params["seed"] + r)
        per_run.append(speed)
        print(f"[speed] run {r + 1}/{runs}: final {speed['quantized']['e2e_ms_p50']:.3f} ms, "
              f"{STRONGEST} {speed[STRONGEST]['e2e_ms_p50']:.3f} ms", flush=True)
    return (rows, {name: {k: spread([run[name][k] for run in per_run]) for k in KEYS} for name in per_run[0]},
            header["sample"])


def levers(params: dict, texts: list[str]) -> dict:
    cfg, max_length = params["evaluate"], params["data"]["max_length"]
    teacher, tok, info = load_artifact("models/teacher")
    pruned, ptok, pinfo = load_artifact("models/pruned")
    final_options = method_options(params["quantize"])
    onnx_int8 = QUANT_METHODS["onnx_int8"]
    variants = {
        "teacher int8, fused": TextClassifier(onnx_int8.quantize(teacher, name="onnx_int8"), tok, info, max_length),
        "teacher int8, not fused": TextClassifier(onnx_int8.quantize(teacher, name="onnx_int8", fuse=False), tok,
                                                  info, max_length),
        "final, fused": TextClassifier(onnx_int8.quantize(pruned, name="onnx_int8", **final_options), ptok, pinfo,
                                       max_length),
        "final, not fused": TextClassifier(onnx_int8.quantize(pruned, name="onnx_int8",
                                                              **{**final_options, "fuse": False}),
                                           ptok, pinfo, max_length),
    }
    out = {"fusion": {}, "threads_batch1": {}}
    speed = measure_speed(variants, texts, threads=cfg["threads"], latency_threads=cfg["latency_threads"],
                          batch_size=cfg["batch_size"], seed=params["seed"])
    for name, s in speed.items():
        out["fusion"][name] = {k: s[k] for k in ("e2e_ms_p50", "latency_ms_p50", "e2e_throughput_b64")}
    fused = {k: v for k, v in variants.items() if k.endswith(", fused")}
    for threads in (1, 2):
        speed = measure_speed(fused, texts, threads=threads, latency_threads=threads, batch_size=cfg["batch_size"],
                              seed=params["seed"])
        for name, s in speed.items():
            out["threads_batch1"].setdefault(name, {})[f"e2e_ms_p50_t{threads}"] = s["e2e_ms_p50"]
            out["threads_batch1"][name][f"latency_ms_p50_t{threads}"] = s["latency_ms_p50"]
    # The tokenizer call, one text at a time: transformers' __call__ (what the old predict / evaluate ran)
    # against the Rust tokenizer called directly (TextClassifier.encode), interleaved.
    classifier = variants["final, fused"]
    calls = {"transformers __call__": lambda t: ptok([clean_text(t)], truncation=True, max_length=max_length,
                                                     return_tensors="np"),
             "Rust tokenizer (TextClassifier.encode + pad)": lambda t: classifier.pad(classifier.encode([t]))}
    times = {k: [] for k in calls}
    rng = np.random.default_rng(0)
    for text in texts:
        for name in rng.permutation(list(calls)):
            start = time.perf_counter()
            calls[name](text)
            times[name].append(time.perf_counter() - start)
    out["tokenizer_ms_p50"] = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return out


def render(result: dict) -> str:
    s, q = result["spread"], result["quality"]
    lines = ["# Speed of the committed run, and the levers behind it", "",
             f"`{result['command']}` · {result['machine']['date']} · {result['machine']['cpus']} CPUs · load average "
             f"{result['machine']['load_average'][0]:.2f} at the start. {result['runs']} repetitions of the evaluate "
             "stage's own measurement on the committed models (every row interleaved in random order per text, timed "
             f"warm; batch 1 on {result['latency_threads']} thread, batches on {result['threads']}); median "
             "(min–max) over the repetitions. e2e: text in, label out through the path `predict` runs.", "",
             "| row | test macro-F1 | size MB | × smaller vs ORT INT8 | e2e p50 ms | e2e b64 /s | forward p50 ms | "
             "× faster e2e vs PyTorch | × faster e2e vs ORT INT8 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda d, n=2: f"{d['median']:.{n}f} ({d['min']:.{n}f}–{d['max']:.{n}f})"  # noqa: E731
    for name, row in s.items():
        lines.append(f"| {name} | {q[name]['macro_f1']:.4f} | {q[name]['size_bytes'] / 1e6:.2f} | "
                     f"{q[name]['compression_vs_teacher_onnx_int8']:.2f} | {fmt(row['e2e_ms_p50'], 3)} | "
                     f"{fmt(row['e2e_throughput_b64'], 0)} | {fmt(row['latency_ms_p50'], 3)} | {fmt(row['speedup'])} | "
                     f"{fmt(row['speedup_vs_teacher_onnx_int8'])} |")
    lines += ["", "Goal for the final model (`quantized`, shipped as models/final) against teacher_onnx_int8:", "",
              "| goal | measured | met |", "|---|---:|---|"]
    for key, (value, met) in result["goal"].items():
        lines.append(f"| {key} ≥ {GOAL.get(key, '') or 'highest of all rows'} | "
                     f"{value if isinstance(value, str) else f'{value:.3f}'} | {'yes' if met else '**no**'} |")
    lv = result["levers"]
    lines += ["", "## Levers (one process, side by side, same texts)", "",
              "Graph fusion (`quantize.fuse`; ONNX Runtime's transformer optimizer), INT8 on both sides:", "",
              "| model | e2e p50 ms | forward p50 ms | e2e b64 /s |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {r['e2e_ms_p50']:.3f} | {r['latency_ms_p50']:.3f} | {r['e2e_throughput_b64']:.0f} |"
              for n, r in lv["fusion"].items()]
    lines += ["", "Batch-1 threads (`evaluate.latency_threads`):", "",
              "| model | e2e p50 ms, 1 thread | e2e p50 ms, 2 threads | forward p50 ms, 1 thread | forward, 2 threads |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['e2e_ms_p50_t1']:.3f} | {r['e2e_ms_p50_t2']:.3f} | {r['latency_ms_p50_t1']:.3f} | "
              f"{r['latency_ms_p50_t2']:.3f} |" for n, r in lv["threads_batch1"].items()]
    lines += ["", "Tokenizing one text (p50 ms): " + "; ".join(f"{k} {v:.3f}" for k, v in
                                                            lv["tokenizer_ms_p50"].items()) + ".", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="bench/SPEED", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    params = load_params()
    configure_torch(params["threads"])
    quality, spread_rows, sample = repeated(params, args.runs)
    final, ref = spread_rows["quantized"], quality["quantized"]
    best_other = max(v["e2e_throughput_b64"]["median"] for k, v in spread_rows.items() if k != "quantized")
    goal = {"speedup_vs_teacher_onnx_int8": (final["speedup_vs_teacher_onnx_int8"]["median"],
                                             final["speedup_vs_teacher_onnx_int8"]["median"] >= 3.0),
            "compression_vs_teacher_onnx_int8": (ref["compression_vs_teacher_onnx_int8"],
                                                 ref["compression_vs_teacher_onnx_int8"] >= 4.0),
            "f1_retained": (ref["f1_retained"], ref["f1_retained"] >= 0.99),
            "e2e_throughput_b64": (f"{final['e2e_throughput_b64']['median']:.0f} /s vs next {best_other:.0f} /s",
                                   final["e2e_throughput_b64"]["median"] > best_other)}
    result = {"command": "python -m bench.speed " + " ".join(f"--runs {args.runs}".split()), "machine": machine(),
              "runs": args.runs, "threads": params["evaluate"]["threads"],
              "latency_threads": params["evaluate"]["latency_threads"],
              "quality": {k: {c: v.get(c) for c in ("macro_f1", "size_bytes", "compression_vs_teacher_onnx_int8",
                                                     "f1_retained")} for k, v in quality.items()},
              "spread": spread_rows, "goal": goal, "levers": levers(params, sample)}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render(result), encoding="utf-8")
    print(render(result))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
