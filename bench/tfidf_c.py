"""How strong is the TF-IDF reference? Its logistic regression's C, chosen on val (not a test).

The baseline (banglacompress.baseline) fits char 2-5-gram TF-IDF + logistic regression at C = BASELINE_C.
A user would tune C; this fits a grid of C on each run's own prepared split (prepare_splits at the
dataset's params and seed, as run_bench makes it), tunes thresholds on val for each, picks the C with the best
val macro-F1, and only then scores test, once, for that C and for the baseline's:

    python -m bench.tfidf_c --datasets hatespeech cyberbully toxic sentnob --seeds 42 --out bench/tfidf_c

Writes OUT.json and OUT.md. The test column of the chosen C is what the goal's reference would be if the
baseline tuned C; nothing here feeds back into a default."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from banglacompress.baseline import BASELINE_C, fit_tfidf_lr, predict_proba
from banglacompress.data import load_split, prepare_splits
from banglacompress.scoring import classification_metrics, tune_thresholds

from .run_bench import DATASETS, machine, run_params

GRID = (1.0, 4.0, 16.0, 64.0)


def score_c(splits: dict, task: str, labels: list[str], C: float, seed: int) -> dict:
    """Fit at C on train; val macro-F1 at thresholds tuned on val; test probabilities kept for later."""
    start = time.perf_counter()
    vectorizer, model = fit_tfidf_lr(task, *splits["train"], seed=seed, C=C)
    val_probs = predict_proba(task, vectorizer, model, splits["val"][0])
    thresholds = tune_thresholds(task, splits["val"][1], val_probs)
    val = classification_metrics(task, labels, splits["val"][1], val_probs, thresholds)["macro_f1"]
    return {"C": C, "val_macro_f1": val, "thresholds": thresholds, "seconds": time.perf_counter() - start,
            "_fit": (vectorizer, model)}


def one_run(name: str, seed: int, grid: tuple[float, ...]) -> dict:
    params = run_params(DATASETS[name], seed, yaml.safe_load(Path("params.yaml").read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        prepare_splits(params["data"], params["seed"], tmp)
        splits, meta = {}, None
        for split in ("train", "val", "test"):
            texts, y, meta = load_split(tmp, split)
            splits[split] = (texts, y)
    task, labels = meta["task"], meta["label_names"]
    rows = []
    for C in grid:
        rows.append(score_c(splits, task, labels, C, seed))
        print(f"[tfidf_c] {name} seed {seed} C={C:g}: val {rows[-1]['val_macro_f1']:.4f} "
              f"({rows[-1]['seconds']:.0f}s)", flush=True)
    best = max(rows, key=lambda r: (r["val_macro_f1"], -abs(r["C"] - BASELINE_C)))  # ties: nearest the baseline
    base = next(r for r in rows if r["C"] == BASELINE_C)
    test = {}
    for label, row in (("baseline", base), ("chosen_on_val", best)):  # test is read here only, once per C kept
        vectorizer, model = row["_fit"]
        probs = predict_proba(task, vectorizer, model, splits["test"][0])
        test[label] = classification_metrics(task, labels, splits["test"][1], probs, row["thresholds"])["macro_f1"]
    return {"dataset": name, "seed": seed, "grid": [{k: v for k, v in r.items() if k != "_fit"} for r in rows],
            "baseline_C": BASELINE_C, "chosen_C": best["C"], "val_baseline": base["val_macro_f1"],
            "val_chosen": best["val_macro_f1"], "test_baseline": test["baseline"], "test_chosen": test["chosen_on_val"]}


def markdown(result: dict) -> str:
    grid = result["grid"]
    lines = ["# The TF-IDF reference with C chosen on val", "",
             f"`{result['command']}` · {result['machine']['date']} · {result['machine']['cpu']}. Val macro-F1 per C "
             f"(thresholds tuned on val for each); test is scored only for the baseline's C ({BASELINE_C:g}) and "
             "the C with the best val macro-F1.", "",
             "| dataset | seed | " + " | ".join(f"val C={c:g}" for c in grid) + " | chosen C | test, C=4 | "
             "test, chosen C | change |",
             "|---|---|" + "---|" * len(grid) + "---|---|---|---|"]
    for r in result["runs"]:
        vals = {row["C"]: row["val_macro_f1"] for row in r["grid"]}
        lines.append(f"| {r['dataset']} | {r['seed']} | " + " | ".join(f"{vals[c]:.4f}" for c in grid) +
                     f" | {r['chosen_C']:g} | {r['test_baseline']:.4f} | {r['test_chosen']:.4f} | "
                     f"{r['test_chosen'] - r['test_baseline']:+.4f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--grid", nargs="+", type=float, default=list(GRID))
    ap.add_argument("--out", default="bench/tfidf_c")
    args = ap.parse_args()
    if BASELINE_C not in args.grid:
        ap.error(f"--grid must include the baseline's C ({BASELINE_C:g}): the test change is measured against it")
    result = {"command": "python -m bench.tfidf_c " + " ".join(sys.argv[1:]), "machine": machine(),
              "grid": args.grid, "runs": [one_run(d, s, tuple(args.grid)) for d in args.datasets for s in args.seeds]}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
