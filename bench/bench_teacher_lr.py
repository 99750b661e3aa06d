"""Fine-tuning learning rate of the pretrained teacher (not a test): the params.yaml teacher fine-tuned by
the train_teacher stage's own function from one pretrained encoder (default: the pipeline's
models/pretrained) at each --lrs value, chosen on val macro-F1 (thresholds tuned on val); test macro-F1
is scored once per model and only reported. Backs `teacher.lr`.

    .venv/bin/python -m bench.bench_teacher_lr --lrs 0.0005 0.0002 0.0001     # after dvc repro pretrain

Writes <out>.json and <out>.md (default bench/teacher_lr)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from banglacompress.config import load_params
from banglacompress.data import load_split
from banglacompress.train import configure_torch

from .bench_pretrain import fine_tune_and_score
from .run_bench import machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lrs", nargs="+", type=float, required=True)
    ap.add_argument("--pretrained", default="models/pretrained")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default="bench/teacher_lr")
    args = ap.parse_args()
    params = load_params()
    configure_torch(params["threads"])
    teacher = {**params["teacher"], "model": args.pretrained, "cv_folds": 0}
    test_texts, y_test, _ = load_split(args.prepared, "test")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_teacher_lr_") as tmp:
        for lr in args.lrs:
            scores = fine_tune_and_score({**teacher, "lr": lr}, args.prepared, Path(tmp) / f"lr{lr}", params["seed"],
                                         params["data"]["max_length"], (test_texts, y_test), desc=f"lr {lr}")
            scores["seconds"] = scores.pop("finetune_seconds")
            rows.append({"lr": lr, **scores})
            print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
    best = max(rows, key=lambda r: r["val_macro_f1"])
    header = {"command": "python -m bench.bench_teacher_lr " + " ".join(sys.argv[1:]), "machine": machine(),
              "pretrained": args.pretrained, "prepared": args.prepared, "seed": params["seed"],
              "teacher": {k: v for k, v in teacher.items() if k != "lr"}}
    Path(args.out + ".json").write_text(json.dumps({"header": header, "rows": rows, "best_on_val": best["lr"]},
                                                   indent=1) + "\n", encoding="utf-8")
    lines = ["# Fine-tuning lr of the pretrained teacher", "",
             f"Command: `{header['command']}`; {header['machine']['cpu']}; seed {params['seed']}; from "
             f"`{args.pretrained}` on `{args.prepared}`; the other teacher params from params.yaml. Chosen on val "
             "macro-F1 (thresholds tuned on val); test is reported, never used. One seed: differences of a few "
             "thousandths are within seed noise (bench/RESULTS.md).", "",
             "| teacher.lr | val macro-F1 | test macro-F1 | best epoch | epochs run | seconds |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['lr']:g} | {r['val_macro_f1']:.4f} | {r['test_macro_f1']:.4f} | {r['best_epoch']} | "
              f"{r['epochs_run']} | {r['seconds']:.0f} |" for r in rows]
    lines += ["", f"Best on val: **{best['lr']:g}**."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
