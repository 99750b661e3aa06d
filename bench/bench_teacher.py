"""One teacher param swept on the pretrained teacher (not a test): the params.yaml teacher, with --param set to
each of --values, fine-tuned by the train_teacher stage's own function from one pretrained encoder (default: the
pipeline's models/pretrained), chosen on val macro-F1 (thresholds tuned on val); test macro-F1 is scored once
per model and only reported. Backs `teacher.lr` (bench/teacher_lr.md), `teacher.epochs`, `teacher.pooling` and
`teacher.loss`.

A param of the encoder's shape (scratch.vocab_size, scratch.layers, scratch.hidden: heads and ffn follow it,
scratch.tokenizer_model) or of its pretraining (pretrain.mask_prob, pretrain.epochs, pretrain.lr,
pretrain.batch_size, pretrain.warmup_ratio) changes what
pretraining builds: each value other than the default is pretrained first, by the pretrain stage's function on
the same corpus (the run's data/pretrain_corpus.txt, or data/pretrain_corpus.txt) with the params.yaml pretrain
group and that value, then fine-tuned. The default's encoder is the one given (--pretrained, or the run's). The
student is not trained here: with student.tokenizer: teacher, scratch.vocab_size also sizes the student's
embedding table.

    .venv/bin/python -m bench.bench_teacher --param lr --values 0.0005 0.0002 0.0001   # after dvc repro pretrain
    # over the seeds of a `make bench` run: each seed's own split and pretrained encoder
    .venv/bin/python -m bench.bench_teacher --param lr --values 0.0002 0.0001 --work bench/work/hatespeech \
        --seeds 42 43 44 --out bench/teacher_lr
    .venv/bin/python -m bench.bench_teacher --param scratch.vocab_size --values 8000 16000 \
        --work bench/work/cyberbully --seeds 42 --out bench/teacher_vocab_cyberbully

A sweep run a seed at a time (--seeds 43, then --seeds 44) becomes one table over its seeds with
    .venv/bin/python -m bench.bench_teacher --merge bench/teacher_width_cyberbully.json \
        bench/teacher_width_cyberbully_seed43.json bench/teacher_width_cyberbully_seed44.json \
        --out bench/teacher_width_cyberbully_3seeds

With --work, a value whose teacher is the one the make-bench run trained (its teacher params, seed, code and
CPU type) takes that run's scores instead of training it again (the row says `from_run`).

Writes <out>.json and <out>.md (default bench/teacher_<param>)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from banglacompress.config import load_params
from banglacompress.data import load_split, read_corpus
from banglacompress.models import TOKENIZER_MODELS, tokenizer_model
from banglacompress.pooling import POOLINGS
from banglacompress.pretrain import pretrain_mlm
from banglacompress.train import LOSSES, configure_torch

from .bench_pretrain import fine_tune_and_score, parse_set, with_sets
from .run_bench import RUN_FILE, machine, outside_noise, run_teacher_scores, stats

# What a sweep may set: a number (or the pooling / loss word) the train_teacher stage reads (the encoder and its
# shape come from pretraining).
SWEEPABLE = ("lr", "epochs", "patience", "warmup_ratio", "weight_decay", "dropout", "batch_size", "grad_clip",
             "pooling", "loss")
# ... and a number of the scratch encoder's shape or of its pretraining: each value is pretrained before it is
# fine-tuned (its default's encoder is the one given).
PRETRAINED = ("scratch.vocab_size", "scratch.layers", "scratch.hidden", "scratch.tokenizer_model",
              "pretrain.mask_prob", "pretrain.epochs", "pretrain.lr", "pretrain.batch_size", "pretrain.warmup_ratio")
# ... of which these take a word, not a number
WORDS = {"scratch.tokenizer_model": TOKENIZER_MODELS, "pooling": tuple(POOLINGS), "loss": tuple(LOSSES)}


def value_of(params: dict, param: str):
    """The value of `param` (a teacher key, scratch.KEY or pretrain.KEY) in params."""
    group, _, key = param.rpartition(".")
    scratch = {**params["teacher"]["scratch"], "tokenizer_model": tokenizer_model(params["teacher"]["scratch"])}
    return {"": params["teacher"], "scratch": scratch, "pretrain": params["pretrain"]}[group][key]


def label(param: str) -> str:
    """The param as params.yaml names it: teacher.lr, teacher.scratch.layers, pretrain.mask_prob."""
    return param if param.startswith("pretrain.") else f"teacher.{param}"


def with_value(params: dict, param: str, value) -> dict:
    """params with `param` (a teacher key, scratch.KEY or pretrain.KEY) set to value; the rest shared."""
    group, _, key = param.rpartition(".")
    if group == "scratch":
        arch = params["teacher"]["scratch"]
        return {**params, "teacher": {**params["teacher"], "scratch": {**arch, **widened(arch, value)}
                                      if key == "hidden" else {**arch, key: value}}}
    name = group or "teacher"
    return {**params, name: {**params[name], key: value}}


def widened(arch: dict, hidden: int) -> dict:
    """scratch.hidden set the way BERT's shapes grow: the same width per head and the same FFN ratio (256 wide,
    4 heads, FFN 1024 -> 384 wide, 6 heads, FFN 1536), so only the width changes."""
    per_head = arch["hidden"] // arch["heads"]
    if hidden % per_head:
        sys.exit(f"error: teacher.scratch.hidden {hidden} is not a multiple of the {per_head} per attention head")
    return {"hidden": hidden, "heads": hidden // per_head, "ffn": hidden * arch["ffn"] // arch["hidden"]}


def pretrain_value(params: dict, corpus: Path, out_dir: Path, seed: int) -> dict:
    """The pretrain stage's function with these teacher and pretrain params on the run's corpus: the encoder's
    directory, its wall seconds, final validation perplexity and its ratio to a context-free model's. No
    stall check: a value whose pretraining stalls is fine-tuned and scored like the others, a result."""
    start = time.perf_counter()
    pre = pretrain_mlm({**params["pretrain"], "min_context_gain": None}, texts=read_corpus(corpus), out_dir=out_dir,
                       seed=seed, max_length=params["data"]["max_length"], teacher_cfg=params["teacher"])
    return {"dir": str(out_dir), "pretrain_seconds": round(time.perf_counter() - start, 1),
            "final_val_perplexity": pre["final_val_perplexity"], "context_gain": pre["context_gain"]}


def run_pretraining(run: Path) -> dict:
    """How a make-bench run pretrained the default's encoder: its pretrain stage's wall seconds and final val
    perplexity (empty when the run did not record them)."""
    record, metrics = run / RUN_FILE, run / "metrics" / "pretrain.json"
    if not (record.exists() and metrics.exists()):
        return {}
    stage = json.loads(record.read_text(encoding="utf-8"))["stages"].get("pretrain", {})
    final = json.loads(metrics.read_text(encoding="utf-8")).get("final_val_perplexity")
    if "seconds" not in stage or final is None:
        return {}
    return {"pretrain_seconds": stage["seconds"], "final_val_perplexity": final, "pretrained_in_run": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--param", default="lr", choices=SWEEPABLE + PRETRAINED,
                    help="the param swept (default teacher.lr); scratch.* and pretrain.* values are pretrained first")
    ap.add_argument("--values", nargs="+", type=yaml.safe_load,
                    help="its values, read as YAML (0.0002, 12): required unless --render-only")
    ap.add_argument("--pretrained", default="models/pretrained")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--work", default=None,
                    help="a make-bench dataset directory: with --seeds, <work>/seed<N>/models/pretrained and "
                         "<work>/seed<N>/data/prepared at seed N replace --pretrained / --prepared")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="with --work (default: params.yaml's seed)")
    ap.add_argument("--set", action="append", type=parse_set, default=[], metavar="GROUP.KEY=VALUE",
                    help="override a teacher param (every fine-tune) or a pretrain param (every value pretrained "
                         "here; the default's encoder is the given one), repeatable: --set pretrain.lr=0.0005")
    ap.add_argument("--out", default=None, help="default bench/teacher_<param>")
    ap.add_argument("--render-only", action="store_true", help="rewrite OUT.md (and the summary) from OUT.json")
    ap.add_argument("--merge", nargs="+", metavar="RECORD", default=None,
                    help="records of one sweep run a seed at a time (their .json): one table over all their seeds, "
                         "written to --out; they must sweep the same param from the same default with the same overrides")
    args = ap.parse_args()
    out = args.out or f"bench/teacher_{args.param}"
    if args.merge:
        result = merged([json.loads(Path(r).read_text(encoding="utf-8")) for r in args.merge], args.merge)
        result["header"]["command"] += "; then: python -m bench.bench_teacher " + " ".join(sys.argv[1:])
        return write(result, out)
    if args.render_only:
        result = upgrade(json.loads(Path(out + ".json").read_text(encoding="utf-8")))
        add_run_pretraining(result)
        result.update(summarize(result["rows"], result["header"]["default"]))
        return write(result, out)
    if args.param in WORDS and not (args.values and set(args.values) <= set(WORDS[args.param])):
        sys.exit(f"error: give --values, some of {' '.join(WORDS[args.param])} for {label(args.param)}")
    if args.param not in WORDS and (
            not args.values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args.values)):
        sys.exit(f"error: give --values, numbers for {label(args.param)} (e.g. --values 6 12)")
    if label(args.param) in dict(args.set):
        sys.exit(f"error: --set {label(args.param)} is the swept param; give its values with --values")
    params = with_sets(load_params(), args.set)
    configure_torch(params["threads"])
    if args.param in PRETRAINED and params["teacher"]["model"] != "scratch":
        sys.exit(f"error: --param {args.param} needs teacher.model: scratch (params.yaml has "
                 f"{params['teacher']['model']!r})")
    if args.seeds and not args.work:
        sys.exit("error: --seeds needs --work (the make-bench directory that holds seed<N>/)")
    runs = ([(seed, f"{args.work}/seed{seed}/models/pretrained", f"{args.work}/seed{seed}/data/prepared")
             for seed in args.seeds] if args.work and args.seeds else [(params["seed"], args.pretrained, args.prepared)])
    for _, pretrained, prepared in runs:
        if not Path(pretrained).is_dir() or not Path(prepared).is_dir():
            sys.exit(f"error: {pretrained} or {prepared} is missing: run `dvc repro pretrain` (or make bench) first")
    teacher = {**params["teacher"], "cv_folds": 0}
    default = value_of(params, args.param)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_teacher_") as tmp:
        for seed, pretrained, prepared in runs:
            test = load_split(prepared, "test")[:2]
            for value in args.values:
                setting = with_value({**params, "teacher": teacher}, args.param, value)
                # a pretrain.* value leaves the teacher params as they are: the run's teacher is only the default's
                reusable = args.work and (not args.param.startswith("pretrain.") or value == default)
                run = Path(pretrained).parents[1]
                done = (run_teacher_scores(run, with_value(params, args.param, value)["teacher"], params, seed)
                        if reusable else None)
                if done:
                    rows.append({"seed": seed, "value": value, **done})
                    print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
                    continue
                encoder, pre = pretrained, {}
                if args.param in PRETRAINED and value == default and args.work:
                    pre = run_pretraining(run)  # the run's, for the table
                if args.param in PRETRAINED and value != default:
                    pre = pretrain_value(setting, Path(prepared).parent / "pretrain_corpus.txt",
                                         Path(tmp) / f"s{seed}_{args.param}{value}_pretrained", seed)
                    encoder = pre.pop("dir")
                scores = fine_tune_and_score({**setting["teacher"], "model": encoder}, prepared,
                                             Path(tmp) / f"s{seed}_{args.param}{value}", seed,
                                             params["data"]["max_length"], test,
                                             desc=f"seed {seed} {args.param} {value}")
                scores["seconds"] = scores.pop("finetune_seconds")
                rows.append({"seed": seed, "value": value, **scores, **pre})
                print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
    header = {"command": "python -m bench.bench_teacher " + " ".join(sys.argv[1:]), "machine": machine(),
              "runs": [{"seed": s, "pretrained": p, "prepared": d} for s, p, d in runs], "work": args.work,
              "param": args.param, "default": default, **({"overrides": dict(args.set)} if args.set else {}),
              "teacher": {k: v for k, v in teacher.items() if k not in (args.param, "model")},
              **({"pretrain": params["pretrain"]} if args.param in PRETRAINED else {})}
    write({"header": header, "rows": rows, **summarize(rows, header["default"])}, out)


def add_run_pretraining(result: dict) -> None:
    """A scratch.* / pretrain.* sweep over make-bench runs written before the default's rows carried their
    run's pretraining: add it, from the runs, when they are still there."""
    header = result["header"]
    if header.get("param") not in PRETRAINED or not header.get("work"):
        return
    for row in result["rows"]:
        if row["value"] == header["default"] and "pretrain_seconds" not in row:
            row.update(run_pretraining(Path(header["work"]) / f"seed{row['seed']}"))


def upgrade(result: dict) -> dict:
    """A record written by this script's lr-only form (bench_teacher_lr --lrs) in today's terms: the same runs,
    rows keyed by value, and the command that reruns them now."""
    header = result["header"]
    if "param" in header:
        return result
    header["param"], header["default"] = "lr", header.pop("default_lr")
    header["command"] = (header["command"].replace("bench.bench_teacher_lr --lrs", "bench.bench_teacher --param lr "
                                                   "--values") + " --out bench/teacher_lr")
    result["rows"] = [{"seed": r["seed"], "value": r["lr"], **{k: v for k, v in r.items() if k not in ("seed", "lr")}}
                      for r in result["rows"]]
    return result


def merged(records: list[dict], names: list[str]) -> dict:
    """Records of the same sweep (param, default, overrides, teacher and pretrain params) made on different
    seeds, as one record: rows and runs concatenated, the summary taken again over all the seeds. The seeds' runs
    may lie in different work dirs (each run keeps its paths in `runs`)."""
    same = ("param", "default", "overrides", "teacher", "pretrain")
    first = records[0]["header"]
    for record, name in zip(records, names):
        differs = [k for k in same if record["header"].get(k) != first.get(k)]
        if differs:
            sys.exit(f"error: {name} is not the same sweep as {names[0]} (differs in {', '.join(differs)})")
    seeds = [r["seed"] for record in records for r in record["rows"] if r["value"] == first["default"]]
    if len(seeds) != len(set(seeds)):
        sys.exit(f"error: the records share a seed ({sorted(seeds)}): merge records of different seeds")
    works = list(dict.fromkeys(r["header"].get("work") for r in records))
    header = {**first, "command": "; ".join(r["header"]["command"] for r in records),
              "work": works[0] if len(works) == 1 else None, **({"works": works} if len(works) > 1 else {}),
              "runs": [run for r in records for run in r["header"]["runs"]], "merged_from": list(names)}
    rows = [row for record in records for row in record["rows"]]
    return {"header": header, "rows": rows, **summarize(rows, header["default"])}


def write(result: dict, out: str) -> None:
    Path(out + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    Path(out + ".md").write_text(render(result), encoding="utf-8")
    print(render(result))


def summarize(rows: list[dict], default) -> dict:
    """Per value: val and test macro-F1 over the seeds, and the val change against the default taken within
    each seed (paired: the seed's split cancels). The best value on mean val."""
    values = list(dict.fromkeys(r["value"] for r in rows))
    by_value = {v: {r["seed"]: r for r in rows if r["value"] == v} for v in values}
    summary = {}
    for value, runs in by_value.items():
        summary[str(value)] = {k: stats([r[k] for r in runs.values()]) for k in ("val_macro_f1", "test_macro_f1")}
        if value != default and default in by_value:
            base = by_value[default]
            summary[str(value)]["val_change_vs_default"] = stats(
                [r["val_macro_f1"] - base[s]["val_macro_f1"] for s, r in runs.items() if s in base])
    return {"summary": summary, "best_on_val": max(values, key=lambda v: summary[str(v)]["val_macro_f1"]["mean"])}


def shown(value) -> str:
    """A swept value in a table: a number in its shortest form (0.0002, 8000), a word as it is."""
    return value if isinstance(value, str) else f"{value:g}"


def render(result: dict) -> str:
    header, summary = result["header"], result["summary"]
    param, default = header["param"], header["default"]
    seeds = [r["seed"] for r in header["runs"]]
    pretrained = param in PRETRAINED  # a scratch.* / pretrain.* sweep: its values have their own encoders
    works = [header["work"]] if header.get("work") else header.get("works", [])  # a merge of several work dirs
    where = ("each seed's own split and pretrained encoder (" + ", ".join(f"`{w}/seed<N>`" for w in works) + ")"
             if works else f"from `{header['runs'][0]['pretrained']}` on `{header['runs'][0]['prepared']}`")
    lines = [f"# {label(param)} of the pretrained teacher", "",
             f"Command: `{header['command']}`; {header['machine']['cpu']}; seeds {seeds}; {where}; the other "
             "teacher params from params.yaml. Chosen on val macro-F1 (thresholds tuned on val); test is reported, "
             "never used. Mean ± std (n − 1) over seeds. The val change against the default "
             f"({label(param)} {shown(default)}) is taken within each seed; it is a result, not seed noise, when "
             "every seed's change has the same sign and the mean is more than 2 std from zero."
             + (" Each value but the default was pretrained first (the pretrain stage's function and params.yaml "
                "pretrain group, on the same corpus); the default's encoder is the given one (with --work, the run's: "
                "its seconds and perplexity are the run's own, from another process)." if pretrained else "")
             + (" Overridden here (`--set`; a pretrain param applies to the encoders pretrained here, not to the "
                "given default's): " + ", ".join(f"{k} {shown(v)}" for k, v in header["overrides"].items()) + "."
                if header.get("overrides") else ""),
             "",
             f"| {label(param)} | val macro-F1 | val change vs default | test macro-F1 | per seed val / test | "
             "best epochs | seconds |" + (" pretraining seconds / final val perplexity |" if pretrained else ""),
             "|---:|---:|---:|---:|---|---|---:|" + ("---|" if pretrained else "")]
    for value in dict.fromkeys(r["value"] for r in result["rows"]):
        rs = [r for r in result["rows"] if r["value"] == value]
        s = summary[str(value)]
        v, t, c = s["val_macro_f1"], s["test_macro_f1"], s.get("val_change_vs_default")
        change = f"{c['mean']:+.4f} ± {c['std']:.4f}" if c else "(default)" if value == default else "–"
        lines.append(f"| {shown(value)} | {v['mean']:.4f} ± {v['std']:.4f} | {change} | "
                     f"{t['mean']:.4f} ± {t['std']:.4f} | "
                     + ", ".join(f"{r['val_macro_f1']:.4f} / {r['test_macro_f1']:.4f}" for r in rs) + " | "
                     + ", ".join(f"{r['best_epoch']} of {r['epochs_run']}" for r in rs) + " | "
                     + f"{sum(r['seconds'] for r in rs) / len(rs):.0f} |"
                     + (" " + ", ".join(f"{r['pretrain_seconds']:.0f} / {r['final_val_perplexity']:.1f}"
                                        + (" (the run's)" if r.get("pretrained_in_run") else "")
                                        if "pretrain_seconds" in r else "given encoder" for r in rs) + " |"
                        if pretrained else ""))
    best = result["best_on_val"]
    change = summary[str(best)].get("val_change_vs_default")
    verdict = (" It is the default." if best == default else "" if change is None else
               f" Its paired val change against the default, {change['mean']:+.4f} ± {change['std']:.4f}, is "
               + ("outside seed noise." if outside_noise(change["values"]) else
                  "one seed: no seed spread to judge it against (a screen for a large change, not a result)."
                  if len(change["values"]) == 1 else "seed noise: the default stays."))
    lines += ["", f"Best on mean val: **{shown(best)}**.{verdict}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
