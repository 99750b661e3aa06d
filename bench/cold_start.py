"""Cold start of the labelling commands (not a test): wall time from process start to the first label on
stdout, for one text, as a user running it from a shell sees it (Python start-up, imports, loading
and checking the model, tokenizing, the forward pass, printing), for `predict` (any format, the training
stack imported) and the torch-free `runtime` (ONNX models only), runs alternated.

    .venv/bin/python -m bench.cold_start                     # models/final, 7 runs of each
    .venv/bin/python -m bench.cold_start --model models/teacher --commands predict --runs 3 --out /tmp/cold

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

from .run_bench import machine

TEXT = "একটি মন্তব্য"
COMMANDS = {"predict": "banglacompress.predict", "runtime": "banglacompress.runtime"}
HEAVY = ("torch", "transformers", "bitsandbytes", "sklearn", "onnxruntime", "onnx", "accelerate", "dvclive",
         "pandas", "tokenizers", "numpy")


def one_run(module: str, model: str, threads: int | None) -> float:
    """Seconds from Popen to the first line after the CSV header (the first label)."""
    cmd = [sys.executable, "-m", module, "--model", model, TEXT]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = proc.stdout.readline()
    first = proc.stdout.readline()
    seconds = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0 or not header.startswith("text,") or not first:
        sys.exit(f"cold_start: {module} failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return seconds


def import_seconds(module: str) -> float:
    """Seconds for a process that only starts Python and imports the module, to the line it prints right
    after: stopped where one_run stops (at output), so neither counts the interpreter's exit, which
    tears torch down for about a second."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", f"import {module}; print('imported', flush=True)"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    seconds = time.perf_counter() - start
    if proc.wait() != 0 or line.strip() != "imported":
        sys.exit(f"cold_start: importing {module} failed")
    return seconds


def import_breakdown(module: str) -> dict:
    """`python -X importtime`: cumulative seconds of the heavy packages where the module's imports first pull
    them in (one run; the tree shares modules, so the parts overlap and do not add up to the total)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=True)
    found = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if name in HEAVY or name == module:
            found[name] = max(found.get(name, 0.0), int(parts[1]) / 1e6)
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def summary(runs: list[float]) -> dict:
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs)}


def report(result: dict) -> str:
    m, rows = result["machine"], result["commands"]
    text = (f"# Cold start: `predict` and the torch-free `runtime`\n\n`{result['command']}` · {m['date']} · "
            f"{m['cpu']} ({m['cpus']} CPUs), load average {m['load_average'][0]:.2f}\n\n"
            f"From process start to the first label on stdout, one text, `{result['model']}`, "
            f"{len(next(iter(rows.values()))['runs_s'])} runs of each command, alternated. \"imports only\" is a "
            "process that starts Python and imports the command's module, timed the same way.\n\n"
            "| command | to the first label, median (min–max) | imports only, median | first (file-cache-cold) run |\n"
            "|---|---|---|---|\n")
    for name, r in rows.items():
        text += (f"| `python -m {COMMANDS[name]}` | **{r['median_s']:.2f} s** ({r['min_s']:.2f}–{r['max_s']:.2f}) | "
                 f"{r['import_only']['median_s']:.2f} s | {r['first_run_s']:.2f} s |\n")
    if {"predict", "runtime"} <= set(rows):
        text += (f"\nThe runtime starts {rows['predict']['median_s'] / rows['runtime']['median_s']:.1f}× sooner "
                 "(ratio of the medians): the difference is the training stack's imports, not the model. For many "
                 "texts, start either command once and pass them all (arguments, stdin or --csv).\n")
    text += ("\nWhere the import time goes (`python -X importtime`, one run, cumulative seconds where the module's "
             "imports first pull each package in; nested, so they overlap):\n")
    for name, r in rows.items():
        text += f"\n`{COMMANDS[name]}`:\n\n| package | s |\n|---|---:|\n"
        text += "".join(f"| {k} | {v:.2f} |\n" for k, v in r["import_breakdown_s"].items())
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/final")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS),
                    help="runtime needs an ONNX model directory (quantize.method onnx_int8 / onnx_fp32)")
    ap.add_argument("--threads", type=int, default=None, help="--threads of both commands (default: theirs)")
    ap.add_argument("--out", default="bench/cold_start", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    if not (Path(args.model) / "inference.json").exists():
        sys.exit(f"cold_start: {args.model} is not a model directory; run `dvc repro` (or `dvc pull`) first")
    modules = {name: COMMANDS[name] for name in args.commands}
    first = {name: one_run(module, args.model, args.threads) for name, module in modules.items()}
    runs = {name: [] for name in modules}
    imports = {name: [] for name in modules}
    for _ in range(args.runs):  # alternated, so machine drift hits every command alike
        for name, module in modules.items():
            runs[name].append(one_run(module, args.model, args.threads))
            imports[name].append(import_seconds(module))
    result = {"command": "python -m bench.cold_start " + " ".join(sys.argv[1:]), "machine": machine(),
              "model": args.model, "text": TEXT,
              "commands": {name: {"module": module, "first_run_s": first[name], "runs_s": runs[name],
                                  **summary(runs[name]),
                                  "import_only": {"runs_s": imports[name], **summary(imports[name])},
                                  "import_breakdown_s": import_breakdown(module)}
                           for name, module in modules.items()}}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = report(result)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
