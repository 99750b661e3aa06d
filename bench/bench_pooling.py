"""Teacher pooling benchmark (not a test): the params.yaml teacher trained with pooling cls, mean and
max on the SAME tokenizer (models/teacher's, so tokenizer differences are out of the comparison) and
the same seed; best epoch and thresholds chosen on val, test scored once per model. The pooling to
prefer is the best on val, never on test. Then the batch-1 latency cost of each pooling on the same
weights (models/pruned as PyTorch FP32 and as the shipped onnx_int8 + 4-bit embeddings), every
pooling built twice in ABBA order and all timed interleaved, so that the order in which models are
built (which shifted latencies in unrecorded trials) hits every pooling alike.

    nice -n 10 .venv/bin/python bench/bench_pooling.py --seeds 42 43     # after dvc repro (~30 min)
    .venv/bin/python bench/bench_pooling.py --latency-only               # redo the timing part only (~3 min)
    .venv/bin/python bench/bench_pooling.py --quick --out /tmp/bp        # smoke run: 600 train rows, 1 epoch

Writes <out>.json and <out>.md (default bench/pooling_results) after every model."""
from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import statistics
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
from banglacompress.measure import measure_speed
from banglacompress.models import load_model_dir
from banglacompress.pooling import POOLINGS, set_pooling
from banglacompress.quantize import QUANT_METHODS
from banglacompress.train import score_split, train_teacher

QUICK_TRAIN_ROWS = 600


def quick_prepared(source: str, work: Path) -> str:
    """--quick: a copy of the prepared splits whose train split keeps its first QUICK_TRAIN_ROWS rows."""
    trimmed = work / "prepared_quick"
    shutil.copytree(source, trimmed)
    train = pd.read_csv(Path(source) / "train.csv", encoding="utf-8", dtype=str, keep_default_na=False)
    train.head(QUICK_TRAIN_ROWS).to_csv(trimmed / "train.csv", index=False, encoding="utf-8")
    return str(trimmed)


def train_one(pooling: str, seed: int, cfg: dict, ctx: dict, out_dir: Path) -> dict:
    """One teacher through the train_teacher stage's own function (train.train_teacher) on the shared
    tokenizer, with this pooling and seed; reloaded and scored once on test."""
    path = out_dir / f"{pooling}_{seed}"
    start = time.perf_counter()
    result = train_teacher({**cfg, "pooling": pooling}, prepared=ctx["prepared"], out_dir=path, seed=seed,
                           max_length=ctx["max_length"], tokenizer=ctx["tok"])
    seconds = time.perf_counter() - start
    reloaded, tok, info = load_model_dir(path)  # scored after reload: the pooling must survive it
    metrics, _, _ = score_split(reloaded, tok, info, ctx["test_texts"], ctx["y_test"], ctx["max_length"],
                                desc=f"{pooling} test")
    return {"pooling": pooling, "seed": seed, "val_macro_f1": result["val_macro_f1_tuned"],
            "test_macro_f1": metrics["macro_f1"], "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"], "train_seconds": round(seconds, 1)}


def latency_cost(model_dir: str, poolings: list[str], texts: list[str], max_length: int, reps: int) -> dict:
    """Median over `reps` interleaved runs of each pooling's p50 batch-1 latency divided by cls's
    (each pooling's two copies averaged), for PyTorch FP32 and ONNX Runtime INT8."""
    base, tok, info = load_model_dir(model_dir)
    models = {}
    for copy_no, pooling in enumerate([*poolings, *reversed(poolings)]):  # ABBA: creation order evens out
        model = set_pooling(copy.deepcopy(base), pooling)
        models[f"torch {pooling} {copy_no}"] = TextClassifier(model, tok, info, max_length)
        models[f"onnx_int8 {pooling} {copy_no}"] = TextClassifier(
            QUANT_METHODS["onnx_int8"].quantize(model, None, embedding_bits=4), tok, info, max_length)
    runs = []
    for rep in range(reps):
        speed = measure_speed(models, texts, threads=2)
        p50 = {}
        for name, row in speed.items():
            runtime, pooling, _ = name.split()
            p50.setdefault((runtime, pooling), []).append(row["latency_ms_p50"])
        runs.append({key: statistics.mean(v) for key, v in p50.items()})
        print(f"[bench] latency run {rep + 1}/{reps}: " + ", ".join(f"{k[0]} {k[1]} {v:.3f} ms" for k, v in
                                                                    runs[-1].items()), file=sys.stderr, flush=True)
    out = {}
    for runtime, pooling in runs[0]:
        ratios = [r[(runtime, pooling)] / r[(runtime, "cls")] for r in runs]  # same run: same machine state
        out[f"{runtime} {pooling}"] = {"p50_ms": statistics.median(r[(runtime, pooling)] for r in runs),
                                       "p50_ms_runs": [r[(runtime, pooling)] for r in runs],
                                       "vs_cls": statistics.median(ratios), "vs_cls_runs": ratios}
    return out


def render(rows: list[dict], header: dict, latency: dict | None = None) -> str:
    lines = ["# Teacher pooling: cls vs mean vs max", "",
             f"Same tokenizer (`{header['tokenizer']}`), teacher params from params.yaml (cv_folds 0), each trained "
             "by the train_teacher stage's own function (`banglacompress.train.train_teacher`), "
             f"seeds {header['seeds']}, "
             f"{header['train_rows']} train / {header['val_rows']} val / {header['test_rows']} test rows; "
             f"{header['machine']}, torch {header['torch']}, {header['threads']} threads. "
             f"Command: `{header['command']}`", "",
             "| pooling | val macro-F1 (mean over seeds) | test macro-F1 (mean) | per seed val / test | best epochs | "
             "train s |", "|---|---:|---:|---|---|---:|"]
    by_pooling = {}
    for row in rows:
        by_pooling.setdefault(row["pooling"], []).append(row)
    for pooling, runs in by_pooling.items():
        lines.append(f"| {pooling} | {np.mean([r['val_macro_f1'] for r in runs]):.4f} | "
                     f"{np.mean([r['test_macro_f1'] for r in runs]):.4f} | "
                     + ", ".join(f"{r['val_macro_f1']:.4f} / {r['test_macro_f1']:.4f}" for r in runs)
                     + f" | {[r['best_epoch'] for r in runs]} | {np.mean([r['train_seconds'] for r in runs]):.0f} |")
    if by_pooling:
        best = max(by_pooling, key=lambda p: np.mean([r["val_macro_f1"] for r in by_pooling[p]]))
        lines += ["", f"Best on val: **{best}** (the choice is made on val; test is reported, not used)."]
    if latency:
        lines += ["", f"## Latency cost (batch 1, 2 threads, {header['latency_texts']} test texts, "
                  f"{header['latency_reps']} interleaved runs, median; weights of `{header['latency_model']}`; "
                  f"`{header['latency_command']}`)", "",
                  "\"vs cls\" is the ratio within each run (the same machine state for both), median and range "
                  "over runs; it is not the ratio of the p50 column, which takes medians of each pooling apart. "
                  "A range that spans 1.0 means no measurable cost.", "",
                  "| runtime | pooling | p50 ms (median of runs) | p50 ms per run | vs cls (median) | vs cls per run |",
                  "|---|---|---:|---|---:|---|"]
        lines += [f"| {key.split()[0]} | {key.split()[1]} | {row['p50_ms']:.3f} | "
                  + ", ".join(f"{v:.3f}" for v in row.get("p50_ms_runs", [])) + f" | {row['vs_cls']:.3f}× | "
                  + ", ".join(f"{v:.3f}" for v in row.get("vs_cls_runs", [])) + " |"
                  for key, row in latency.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poolings", nargs="+", default=list(POOLINGS), choices=list(POOLINGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--tokenizer", default="models/teacher", help="model directory whose tokenizer all runs share")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default="bench/pooling_results")
    ap.add_argument("--quick", action="store_true", help="600 train rows, 1 epoch (smoke run)")
    ap.add_argument("--latency-only", action="store_true", help="keep the trained rows of <out>.json, redo timing")
    ap.add_argument("--latency-model", default="models/pruned", help="weights the latency cost is measured on")
    ap.add_argument("--latency-reps", type=int, default=3)
    args = ap.parse_args()

    params = load_params()  # params.yaml of the working directory, as the stage scripts read it
    # The stage's teacher params; k-fold CV is a report that selects nothing, so it is left out here.
    cfg = dict(params["teacher"], cv_folds=0, **({"epochs": 1} if args.quick else {}))
    _, tok, _ = load_model_dir(args.tokenizer)
    max_length = params["data"]["max_length"]
    test_texts, y_test, _ = load_split(args.prepared, "test")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_pooling_") as tmp:
        prepared = quick_prepared(args.prepared, Path(tmp)) if args.quick else args.prepared
        train_rows = len(load_split(prepared, "train")[0])
        val_rows = len(load_split(prepared, "val")[0])
        ctx = dict(tok=tok, max_length=max_length, prepared=prepared, test_texts=test_texts, y_test=y_test)
        header = dict(tokenizer=args.tokenizer, seeds=args.seeds, train_rows=train_rows, val_rows=val_rows,
                      test_rows=len(test_texts), machine=f"{platform.machine()} {torch.get_num_threads()}-thread CPU",
                      torch=torch.__version__, threads=torch.get_num_threads(),
                      command="python bench/bench_pooling.py " + " ".join(sys.argv[1:]))
        if args.latency_only:
            saved = json.loads(Path(args.out + ".json").read_text())
            header, rows = saved["header"], saved["rows"]
        else:
            for seed in args.seeds:
                for pooling in args.poolings:
                    rows.append(train_one(pooling, seed, cfg, ctx, Path(tmp) / "models"))
                    print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
                    save(args.out, header, rows)
    timed = test_texts[:50] if args.quick else test_texts[:300]
    header.update(latency_model=args.latency_model, latency_texts=len(timed), latency_reps=args.latency_reps,
                  latency_command="python bench/bench_pooling.py " + " ".join(sys.argv[1:]))
    latency = latency_cost(args.latency_model, ["cls", *[p for p in args.poolings if p != "cls"]], timed,
                           max_length, args.latency_reps)
    save(args.out, header, rows, latency)
    print(render(rows, header, latency))


def save(out: str, header: dict, rows: list[dict], latency: dict | None = None) -> None:
    Path(out + ".json").write_text(json.dumps({"header": header, "rows": rows, "latency": latency}, indent=2) + "\n")
    Path(out + ".md").write_text(render(rows, header, latency), encoding="utf-8")


if __name__ == "__main__":
    main()
