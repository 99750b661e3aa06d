"""How strong is the TF-IDF reference? Its logistic regression's C (and, with --features, its features), chosen
on val (not a test).

The baseline (banglacompress.baseline) fits char 2-5-gram TF-IDF + logistic regression at C = BASELINE_C.
A user would tune C; this fits a grid of C on each run's own prepared split (prepare_splits at the
dataset's params and seed, as run_bench makes it), tunes thresholds on val for each, picks the C with the best
val macro-F1, and only then scores test, once, for that C and for the baseline's:

    python -m bench.tfidf_c --datasets hatespeech cyberbully toxic sentnob --seeds 42 --out bench/tfidf_c
    # word 1-2-grams beside the character n-grams, as a user might add them; chosen on val the same way
    python -m bench.tfidf_c --grid 4 --features char char+word --seeds 42 43 44 --out bench/tfidf_features
    # the same n-grams, each label's features scaled by their naive-Bayes log-count ratio (NB-LR)
    python -m bench.tfidf_c --grid 1 4 --features char char-nb --seeds 42 43 44 --out bench/tfidf_nb

Writes OUT.json and OUT.md. The test column of the chosen C is what the goal's reference would be if the
baseline tuned C; nothing here feeds back into a default."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion

from banglacompress.baseline import BASELINE_C, char_tfidf, fit_tfidf_lr, predict_proba
from banglacompress.data import load_split, prepare_splits
from banglacompress.scoring import classification_metrics, tune_thresholds

from .run_bench import DATASETS, machine, run_params

GRID = (1.0, 4.0, 16.0, 64.0)
# The features a fit may use: the baseline's (char), word 1-2-grams (whitespace tokens) beside them, and the
# baseline's scaled per label by NB-LR (char-nb)
FEATURES = {"char": char_tfidf,
            "char+word": lambda: FeatureUnion([("char", char_tfidf()), ("word", TfidfVectorizer(
                analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True, token_pattern=r"\S+"))]),
            "char-nb": char_tfidf}


class NBLogisticRegression(ClassifierMixin, BaseEstimator):
    """One label's logistic regression on features scaled by their naive-Bayes log-count ratio (NB-LR, the
    logistic form of Wang & Manning's NBSVM, 2012): a classical model often stronger than plain TF-IDF + LR."""

    def __init__(self, C: float = BASELINE_C, random_state: int | None = None):
        self.C, self.random_state = C, random_state

    def fit(self, x, y):
        y = np.asarray(y)
        positive, negative = (np.asarray(x[y == k].sum(axis=0)).ravel() + 1.0 for k in (1, 0))
        self.ratio_ = np.log(positive / positive.sum()) - np.log(negative / negative.sum())
        self.lr_ = LogisticRegression(max_iter=2000, C=self.C, class_weight="balanced",
                                      random_state=self.random_state).fit(x.multiply(self.ratio_).tocsr(), y)
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, x):
        return self.lr_.predict_proba(x.multiply(self.ratio_).tocsr())


def fit_nb_lr(task: str, texts, y, seed: int, C: float):
    """NB-LR on the baseline's char n-grams: one binary model per label (per class for multiclass, its
    probabilities normalised by OneVsRestClassifier). Returns (vectorizer, model) like fit_tfidf_lr."""
    vectorizer = char_tfidf()
    x, model = vectorizer.fit_transform(texts), NBLogisticRegression(C, seed)
    if task == "binary":
        return vectorizer, model.fit(x, y[:, 0].astype(int))
    return vectorizer, OneVsRestClassifier(model).fit(x, y.astype(int))


def score_c(splits: dict, task: str, labels: list[str], C: float, seed: int, features: str = "char") -> dict:
    """Fit at C on train; val macro-F1 at thresholds tuned on val; test probabilities kept for later."""
    start = time.perf_counter()
    if features == "char-nb":
        vectorizer, model = fit_nb_lr(task, *splits["train"], seed=seed, C=C)
    else:
        vectorizer, model = fit_tfidf_lr(task, *splits["train"], seed=seed, C=C, vectorizer=FEATURES[features]())
    val_probs = predict_proba(task, vectorizer, model, splits["val"][0])
    thresholds = tune_thresholds(task, splits["val"][1], val_probs)
    val = classification_metrics(task, labels, splits["val"][1], val_probs, thresholds)["macro_f1"]
    return {"C": C, **({"features": features} if features != "char" else {}), "val_macro_f1": val, "thresholds": thresholds, "seconds": time.perf_counter() - start,
            "_fit": (vectorizer, model)}


def one_run(name: str, seed: int, grid: tuple[float, ...], features: tuple[str, ...] = ("char",)) -> dict:
    params = run_params(DATASETS[name], seed, yaml.safe_load(Path("params.yaml").read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        prepare_splits(params["data"], params["seed"], tmp)
        splits, meta = {}, None
        for split in ("train", "val", "test"):
            texts, y, meta = load_split(tmp, split)
            splits[split] = (texts, y)
    task, labels = meta["task"], meta["label_names"]
    rows = []
    for kind in features:
        for C in grid:
            rows.append(score_c(splits, task, labels, C, seed, kind))
            print(f"[tfidf_c] {name} seed {seed} {kind} C={C:g}: val {rows[-1]['val_macro_f1']:.4f} "
                  f"({rows[-1]['seconds']:.0f}s)", flush=True)
    # ties: the baseline's features, then the C nearest the baseline's
    best = max(rows, key=lambda r: (r["val_macro_f1"], "features" not in r, -abs(r["C"] - BASELINE_C)))
    base = next(r for r in rows if r["C"] == BASELINE_C and "features" not in r)
    test = {}
    for label, row in (("baseline", base), ("chosen_on_val", best)):  # test is read here only, once per C kept
        vectorizer, model = row["_fit"]
        probs = predict_proba(task, vectorizer, model, splits["test"][0])
        test[label] = classification_metrics(task, labels, splits["test"][1], probs, row["thresholds"])["macro_f1"]
    return {"dataset": name, "seed": seed, "grid": [{k: v for k, v in r.items() if k != "_fit"} for r in rows],
            "baseline_C": BASELINE_C, "chosen_C": best["C"], **({"chosen_features": best.get("features", "char")}
                                                                if len(features) > 1 else {}), "val_baseline": base["val_macro_f1"],
            "val_chosen": best["val_macro_f1"], "test_baseline": test["baseline"], "test_chosen": test["chosen_on_val"]}


def markdown(result: dict) -> str:
    grid, features = result["grid"], result.get("features", ["char"])
    cols = [(kind, c) for kind in features for c in grid]
    name = (lambda kind, c: f"val C={c:g}") if features == ["char"] else (lambda kind, c: f"val {kind} C={c:g}")
    what = "C" if features == ["char"] else "features and C"
    lines = [f"# The TF-IDF reference with {what} chosen on val", "",
             f"`{result['command']}` · {result['machine']['date']} · {result['machine']['cpu']}. Val macro-F1 per "
             f"{what} (thresholds tuned on val for each); test is scored only for the baseline's "
             f"{'C' if features == ['char'] else 'char features at C'} ({BASELINE_C:g}) and the {what} with the "
             "best val macro-F1.", "",
             "| dataset | seed | " + " | ".join(name(*col) for col in cols) + f" | chosen {what} | test, C=4 | "
             f"test, chosen {what} | change |",
             "|---|---|" + "---|" * len(cols) + "---|---|---|---|"]
    for r in result["runs"]:
        vals = {(row.get("features", "char"), row["C"]): row["val_macro_f1"] for row in r["grid"]}
        chosen = f"{r['chosen_C']:g}" if features == ["char"] else f"{r['chosen_features']} C={r['chosen_C']:g}"
        lines.append(f"| {r['dataset']} | {r['seed']} | " + " | ".join(f"{vals[col]:.4f}" for col in cols) +
                     f" | {chosen} | {r['test_baseline']:.4f} | {r['test_chosen']:.4f} | "
                     f"{r['test_chosen'] - r['test_baseline']:+.4f} |")
    if features != ["char"]:
        changes = [{(row.get("features", "char"), row["C"]): row["val_macro_f1"] for row in r["grid"]}
                   for r in result["runs"]]
        for kind in features[1:]:
            diffs = [v[(kind, BASELINE_C)] - v[("char", BASELINE_C)] for v in changes if (kind, BASELINE_C) in v]
            if diffs:
                lines += ["", f"Val change of {kind} against char at C={BASELINE_C:g}, per run: "
                          f"{', '.join(f'{d:+.4f}' for d in diffs)}; mean {sum(diffs) / len(diffs):+.4f}, "
                          f"largest {max(diffs):+.4f}."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--grid", nargs="+", type=float, default=list(GRID))
    ap.add_argument("--features", nargs="+", choices=list(FEATURES), default=["char"],
                    help="the features fitted, each at every C (default: the baseline's char n-grams only)")
    ap.add_argument("--out", default="bench/tfidf_c")
    args = ap.parse_args()
    if BASELINE_C not in args.grid:
        ap.error(f"--grid must include the baseline's C ({BASELINE_C:g}): the test change is measured against it")
    if "char" not in args.features:
        ap.error("--features must include char (the baseline's): the test change is measured against it")
    features = ["char"] + [f for f in args.features if f != "char"]
    result = {"command": "python -m bench.tfidf_c " + " ".join(sys.argv[1:]), "machine": machine(),
              "grid": args.grid, **({"features": features} if features != ["char"] else {}),
              "runs": [one_run(d, s, tuple(args.grid), tuple(features)) for d in args.datasets for s in args.seeds]}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
