"""Where the teacher loses to TF-IDF, label by label, on validation (not a test; test is never read here).

For each seed of a make-bench dataset directory: the run's teacher (models/teacher) and final model (models/final,
any format load_artifact reads) with their own thresholds (tuned on val by their stages), and TF-IDF + LR fitted
on the run's train split with thresholds tuned on the same val split (banglacompress.baseline), and the mean of the
teacher's and TF-IDF's probabilities (what lexical features could add to this encoder; not a shipped model). Per
label and for macro-F1: F1 of each, and its change against TF-IDF, paired within each seed. Thresholds are
chosen on the rows they are scored on for all three alike, so the val numbers are optimistic for each in the
same way; they say where the gap is, not how large it will be on test (bench/RESULTS.md says that).

    .venv/bin/python -m bench.per_label --work bench/work/cyberbully --seeds 42 43 44 --out bench/per_label_cyberbully

Writes <out>.json and <out>.md."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from banglacompress.artifact import load_artifact
from banglacompress.baseline import fit_tfidf_lr, predict_proba
from banglacompress.data import load_split
from banglacompress.inference import TextClassifier
from banglacompress.scoring import decide, tune_thresholds
from banglacompress.train import configure_torch

from .run_bench import machine, outside_noise, stats

MODELS = ("teacher", "final")
MACRO = "macro-F1"
# ... and the mean of the teacher's and TF-IDF's probabilities (thresholds tuned on val like the others): how much
# the two models' errors differ, i.e. what lexical features could add to this encoder. Not a shipped model.
COLUMNS = (*MODELS, "average")


def label_f1(task: str, y: np.ndarray, decisions: np.ndarray) -> list[float]:
    """F1 per label (binary: per class, negative first; multi-class: per class): their mean is macro_f1's."""
    if task == "multiclass":
        return f1_score(y, decisions, average=None, labels=list(range(int(y.max()) + 1)), zero_division=0).tolist()
    if task == "binary":  # one (n, 1) column
        return f1_score(np.ravel(y), np.ravel(decisions), average=None, labels=[0, 1], zero_division=0).tolist()
    return f1_score(y, decisions, average=None, zero_division=0).tolist()


def seed_rows(run: Path, seed: int) -> dict:
    """Per-label val F1 of TF-IDF and of the run's teacher and final model."""
    prepared = run / "data" / "prepared"
    train, y_train, meta = load_split(prepared, "train")
    val, y_val, _ = load_split(prepared, "val")
    task = meta["task"]
    vectorizer, model = fit_tfidf_lr(task, train, y_train, seed=seed)
    probs = predict_proba(task, vectorizer, model, val)
    tuned = lambda p: label_f1(task, y_val, decide(task, p, tune_thresholds(task, y_val, p)))  # noqa: E731
    scores = {"tfidf": tuned(probs)}
    for name in MODELS:
        model_probs, decisions = TextClassifier(*load_artifact(run / "models" / name))(val)
        scores[name] = label_f1(task, y_val, decisions)
        if name == "teacher":
            scores["average"] = tuned((model_probs + probs) / 2)
    labels = [f"not {meta['label_names'][0]}", meta["label_names"][0]] if task == "binary" else meta["label_names"]
    return {"seed": seed, "task": task, "labels": labels, "val_rows": len(val),
            "positives": np.asarray(y_val).sum(axis=0).astype(int).tolist() if task == "multilabel" else None,
            "f1": scores}


def summarize(rows: list[dict]) -> dict:
    """Per label and model, and for macro-F1 (the mean over labels): F1 over the seeds, and the change against
    TF-IDF paired within each seed."""
    per_seed = {r["seed"]: {m: [*f1, float(np.mean(f1))] for m, f1 in r["f1"].items()} for r in rows}
    out = {}
    for i, name in enumerate([*rows[0]["labels"], MACRO]):
        entry = {m: stats([per_seed[r["seed"]][m][i] for r in rows]) for m in ("tfidf", *COLUMNS)}
        for m in COLUMNS:
            entry[f"{m}_minus_tfidf"] = stats([per_seed[r["seed"]][m][i] - per_seed[r["seed"]]["tfidf"][i]
                                               for r in rows])
        out[name] = entry
    return out


def render(result: dict) -> str:
    header, summary = result["header"], result["summary"]
    rows = result["rows"]
    lines = [f"# Per-label validation F1: teacher and final model against TF-IDF ({header['work']})", "",
             f"Command: `{header['command']}`; {header['machine']['cpu']}; seeds {[r['seed'] for r in rows]}. "
             "Validation only (test is not read). Each model's thresholds are tuned on this val split, so every "
             "number is optimistic in the same way. Mean ± std (n − 1) over seeds; the changes are paired within "
             "each seed and called outside seed noise when every seed agrees in sign and the mean is more than "
             "2 std from zero.", "",
             "The last two columns average the teacher's and TF-IDF's probabilities: not a model this repo ships, "
             "but a measure of how far the two models' errors differ.", "",
             "| label | val positives (first seed) | TF-IDF | teacher | teacher − TF-IDF | final | final − TF-IDF | "
             "average | average − TF-IDF |",
             "|---|---:|---:|---:|---|---:|---|---:|---|"]

    def change(s: dict) -> str:
        mark = " (outside noise)" if outside_noise(s["values"]) else ""
        return f"{s['mean']:+.4f} ± {s['std']:.4f}{mark}"

    for i, name in enumerate([*rows[0]["labels"], MACRO]):
        s = summary[name]
        positives = rows[0]["positives"][i] if rows[0]["positives"] and name != MACRO else "–"
        lines.append(f"| {'**' + name + '**' if name == MACRO else name} | {positives} | {s['tfidf']['mean']:.4f} | "
                     + " | ".join(f"{s[m]['mean']:.4f} | {change(s[m + '_minus_tfidf'])}" for m in COLUMNS) + " |")
    below = [n for n in rows[0]["labels"] if all(v < 0 for v in summary[n]["teacher_minus_tfidf"]["values"])]
    lines += ["", f"The teacher is below TF-IDF on {len(below)} of {len(rows[0]['labels'])} labels in every seed"
              + (f": {', '.join(below)}." if below else ".")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="a make-bench dataset directory that holds seed<N>/")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runs = [(seed, Path(args.work) / f"seed{seed}") for seed in args.seeds]
    missing = [str(run) for _, run in runs
               if not all((run / p).exists() for p in ("data/prepared", "models/teacher", "models/final"))]
    if missing:
        sys.exit(f"error: {', '.join(missing)} lack data/prepared, models/teacher or models/final: run "
                 "`make bench` (or bench.run_bench --datasets ... --seeds ...) first")
    configure_torch(args.threads)
    rows = [seed_rows(run, seed) for seed, run in runs]
    result = {"header": {"command": "python -m bench.per_label " + " ".join(sys.argv[1:]), "machine": machine(),
                         "work": args.work},
              "rows": rows, "summary": summarize(rows)}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    Path(args.out + ".md").write_text(render(result), encoding="utf-8")
    print(render(result))


if __name__ == "__main__":
    main()
