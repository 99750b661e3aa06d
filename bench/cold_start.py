"""Cold start of `predict` (not a test): wall time from process start to the first label on stdout, for one
text, as a user running it from a shell sees it (Python start-up, imports, loading and checking the model,
tokenizing, the forward pass, printing), on an ONNX model (runtime.OnnxClassifier, no torch imported) and on
a PyTorch-format one (load_artifact, the training stack imported), runs alternated.

    .venv/bin/python -m bench.cold_start                     # models/final and models/pruned, 7 runs of each
    .venv/bin/python -m bench.cold_start --models models/final --runs 3 --out /tmp/cold

Writes <out>.json and <out>.md (default bench/cold_start). The first run of each is a warm-up (file
cache) and is reported apart from the median."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from banglacompress.runtime import ONNX_METHODS, quant_method

from .run_bench import machine

TEXT = "একটি মন্তব্য"
MODULE = "banglacompress.predict"
# What each path imports before it can label: predict alone (ONNX), or with the modules torch_classifier adds.
IMPORTS = {True: MODULE, False: f"{MODULE}, banglacompress.artifact, banglacompress.inference"}
HEAVY = ("torch", "transformers", "bitsandbytes", "sklearn", "onnxruntime", "onnx", "accelerate", "dvclive",
         "pandas", "tokenizers", "numpy")


def is_onnx(model: str) -> bool:
    return quant_method(model) in ONNX_METHODS


def one_run(model: str, threads: int | None) -> float:
    """Seconds from Popen to the first line after the CSV header (the first label)."""
    cmd = [sys.executable, "-m", MODULE, "--model", model, TEXT]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = proc.stdout.readline()
    first = proc.stdout.readline()
    seconds = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0 or not header.startswith("text,") or not first:
        sys.exit(f"cold_start: predict on {model} failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return seconds


def import_seconds(modules: str) -> float:
    """Seconds for a process that only starts Python and imports the modules, to the line it prints right
    after: stopped where one_run stops (at output), so neither counts the interpreter's exit, which
    tears torch down for about a second."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", f"import {modules}; print('imported', flush=True)"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    seconds = time.perf_counter() - start
    if proc.wait() != 0 or line.strip() != "imported":
        sys.exit(f"cold_start: importing {modules} failed")
    return seconds


def import_breakdown(modules: str) -> dict:
    """`python -X importtime`: cumulative seconds of the heavy packages where the modules' imports first pull
    them in (one run; the tree shares modules, so the parts overlap and do not add up to the total)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {modules}"],
                          capture_output=True, text=True, check=True)
    found = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if name in HEAVY or name == MODULE:
            found[name] = max(found.get(name, 0.0), int(parts[1]) / 1e6)
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def summary(runs: list[float]) -> dict:
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs)}


def report(result: dict) -> str:
    m, rows = result["machine"], result["models"]
    text = (f"# `predict` cold start: an ONNX model (no torch) and a PyTorch one\n\n`{result['command']}` · "
            f"{m['date']} · {m['cpu']} ({m['cpus']} CPUs), load average {m['load_average'][0]:.2f}\n\n"
            f"From process start to the first label on stdout, one text, "
            f"{len(next(iter(rows.values()))['runs_s'])} runs per model, alternated. \"imports only\" is a "
            "process that starts Python and imports what that path imports (predict; for a PyTorch model also "
            "artifact and inference), timed the same way.\n\n"
            "| model | format | to the first label, median (min–max) | imports only, median | first (file-cache-cold) run |\n"
            "|---|---|---|---|---|\n")
    for model, r in rows.items():
        text += (f"| `{model}` | {r['format']} | **{r['median_s']:.2f} s** ({r['min_s']:.2f}–{r['max_s']:.2f}) | "
                 f"{r['import_only']['median_s']:.2f} s | {r['first_run_s']:.2f} s |\n")
    onnx = [r for r in rows.values() if r["onnx"]]
    other = [r for r in rows.values() if not r["onnx"]]
    if onnx and other:
        text += (f"\nOn the ONNX model predict starts {other[0]['median_s'] / onnx[0]['median_s']:.1f}× sooner (ratio of "
                 "the medians). The difference is what the two paths import, not the models: compare the imports-only "
                 "column. For many texts, start predict once and pass them all (arguments, stdin or --csv).\n")
    text += ("\nWhere the import time goes (`python -X importtime`, one run, cumulative seconds where the path's "
             "imports first pull each package in; nested, so they overlap):\n")
    for model, r in rows.items():
        text += f"\n`{model}` ({r['format']}):\n\n| package | s |\n|---|---:|\n"
        text += "".join(f"| {k} | {v:.2f} |\n" for k, v in r["import_breakdown_s"].items())
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["models/final", "models/pruned"])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="predict --threads (default: predict's default)")
    ap.add_argument("--out", default="bench/cold_start", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    for model in args.models:
        if not (Path(model) / "inference.json").exists():
            sys.exit(f"cold_start: {model} is not a model directory; run `dvc repro` (or `dvc pull`) first")
    first = {model: one_run(model, args.threads) for model in args.models}
    runs = {model: [] for model in args.models}
    imports = {model: [] for model in args.models}
    for _ in range(args.runs):  # alternated, so machine drift hits every model alike
        for model in args.models:
            runs[model].append(one_run(model, args.threads))
            imports[model].append(import_seconds(IMPORTS[is_onnx(model)]))
    result = {"command": " ".join(["python -m bench.cold_start", *sys.argv[1:]]), "machine": machine(), "text": TEXT,
              "models": {model: {"format": quant_method(model), "onnx": is_onnx(model), "first_run_s": first[model],
                                 "runs_s": runs[model], **summary(runs[model]),
                                 "import_only": {"imports": IMPORTS[is_onnx(model)], "runs_s": imports[model],
                                                 **summary(imports[model])},
                                 "import_breakdown_s": import_breakdown(IMPORTS[is_onnx(model)])}
                         for model in args.models}}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = report(result)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
