"""Two teachers instead of one (not a test): would the soft targets get better? For each make-bench run a second
teacher is fine-tuned by the train_teacher stage's own function from the run's pretrained encoder, with the params.yaml
teacher group and another seed (--offset added: another head initialisation and batch order). Val macro-F1
(thresholds tuned on val) is scored for the run's teacher, the second one, their mean logits, and the soft targets
distill would blend from each (banglacompress.distill.blend_tfidf at the run's distill.tfidf_weight). The student
learns the targets, so they are what a second teacher would have to raise; a second fine-tune costs the teacher's
time again in every `dvc repro`.

    .venv/bin/python -m bench.bench_teacher_ensemble --runs bench/work/cyb_default/cyberbully/seed4{2,3,4} \
        --out bench/teacher_ensemble_cyberbully

Validation only (test is never read). Writes <out>.json and <out>.md after every run."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from banglacompress.config import load_params
from banglacompress.data import Encoded, load_split
from banglacompress.distill import blend_tfidf
from banglacompress.models import load_model_dir
from banglacompress.train import configure_torch, predict_logits, train_teacher

from .run_bench import machine, outside_noise, stats
from .target_gap import tuned_f1


def val_logits(model_dir: Path, texts: list[str], max_length: int):
    model, tokenizer, _ = load_model_dir(model_dir)
    return predict_logits(model, Encoded(tokenizer, texts, None, max_length), desc=f"{model_dir.name} val")


def one_run(run: Path, offset: int, tmp: Path) -> dict:
    params = load_params(run / "params.yaml")
    seed, max_length, weight = params["seed"], params["data"]["max_length"], params["distill"]["tfidf_weight"]
    prepared = run / "data" / "prepared"
    train_texts, y_train, meta = load_split(prepared, "train")
    val_texts, y_val, _ = load_split(prepared, "val")
    start = time.perf_counter()
    second = tmp / f"{run.name}_teacher{seed + offset}"
    train_teacher({**params["teacher"], "model": str(run / "models" / "pretrained"), "cv_folds": 0},
                  prepared=prepared, out_dir=second, seed=seed + offset, max_length=max_length)
    seconds = round(time.perf_counter() - start, 1)
    one, two = val_logits(run / "models" / "teacher", val_texts, max_length), val_logits(second, val_texts, max_length)
    both = (one + two) / 2
    f1 = {name: tuned_f1(meta["task"], meta["label_names"], y_val, logits)
          for name, logits in (("teacher", one), ("second", two), ("mean", both))}
    # both blends from one TF-IDF fit, as distill makes them
    blends = blend_tfidf(meta["task"], weight, [(one, val_texts), (both, val_texts)], train_texts=train_texts,
                         y_train=y_train, seed=seed)
    targets = {name: tuned_f1(meta["task"], meta["label_names"], y_val, logits)
               for name, logits in zip(("teacher", "mean"), blends)}
    return {"run": str(run), "seed": seed, "second_seed": seed + offset, "tfidf_weight": weight,
            "val_macro_f1": f1, "targets_val_macro_f1": targets, "second_teacher_seconds": seconds}


def markdown(result: dict) -> str:
    rows = result["runs"]
    lines = ["# Two teachers: the run's and a second one from another seed", "",
             f"`{result['command']}` · {result['machine']['cpu']}. Val macro-F1, thresholds tuned on val for each "
             "(test never read). Targets: the soft targets distill blends at the run's tfidf_weight, from the run's "
             "teacher alone and from the two teachers' mean logits.", "",
             "| run | teacher | second teacher | mean of the two | targets, one teacher | targets, two | "
             "targets change | second teacher's seconds |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f, t = r["val_macro_f1"], r["targets_val_macro_f1"]
        lines.append(f"| {r['run']} | {f['teacher']:.4f} | {f['second']:.4f} | {f['mean']:.4f} | {t['teacher']:.4f} "
                     f"| {t['mean']:.4f} | {t['mean'] - t['teacher']:+.4f} | {r['second_teacher_seconds']:.0f} |")
    for key, what in (("val_macro_f1", "teacher"), ("targets_val_macro_f1", "targets")):
        changes = [r[key]["mean"] - r[key]["teacher"] for r in rows]
        s = stats(changes)
        lines.append(f"\nTwo teachers against one, {what}: {s['mean']:+.4f} ± {s['std']:.4f} (n − 1) over "
                     f"{len(rows)} run(s)" + (" (outside seed noise)." if outside_noise(changes) else "."))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="finished make-bench run directories (seed<N>)")
    ap.add_argument("--offset", type=int, default=1000, help="the second teacher's seed is the run's + this")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    for run in args.runs:
        if not (Path(run) / "models" / "teacher").is_dir() or not (Path(run) / "models" / "pretrained").is_dir():
            sys.exit(f"error: {run} has no models/teacher or models/pretrained: give finished make-bench runs")
    result = {"command": "python -m bench.bench_teacher_ensemble " + " ".join(sys.argv[1:]), "machine": machine(),
              "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp:
        for run in args.runs:
            configure_torch(load_params(Path(run) / "params.yaml")["threads"])
            result["runs"].append(one_run(Path(run), args.offset, Path(tmp)))
            print(f"[bench] {result['runs'][-1]}", file=sys.stderr, flush=True)
            Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
            Path(args.out + ".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
