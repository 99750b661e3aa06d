"""Fine-tuning learning rate of the pretrained teacher (not a test): the params.yaml teacher fine-tuned by
the train_teacher stage's own function from one pretrained encoder (default: the pipeline's
models/pretrained) at each --lrs value, chosen on val macro-F1 (thresholds tuned on val); test macro-F1
is scored once per model and only reported. Backs `teacher.lr`.

    .venv/bin/python -m bench.bench_teacher_lr --lrs 0.0005 0.0002 0.0001     # after dvc repro pretrain
    # over the seeds of a `make bench` run: each seed's own split and pretrained encoder
    .venv/bin/python -m bench.bench_teacher_lr --lrs 0.0002 0.0001 --work bench/work/hatespeech --seeds 42 43 44

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
from .run_bench import machine, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lrs", nargs="+", type=float, help="the teacher.lr values to fine-tune at (required unless --render-only)")
    ap.add_argument("--pretrained", default="models/pretrained")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--work", default=None,
                    help="a make-bench dataset directory: with --seeds, <work>/seed<N>/models/pretrained and "
                         "<work>/seed<N>/data/prepared at seed N replace --pretrained / --prepared")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="with --work (default: params.yaml's seed)")
    ap.add_argument("--out", default="bench/teacher_lr")
    ap.add_argument("--render-only", action="store_true", help="rewrite OUT.md (and the summary) from OUT.json")
    args = ap.parse_args()
    if args.render_only:
        result = json.loads(Path(args.out + ".json").read_text(encoding="utf-8"))
        result.update(summarize(result["rows"], result["header"]["default_lr"]))
        Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        Path(args.out + ".md").write_text(render(result), encoding="utf-8")
        return print(render(result))
    if not args.lrs:
        sys.exit("error: give --lrs (the teacher.lr values to fine-tune at)")
    params = load_params()
    configure_torch(params["threads"])
    if args.seeds and not args.work:
        sys.exit("error: --seeds needs --work (the make-bench directory that holds seed<N>/)")
    runs = ([(seed, f"{args.work}/seed{seed}/models/pretrained", f"{args.work}/seed{seed}/data/prepared")
             for seed in args.seeds] if args.work and args.seeds else [(params["seed"], args.pretrained, args.prepared)])
    for _, pretrained, prepared in runs:
        if not Path(pretrained).is_dir() or not Path(prepared).is_dir():
            sys.exit(f"error: {pretrained} or {prepared} is missing: run `dvc repro pretrain` (or make bench) first")
    teacher = {**params["teacher"], "cv_folds": 0}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_teacher_lr_") as tmp:
        for seed, pretrained, prepared in runs:
            test = load_split(prepared, "test")[:2]
            for lr in args.lrs:
                scores = fine_tune_and_score({**teacher, "model": pretrained, "lr": lr}, prepared,
                                             Path(tmp) / f"s{seed}_lr{lr}", seed, params["data"]["max_length"], test,
                                             desc=f"seed {seed} lr {lr}")
                scores["seconds"] = scores.pop("finetune_seconds")
                rows.append({"seed": seed, "lr": lr, **scores})
                print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
    header = {"command": "python -m bench.bench_teacher_lr " + " ".join(sys.argv[1:]), "machine": machine(),
              "runs": [{"seed": s, "pretrained": p, "prepared": d} for s, p, d in runs], "work": args.work,
              "default_lr": params["teacher"]["lr"],
              "teacher": {k: v for k, v in teacher.items() if k not in ("lr", "model")}}
    result = {"header": header, "rows": rows, **summarize(rows, header["default_lr"])}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    Path(args.out + ".md").write_text(render(result), encoding="utf-8")
    print(render(result))


def summarize(rows: list[dict], default_lr: float) -> dict:
    """Per lr: val and test macro-F1 over the seeds, and the val change against the default lr taken within
    each seed (paired: the seed's split cancels). The best lr on mean val."""
    lrs = list(dict.fromkeys(r["lr"] for r in rows))
    by_lr = {lr: {r["seed"]: r for r in rows if r["lr"] == lr} for lr in lrs}
    summary = {}
    for lr, runs in by_lr.items():
        summary[str(lr)] = {k: stats([r[k] for r in runs.values()]) for k in ("val_macro_f1", "test_macro_f1")}
        if lr != default_lr and default_lr in by_lr:
            base = by_lr[default_lr]
            summary[str(lr)]["val_change_vs_default"] = stats(
                [r["val_macro_f1"] - base[s]["val_macro_f1"] for s, r in runs.items() if s in base])
    return {"summary": summary, "best_on_val": max(lrs, key=lambda lr: summary[str(lr)]["val_macro_f1"]["mean"])}


def render(result: dict) -> str:
    header, summary = result["header"], result["summary"]
    seeds = [r["seed"] for r in header["runs"]]
    where = (f"each seed's own split and pretrained encoder (`{header['work']}/seed<N>`)" if header.get("work")
             else f"from `{header['runs'][0]['pretrained']}` on `{header['runs'][0]['prepared']}`")
    lines = ["# Fine-tuning lr of the pretrained teacher", "",
             f"Command: `{header['command']}`; {header['machine']['cpu']}; seeds {seeds}; {where}; the other "
             "teacher params from params.yaml. Chosen on val macro-F1 (thresholds tuned on val); test is reported, "
             "never used. Mean ± std (n − 1) over seeds. The val change against the default "
             f"(teacher.lr {header['default_lr']:g}) is taken within each seed; a change smaller than its std is "
             "seed noise.", "",
             "| teacher.lr | val macro-F1 | val change vs default | test macro-F1 | per seed val / test | "
             "best epochs | seconds |", "|---:|---:|---:|---:|---|---|---:|"]
    for lr in dict.fromkeys(r["lr"] for r in result["rows"]):
        rs = [r for r in result["rows"] if r["lr"] == lr]
        s = summary[str(lr)]
        v, t, c = s["val_macro_f1"], s["test_macro_f1"], s.get("val_change_vs_default")
        change = f"{c['mean']:+.4f} ± {c['std']:.4f}" if c else "(default)" if lr == header["default_lr"] else "–"
        lines.append(f"| {lr:g} | {v['mean']:.4f} ± {v['std']:.4f} | {change} | {t['mean']:.4f} ± {t['std']:.4f} | "
                     + ", ".join(f"{r['val_macro_f1']:.4f} / {r['test_macro_f1']:.4f}" for r in rs) + " | "
                     + ", ".join(f"{r['best_epoch']} of {r['epochs_run']}" for r in rs) + " | "
                     + f"{sum(r['seconds'] for r in rs) / len(rs):.0f} |")
    best = result["best_on_val"]
    change = summary[str(best)].get("val_change_vs_default")
    verdict = ("" if change is None else " It is the default." if best == header["default_lr"] else
               f" Its paired val change against the default, {change['mean']:+.4f} ± {change['std']:.4f}, is "
               + ("within seed noise: the default stays." if abs(change["mean"]) <= change["std"]
                  else "outside seed noise."))
    lines += ["", f"Best on mean val: **{best:g}**.{verdict}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
