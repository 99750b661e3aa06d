"""What the teacher knows beyond a bag of n-grams (not a test). On finished `make bench` runs, each on its own
split, four models are scored:

  tfidf_char        the baseline: TF-IDF over char_wb 2-5-grams + logistic regression (banglacompress.baseline)
  tfidf_subword     the same regression on TF-IDF over the teacher tokenizer's subword 1-2-grams
  teacher           the run's own teacher (its metrics/train_teacher.json and bench_run.json)
  teacher_residual  stacking: the teacher fine-tuned again (the run's teacher params, from the run's pretrained
                    encoder) with tfidf_char's logits added to its own, so the transformer learns only what the
                    regression gets wrong. On train rows the added logits are out-of-fold (5 folds: the
                    regression's errors on text it has not seen); on val and test they come from the regression fit
                    on the whole train split.

If teacher_residual beats tfidf_char, the encoder knows something the char n-grams do not; if it only ties,
stacking the two cannot reach the baseline + 0.01 (issue 14's goal).

Val macro-F1 uses thresholds tuned on val in every row (as the teacher's val_macro_f1_tuned does); test is
scored once with them. Changes against tfidf_char are paired within each run.

    python -m bench.bench_stacking --runs bench/work/cyberbully/seed4{2,3,4} bench/work/toxic/seed42 \\
        --out bench/stacking

Writes <out>.json and <out>.md (default bench/stacking)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold
from transformers import AutoTokenizer

from banglacompress.baseline import fit_tfidf_lr, predict_proba
from banglacompress.config import load_params
from banglacompress.data import Encoded, class_weights, load_split
from banglacompress.models import build_model
from banglacompress.scoring import decide, logits_of, macro_f1, probabilities, tune_thresholds
from banglacompress.train import configure_torch, fit, fit_options, label_loss, predict_logits, seed_everything

from .run_bench import RUN_FILE, machine, outside_noise, stats

ROWS = ("tfidf_char", "tfidf_subword", "teacher", "teacher_residual")
FOLDS = 5


def scored(task: str, y_val, val_probs, y_test, test_probs) -> dict:
    thresholds = tune_thresholds(task, y_val, val_probs)
    return {"val_macro_f1": macro_f1(task, y_val, decide(task, val_probs, thresholds)),
            "test_macro_f1": macro_f1(task, y_test, decide(task, test_probs, thresholds))}


def subword_tfidf(tokenizer) -> TfidfVectorizer:
    def grams(text: str) -> list[str]:
        pieces = tokenizer.tokenize(text)
        return pieces + [f"{a} {b}" for a, b in zip(pieces, pieces[1:])]
    return TfidfVectorizer(analyzer=grams, min_df=2, sublinear_tf=True)


def out_of_fold_logits(task: str, texts: list[str], y: np.ndarray, seed: int) -> np.ndarray:
    """tfidf_char's logits on each train row from a regression fit on the other folds."""
    out = None
    for fit_rows, held in KFold(FOLDS, shuffle=True, random_state=seed).split(texts):
        vectorizer, model = fit_tfidf_lr(task, [texts[i] for i in fit_rows], y[fit_rows], seed=seed)
        logits = logits_of(task, predict_proba(task, vectorizer, model, [texts[i] for i in held]))
        out = np.zeros((len(texts), logits.shape[1]), dtype=np.float32) if out is None else out
        out[held] = logits
    return out


class PlusOffset(torch.nn.Module):
    """A classifier whose logits get a fixed offset per text. The offsets are keyed by token ids because
    train.fit's validation pass calls the model with input_ids and attention_mask only."""

    def __init__(self, model, offsets: dict[tuple, torch.Tensor]):
        super().__init__()
        self.model, self.offsets = model, offsets

    def forward(self, input_ids, attention_mask, **_):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        keys = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]
        offsets = torch.stack([self.offsets[k] for k in keys]).to(logits.device, logits.dtype)
        return SimpleNamespace(logits=logits + offsets)


def offset_table(keys, task: str, full_lr: tuple, train: list[str], train_offsets: np.ndarray,
                 others: list[str]) -> dict[tuple, torch.Tensor]:
    """Token ids -> the logits added: the full regression's for `others` (val, test), the out-of-fold ones for
    train rows, written last so that a train text met again elsewhere keeps its out-of-fold logits."""
    table = {k: torch.from_numpy(v.astype(np.float32))
             for k, v in zip(keys(others), logits_of(task, predict_proba(task, *full_lr, others)))}
    table.update({k: torch.from_numpy(v) for k, v in zip(keys(train), train_offsets)})
    return table


def residual_teacher(run: Path, params: dict, splits: dict, train_offsets: np.ndarray, full_lr) -> dict:
    """The run's teacher fine-tune, on top of the regression's logits (see the module docstring)."""
    (train, y_train), (val, y_val), (test, y_test) = splits["train"], splits["val"], splits["test"]
    task, max_length, seed = splits["task"], params["data"]["max_length"], params["seed"]
    cfg = {**params["teacher"], "model": str(run / "models" / "pretrained")}
    seed_everything(seed)
    model, tokenizer = build_model("teacher", cfg, splits["meta"], train, max_length)
    keys = lambda texts: [tuple(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    stacked = PlusOffset(model, offset_table(keys, task, full_lr, train, train_offsets, val + test))
    weights = class_weights(y_train, task) if cfg.get("class_weights", True) else None
    start = time.perf_counter()
    result = fit(stacked, Encoded(tokenizer, train, y_train, max_length), Encoded(tokenizer, val, None, max_length),
                 y_val, task=task, loss_fn=label_loss(task, weights, cfg.get("loss", "auto")), seed=seed,
                 desc=f"{run.name} teacher_residual", **fit_options(cfg))
    probs = {name: probabilities(task, predict_logits(stacked, Encoded(tokenizer, texts, None, max_length)))
             for name, texts in (("val", val), ("test", test))}
    return {**scored(task, y_val, probs["val"], y_test, probs["test"]), "best_epoch": result["best_epoch"],
            "seconds": round(time.perf_counter() - start, 1)}


def load_run(run: Path) -> tuple[dict, dict, dict]:
    """A finished run's params (torch set to its threads), its splits, and the fields every row of it carries."""
    params = load_params(run / "params.yaml")
    configure_torch(params["threads"])
    prepared = run / "data" / "prepared"
    (train, y_train, meta), (val, y_val, _), (test, y_test, _) = (load_split(prepared, s) for s in ("train", "val", "test"))
    splits = {"train": (train, y_train), "val": (val, y_val), "test": (test, y_test), "task": meta["task"], "meta": meta}
    return params, splits, {"dataset": run.parent.name, "run": str(run), "seed": params["seed"]}


def parse_runs(doc: str, default_out: str, needed: tuple[str, ...]) -> tuple[list[Path], str]:
    """--runs and --out; stops with one line on the first run that lacks one of `needed` (paths in a run)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="finished make-bench runs (bench/work/<dataset>/seed<N>)")
    ap.add_argument("--out", default=default_out)
    args = ap.parse_args()
    runs = [Path(r) for r in args.runs]
    for run in runs:
        missing = [p for p in needed if not (run / p).exists()]
        if missing:
            sys.exit(f"error: {run} is not a finished make-bench run (missing {', '.join(missing)}): run make bench")
    return runs, args.out


def run_rows(run: Path) -> list[dict]:
    params, splits, base = load_run(run)
    (train, y_train), (val, y_val), (test, y_test) = splits["train"], splits["val"], splits["test"]
    task, seed = splits["task"], params["seed"]
    rows = []

    def regression(name: str, vectorizer) -> tuple:
        start = time.perf_counter()
        fitted = fit_tfidf_lr(task, train, y_train, seed=seed, vectorizer=vectorizer)
        rows.append({**base, "row": name, **scored(task, y_val, predict_proba(task, *fitted, val), y_test,
                                                    predict_proba(task, *fitted, test)),
                     "features": len(fitted[0].vocabulary_), "seconds": round(time.perf_counter() - start, 1)})
        print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
        return fitted

    full_lr = regression("tfidf_char", None)
    regression("tfidf_subword", subword_tfidf(AutoTokenizer.from_pretrained(run / "models" / "pretrained")))
    teacher = json.loads((run / "metrics" / "train_teacher.json").read_text(encoding="utf-8"))
    record = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
    rows.append({**base, "row": "teacher", "val_macro_f1": teacher["val_macro_f1_tuned"],
                 "test_macro_f1": record["result"]["rows"]["teacher"]["macro_f1"], "from_run": True})
    rows.append({**base, "row": "teacher_residual",
                 **residual_teacher(run, params, splits, out_of_fold_logits(task, train, y_train, seed), full_lr)})
    print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def summarize(rows: list[dict], names: tuple = ROWS, ref: str = "tfidf_char") -> dict:
    """Per dataset and row: mean ± std over runs, and the change against `ref` paired within each run."""
    out = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        base = {r["run"]: r for r in mine if r["row"] == ref}
        out[dataset] = {}
        for name in names:
            got = [r for r in mine if r["row"] == name]
            if not got:
                continue
            entry = {"runs": len(got)}
            for split in ("val", "test"):
                entry[split] = stats([r[f"{split}_macro_f1"] for r in got])
                if name != ref:
                    changes = [r[f"{split}_macro_f1"] - base[r["run"]][f"{split}_macro_f1"] for r in got]
                    entry[f"{split}_change"] = {**stats(changes), "outside_noise": outside_noise(changes)}
            out[dataset][name] = entry
    return out


def cell(s: dict, sign: bool = False) -> str:
    fmt = "{:+.4f}" if sign else "{:.4f}"
    return fmt.format(s["mean"]) + (f" ± {s['std']:.4f}" if len(s["values"]) > 1 else "")


def render(result: dict, title: str = "What the teacher knows beyond a bag of n-grams",
           about: str = "`bench/bench_stacking.py` for the four rows", ref: str = "tfidf_char") -> str:
    lines = [f"# {title}", "",
             f"`{result['command']}` ({result['machine']['cpu']}, {result['machine']['date']}). "
             f"See the docstring of {about}. Val: thresholds tuned on val in "
             "every row; test: scored once with them. Mean ± std (n − 1) over the runs; a change is paired "
             f"against `{ref}` within each run (per run in brackets), and is a result only when every run "
             "agrees on its sign and its mean is more than 2 std from zero.", ""]
    for dataset, table in result["summary"].items():
        lines += [f"## {dataset}", "", "| row | runs | val macro-F1 | val change | test macro-F1 | test change |",
                  "|---|---:|---:|---|---:|---|"]
        for name, e in table.items():
            change = {s: (f"{cell(e[f'{s}_change'], True)} ("
                          + ", ".join(f"{v:+.4f}" for v in e[f"{s}_change"]["values"]) + ")"
                          + (", outside noise" if e[f"{s}_change"]["outside_noise"] else ""))
                      if f"{s}_change" in e else "–" for s in ("val", "test")}
            lines.append(f"| {name} | {e['runs']} | {cell(e['val'])} | {change['val']} | {cell(e['test'])} | "
                         f"{change['test']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    runs, out = parse_runs(__doc__, "bench/stacking",
                           ("params.yaml", RUN_FILE, "metrics/train_teacher.json", "models/pretrained", "data/prepared"))
    rows = [row for run in runs for row in run_rows(run)]
    result = {"command": "python -m bench.bench_stacking " + " ".join(sys.argv[1:]), "machine": machine(),
              "folds": FOLDS, "rows": rows}
    result["summary"] = summarize(rows)
    Path(f"{out}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    Path(f"{out}.md").write_text(render(result), encoding="utf-8")
    print(render(result))


if __name__ == "__main__":
    main()
