"""Pretraining ablation (not a test): does masked-LM pretraining help the teacher? For every seed, the
params.yaml teacher (cv_folds 0) is trained by the train_teacher stage's own function after
  none               no pretraining (teacher.model as in params.yaml: scratch),
  mlm_train          MLM pretraining on the train split only,
  mlm_train_corpora  MLM pretraining on the train split + pretrain.corpora,
the pretraining being the pretrain stage's own functions (pretraining_corpus, pretrain_mlm) with the
params.yaml pretrain group (`enabled` is ignored here). Never a val or test text is pretrained on. The
choice is made on val macro-F1 (thresholds tuned on val); test macro-F1 is scored once per model and
only reported.

    nice -n 10 .venv/bin/python -m bench.bench_pretrain --seeds 42 43 44    # after `make data`, dvc repro prepare
    # on the runs of `make bench` instead: each seed's own split; mlm_train_corpora is the run's own pretrained
    # encoder (and its teacher's scores) when the run made it from the same corpus, params and code (reused)
    .venv/bin/python -m bench.bench_pretrain --work bench/work/hatespeech --seeds 42 43 44
    .venv/bin/python -m bench.bench_pretrain --quick --out /tmp/bp           # smoke run: tiny teacher, 1 epoch

--corpus PATH=COLUMN (repeatable) replaces pretrain.corpora; --set pretrain.lr=0.0005 (repeatable) overrides a
teacher or pretrain param. Writes <out>.json and <out>.md (default
bench/PRETRAIN) after every run; --quick must write elsewhere (--out)."""
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
from banglacompress.models import load_model_dir
from banglacompress.pretrain import check_pretrain_params, pretrain_mlm, pretraining_corpus
from banglacompress.train import configure_torch, score_split, train_teacher

from .bench_pooling import quick_prepared
from .run_bench import ROOT, RUN_FILE, code_files, machine, outside_noise, run_teacher_scores, same_cpu, stats

VARIANTS = {"none": "no pretraining", "mlm_train": "MLM on the train split only",
            "mlm_train_corpora": "MLM on the train split + pretrain.corpora"}
DEFAULT_OUT = "bench/PRETRAIN"
# --quick: a teacher small enough to pretrain and fine-tune in seconds; one epoch each, at most QUICK_TEXTS
QUICK_ARCH = {"family": "bert", "layers": 1, "hidden": 64, "heads": 2, "ffn": 128, "vocab_size": 1000}
QUICK_TEXTS = 3000


def parse_set(value: str) -> tuple[str, object]:
    """--set pretrain.lr=0.0005: a teacher or pretrain param, its value read as YAML (like `dvc exp run -S`)."""
    key, sep, raw = value.partition("=")
    group, _, name = key.partition(".")
    if not sep or group not in ("teacher", "pretrain") or not name or "." in name:
        raise argparse.ArgumentTypeError(f"--set {value!r}: expected teacher.KEY=VALUE or pretrain.KEY=VALUE")
    return key, yaml.safe_load(raw)


def with_sets(params: dict, sets: list[tuple[str, object]]) -> dict:
    """params with each parse_set override applied (a copy; the given params are left as they are)."""
    for key, value in sets:
        group, name = key.split(".")
        params = {**params, group: {**params[group], name: value}}
    return params


def parse_corpus(value: str) -> dict:
    path, sep, column = value.rpartition("=")
    if not sep or not path or not column:
        raise argparse.ArgumentTypeError(f"--corpus {value!r}: expected PATH=TEXT_COLUMN")
    return {"path": path, "text_column": column}


def corpora_for(variant: str, ctx: dict) -> list[dict] | None:
    return {"none": None, "mlm_train": [], "mlm_train_corpora": ctx["corpora"]}[variant]


def bench_run_pretrained(run: Path, texts: list[str], pretrain: dict) -> dict | None:
    """The pretrained encoder of a finished `make bench` run, with its pretraining wall time and metrics, when
    that run pretrained on exactly these texts with these pretrain params, this code and this CPU type; else None."""
    record, corpus, model = run / RUN_FILE, run / "data" / "pretrain_corpus.txt", run / "models" / "pretrained"
    if not (record.exists() and corpus.exists() and (model / "config.json").exists()):
        return None
    same = (read_corpus(corpus) == texts
            and {k: v for k, v in check_pretrain_params(load_params(run / "params.yaml")["pretrain"]).items()
                 if k != "corpora"}
            == {k: v for k, v in pretrain.items() if k != "corpora"} and code_files(run) == code_files(ROOT)
            and same_cpu(json.loads(record.read_text(encoding="utf-8"))))
    if not same:
        return None
    metrics = json.loads((run / "metrics" / "pretrain.json").read_text(encoding="utf-8"))
    return {"dir": model, "seconds": json.loads(record.read_text(encoding="utf-8"))["stages"]["pretrain"]["seconds"],
            "metrics": metrics}


def perplexities(pretrained: dict) -> list[float]:
    """The held-out perplexity after each pretraining epoch (pretrain_mlm's history): whether it took off."""
    return [round(r["val_perplexity"], 2) for r in pretrained.get("history", [])]


def run_one(variant: str, seed: int, ctx: dict, work: Path) -> dict:
    """Pretrain (unless `none`) and fine-tune one teacher; score it once on test after reloading it. With
    --work, mlm_train_corpora reuses the make-bench run's own pretrained encoder when it is the same computation,
    and the run's teacher scores too when its teacher params are these (the row says `from_run`)."""
    row = {"variant": variant, "seed": seed}
    teacher_cfg = ctx["teacher"]
    reused = (bench_run_pretrained(ctx["runs"][seed], ctx["corpus"][variant][0], ctx["pretrain"])
              if ctx.get("runs") and variant == "mlm_train_corpora" else None)
    if reused:
        pre = reused["metrics"]
        row.update(pretrain_seconds=reused["seconds"], pretrain_texts=pre["texts_train"],
                   tokens_seen=pre["tokens_seen"], final_val_perplexity=pre["final_val_perplexity"],
                   val_perplexity_by_epoch=perplexities(pre), pretrained_from=str(reused["dir"]))
        teacher_cfg = {**teacher_cfg, "model": str(reused["dir"])}
        # and the run's own teacher, when the run fine-tuned it with these teacher params (no need to redo it)
        if scores := run_teacher_scores(ctx["runs"][seed], ctx["teacher"], ctx["params"], seed):
            seconds = scores.pop("seconds")
            return {**row, **scores, "finetune_seconds": seconds}
    elif corpora_for(variant, ctx) is not None:
        texts, counts = ctx["corpus"][variant]
        start = time.perf_counter()
        # no stall check: a variant that stalls (the train split alone did on one seed) is a result to record
        pre = pretrain_mlm({**ctx["pretrain"], "min_context_gain": None}, texts=texts,
                           out_dir=work / f"{variant}_{seed}_pretrained", seed=seed, max_length=ctx["max_length"],
                           teacher_cfg=teacher_cfg)
        row.update(pretrain_seconds=round(time.perf_counter() - start, 1), pretrain_texts=pre["texts_train"],
                   tokens_seen=pre["tokens_seen"], final_val_perplexity=pre["final_val_perplexity"],
                   context_gain=pre["context_gain"], val_perplexity_by_epoch=perplexities(pre))
        teacher_cfg = {**teacher_cfg, "model": str(work / f"{variant}_{seed}_pretrained")}
    return {**row, **fine_tune_and_score(teacher_cfg, ctx["prepared"], work / f"{variant}_{seed}_teacher", seed,
                                         ctx["max_length"], (ctx["test_texts"], ctx["y_test"]), desc=variant)}


def fine_tune_and_score(teacher_cfg: dict, prepared, out_dir: Path, seed: int, max_length: int, test: tuple,
                        desc: str) -> dict:
    """The train_teacher stage's function on `prepared`, then the saved teacher reloaded and scored once on
    the test (texts, targets): val macro-F1 (the choice), test macro-F1 (reported), epochs, wall seconds."""
    start = time.perf_counter()
    result = train_teacher(teacher_cfg, prepared=prepared, out_dir=out_dir, seed=seed, max_length=max_length)
    seconds = round(time.perf_counter() - start, 1)
    model, tokenizer, info = load_model_dir(out_dir)
    metrics, _, _ = score_split(model, tokenizer, info, *test, max_length, desc=f"{desc} test")
    return {"val_macro_f1": result["val_macro_f1_tuned"], "test_macro_f1": metrics["macro_f1"],
            "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"], "finetune_seconds": seconds}


def summary(rows: list[dict]) -> dict:
    """Mean and std (n - 1, run_bench.stats) over seeds, per variant, and each variant's val and test change
    against `none` taken within each seed (paired: the seed's split and initialisation cancel)."""
    out = {}
    base = {r["seed"]: r for r in rows if r["variant"] == "none"}
    for variant in VARIANTS:
        runs = [r for r in rows if r["variant"] == variant]
        if not runs:
            continue
        out[variant] = {"seeds": [r["seed"] for r in runs]}
        for key in ("val_macro_f1", "test_macro_f1", "pretrain_seconds", "finetune_seconds", "final_val_perplexity"):
            values = [r[key] for r in runs if key in r]
            if values:
                out[variant][key] = {k: v for k, v in stats(values).items() if k in ("mean", "std")}
        paired = [r for r in runs if r["seed"] in base]
        if variant != "none" and paired:
            for split in ("val", "test"):
                changes = [r[f"{split}_macro_f1"] - base[r["seed"]][f"{split}_macro_f1"] for r in paired]
                out[variant][f"{split}_change_vs_none"] = {**{k: v for k, v in stats(changes).items()
                                                              if k in ("mean", "std", "values")},
                                                           "outside_noise": outside_noise(changes)}
    return out


def render(header: dict, rows: list[dict]) -> str:
    stats = summary(rows)
    quick = ", QUICK: tiny teacher, 1 epoch" if header["quick"] else ""
    lines = ["# Teacher with and without masked-LM pretraining", "",
             f"Teacher params from params.yaml (`teacher`, cv_folds 0{quick}), "
             f"pretraining params from params.yaml (`pretrain`)"
             + "".join(f", {key} = {value}" for key, value in header.get("overrides", {}).items())
             + f"; seeds {header['seeds']}; "
             f"{'/'.join(map(str, header['train_rows']))} train / {'/'.join(map(str, header['val_rows']))} val / "
             f"{'/'.join(map(str, header['test_rows']))} test rows "
             f"(`{header['prepared']}`); {header['machine']['cpu']}, {header['threads']} torch threads, "
             f"torch {header['machine']['torch']}. Command: `{header['command']}`", "",
             "Chosen on val macro-F1 (thresholds tuned on val); test macro-F1 is reported, never used. "
             "Mean ± std (n − 1) over seeds; seconds are wall time on this machine, noisy. The change against "
             "`none` is taken within each seed (paired); **yes** marks a result outside seed noise (every seed's "
             "change has the same sign, and the mean is more than 2 std from zero).", "",
             "| variant | val macro-F1 | val change vs none | test macro-F1 | test change vs none | "
             "per seed val / test | pretrain s | fine-tune s | final MLM val perplexity |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|"]

    def cell(variant, key, fmt):
        s = stats[variant].get(key)
        return "–" if s is None else f"{s['mean']:{fmt}} ± {s['std']:{fmt}}"

    def change(variant, split):
        c = stats[variant].get(f"{split}_change_vs_none")
        return "–" if c is None else (f"{c['mean']:+.4f} ± {c['std']:.4f}"
                                      f"{' **yes**' if c['outside_noise'] else ''}")

    for variant in stats:
        runs = [r for r in rows if r["variant"] == variant]
        lines.append(f"| {variant} ({VARIANTS[variant]}) | {cell(variant, 'val_macro_f1', '.4f')} | "
                     f"{change(variant, 'val')} | {cell(variant, 'test_macro_f1', '.4f')} | "
                     f"{change(variant, 'test')} | "
                     + ", ".join(f"{r['val_macro_f1']:.4f} / {r['test_macro_f1']:.4f}" for r in runs)
                     + f" | {cell(variant, 'pretrain_seconds', '.0f')} | {cell(variant, 'finetune_seconds', '.0f')} | "
                       f"{cell(variant, 'final_val_perplexity', '.1f')} |")
    if stats:
        best = max(stats, key=lambda v: stats[v]["val_macro_f1"]["mean"])
        c = stats[best].get("val_change_vs_none")
        verdict = "" if c is None else (f" Its val change against no pretraining, {c['mean']:+.4f} ± {c['std']:.4f} "
                                        "paired, is " + ("outside seed noise." if c["outside_noise"]
                                                         else "within seed noise."))
        lines += ["", f"Best on mean val: **{best}**.{verdict}"]
    lines += ["", "## Pretraining corpus (de-duplicated, evaluation texts removed)", "",
              "| variant | source | rows read | empty | val/test overlap removed | duplicates | kept |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for variant, counts in header["corpus_counts"].items():
        lines += [f"| {variant} | `{source}` | {c['rows_read']} | {c['empty']} | {c['eval_overlap']} | "
                  f"{c['duplicates']} | {c['kept']} |" for source, c in counts.items()]
    return "\n".join(lines) + "\n"


def save(out: str, header: dict, rows: list[dict]) -> None:
    Path(out + ".json").write_text(json.dumps({"header": header, "summary": summary(rows), "rows": rows}, indent=2,
                                              ensure_ascii=False) + "\n", encoding="utf-8")
    Path(out + ".md").write_text(render(header, rows), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--work", help="a make-bench dataset directory (bench/work/hatespeech): seed N uses "
                                   "<work>/seed<N>/data/prepared, its own split, instead of --prepared")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", type=parse_set, default=[], metavar="GROUP.KEY=VALUE",
                    help="override a teacher or pretrain param (repeatable): --set pretrain.lr=0.0005")
    ap.add_argument("--corpus", action="append", type=parse_corpus, help="PATH=TEXT_COLUMN; replaces pretrain.corpora")
    ap.add_argument("--out", default=None,
                    help=f"<out>.json and <out>.md (default {DEFAULT_OUT}; required with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help=f"tiny teacher, 1 epoch, at most {QUICK_TEXTS} texts (smoke run)")
    ap.add_argument("--render-only", action="store_true", help="rewrite OUT.md (and the summary) from OUT.json")
    args = ap.parse_args()
    if args.render_only:
        out = args.out or DEFAULT_OUT
        record = json.loads(Path(out + ".json").read_text(encoding="utf-8"))
        save(out, record["header"], record["rows"])
        return print(Path(out + ".md").read_text(encoding="utf-8"))
    if args.quick and (args.out is None or Path(args.out).resolve() == Path(DEFAULT_OUT).resolve()):
        ap.error(f"--quick needs --out elsewhere than {DEFAULT_OUT} (a smoke run never replaces the results)")
    out = args.out or DEFAULT_OUT

    params = with_sets(load_params(args.params), args.set)
    configure_torch(params["threads"])
    teacher = dict(params["teacher"], cv_folds=0)
    pretrain = check_pretrain_params(params.get("pretrain", {}))
    if args.corpus:
        pretrain["corpora"] = args.corpus
    if args.quick:
        teacher.update(scratch=QUICK_ARCH, epochs=1, patience=0)
        pretrain.update(epochs=1, max_texts=QUICK_TEXTS)
    max_length = params["data"]["max_length"]
    if args.work:
        runs = {seed: Path(args.work) / f"seed{seed}" for seed in args.seeds}
        if missing := [str(r) for r in runs.values() if not (r / "data" / "prepared" / "meta.json").exists()]:
            sys.exit(f"error: no prepared split in {', '.join(missing)}: run `make bench` (its runs) first")
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        header = dict(quick=args.quick, seeds=args.seeds, overrides=dict(args.set), threads=params["threads"],
                      machine=machine(), teacher=teacher, pretrain=pretrain, corpus_counts={}, train_rows=[],
                      val_rows=[], test_rows=[],
                      prepared=f"{args.work}/seed<N>/data/prepared, each seed's own split" if args.work
                      else args.prepared, command="python -m bench.bench_pretrain " + " ".join(sys.argv[1:]))
        rows, ctx = [], None
        for seed in args.seeds:
            if ctx is None or args.work:  # one split for every seed, or (--work) each seed's own
                prepared = str(runs[seed] / "data" / "prepared") if args.work else args.prepared
                prepared = quick_prepared(prepared, Path(tmp) / f"s{seed}") if args.quick else prepared
                train, val, test = (load_split(prepared, s) for s in ("train", "val", "test"))
                ctx = dict(teacher=teacher, params=params, pretrain=pretrain, corpora=pretrain["corpora"],
                           prepared=prepared, max_length=max_length, test_texts=test[0], y_test=test[1], corpus={},
                           runs=runs if args.work else None)
                for variant in args.variants:  # the corpus depends on the split, not on the seed
                    if corpora_for(variant, ctx) is not None:
                        ctx["corpus"][variant] = pretraining_corpus(train[0], corpora_for(variant, ctx),
                                                                    val[0] + test[0])
                        header["corpus_counts"][variant + (f" (seed {seed})" if args.work else "")] = \
                            ctx["corpus"][variant][1]
                for key, split in (("train_rows", train), ("val_rows", val), ("test_rows", test)):
                    header[key].append(len(split[0]))
            for variant in args.variants:
                rows.append(run_one(variant, seed, ctx, Path(tmp)))
                print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
                save(out, header, rows)
    print(render(header, rows))


if __name__ == "__main__":
    main()
