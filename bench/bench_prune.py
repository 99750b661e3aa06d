"""Pruning benchmark (not a test): every method from the distilled student, healed on train, thresholds
and best epoch chosen on val, then scored once on test; sizes on disk (and gzip); batch-1 latency
interleaved with the unpruned student in one process, same threads.

    nice -n 10 .venv/bin/python bench/bench_prune.py                # the real run (models/student)
    .venv/bin/python bench/bench_prune.py --quick --out /tmp/bp     # smoke run: 400 train rows, 1 epoch

Writes <out>.json and <out>.md (default bench/prune_results). Nothing is selected on test."""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from banglacompress.config import load_params
from banglacompress.data import load_split
from banglacompress.inference import TextClassifier
from banglacompress.measure import artifact_size, digest, measure_speed
from banglacompress.models import count_params, load_model_dir
from banglacompress.prune import OPTION_KEYS, PRUNE_METHODS, prune_and_heal
from banglacompress.train import score_split

# name -> prune params on top of params.yaml's prune group; each names only options its method takes
# (PRUNE_METHODS[method].options) and says whether healing uses the teacher (kd_alpha 0: labels only).
CONFIGS = {
    # The predecessor-style rows: healed on the labels only, as the predecessor did.
    "prune_v1_magnitude_0.3": {"method": "magnitude", "sparsity": 0.3, "fine_tune_epochs": 3, "kd_alpha": 0.0},
    "prune_v2_magnitude_0.5": {"method": "magnitude", "sparsity": 0.5, "fine_tune_epochs": 5, "kd_alpha": 0.0},
    "prune_v3_wanda_0.5": {"method": "wanda", "sparsity": 0.5, "fine_tune_epochs": 5, "kd_alpha": 0.0},
    # The schedule ends after 3 of 5 epochs (end_epochs -> end_step, see prune_params), so 2 epochs heal
    # at the final sparsity.
    "gradual_cubic_0.5": {"method": "gradual", "sparsity": 0.5, "schedule": "cubic", "fine_tune_epochs": 5,
                          "end_epochs": 3, "kd_alpha": 0.0},
    "structured_0.5": {"method": "structured", "sparsity": 0.5, "importance": "taylor", "fine_tune_epochs": 5,
                       "kd_alpha": 0.0},
    "structured_0.5_kd": {"method": "structured", "sparsity": 0.5, "importance": "taylor", "fine_tune_epochs": 5,
                          "kd_alpha": 0.7},
}
# The methods that shrink matrices: the only ones a speedup is claimed for.
STRUCTURED = {name for name, spec in PRUNE_METHODS.items() if spec.structured}
FLOOR = "_floor_no_blocks"
QUICK_TRAIN_ROWS = 400
ROW_SKIP = ("per_layer", "student_size_bytes", "student_gzip_bytes")  # per-layer detail stays out of the table


def quick_prepared(source: str, work: Path) -> str:
    """--quick: a copy of the prepared splits whose train split keeps its first QUICK_TRAIN_ROWS rows."""
    trimmed = work / "prepared_quick"
    shutil.rmtree(trimmed, ignore_errors=True)
    shutil.copytree(source, trimmed)
    train = pd.read_csv(Path(source) / "train.csv", encoding="utf-8", dtype=str, keep_default_na=False)
    train.head(QUICK_TRAIN_ROWS).to_csv(trimmed / "train.csv", index=False, encoding="utf-8")
    return str(trimmed)


def prune_params(base: dict, config: dict, train_rows: int) -> dict:
    """params.yaml's prune group with one config on top: the method options the config's method does not
    take are nulled (prune_and_heal rejects a set option the method ignores), and `end_epochs` (gradual)
    becomes end_step, the optimizer step at which that many healing epochs are done (an epoch is
    ceil(train rows / batch_size) steps, the length of the stage's training loader)."""
    config = dict(config)
    method = config.get("method", base["method"])
    cfg = {**base, **{k: None for k in OPTION_KEYS if k not in PRUNE_METHODS[method].options}, **config}
    if "end_epochs" in cfg:
        per_epoch = math.ceil(train_rows / cfg["batch_size"])
        cfg["end_step"] = min(cfg.pop("end_epochs"), cfg["fine_tune_epochs"]) * per_epoch
    return cfg


def run_config(name: str, cfg: dict, prepared: str, student_dir: Path, teacher_dir: str, out_dir: Path,
               max_length: int, seed: int) -> tuple[dict, Path]:
    """Prune + heal one config through the prune stage's own function (prune.prune_and_heal: the saved
    model is checked to reload with the same predictions); returns its row (val numbers, sparsity, size)
    and the saved directory."""
    path = out_dir / name
    start = time.perf_counter()
    metrics = prune_and_heal(cfg, prepared=prepared, student_dir=student_dir, teacher_dir=teacher_dir,
                             out_dir=path, seed=seed, max_length=max_length)
    row = {"name": name, "method": cfg["method"], "target_sparsity": cfg["sparsity"],
           "fine_tune_epochs": cfg["fine_tune_epochs"], "kd_alpha": cfg["kd_alpha"],
           **{k: v for k, v in metrics.items() if k not in ROW_SKIP and k != "method"},
           "train_seconds": time.perf_counter() - start}
    if cfg.get("end_step") is not None:
        row["end_step"] = cfg["end_step"]
    return row, path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="models/student")
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default="bench/prune_results", help="writes OUT.json and OUT.md")
    ap.add_argument("--only", nargs="*", help="config names to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="400 train rows, 1 epoch, 100 calib rows: a smoke run")
    ap.add_argument("--latency-samples", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--work", help="keep the pruned artifacts here and reuse those already built with the same "
                                   "config and student (e.g. to re-time on a quieter machine); default: a temp dir")
    args = ap.parse_args()
    torch.set_num_threads(1)  # training is not timed; leave the other core to the machine's other jobs

    params = load_params()  # params.yaml of the working directory, as the stage scripts read it
    base, seed, max_length = dict(params["prune"]), params["seed"], params["data"]["max_length"]
    student_src = Path(args.student)
    if not (student_src / "inference.json").exists():
        sys.exit(f"{student_src} is not a model directory (no inference.json): run the distill stage first")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_prune_"))
    # A private copy: the pipeline may rewrite models/student while this runs.
    student_dir = work / "student"
    if student_dir.exists() and digest(student_dir) != digest(student_src):
        shutil.rmtree(work / "runs", ignore_errors=True)  # another student: nothing built from the old one is reused
    shutil.rmtree(student_dir, ignore_errors=True)
    shutil.copytree(student_src, student_dir)

    prepared = quick_prepared(args.prepared, work) if args.quick else args.prepared
    train_rows = len(load_split(prepared, "train")[0])
    val_texts, y_val, _ = load_split(prepared, "val")
    test_texts, y_test, _ = load_split(prepared, "test")
    configs = {k: v for k, v in CONFIGS.items() if not args.only or k in args.only}
    if args.quick:
        configs = {k: {**v, "fine_tune_epochs": 1, "calib_samples": 100} for k, v in configs.items()}
    resolved = {name: prune_params(base, cfg, train_rows) for name, cfg in configs.items()}

    rows, paths = {}, {"student": student_dir}
    for name, cfg in resolved.items():
        saved = work / "runs" / name / "bench_row.json"
        key = {"prune_params": cfg, "quick": args.quick, "student": digest(student_dir)}
        if saved.exists() and json.loads(saved.read_text())["key"] == json.loads(json.dumps(key, default=str)):
            rows[name], paths[name] = json.loads(saved.read_text())["row"], saved.parent
            print(f"[bench] {name}: reusing {saved.parent}", file=sys.stderr, flush=True)
            continue
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows[name], paths[name] = run_config(name, cfg, prepared, student_dir, args.teacher, work / "runs",
                                             max_length, seed)
        saved.write_text(json.dumps({"key": key, "row": rows[name]}, default=str))
        print(f"[bench] {name}: val macro-F1 {rows[name]['val_macro_f1_tuned']:.4f} "
              f"sparsity {rows[name]['sparsity']:.4f} ({rows[name]['train_seconds']:.0f}s)",
              file=sys.stderr, flush=True)

    # Test scores, once per artifact, with its val-tuned thresholds.
    models, toks, infos = {}, {}, {}
    student_model, student_tok, student_info = load_model_dir(student_dir)
    student_val, _, _ = score_split(student_model, student_tok, student_info, val_texts, y_val, max_length,
                                    desc="student val")
    rows = {"student": {"name": "student", "method": "none", "sparsity": 0.0,
                        "val_macro_f1_tuned": student_val["macro_f1"], **count_params(student_model),
                        **artifact_size(student_dir)}, **rows}
    for name, path in paths.items():
        if name == "student":
            model, tok, info = student_model, student_tok, student_info
        else:  # load_model_dir rebuilds structured-pruned shapes (config pruned_shapes)
            model, tok, info = load_model_dir(path)
        metrics, _, _ = score_split(model, tok, info, test_texts, y_test, max_length, desc=f"{name} test")
        rows[name].update(test_macro_f1=metrics["macro_f1"], test_accuracy=metrics.get("accuracy"))
        models[name], toks[name], infos[name] = model.eval(), tok, info
    ref = rows["student"]["test_macro_f1"]
    for row in rows.values():
        row["f1_retained"] = row["test_macro_f1"] / ref if ref else None
        row["compression_vs_student"] = rows["student"]["size_bytes"] / row["size_bytes"]
        row["gzip_compression_vs_student"] = rows["student"]["gzip_bytes"] / row["gzip_bytes"]

    # Latency: all artifacts and the student take turns on every text (rotating order), batch 1.
    rng = np.random.default_rng(seed)
    sample = [test_texts[i] for i in rng.choice(len(test_texts), min(args.latency_samples, len(test_texts)),
                                                replace=False)]
    fixed = ["শব্দ " * 200] * min(60, len(sample))  # truncated to max_length tokens: the compute-bound case
    # Not a model: the student without its transformer blocks, timed alongside to show the per-call
    # floor (embeddings, pooler, classifier, Python) that no head / FFN pruning can remove.
    floor = copy.deepcopy(student_model)
    for block_list in (getattr(getattr(floor, floor.base_model_prefix), a, None) for a in ("encoder", "transformer")):
        if block_list is not None:
            block_list.layer = torch.nn.ModuleList([])
    models[FLOOR], toks[FLOOR], infos[FLOOR] = floor.eval(), student_tok, student_info
    classifiers = {n: TextClassifier(models[n], toks[n], infos[n], max_length) for n in models}
    latency_floor, load = {}, {"before": os.getloadavg()}
    for threads in args.threads:
        for label, texts in (("", sample), ("_len_max", fixed)):
            speed = measure_speed(classifiers, texts, threads=threads, batch_size=32)
            latency_floor[f"latency_ms_p50{label}_t{threads}"] = speed.pop(FLOOR)["latency_ms_p50"]
            for name, s in speed.items():
                rows[name][f"latency_ms_p50{label}_t{threads}"] = s["latency_ms_p50"]
                if not label:
                    rows[name][f"latency_ms_p95_t{threads}"] = s["latency_ms_p95"]
                    rows[name][f"throughput_per_s_b32_t{threads}"] = s["throughput_per_s"]
            for name in rows:
                structured = rows[name]["method"] in STRUCTURED or name == "student"
                # Unstructured zeros run in the same dense kernels: their ratio is not reported as a speedup.
                rows[name][f"speedup{label}_t{threads}"] = (
                    speed["student"]["latency_ms_p50"] / speed[name]["latency_ms_p50"] if structured else None)

    # CPU time per call (1 thread, so all the work is on the calling thread): unlike wall time it
    # does not count the time other jobs on this shared machine hold the cores.
    for label, texts in (("", sample), ("_len_max", fixed)):
        cpu = cpu_time_p50(models, toks, texts, max_length)
        latency_floor[f"cpu_ms_p50{label}_t1"] = cpu.pop(FLOOR)
        for name, value in cpu.items():
            rows[name][f"cpu_ms_p50{label}_t1"] = value
            structured = rows[name]["method"] in STRUCTURED or name == "student"
            rows[name][f"cpu_speedup{label}_t1"] = cpu["student"] / value if structured else None
    out = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "torch": torch.__version__, "cpu_count": os.cpu_count()},
           "student": str(student_src), "student_digest": digest(student_dir), "prepared": args.prepared,
           "quick": args.quick, "latency_samples": len(sample), "fixed_samples": len(fixed),
           "latency_threads": args.threads,
           "load_average_1_5_15min": {**load, "after": os.getloadavg()}, "latency_floor_no_blocks": latency_floor,
           "max_length": max_length, "base_params": base, "configs": configs,
           "prune_params": resolved, "rows": rows}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    out_path.with_suffix(".md").write_text(markdown(out), encoding="utf-8")
    print(markdown(out))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


@torch.inference_mode()
def cpu_time_p50(models: dict, toks: dict, texts: list[str], max_length: int, rounds: int = 2) -> dict:
    """Median thread CPU time (ms) of one batch-1 forward pass, models interleaved in random order."""
    torch.set_num_threads(1)
    names = list(models)
    inputs = {n: [dict(toks[n](t, truncation=True, max_length=max_length, return_tensors="pt")) for t in texts]
              for n in names}
    for n in names:
        for x in inputs[n][:5]:
            models[n](**x)
    times = {n: [] for n in names}
    rng = np.random.default_rng(0)
    for r in range(rounds):
        for i in range(len(texts)):
            for n in rng.permutation(names):  # a fresh random order per input: no model always follows another
                start = time.thread_time_ns()
                models[n](**inputs[n][i])
                times[n].append((time.thread_time_ns() - start) / 1e6)
    return {n: float(np.median(v)) for n, v in times.items()}


def fmt(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def markdown(out: dict) -> str:
    t = out["latency_threads"]
    cols = ["name", "method", "kd_alpha", "sparsity", "test_macro_f1", "f1_retained", "val_macro_f1_tuned",
            "size_bytes", "gzip_bytes", "params", "nonzero_params"]
    for th in t:
        cols += [f"latency_ms_p50_t{th}", f"speedup_t{th}", f"latency_ms_p50_len_max_t{th}", f"speedup_len_max_t{th}"]
    cols += ["cpu_ms_p50_t1", "cpu_speedup_t1", "cpu_ms_p50_len_max_t1", "cpu_speedup_len_max_t1"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in out["rows"].values():
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append("–" if v is None else f"{v:.4f}" if isinstance(v, float) and ("f1" in c or c == "sparsity")
                         else f"{v:.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "", f"Student: `{out['student']}` (digest {out['student_digest']}); splits: `{out['prepared']}`; "
        f"max_length {out['max_length']}; quick run: {out['quick']}.",
        "Every row is made by the prune stage's own function (`banglacompress.prune.prune_and_heal`) with the "
        "row's prune params (`prune_params` in the json): healing on train, on the labels only where kd_alpha is "
        "0 (the predecessor-style rows and structured_0.5), with the teacher's soft targets where it is > 0; best "
        "epoch and decision thresholds chosen on val; test scored once per artifact.",
        f"Latency: batch 1, forward only, {out['latency_samples']} test texts (and {out['fixed_samples']} texts "
        "truncated to max_length tokens: "
        "`_len_max`), every model interleaved with the unpruned student in one process, threads "
        f"{t}, 2 rounds; p50 in ms.",
        "cpu_ms: thread CPU time per call at 1 thread (robust to other jobs on the machine; same rotation). "
        "Speedup is reported for structured pruning only: unstructured zeros run in the same dense kernels "
        "(their latency is shown as measured); their saving shows in gzip_bytes.",
        f"Machine: {out['machine']['platform']}, {out['machine']['cpu_count']} CPUs, torch {out['machine']['torch']}; "
        "shared with other jobs, so absolute times are noisy; ratios come from interleaved timings. Load average "
        f"(1, 5, 15 min) before / after the latency runs: {fmt(out['load_average_1_5_15min']['before'])} / "
        f"{fmt(out['load_average_1_5_15min']['after'])}.",
        "Per-call floor (the student with its transformer blocks removed, timed in the same rotation; p50 ms): "
        + ", ".join(f"{'max_length tokens' if '_len_max' in k else 'test texts'}, {k.rsplit('_', 1)[1]}: {v:.2f}"
                    for k, v in out["latency_floor_no_blocks"].items())
        + ". Head / FFN pruning can only shrink the time above this floor.",
    ]
    return "\n".join(lines + notes) + "\n"


if __name__ == "__main__":
    main()
