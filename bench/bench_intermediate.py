"""Intermediate-task fine-tuning (not a test): does the pretrained teacher get better when it is first fine-tuned
on the labels of another dataset, then on its own? Each --aux dataset (in the order given) fine-tunes the run's
pretrained encoder by the train_teacher stage's own function, with the params.yaml teacher group, on its own
train/val split; its encoder (without its classification head) then starts the next step, and the last one starts
the fine-tune on the run's own split. Every aux text whose near-duplicate key (the key prepare splits by) is that of
a text in the run's val or test split is removed first and counted: no evaluation text is trained on with any label.

The default is the run's own teacher (the make-bench run's scores, `from_run`). Chosen on val macro-F1 (thresholds
tuned on val); test macro-F1 is scored once per model and only reported.

    .venv/bin/python -m bench.bench_intermediate --work bench/work/cyb_default/cyberbully --seeds 42 43 44 \
        --aux toxic --out bench/intermediate_cyberbully_toxic
    # seeds run in different work dirs (or at different times), as one table
    .venv/bin/python -m bench.bench_intermediate --merge A.json B.json --out bench/intermediate_toxic_cyberbully

Writes <out>.json and <out>.md after every seed."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from banglacompress.config import load_params, write_json
from banglacompress.data import dedup_key, deduplicate_near, load_labelled, load_split, split
from banglacompress.models import load_model_dir, save_tokenizer
from banglacompress.train import configure_torch, train_teacher

from .bench_pretrain import fine_tune_and_score
from .run_bench import machine, outside_noise, run_teacher_scores, stats

# The labelled datasets of `make data` (path, text column, label columns), by the names make bench uses
DATASETS = {
    "hatespeech": ("data/raw/HateSpeech.csv", "Comments", ["HateSpeech"]),
    "cyberbully": ("data/raw/cyberbully_multilabel.csv", "comment", ["bully", "sexual", "religious", "threat", "spam"]),
    "toxic": ("data/raw/toxic_multilabel.csv", "text", ["vulgar", "hate", "religious", "threat", "troll", "Insult"]),
    "sentnob": ("data/raw/sentnob_train.csv", "Data", ["Label"]),
}
AUX_VAL = 0.1  # the aux split's val share: early stopping of the intermediate fine-tune


def aux_prepared(name: str, exclude: list[str], out_dir: Path, seed: int) -> dict:
    """The aux dataset as a prepared dir (train/val.csv + meta.json, the prepare stage's de-duplication and
    stratified split) without any text whose key is an excluded (evaluation) text's; returns the counts."""
    path, text_column, label_columns = DATASETS[name]
    df, meta = load_labelled(path, text_column, label_columns)
    df, _ = deduplicate_near(df, meta["target_columns"], meta["task"])
    excluded = {dedup_key(t) for t in exclude}
    overlap = df["text"].map(dedup_key).isin(excluded).to_numpy()
    df = df[~overlap].reset_index(drop=True)
    # the stratified split wants a test part; it is a small one and trained on, as this is not an evaluation
    parts = split(df, meta, AUX_VAL, 0.05, seed)
    parts = {"train": pd.concat([parts["train"], parts["test"]], ignore_index=True), "val": parts["val"]}
    out_dir.mkdir(parents=True)
    for split_name, part in parts.items():
        part.to_csv(out_dir / f"{split_name}.csv", index=False, encoding="utf-8")
    write_json(out_dir / "meta.json", meta)
    return {"aux": name, "rows_after_dedup": int(len(df) + overlap.sum()), "eval_overlap_removed": int(overlap.sum()),
            "train": len(parts["train"]), "val": len(parts["val"])}


def save_encoder(model_dir: Path, out_dir: Path) -> None:
    """The fine-tuned model's encoder (and pooler) and tokenizer, without its classification head: the next
    fine-tune loads it with a fresh head whatever its label count."""
    model, tokenizer, _ = load_model_dir(model_dir)
    getattr(model, model.base_model_prefix).save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", help="a make-bench dataset directory holding seed<N>/")
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--aux", nargs="+", choices=sorted(DATASETS), help="the datasets fine-tuned on first, in this order")
    ap.add_argument("--out", required=True)
    ap.add_argument("--merge", nargs="+", metavar="RECORD",
                    help="records of one screen run on different seeds (or work dirs): one table, written to --out")
    args = ap.parse_args()
    if args.merge:
        return write(merged([json.loads(Path(r).read_text(encoding="utf-8")) for r in args.merge], args.merge),
                     args.out)
    if not (args.work and args.seeds and args.aux):
        sys.exit("error: give --work, --seeds and --aux (or --merge RECORD ...)")
    params = load_params()
    configure_torch(params["threads"])
    teacher, max_length = {**params["teacher"], "cv_folds": 0}, params["data"]["max_length"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_intermediate_") as tmp:
        for seed in args.seeds:
            run = Path(args.work) / f"seed{seed}"
            prepared, encoder = run / "data" / "prepared", str(run / "models" / "pretrained")
            default = run_teacher_scores(run, teacher, params, seed, teacher_code_only=True)
            if default is None:
                sys.exit(f"error: {run} is not a make-bench run of this teacher code and params at seed {seed} "
                         "on this CPU type")
            test = load_split(prepared, "test")[:2]
            exclude = load_split(prepared, "val")[0] + test[0]
            steps, start = [], time.perf_counter()
            for aux in args.aux:
                aux_dir, model_dir = Path(tmp) / f"s{seed}_{aux}_data", Path(tmp) / f"s{seed}_{aux}_model"
                counts = aux_prepared(aux, exclude, aux_dir, seed)
                result = train_teacher({**teacher, "model": encoder}, prepared=aux_dir, out_dir=model_dir, seed=seed,
                                       max_length=max_length)
                encoder = str(Path(tmp) / f"s{seed}_{aux}_encoder")
                save_encoder(model_dir, Path(encoder))
                steps.append({**counts, "aux_val_macro_f1": result["val_macro_f1_tuned"],
                              "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"]})
                print(f"[bench] seed {seed} {steps[-1]}", file=sys.stderr, flush=True)
            aux_seconds = round(time.perf_counter() - start, 1)
            scores = fine_tune_and_score({**teacher, "model": encoder}, prepared, Path(tmp) / f"s{seed}_target",
                                         seed, max_length, test, desc=f"seed {seed} after {'+'.join(args.aux)}")
            rows.append({"seed": seed, "default": default, "intermediate": {**scores, "aux_seconds": aux_seconds},
                         "steps": steps})
            print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
            write({"header": {"command": "python -m bench.bench_intermediate " + " ".join(sys.argv[1:]),
                              "machine": machine(), "work": args.work, "aux": args.aux, "teacher": teacher},
                   "rows": rows}, args.out)


def merged(records: list[dict], names: list[str]) -> dict:
    """Records of the same screen (aux datasets and teacher params) on different seeds as one record."""
    first = records[0]["header"]
    for record, name in zip(records, names):
        if (record["header"]["aux"], record["header"]["teacher"]) != (first["aux"], first["teacher"]):
            sys.exit(f"error: {name} is not the same screen as {names[0]} (other --aux or teacher params)")
    rows = [row for record in records for row in record["rows"]]
    seeds = [row["seed"] for row in rows]
    if len(seeds) != len(set(seeds)):
        sys.exit(f"error: the records share a seed ({sorted(seeds)}): merge records of different seeds")
    header = {**first, "command": "; ".join(r["header"]["command"] for r in records)
              + "; then: python -m bench.bench_intermediate --merge " + " ".join(names),
              "work": [r["header"]["work"] for r in records]}
    return {"header": header, "rows": sorted(rows, key=lambda row: row["seed"])}


def write(result: dict, out: str) -> None:
    rows = result["rows"]
    changes = {k: [r["intermediate"][f"{k}_macro_f1"] - r["default"][f"{k}_macro_f1"] for r in rows]
               for k in ("val", "test")}
    result["summary"] = {k: {**stats(v), "outside_noise": outside_noise(v)} for k, v in changes.items()}
    Path(out + ".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    h, s = result["header"], result["summary"]
    lines = [f"# The teacher fine-tuned first on {' then '.join(h['aux'])}", "",
             f"Command: `{h['command']}`; {h['machine']['cpu']}. Teacher val macro-F1 (thresholds tuned on val; "
             "test reported only) of the run's own teacher (`default`, from the make-bench run) and of the same "
             "pretrained encoder fine-tuned on the aux labels first. Aux texts whose near-duplicate key is a val or "
             "test text's were removed before.", "",
             "| seed | default val / test | intermediate val / test | val change | aux rows (removed as eval overlap) "
             "| aux val macro-F1 (best epoch of run) | aux seconds |", "|---:|---|---|---:|---|---|---:|"]
    for r in rows:
        d, i = r["default"], r["intermediate"]
        lines.append(f"| {r['seed']} | {d['val_macro_f1']:.4f} / {d['test_macro_f1']:.4f} | "
                     f"{i['val_macro_f1']:.4f} / {i['test_macro_f1']:.4f} | "
                     f"{i['val_macro_f1'] - d['val_macro_f1']:+.4f} | "
                     + ", ".join(f"{t['aux']} {t['train'] + t['val']} ({t['eval_overlap_removed']})" for t in r["steps"])
                     + " | " + ", ".join(f"{t['aux_val_macro_f1']:.4f} ({t['best_epoch']} of {t['epochs_run']})"
                                         for t in r["steps"]) + f" | {i['aux_seconds']:.0f} |")
    v, t = s["val"], s["test"]
    lines += ["", f"Val change, mean ± std (n − 1) over {len(rows)} seed(s): {v['mean']:+.4f} ± {v['std']:.4f}"
              + (" (outside seed noise)" if v["outside_noise"] else "") + f"; test {t['mean']:+.4f} ± {t['std']:.4f}."]
    Path(out + ".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
