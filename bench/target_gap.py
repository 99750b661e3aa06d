"""How much of its soft targets the student learns (not a test). The distill stage teaches the student
(1 - w) * teacher logits + w * TF-IDF logits (distill.tfidf_weight, banglacompress.distill.blend_tfidf). Here
those targets are scored as a classifier on val, with thresholds tuned on val like every model in the runs,
next to the run's own student and final model (metrics/distill.json, metrics/quantize.json). If the targets
score far above the student, the student, not the teacher, is what holds the final model back.

    python -m bench.target_gap --runs bench/work/cyberbully/seed4{2,3,4} --out bench/target_gap_cyberbully

Validation only (test is never read). Writes <out>.json and <out>.md; `--render-only --out OUT` writes OUT.md again
from OUT.json."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from banglacompress.config import load_params, read_json
from banglacompress.data import Encoded, load_split
from banglacompress.distill import blend_tfidf
from banglacompress.models import load_model_dir
from banglacompress.scoring import classification_metrics, probabilities, tune_thresholds
from banglacompress.train import configure_torch, predict_logits

from .run_bench import machine


def tuned_f1(task: str, label_names: list[str], y: np.ndarray, logits: np.ndarray) -> float:
    probs = probabilities(task, logits)
    return classification_metrics(task, label_names, y, probs, tune_thresholds(task, y, probs))["macro_f1"]


def run_gap(run: Path, weights: list[float]) -> dict:
    """Val macro-F1 of the run's targets at each weight, its student and its final model."""
    params = load_params(run / "params.yaml")
    train_texts, y_train, meta = load_split(run / "data/prepared", "train")
    val_texts, y_val, _ = load_split(run / "data/prepared", "val")
    teacher, tokenizer, _ = load_model_dir(run / "models/teacher")
    teacher_val = predict_logits(teacher, Encoded(tokenizer, val_texts, None, params["data"]["max_length"]),
                                 desc="teacher val")
    run_weight = params["distill"].get("tfidf_weight", 0.0)
    targets = {w: tuned_f1(meta["task"], meta["label_names"], y_val,
                           blend_tfidf(meta["task"], w, [(teacher_val, val_texts)], train_texts=train_texts,
                                       y_train=y_train, seed=params["seed"])[0])
               for w in sorted(set(weights) | {run_weight})}
    student = read_json(run / "metrics/distill.json")["val_macro_f1_tuned"]
    final = read_json(run / "metrics/quantize.json")["val_macro_f1"]
    return {"run": str(run), "data": params["data"]["path"], "seed": params["seed"], "tfidf_weight": run_weight,
            "targets_val_macro_f1": {str(w): f for w, f in targets.items()}, "student_val_macro_f1": student,
            "final_val_macro_f1": final, "final_minus_targets": final - targets[run_weight]}


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):+.4f} ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{values[0]:+.4f}"


def markdown(rows: list[dict], weights: list[str], command: str) -> str:
    head = ["run", *[f"targets w={w}" for w in weights], "student", "final", "final − targets (run's w)"]
    lines = [f"# What the student learns of its soft targets\n\n`{command}` on {machine()['cpus']} CPUs. Val "
             "macro-F1, thresholds tuned on val for every column; w=0 is the teacher alone, w=1 the TF-IDF model "
             "alone (fitted on the train split, as distill fits it). Test is not read.\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["run"], *[f"{r['targets_val_macro_f1'][w]:.4f}" for w in weights],
                                        f"{r['student_val_macro_f1']:.4f}", f"{r['final_val_macro_f1']:.4f}",
                                        f"{r['final_minus_targets']:+.4f}"]) + " |")
    if len(rows) > 1:
        lines.append(f"\nfinal − targets, mean ± std (n − 1) over the runs: "
                     f"{mean_std([r['final_minus_targets'] for r in rows])}")
    if len(rows) > 1 and all("0.0" in r["targets_val_macro_f1"] and "1.0" in r["targets_val_macro_f1"] for r in rows):
        # against the TF-IDF model alone (w=1): where the teacher, the run's targets and the final model stand
        tfidf = [r["targets_val_macro_f1"]["1.0"] for r in rows]
        for name, values in (("teacher (w=0)", [r["targets_val_macro_f1"]["0.0"] for r in rows]),
                             ("targets (run's w)", [r["targets_val_macro_f1"][str(r["tfidf_weight"])] for r in rows]),
                             ("final", [r["final_val_macro_f1"] for r in rows])):
            lines.append(f"{name} − TF-IDF (w=1), mean ± std (n − 1): "
                         f"{mean_std([v - b for v, b in zip(values, tfidf)])}")
    return "\n".join(lines) + "\n"


def write_markdown(out: Path, rows: list[dict], command: str) -> None:
    """OUT.md from the rows (every weight any run was scored at), printed too."""
    weights = sorted({w for r in rows for w in r["targets_val_macro_f1"]}, key=float)
    text = markdown(rows, weights, command)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, help="bench work dirs (after run_bench)")
    ap.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.5, 0.7, 1.0],
                    help="tfidf weights to score the targets at (the run's own is always added)")
    ap.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    ap.add_argument("--render-only", action="store_true", help="OUT.md again from OUT.json (nothing is scored)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render_only:
        saved = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        write_markdown(out, saved["rows"], saved["command"])
        return
    if not args.runs:
        ap.error("--runs is required (unless --render-only)")
    missing = [str(r) for r in args.runs if not (r / "metrics" / "quantize.json").is_file()]
    if missing:
        ap.error(f"--runs {missing[0]}: not a finished run (no metrics/quantize.json); run bench.run_bench first")
    if not all(0 <= w <= 1 for w in args.weights):
        ap.error("--weights must be in [0, 1]")
    configure_torch(2)
    rows = [run_gap(run, args.weights) for run in args.runs]
    command = " ".join(["python -m bench.target_gap", *sys.argv[1:]])
    out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine(), "rows": rows},
                                                   indent=1) + "\n", encoding="utf-8")
    write_markdown(out, rows, command)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
