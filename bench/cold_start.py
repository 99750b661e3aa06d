"""Cold start of the `predict` CLI (not a test): wall time from process start to the first label on
stdout, for one text, as a user running it from a shell sees it (Python start-up, imports, loading
and checking the model, tokenizing, the forward pass, printing).

    .venv/bin/python -m bench.cold_start                     # models/final, 7 runs
    .venv/bin/python -m bench.cold_start --model models/teacher --runs 3 --out /tmp/cold

Writes <out>.json and <out>.md (default bench/cold_start). The first run is a warm-up (file cache)
and is reported apart from the median."""
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


def one_run(model: str, threads: int | None) -> float:
    """Seconds from Popen to the first line after the CSV header (the first label)."""
    cmd = [sys.executable, "-m", "banglacompress.predict", "--model", model, TEXT]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = proc.stdout.readline()
    first = proc.stdout.readline()
    seconds = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0 or not header.startswith("text,") or not first:
        sys.exit(f"cold_start: predict failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return seconds


def import_seconds() -> float:
    """Seconds for a process that only starts Python and imports the predict module, to the line it prints
    right after: stopped where one_run stops (at output), so neither counts the interpreter's exit, which
    tears torch down for about a second."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import banglacompress.predict; print('imported', flush=True)"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    seconds = time.perf_counter() - start
    if proc.wait() != 0 or line.strip() != "imported":
        sys.exit("cold_start: importing banglacompress.predict failed")
    return seconds


HEAVY = ("torch", "transformers", "bitsandbytes", "sklearn", "onnxruntime", "onnx", "accelerate", "dvclive",
         "pandas", "tokenizers")


def import_breakdown() -> dict:
    """`python -X importtime`: cumulative seconds of the heavy packages where predict's imports first pull
    them in (one run; the tree shares modules, so the parts overlap and do not add up to the total)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import banglacompress.predict"],
                          capture_output=True, text=True, check=True)
    found = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if name in HEAVY or name == "banglacompress.predict":
            found[name] = max(found.get(name, 0.0), int(parts[1]) / 1e6)
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/final")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="predict --threads (default: predict's default)")
    ap.add_argument("--out", default="bench/cold_start", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    if not (Path(args.model) / "inference.json").exists():
        sys.exit(f"cold_start: {args.model} is not a model directory; run `dvc repro` (or `dvc pull`) first")
    first = one_run(args.model, args.threads)
    runs, imports = [], []
    for _ in range(args.runs):  # alternated, so machine drift hits both alike
        runs.append(one_run(args.model, args.threads))
        imports.append(import_seconds())
    result = {"command": "python -m bench.cold_start " + " ".join(sys.argv[1:]), "machine": machine(),
              "model": args.model, "text": TEXT, "first_run_s": first, "runs_s": runs,
              "median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs),
              "import_only_runs_s": imports, "import_only_median_s": statistics.median(imports),
              "import_breakdown_s": import_breakdown()}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = (f"# `predict` cold start\n\n`{result['command']}` · {result['machine']['date']} · "
            f"{result['machine']['cpus']} CPUs, load average {result['machine']['load_average'][0]:.2f}\n\n"
            f"From process start to the first label on stdout, one text, `{args.model}`: median "
            f"**{result['median_s']:.2f} s** over {len(runs)} runs (min {result['min_s']:.2f}, max "
            f"{result['max_s']:.2f}); the first, file-cache-cold run took {first:.2f} s. A process that only "
            f"starts Python and imports `banglacompress.predict` took {result['import_only_median_s']:.2f} s "
            "(median, runs alternated with the above; min "
            f"{min(imports):.2f}, max {max(imports):.2f}): the cold start is the imports; loading and checking the "
            "model, tokenizing, the forward pass and printing are within the run-to-run spread. "
            "For many texts, start predict once and pass them all (arguments, stdin or --csv).\n\n"
            "Where the import time goes (`python -X importtime`, one run, cumulative seconds where predict's "
            "imports first pull each package in; nested, so they overlap):\n\n| package | s |\n|---|---:|\n"
            + "".join(f"| {k} | {v:.2f} |\n" for k, v in result["import_breakdown_s"].items()))
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
