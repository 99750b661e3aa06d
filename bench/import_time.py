"""Start-up cost of every stage script and of the predict CLI (not a test): the seconds a fresh Python
process spends importing each, median over `--runs` processes, and whether bitsandbytes got imported. Every
`dvc repro` stage, every stage a test runs as a script and every `python -m banglacompress.predict` pays
this before doing any work; on 2 cores it is most of a tiny pipeline's time (the DVC smoke test).

The last row is what bitsandbytes alone adds once torch, transformers, scikit-learn and ONNX (Runtime) are
loaded: why `quantize.bnb()` imports it only when int4 needs it.

    .venv/bin/python -m bench.import_time                 # 5 processes per row (~2 min on 2 cores)
    git worktree add /tmp/before <commit> && .venv/bin/python -m bench.import_time --repos /tmp/before .

With several --repos (checkouts of other commits), each row is timed in each checkout in turn, run by run,
so the columns are measured side by side with the same interpreter and packages.

Writes <out>.json and <out>.md (default bench/import_time)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from .run_bench import machine

ROOT = Path(__file__).resolve().parents[1]
STAGES = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])  # every stage, in order
TIMED = ("import sys, time\nt = time.perf_counter()\n{setup}\nt = time.perf_counter()\nimport {module}\n"
         "print(time.perf_counter() - t, 'bitsandbytes' in sys.modules)")
ROWS = {**{f"stages/{s}.py": ("pass", f"stages.{s}") for s in STAGES},
        "python -m banglacompress.predict": ("pass", "banglacompress.predict"),
        "bitsandbytes, after torch, transformers, sklearn, onnx, onnxruntime":
            ("import torch, transformers, sklearn.metrics, onnx, onnxruntime",
             "bitsandbytes.nn, bitsandbytes.functional")}


def time_import(repo: Path, setup: str, module: str) -> tuple[float, bool]:
    """Seconds to import `module` from `repo`'s code in a fresh process after `setup`, and whether bitsandbytes
    was then loaded."""
    out = subprocess.run([sys.executable, "-c", TIMED.format(setup=setup, module=module)], cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo)},
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), out[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repos", nargs="+", default=[str(ROOT)], help="checkouts whose code is imported")
    parser.add_argument("--out", default="bench/import_time")
    args = parser.parse_args()
    repos = [str(Path(r).resolve()) for r in args.repos]
    rows = {}
    for name, (setup, module) in ROWS.items():
        runs = {repo: [] for repo in repos}
        for _ in range(args.runs):
            for repo in repos:  # interleaved: the checkouts share whatever the machine is doing
                runs[repo].append(time_import(Path(repo), setup, module))
        rows[name] = {repo: {"seconds_median": statistics.median(s for s, _ in r), "seconds": [s for s, _ in r],
                             "imports_bitsandbytes": r[0][1]} for repo, r in runs.items()}
        print(f"[import_time] {name}: " + ", ".join(f"{rows[name][r]['seconds_median']:.2f} s" for r in repos),
              flush=True)
    command = "python -m bench.import_time" + " ".join(["", *sys.argv[1:]]).rstrip()
    commits = {r: subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=r, capture_output=True,
                                 text=True).stdout.strip() for r in repos}
    record = {"machine": machine(), "command": command, "runs": args.runs, "commits": commits, "rows": rows}
    Path(f"{args.out}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Import time of each stage script (fresh process, median of {args.runs})", "",
             f"Command: `{command}` · {record['machine']['cpu']} ({record['machine']['cpus']} CPUs) · "
             f"{record['machine']['date']}", "",
             "Seconds (median) with the code of each checkout (its HEAD commit; uncommitted changes count), and "
             "whether the import loaded bitsandbytes.", "",
             "| what is imported | " + " | ".join(f"{Path(r).name} ({commits[r]})" for r in repos) + " |",
             "|---|" + "---:|" * len(repos)]
    lines += [f"| {name} | " + " | ".join(
        f"{row[r]['seconds_median']:.2f}{' (bitsandbytes)' if row[r]['imports_bitsandbytes'] else ''}"
        for r in repos) + " |" for name, row in rows.items()]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
