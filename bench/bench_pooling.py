"""Teacher pooling benchmark (not a test): the params.yaml teacher trained with pooling cls, mean and
max on the SAME tokenizer (models/teacher's, so WordPiece nondeterminism is out of the comparison) and
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
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from banglacompress.data import Encoded, class_weights, load_split  # noqa: E402
from banglacompress.evaluate import measure_speed, test_scores  # noqa: E402
from banglacompress.models import build_scratch_with_tokenizer, load_model_dir  # noqa: E402
from banglacompress.pooling import POOLINGS, set_pooling  # noqa: E402
from banglacompress.quantize import QUANT_METHODS  # noqa: E402
from banglacompress.train import fit, fit_options, label_loss, seed_everything, tune_thresholds_and_save  # noqa: E402


def train_one(pooling: str, seed: int, cfg: dict, ctx: dict, out_dir: Path) -> dict:
    seed_everything(seed)
    model = build_scratch_with_tokenizer(cfg["scratch"], ctx["meta"], ctx["tok"], ctx["max_length"],
                                         cfg.get("dropout", 0.1))
    set_pooling(model, pooling, "pooling")
    task, y_train = ctx["meta"]["task"], ctx["y_train"]
    loss = label_loss(task, class_weights(y_train, task) if cfg.get("class_weights", True) else None,
                      cfg.get("loss", "auto"), cfg.get("focal_gamma", 2.0))
    train_set = Encoded(ctx["tok"], ctx["train_texts"], y_train, ctx["max_length"])
    val_set = Encoded(ctx["tok"], ctx["val_texts"], None, ctx["max_length"])
    start = time.perf_counter()
    result = fit(model, train_set, val_set, ctx["y_val"], task=task, loss_fn=loss, seed=seed,
                 desc=f"{pooling} seed {seed}", **fit_options(cfg))
    seconds = time.perf_counter() - start
    path = out_dir / f"{pooling}_{seed}"
    result.update(tune_thresholds_and_save(path, model, ctx["tok"], ctx["meta"], val_set, ctx["y_val"],
                                           ctx["max_length"]))
    reloaded, tok, info = load_model_dir(path)  # scored after reload: the pooling must survive it
    metrics, _ = test_scores(reloaded, tok, info, ctx["test_texts"], ctx["y_test"], ctx["max_length"])
    return {"pooling": pooling, "seed": seed, "val_macro_f1": result["val_macro_f1_tuned"],
            "test_macro_f1": metrics["macro_f1"], "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"], "train_seconds": round(seconds, 1)}


def latency_cost(model_dir: str, poolings: list[str], texts: list[str], max_length: int, reps: int) -> dict:
    """Median over `reps` interleaved runs of each pooling's p50 batch-1 latency divided by cls's
    (each pooling's two copies averaged), for PyTorch FP32 and ONNX Runtime INT8."""
    import copy
    import statistics

    base, tok, _ = load_model_dir(model_dir)
    models = {}
    for copy_no, pooling in enumerate([*poolings, *reversed(poolings)]):  # ABBA: creation order evens out
        model = set_pooling(copy.deepcopy(base), pooling)
        models[f"torch {pooling} {copy_no}"] = model
        models[f"onnx_int8 {pooling} {copy_no}"] = QUANT_METHODS["onnx_int8"].quantize(model, None, embedding_bits=4)
    runs = []
    for rep in range(reps):
        speed = measure_speed(models, {k: tok for k in models}, texts, max_length, threads=2)
        p50 = {}
        for name, row in speed.items():
            runtime, pooling, _ = name.split()
            p50.setdefault((runtime, pooling), []).append(row["latency_ms_p50"])
        runs.append({key: statistics.mean(v) for key, v in p50.items()})
        print(f"[bench] latency run {rep + 1}/{reps}: " + ", ".join(f"{k[0]} {k[1]} {v:.3f} ms" for k, v in
                                                                    runs[-1].items()), file=sys.stderr, flush=True)
    return {f"{runtime} {pooling}": {"p50_ms": statistics.median(r[(runtime, pooling)] for r in runs),
                                     "vs_cls": statistics.median(r[(runtime, pooling)] / r[(runtime, "cls")]
                                                                 for r in runs)}
            for runtime, pooling in runs[0]}


def render(rows: list[dict], header: dict, latency: dict | None = None) -> str:
    lines = ["# Teacher pooling: cls vs mean vs max", "",
             f"Same tokenizer (`{header['tokenizer']}`), teacher params from params.yaml, seeds {header['seeds']}, "
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
                  "| runtime | pooling | p50 ms | vs cls |", "|---|---|---:|---:|"]
        lines += [f"| {key.split()[0]} | {key.split()[1]} | {row['p50_ms']:.3f} | {row['vs_cls']:.3f}× |"
                  for key, row in latency.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poolings", nargs="+", default=list(POOLINGS), choices=list(POOLINGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--tokenizer", default="models/teacher", help="model directory whose tokenizer all runs share")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default=str(ROOT / "bench" / "pooling_results"))
    ap.add_argument("--quick", action="store_true", help="600 train rows, 1 epoch (smoke run)")
    ap.add_argument("--latency-only", action="store_true", help="keep the trained rows of <out>.json, redo timing")
    ap.add_argument("--latency-model", default="models/pruned", help="weights the latency cost is measured on")
    ap.add_argument("--latency-reps", type=int, default=3)
    args = ap.parse_args()

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = dict(params["teacher"], **({"epochs": 1} if args.quick else {}))
    _, tok, _ = load_model_dir(args.tokenizer)
    train_texts, y_train, meta = load_split(args.prepared, "train")
    val_texts, y_val, _ = load_split(args.prepared, "val")
    test_texts, y_test, _ = load_split(args.prepared, "test")
    if args.quick:
        train_texts, y_train = train_texts[:600], y_train[:600]
    ctx = dict(meta=meta, tok=tok, max_length=params["data"]["max_length"], train_texts=train_texts,
               y_train=y_train, val_texts=val_texts, y_val=y_val, test_texts=test_texts, y_test=y_test)
    header = dict(tokenizer=args.tokenizer, seeds=args.seeds, train_rows=len(train_texts), val_rows=len(val_texts),
                  test_rows=len(test_texts), machine=f"{platform.machine()} {torch.get_num_threads()}-thread CPU",
                  torch=torch.__version__, threads=torch.get_num_threads(),
                  command="python bench/bench_pooling.py " + " ".join(sys.argv[1:]))
    rows = []
    if args.latency_only:
        saved = json.loads(Path(args.out + ".json").read_text())
        header, rows = saved["header"], saved["rows"]
    else:
        with tempfile.TemporaryDirectory(prefix="bench_pooling_") as tmp:
            for seed in args.seeds:
                for pooling in args.poolings:
                    rows.append(train_one(pooling, seed, cfg, ctx, Path(tmp)))
                    print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
                    save(args.out, header, rows)
    timed = test_texts[:50] if args.quick else test_texts[:300]
    header.update(latency_model=args.latency_model, latency_texts=len(timed), latency_reps=args.latency_reps,
                  latency_command="python bench/bench_pooling.py " + " ".join(sys.argv[1:]))
    latency = latency_cost(args.latency_model, ["cls", *[p for p in args.poolings if p != "cls"]], timed,
                           ctx["max_length"], args.latency_reps)
    save(args.out, header, rows, latency)
    print(render(rows, header, latency))


def save(out: str, header: dict, rows: list[dict], latency: dict | None = None) -> None:
    Path(out + ".json").write_text(json.dumps({"header": header, "rows": rows, "latency": latency}, indent=2) + "\n")
    Path(out + ".md").write_text(render(rows, header, latency), encoding="utf-8")


if __name__ == "__main__":
    main()
