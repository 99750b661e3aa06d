"""Student shape frontier (not a test): validation macro-F1 against end-to-end batch-1 latency for
student shapes, each taken through the default chain (distill -> prune -> quantize, params.yaml),
timed interleaved with the teacher in ONNX Runtime INT8 in one process. Backs the default
`student.scratch` shape: choose on val, never on test (test is not read here).

    .venv/bin/python -m bench.bench_frontier                      # the candidates below, models/teacher
    .venv/bin/python -m bench.bench_frontier --only L1_H128 --out /tmp/frontier
    .venv/bin/python -m bench.bench_frontier --only L1_H96 --shape L4_H256=4,256,4,1024 --out /tmp/frontier

Run it in a bench work dir (bench/work/<dataset>/seed<N>, after run_bench) for another dataset: it reads
that directory's params.yaml, models/teacher and data/prepared. There, `PYTHONSAFEPATH=1 PYTHONPATH=REPO python -m
bench.bench_frontier ...` imports the repo's banglacompress; without PYTHONSAFEPATH Python imports the work dir's
copy (the code of the run) first, and this stops if that copy differs from the repo's. The same chain screens
other settings of the default shape: `--set distill.alpha=1.0` (student, distill, prune and quantize params) and `--corpus FILE`
(another KD transfer set, from bench.transfer_corpus).

Writes <out>.json and <out>.md (default bench/frontier). The stage functions are the pipeline's own
(train_student, prune_and_heal, quantize_and_verify); nothing here trains or quantizes by itself."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import banglacompress
from banglacompress.artifact import load_artifact, quantize_and_verify
from banglacompress.config import load_params
from banglacompress.data import CORPUS_FILE, load_split
from banglacompress.distill import train_student
from banglacompress.evaluate import REFERENCES, STRONGEST
from banglacompress.inference import TextClassifier
from banglacompress.measure import artifact_size, measure_speed
from banglacompress.prune import prune_and_heal
from banglacompress.quantize import QUANT_METHODS
from banglacompress.train import configure_torch

from .run_bench import check_imported_package, machine, parse_override, with_overrides

# name -> student.scratch overrides (the rest of the chain as in params.yaml)
CANDIDATES = {
    "L2_H128": {"layers": 2, "hidden": 128, "heads": 2, "ffn": 512},
    "L1_H128": {"layers": 1, "hidden": 128, "heads": 2, "ffn": 512},
    "L1_H96": {"layers": 1, "hidden": 96, "heads": 2, "ffn": 384},
}
CHAIN_GROUPS = ("student", "distill", "prune", "quantize")  # what a frontier candidate runs; --set may change these
COLUMNS = ["candidate", "layers", "hidden", "ffn", "val_macro_f1_student", "val_macro_f1_pruned", "val_macro_f1_final",
           "size_bytes", "e2e_ms_p50", "speedup_vs_teacher_onnx_int8", "e2e_throughput_b64"]


def parse_shape(text: str) -> tuple[str, dict]:
    """NAME=LAYERS,HIDDEN,HEADS,FFN (--shape) -> (name, student.scratch overrides)."""
    name, _, numbers = text.partition("=")
    values = numbers.split(",")
    if not name or len(values) != 4 or not all(v.isdigit() and int(v) > 0 for v in values):
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected NAME=LAYERS,HIDDEN,HEADS,FFN, e.g. "
                                         "L4_H256=4,256,4,1024")
    return name, dict(zip(("layers", "hidden", "heads", "ffn"), map(int, values)))


def run_candidate(name: str, arch: dict, params: dict, work: Path, teacher: str, prepared: str,
                  corpus: str = CORPUS_FILE) -> dict:
    student_cfg = {**params["student"], "scratch": {**params["student"]["scratch"], **arch}}
    seed, max_length = params["seed"], params["data"]["max_length"]
    out = work / name
    distilled = train_student(params["distill"], student_cfg, prepared=prepared, teacher_dir=teacher,
                              out_dir=out / "student", seed=seed, max_length=max_length, desc=name, corpus=corpus)
    pruned = prune_and_heal(params["prune"], prepared=prepared, student_dir=out / "student", teacher_dir=teacher,
                            out_dir=out / "pruned", seed=seed, max_length=max_length)
    quantized = quantize_and_verify(params["quantize"], prepared=prepared, source=out / "pruned",
                                    out_dir=out / "quantized", max_length=max_length, seed=seed)
    return {"candidate": name, **arch, "teacher_val_macro_f1": distilled["teacher_val_macro_f1"],
            "val_macro_f1_student": distilled["val_macro_f1_tuned"],
            "val_macro_f1_pruned": pruned["val_macro_f1_tuned"], "val_macro_f1_final": quantized["val_macro_f1"],
            **artifact_size(out / "quantized")}


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if "macro_f1" in c else f"{row[c]:.2f}" if isinstance(row[c], float)
                                       else f"{row[c]:,}" if isinstance(row[c], int) else str(row[c])
                                       for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--only", nargs="*", help="candidate names (default: all; none: only --shape)")
    ap.add_argument("--shape", type=parse_shape, action="append", default=[],
                    help="another candidate, NAME=LAYERS,HIDDEN,HEADS,FFN (repeatable; runs even with --only)")
    ap.add_argument("--corpus", default=CORPUS_FILE, help="the unlabelled KD transfer texts with distill.transfer: "
                    f"corpus (default {CORPUS_FILE}; bench.transfer_corpus writes others)")
    ap.add_argument("--set", action="append", type=parse_override, default=[], metavar="KEY=VALUE",
                    help="override a distill, prune, quantize or student param for every candidate (repeatable): "
                         "--set distill.alpha=1.0")
    ap.add_argument("--out", default="bench/frontier", help="writes OUT.json and OUT.md")
    ap.add_argument("--latency-samples", type=int, default=300)
    args = ap.parse_args()
    check_imported_package(banglacompress.__file__)
    unknown = sorted(set(args.only or []) - set(CANDIDATES))
    if unknown:
        ap.error(f"--only {unknown[0]}: not a candidate; the candidates are {', '.join(CANDIDATES)} (or add one with --shape)")
    if args.only == [] and not args.shape:
        ap.error("--only with no names runs only the --shape candidates, and none was given")
    if args.corpus != CORPUS_FILE and not Path(args.corpus).is_file():
        ap.error(f"--corpus {args.corpus}: no such file (bench.transfer_corpus writes one)")
    fixed = [key for key, _ in args.set if key.split(".")[0] not in CHAIN_GROUPS]
    if fixed:
        ap.error(f"--set {fixed[0]}: the frontier reuses the run's teacher and data; only {', '.join(CHAIN_GROUPS)} "
                 "params apply")
    try:
        params = with_overrides(load_params(), args.set)
    except KeyError as err:
        ap.error(err.args[0])
    configure_torch(params["threads"])
    candidates = {k: v for k, v in CANDIDATES.items() if args.only is None or k in args.only} | dict(args.shape)
    with tempfile.TemporaryDirectory(prefix="frontier_") as tmp:
        work = Path(tmp)
        rows = [run_candidate(name, arch, params, work, args.teacher, args.prepared, args.corpus)
                for name, arch in candidates.items()]
        # Timing on validation texts (test is never read here), every candidate interleaved with the reference.
        val_texts, _, _ = load_split(args.prepared, "val")
        rng = np.random.default_rng(params["seed"])
        sample = [val_texts[i] for i in rng.choice(len(val_texts), min(args.latency_samples, len(val_texts)),
                                                   replace=False)]
        teacher, tokenizer, info = load_artifact(args.teacher)
        reference = QUANT_METHODS[REFERENCES[STRONGEST]].quantize(teacher, name=REFERENCES[STRONGEST])
        classifiers = {STRONGEST: TextClassifier(reference, tokenizer, info, params["data"]["max_length"])}
        for row in rows:
            classifiers[row["candidate"]] = TextClassifier(*load_artifact(work / row["candidate"] / "quantized"))
        cfg = params["evaluate"]
        speed = measure_speed(classifiers, sample, threads=cfg["threads"], latency_threads=cfg.get("latency_threads"),
                              batch_size=cfg["batch_size"], seed=params["seed"])
    for row in rows:
        s = speed[row["candidate"]]
        row.update(e2e_ms_p50=s["e2e_ms_p50"], e2e_throughput_b64=s["e2e_throughput_b64"],
                   speedup_vs_teacher_onnx_int8=speed[STRONGEST]["e2e_ms_p50"] / s["e2e_ms_p50"])
    out = Path(args.out)
    result = {"command": " ".join(["python -m bench.bench_frontier", *sys.argv[1:]]),
              "data": params["data"], "corpus": args.corpus,
              "overrides": dict(args.set), "machine": machine(), "reference": {STRONGEST: speed[STRONGEST]}, "rows": rows,
              "note": "val macro-F1 with thresholds tuned on val; latency on val texts; one seed (params.yaml)"}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = (f"# Student shape frontier\n\n`{result['command']}` on {result['machine']['cpus']} CPUs, seed "
            f"{params['seed']}, data {params['data']['path']}, transfer corpus {args.corpus}, "
            f"the default distill/prune/quantize params{' with ' + ', '.join(f'{k}={v}' for k, v in args.set) if args.set else ''}, "
            f"teacher val "
            f"macro-F1 {rows[0]['teacher_val_macro_f1']:.4f}. Validation only; one seed, so a "
            f"val difference under the seed spread in bench/SEEDS.md is not a result. {STRONGEST} e2e p50: "
            f"{speed[STRONGEST]['e2e_ms_p50']:.3f} ms.\n\n" + markdown(rows))
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
