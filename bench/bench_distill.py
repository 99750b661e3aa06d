"""Distillation benchmark (not a test): the SAME student (params.yaml's student and distill groups) trained
without KD and with each KD setting / method from the pipeline's teacher; best epoch and decision thresholds
chosen on val, test scored once per student; the "best KD student" is picked on val, never on test.
Sizes on disk; batch-1 latency of every student interleaved with the teacher in one process.

    nice -n 10 .venv/bin/python bench/bench_distill.py                 # the real run (models/teacher)
    .venv/bin/python bench/bench_distill.py --quick --out /tmp/bd      # smoke run: 600 train rows, 1 epoch

Writes <out>.json and <out>.md (default bench/distill_results) after every config, so a cut-short run
still leaves the rows it finished."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from banglacompress.config import load_params
from banglacompress.data import load_split, prepare_splits
from banglacompress.distill import KD_METHODS, OPTION_KEYS, train_student
from banglacompress.inference import TextClassifier
from banglacompress.measure import artifact_size, digest, measure_speed, wait_for
from banglacompress.models import count_params, load_model_dir
from banglacompress.scoring import agreement, macro_f1
from banglacompress.train import score_split

# name -> distill params on top of params.yaml's distill group (student params are never changed,
# except in the optional from_teacher row, which is outside the target's size budget by design).
# Each names only the options its method takes (KD_METHODS[method].options).
CONFIGS = {  # run in this order: the comparisons that matter most finish first
    "no_kd": {"method": "logit", "alpha": 0.0},
    "kd_v2": {"method": "logit", "alpha": 0.7, "temperature": 4.0},  # = method logit at the default alpha / T
    "multi_level": {"method": "multi_level", "alpha": 0.7, "temperature": 4.0, "hidden_weight": 0.3,
                    "attention_weight": 0.2},
    "hidden": {"method": "hidden", "alpha": 0.7, "temperature": 4.0, "hidden_weight": 0.3},
    "attention": {"method": "attention", "alpha": 0.7, "temperature": 4.0, "attention_weight": 0.2},
    # the default logit KD on the train split plus the pretraining corpus's unlabelled texts (distill.transfer)
    "kd_corpus": {"method": "logit", "alpha": 0.7, "temperature": 4.0, "transfer": "corpus"},
    # the same with soft targets half from the TF-IDF baseline (distill.tfidf_weight)
    "kd_corpus_tfidf": {"method": "logit", "alpha": 0.7, "temperature": 4.0, "transfer": "corpus", "tfidf_weight": 0.5},
    "kd_v1": {"method": "logit", "alpha": 0.5, "temperature": 4.0},
    "kd_v3": {"method": "logit", "alpha": 0.2, "temperature": 2.0},
}
ALIASES = {"logit": "kd_v2"}  # the logit method at default settings is exactly kd_v2: one run, two names
OPTIONAL = {"from_teacher_logit": ({"method": "logit", "alpha": 0.7, "temperature": 4.0},
                                   {"model": "from_teacher", "from_teacher_layers": None})}
TARGET_F1_RATIO, TARGET_PARAM_RATIO = 0.97, 0.25
QUICK_TRAIN_ROWS = 600


def distill_params(base: dict, config: dict) -> dict:
    """params.yaml's distill group with one config on top. Method options of the base group that the
    config's method does not take are nulled (train_student rejects a set option the method ignores);
    the ones it takes keep params.yaml's value unless the config sets them."""
    method = config.get("method", base["method"])
    not_taken = {k: None for k in OPTION_KEYS if k not in KD_METHODS[method].options}
    return {**base, **not_taken, **config}


def prepared_dir(requested: str, params: dict, work: Path, quick: bool) -> str:
    """data/prepared if the pipeline made it, else the prepare stage itself (data.prepare_splits) into the
    work directory. --quick: a copy whose train split keeps its first QUICK_TRAIN_ROWS rows (val and test
    whole), so the distill stage function trains on that subset."""
    source = Path(requested)
    if not (source / "meta.json").exists():
        source = work / "prepared"
        source.mkdir()
        prepare_splits(params["data"], params["seed"], source)
        print(f"[bench] {requested} absent: prepared splits in {source}", file=sys.stderr)
    if not quick:
        return str(source)
    trimmed = work / "prepared_quick"
    shutil.copytree(source, trimmed)
    train = pd.read_csv(source / "train.csv", encoding="utf-8", dtype=str, keep_default_na=False)
    train.head(QUICK_TRAIN_ROWS).to_csv(trimmed / "train.csv", index=False, encoding="utf-8")
    return str(trimmed)


def train_one(name: str, kd_cfg: dict, student_cfg: dict, ctx: dict, seed: int, out_dir: Path) -> tuple[dict, Path]:
    """One student through the distill stage's own function (distill.train_student): teacher check, teacher
    logits, build, distil (or not), best epoch and thresholds on val, save. Returns its row and directory."""
    path = out_dir / name
    start = time.perf_counter()
    metrics = train_student(kd_cfg, student_cfg, prepared=ctx["prepared"], teacher_dir=ctx["teacher_dir"],
                            out_dir=path, seed=seed, max_length=ctx["max_length"], desc=name)
    seconds = time.perf_counter() - start
    ctx.setdefault("teacher_check", {k: metrics[k] for k in ("teacher_val_macro_f1", "majority_val_macro_f1")})
    skip = {"teacher_val_macro_f1", "majority_val_macro_f1", "val_macro_f1_tuned", "params", "nonzero_params",
            "non_embedding_params"}  # counted again on the reloaded model in score()
    row = {"name": name, **{k: v for k, v in metrics.items() if k not in skip},
           "val_macro_f1": metrics["val_macro_f1_tuned"], "train_seconds": seconds,
           "seconds_per_epoch": seconds / max(1, metrics["epochs_run"])}
    return row, path


def score(row: dict, path: Path, ctx: dict) -> None:
    """Test metrics (val-tuned thresholds), agreement with the teacher, params and size; the test
    predictions are kept (ctx["preds"]) for the paired bootstrap."""
    model, tok, info = load_model_dir(path)
    metrics, pred, _ = score_split(model, tok, info, ctx["test_texts"], ctx["y_test"], ctx["max_length"],
                                   desc="test")
    ctx["preds"].setdefault(row["name"], pred)  # the first seed's predictions
    row.update(test_macro_f1=metrics["macro_f1"], test_accuracy=metrics.get("accuracy"),
               agreement_with_teacher=agreement(ctx["meta"]["task"], ctx["teacher_pred"], pred),
               **count_params(model), **artifact_size(path))


SEED_KEYS = ("val_macro_f1", "test_macro_f1", "agreement_with_teacher", "best_epoch")


def over_seeds(runs: list[dict], seeds: list[int]) -> dict:
    """One row per config: the mean over seeds of the scores (per-seed values and the spread kept); sizes
    and latency come from the first seed's model (same architecture for all seeds)."""
    row = dict(runs[0])
    if len(runs) > 1:
        for k in SEED_KEYS:
            values = [r[k] for r in runs]
            row.update({k: float(np.mean(values)), f"{k}_per_seed": values, f"{k}_std": float(np.std(values, ddof=1))})
    row["seeds"] = list(seeds)
    return row


def add_teacher_fractions(rows: dict) -> None:
    """Every row's scores, parameter counts and bytes as a fraction of the teacher's."""
    ref = rows["teacher"]
    for row in rows.values():
        row["f1_vs_teacher"] = row["test_macro_f1"] / ref["test_macro_f1"]
        row["val_f1_vs_teacher"] = row["val_macro_f1"] / ref["val_macro_f1"]
        row["non_embedding_vs_teacher"] = row["non_embedding_params"] / ref["non_embedding_params"]
        row["params_vs_teacher"] = row["params"] / ref["params"]
        row["size_vs_teacher"] = row["size_bytes"] / ref["size_bytes"]


def paired_bootstrap(task: str, y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, rounds: int = 1000,
                     seed: int = 0) -> dict:
    """Test macro-F1 of a minus b on the same resampled test rows: the 95% interval says whether a gap
    of a few thousandths on ~1.6k rows is more than sampling noise."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        i = rng.integers(0, len(y), len(y))
        diffs.append(macro_f1(task, y[i], pred_a[i]) - macro_f1(task, y[i], pred_b[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": macro_f1(task, y, pred_a) - macro_f1(task, y, pred_b), "ci95": [float(lo), float(hi)],
            "share_a_better": float(np.mean(np.array(diffs) > 0))}


def verdict(rows: dict, ctx: dict | None = None) -> dict:
    """Best KD student picked on VAL macro-F1 among the students inside the size budget; then its test numbers."""
    kd = {n: r for n, r in rows.items() if n not in ("teacher", "no_kd") and r.get("alias_of") is None
          and r.get("non_embedding_vs_teacher", 1) <= TARGET_PARAM_RATIO and "test_macro_f1" in r}
    if not kd or "no_kd" not in rows:
        return {}
    best = max(kd, key=lambda n: rows[n]["val_macro_f1"])
    r, base = rows[best], rows["no_kd"]
    return {"best_kd_student_by_val": best, "test_macro_f1": r["test_macro_f1"], "f1_vs_teacher": r["f1_vs_teacher"],
            "non_embedding_vs_teacher": r["non_embedding_vs_teacher"],
            "meets_f1_target": r["f1_vs_teacher"] >= TARGET_F1_RATIO,
            "meets_size_target": r["non_embedding_vs_teacher"] <= TARGET_PARAM_RATIO,
            "beats_no_kd_on_test": r["test_macro_f1"] > base["test_macro_f1"],
            "test_gain_over_no_kd": r["test_macro_f1"] - base["test_macro_f1"],
            "val_gain_over_no_kd": r["val_macro_f1"] - base["val_macro_f1"],
            **({} if ctx is None else _bootstraps(best, ctx))}


def _bootstraps(best: str, ctx: dict) -> dict:
    """Paired bootstrap of the best student against no-KD and the teacher. Rows carried over by --merge have
    no test predictions here: their intervals come from the run that trained them (same teacher, same split)."""
    preds, task, y = ctx["preds"], ctx["meta"]["task"], ctx["y_test"]
    if best in preds and "no_kd" in preds:
        return {"bootstrap_best_minus_no_kd": paired_bootstrap(task, y, preds[best], preds["no_kd"]),
                "bootstrap_best_minus_teacher": paired_bootstrap(task, y, preds[best], preds["teacher"])}
    earlier = ctx.get("earlier_verdict") or {}
    if earlier.get("best_kd_student_by_val") == best:
        return {k: v for k, v in earlier.items() if k.startswith("bootstrap_")}
    return {}


def write(out: dict, out_path: Path) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    out_path.with_suffix(".md").write_text(markdown(out), encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default="bench/distill_results", help="writes OUT.json and OUT.md")
    ap.add_argument("--only", nargs="*", help=f"config names to run (default: all of {list(CONFIGS)})")
    ap.add_argument("--with-from-teacher", action="store_true",
                    help="also a from_teacher student (half the teacher's blocks; outside the 1/4 budget)")
    ap.add_argument("--quick", action="store_true", help="600 train rows, 1 epoch, 50 latency texts: a smoke run")
    ap.add_argument("--latency-samples", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="*",
                    help="train every config once per seed and report the mean (default: params.yaml's seed)")
    ap.add_argument("--wait", type=float, default=3600, help="seconds to wait for the teacher to appear")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows already in OUT.json (same teacher digest required) and add these configs; "
                         "carried-over rows keep their scores but get no latency (their models are gone)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    params = load_params()  # params.yaml of the working directory, as the stage scripts read it
    wait_for(Path(args.teacher) / "inference.json", args.wait)
    work = Path(tempfile.mkdtemp(prefix="bench_distill_"))
    try:
        run(args, params, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # model copies: the results are in the json / md


def run(args, params: dict, work: Path) -> None:
    base, student_cfg = dict(params["distill"]), dict(params["student"])
    seed, max_length = params["seed"], params["data"]["max_length"]
    seeds = args.seeds or [seed]
    teacher_dir = work / "teacher"  # a private copy: the pipeline may retrain models/teacher meanwhile
    shutil.copytree(args.teacher, teacher_dir)
    prepared = prepared_dir(args.prepared, params, work, args.quick)

    train_texts, _, meta = load_split(prepared, "train")
    val_texts, y_val, _ = load_split(prepared, "val")
    test_texts, y_test, _ = load_split(prepared, "test")
    configs = {k: v for k, v in CONFIGS.items() if not args.only or k in args.only}
    students = {k: dict(student_cfg) for k in configs}
    if args.with_from_teacher:
        for k, (kd, st) in OPTIONAL.items():
            configs[k], students[k] = kd, {**student_cfg, **st}
    if args.quick:
        configs = {k: {**v, "epochs": 1} for k, v in configs.items()}
        args.latency_samples = min(args.latency_samples, 50)

    teacher, teacher_tok, teacher_info = load_model_dir(teacher_dir)
    teacher_val, _, _ = score_split(teacher, teacher_tok, teacher_info, val_texts, y_val, max_length,
                                    desc="teacher val")
    teacher_metrics, teacher_pred, _ = score_split(teacher, teacher_tok, teacher_info, test_texts, y_test, max_length,
                                                   desc="teacher test")
    ctx = dict(meta=meta, max_length=max_length, prepared=prepared, teacher_dir=teacher_dir, test_texts=test_texts,
               y_test=y_test, teacher_pred=teacher_pred, preds={"teacher": teacher_pred})
    rows = {"teacher": {"name": "teacher", "method": "–", "val_macro_f1": teacher_val["macro_f1"],
                        "test_macro_f1": teacher_metrics["macro_f1"], "test_accuracy": teacher_metrics.get("accuracy"),
                        "agreement_with_teacher": 1.0, **count_params(teacher), **artifact_size(teacher_dir)}}
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "cpu_count": os.cpu_count()},
           "teacher": args.teacher, "teacher_digest": digest(teacher_dir), "prepared": prepared, "quick": args.quick,
           "train_rows": len(train_texts), "max_length": max_length, "seed": seed, "seeds": seeds,
           "teacher_check": None, "base_distill_params": base, "student_params": student_cfg, "configs": configs,
           "distill_params": {k: distill_params(base, v) for k, v in configs.items()}, "aliases": ALIASES,
           "rows": rows, "latency_threads": args.threads, "latency_samples": None}
    paths = {"teacher": teacher_dir}
    out_path = Path(args.out)
    if args.merge and out_path.with_suffix(".json").exists():
        previous = json.loads(out_path.with_suffix(".json").read_text(encoding="utf-8"))
        if previous["teacher_digest"] != out["teacher_digest"]:
            sys.exit(f"--merge: {out_path}.json was made with teacher {previous['teacher_digest']}, not "
                     f"{out['teacher_digest']}; rerun every config instead")
        for name, row in previous["rows"].items():
            if name not in rows and name not in configs:
                rows[name] = {k: v for k, v in row.items() if "latency" not in k and "speedup" not in k
                              and "throughput" not in k}
        out["merged_from_earlier_run"] = sorted(set(previous["rows"]) - set(configs) - {"teacher"})
        ctx["earlier_verdict"] = previous.get("verdict")
    for name, cfg in configs.items():
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        runs = []
        for s in seeds:  # same split, same teacher; the seed sets the student's init, dropout and batch order
            row, path = train_one(name, out["distill_params"][name], students[name], ctx, s, work / f"seed{s}")
            score(row, path, ctx)
            runs.append(row)
            paths.setdefault(name, path)
        rows[name] = over_seeds(runs, seeds)
        for alias, target in ALIASES.items():
            if target == name:
                rows[alias] = {**rows[name], "name": alias, "alias_of": name}
        add_teacher_fractions(rows)
        out["teacher_check"] = ctx.get("teacher_check")  # distill.train_student's check (teacher vs majority)
        out["verdict"] = verdict(rows, ctx)
        write(out, out_path)  # incremental: every finished student is on disk
        print(f"[bench] {name}: val {rows[name]['val_macro_f1']:.4f} test {rows[name]['test_macro_f1']:.4f} "
              f"({rows[name]['train_seconds']:.0f}s)", file=sys.stderr, flush=True)

    # Latency last, all models interleaved on the same real test texts (batch 1, forward only).
    rng = np.random.default_rng(seed)
    sample = [test_texts[i] for i in rng.choice(len(test_texts), min(args.latency_samples, len(test_texts)),
                                                replace=False)]
    models = {n: TextClassifier(*load_model_dir(p), max_length) for n, p in paths.items()}
    out["load_average_before_latency"] = os.getloadavg()
    for threads in args.threads:
        speed = measure_speed(models, sample, threads=threads, batch_size=32)
        for n, s in speed.items():
            for key in ("latency_ms_p50", "latency_ms_p95", "throughput_per_s"):
                rows[n][f"{key}_t{threads}"] = s[key]
            rows[n][f"speedup_t{threads}"] = speed["teacher"]["latency_ms_p50"] / s["latency_ms_p50"]
    for alias, target in ALIASES.items():
        if alias in rows:
            rows[alias] = {**rows[target], "name": alias, "alias_of": target}
    out["load_average_after_latency"] = os.getloadavg()
    out["latency_samples"] = len(sample)
    write(out, out_path)
    print(markdown(out))


def _cell(c, v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if ("f1" in c or "agreement" in c or "vs_teacher" in c) else f"{v:.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def markdown(out: dict) -> str:
    spread = ["val_macro_f1_std", "test_macro_f1_std"] if len(out.get("seeds") or [1]) > 1 else []
    cols = ["name", "method", "alpha", "temperature", "val_macro_f1", "test_macro_f1", *spread, "f1_vs_teacher",
            "agreement_with_teacher", "params", "non_embedding_params", "non_embedding_vs_teacher", "size_bytes",
            "best_epoch", "epochs_run", "seconds_per_epoch"]
    threads = out["latency_threads"]
    cols += [f"latency_ms_p50_t{t}" for t in threads] + [f"speedup_t{t}" for t in threads]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in out["rows"].values():
        lines.append("| " + " | ".join(_cell(c, row.get(c)) for c in cols) + " |")
    v = out.get("verdict") or {}
    attention_losses = " / ".join(sorted({str(r["attention_loss"]).upper() for r in out["rows"].values()
                                          if r.get("attention_loss")})) or "KL"
    notes = ["", f"Teacher: `{out['teacher']}` (digest {out['teacher_digest']}); splits: `{out['prepared']}` "
             f"({out['train_rows']} train rows); max_length {out['max_length']}; seeds {out.get('seeds')} "
             "(several: every score is the mean over seeds, `_std` its spread); "
             f"quick run: {out['quick']}.",
             "Every student: params.yaml's `student` group (same architecture, same seed(s)) and `distill` group "
             "(epochs, lr, patience); only the KD settings differ. Each is trained by the distill stage's own "
             "function (`banglacompress.distill.train_student`, the row's distill params: `distill_params` in the "
             "json), so train time includes its teacher pass over the train split. Best epoch and thresholds "
             "chosen on val; test scored once per student. `logit` is the same run as `kd_v2` (method logit at "
             "alpha 0.7, T 4).",
             *([f"Rows {', '.join(out['merged_from_earlier_run'])} come from an earlier run with the same teacher "
                "and splits (`--merge`); their models were not kept, so they have no latency cells. Every student "
                "has the same architecture, so the latency of the students timed here applies to them."]
               if out.get("merged_from_earlier_run") else []),
             "Loss: (1 - alpha) * hard + alpha * T^2 * KL(soft logits) + hidden_weight * hidden MSE (projected, "
             "padding masked) + attention_weight * attention "
             f"{attention_losses} (padding masked, heads averaged; each row's `attention_loss`).",
             ]
    if v:
        notes.append(f"Best KD student picked on **val**: `{v['best_kd_student_by_val']}`: test macro-F1 "
                     f"{v['test_macro_f1']:.4f} = {v['f1_vs_teacher']:.1%} of the teacher (target ≥ "
                     f"{TARGET_F1_RATIO:.0%}: {'met' if v['meets_f1_target'] else 'NOT met'}), at "
                     f"{v['non_embedding_vs_teacher']:.1%} of the teacher's non-embedding params (target ≤ "
                     f"{TARGET_PARAM_RATIO:.0%}: {'met' if v['meets_size_target'] else 'NOT met'}); vs no-KD: "
                     f"{v['test_gain_over_no_kd']:+.4f} test, {v['val_gain_over_no_kd']:+.4f} val "
                     f"({'beats' if v['beats_no_kd_on_test'] else 'does NOT beat'} no-KD on test).")
        for key, label in (("bootstrap_best_minus_no_kd", "no-KD"), ("bootstrap_best_minus_teacher", "the teacher")):
            if key in v:
                b = v[key]
                noise = " (includes 0: not a measurable difference)" if b["ci95"][0] <= 0 <= b["ci95"][1] else ""
                notes.append(f"Paired bootstrap on the test rows (1000 resamples; first seed), best KD minus {label}: "
                             f"{b['diff']:+.4f}, 95% interval [{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}]{noise}.")
    if out.get("latency_samples"):
        notes.append(f"Latency: batch 1, forward only, {out['latency_samples']} test texts, all models interleaved "
                     f"in one process, random order per text, threads {out['latency_threads']}; p50 ms. Machine: "
                     f"{out['machine']['platform']}, {out['machine']['cpu_count']} CPUs, torch "
                     f"{out['machine']['torch']}; shared with other jobs (load average before / after: "
                     f"{', '.join(f'{x:.1f}' for x in out['load_average_before_latency'])} / "
                     f"{', '.join(f'{x:.1f}' for x in out['load_average_after_latency'])}), so absolute times are "
                     "noisy; ratios come from interleaved timings.")
    return "\n".join(lines + notes) + "\n"


if __name__ == "__main__":
    main()
