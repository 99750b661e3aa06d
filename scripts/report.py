"""Markdown review report against a base revision: metrics diff, params diff, summary table, plots.

Usage: python scripts/report.py [BASE]   (what `make report` and the pull-request workflow run)"""
import subprocess
import sys
from pathlib import Path


def dvc(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        return f"_`dvc {' '.join(args)}` failed: {result.stderr.strip().splitlines()[-1] if result.stderr else ''}_\n"
    return result.stdout or "_no changes_\n"


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    summary = Path("metrics/summary.md")
    parts = [f"# Pipeline review against `{base}`\n",
             "## Metrics diff\n", dvc("metrics", "diff", base, "--md"),
             "## Params diff\n", dvc("params", "diff", base, "--md"),
             "## This run (test split)\n", summary.read_text(encoding="utf-8") if summary.exists() else "_no summary_\n",
             "## Plots diff\n", "Rendered by `dvc plots diff " + base + " -o plots_diff` into plots_diff/index.html: "
             + dvc("plots", "diff", base, "-o", "plots_diff").strip() + "\n"]
    print("\n".join(parts))


if __name__ == "__main__":
    main()
