"""Teacher pooling benchmark (not a test): the params.yaml teacher trained with pooling cls, mean and
max on the SAME tokenizer (models/teacher's, so WordPiece nondeterminism is out of the comparison) and
the same seed; best epoch and thresholds chosen on val, test scored once per model. The pooling to
prefer is the best on val, never on test.

    nice -n 10 .venv/bin/python bench/bench_pooling.py                   # after dvc repro train_teacher
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
from banglacompress.evaluate import test_scores  # noqa: E402
from banglacompress.models import build_scratch_with_tokenizer, load_model_dir  # noqa: E402
from banglacompress.pooling import POOLINGS, set_pooling  # noqa: E402
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


def render(rows: list[dict], header: dict) -> str:
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
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poolings", nargs="+", default=list(POOLINGS), choices=list(POOLINGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--tokenizer", default="models/teacher", help="model directory whose tokenizer all runs share")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default=str(ROOT / "bench" / "pooling_results"))
    ap.add_argument("--quick", action="store_true", help="600 train rows, 1 epoch (smoke run)")
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
    with tempfile.TemporaryDirectory(prefix="bench_pooling_") as tmp:
        for seed in args.seeds:
            for pooling in args.poolings:
                rows.append(train_one(pooling, seed, cfg, ctx, Path(tmp)))
                print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
                Path(args.out + ".json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
                Path(args.out + ".md").write_text(render(rows, header), encoding="utf-8")
    print(render(rows, header))


if __name__ == "__main__":
    main()
