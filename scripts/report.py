"""Markdown review of the workspace against a base revision, for people: what `make report` and the
pull-request workflow (CML comments report.md) run.

Usage: python scripts/report.py [BASE] [--out report.md] [--skip-dvc-plots]

The report opens with one row per pipeline stage row in metrics/summary.json `stages` (teacher, student,
pruned, quantized and any other row): test macro-F1 and size (bytes on disk as MB), then timing (p50
latency, speedup) in its own table, each as base value, new value and change. Every change is marked
against the seed noise in bench/SEEDS.json (|change| <= 2 x std of that metric for that row over the
seeds: within noise; else outside noise; no SEEDS.json or no std: noise unknown). Timing figures are
labelled noisy and never count as a change. Timings are read from metrics/speed.json where a revision
has it, else from the summary rows. After the tables: the full `dvc metrics diff --md` and
`dvc params diff --md` in a collapsed <details> block, then PNG plots in report_plots/ (next to the
report file) referenced by relative paths so that `cml comment create --publish` uploads them.
"""
import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot is imported)
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

SUMMARY = "metrics/summary.json"
SPEED = "metrics/speed.json"
SEEDS = "bench/SEEDS.json"
PLOTS_DIR = "report_plots"
CURVES = {  # stage -> validation macro-F1 per epoch (dvclive)
    "train_teacher": "plots/train_teacher/plots/metrics/val/macro_f1.tsv",
    "distill": "plots/distill/plots/metrics/val/macro_f1.tsv",
    "prune": "plots/prune/plots/metrics/val/macro_f1.tsv",
}
DASH = "–"
TIMING_LABEL = "timing: noisy, machine-dependent"
# Metric names that are timings: never a real change, wherever they appear.
TIMING_RE = re.compile(r"latency|throughput|speedup|second|duration|time|(^|_)ms($|_)|(^|_)s$", re.I)

def plain(decimals: int):
    """Value and change formatters at a fixed precision; a change below it is shown as 1e-… ."""
    def value(v: float) -> str:
        return f"{v:.{decimals}f}"

    def change(d: float) -> str:
        text = f"{abs(d):.{decimals}f}"
        if float(text) == 0:
            text = f"{abs(d):.1e}"
        return ("−" if d < 0 else "+") + text
    return value, change


def size_change(d: float) -> str:
    """Bytes in the unit that keeps the figure readable: B, kB or MB (10^3, 10^6)."""
    if abs(d) < 1e3:
        text = f"{abs(d):,.0f} B"
    elif abs(d) < 1e6:
        text = f"{abs(d) / 1e3:.1f} kB"
    else:
        text = f"{abs(d) / 1e6:.3f} MB"
    return ("−" if d < 0 else "+") + text


# (key in the rows, column title, value formatter, change formatter): a change formatter is also used
# for the 2 x std limit it is marked against, without its sign.
F1_VALUE, F1_CHANGE = plain(4)
MS_VALUE, MS_CHANGE = plain(2)
QUALITY = [("macro_f1", "test macro-F1", F1_VALUE, F1_CHANGE),
           ("size_bytes", "size (MB)", lambda v: f"{v / 1e6:.3f}", size_change)]
TIMING = [("e2e_ms_p50", "e2e p50 latency (ms)", MS_VALUE, MS_CHANGE),
          ("latency_ms_p50", "forward p50 latency (ms)", MS_VALUE, MS_CHANGE),
          ("speedup", "e2e speedup vs teacher (×)", MS_VALUE, MS_CHANGE),
          ("speedup_vs_teacher_onnx_int8", "e2e speedup vs teacher in ORT INT8 (×)", MS_VALUE, MS_CHANGE)]


def is_timing(metric: str) -> bool:
    return bool(TIMING_RE.search(metric))


# ---------------------------------------------------------------- reading both sides
def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def read_text(path: str, base: str | None) -> str | None:
    """The file in the workspace (base None) or at revision `base`; None where it does not exist."""
    if base is None:
        p = Path(path)
        return p.read_text(encoding="utf-8") if p.exists() else None
    result = git("show", f"{base}:./{path}")
    return result.stdout if result.returncode == 0 else None


def read_json(path: str, base: str | None) -> dict | None:
    text = read_text(path, base)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def stage_rows(base: str | None) -> tuple[dict, dict]:
    """(quality/size rows, timing rows) of one side. Timing rows come from metrics/speed.json where that
    revision has it, else from the summary rows (the layout before speed.json)."""
    summary = (read_json(SUMMARY, base) or {}).get("stages") or {}
    speed = read_json(SPEED, base)
    if speed is None:
        return summary, summary
    return summary, speed.get("stages") or {}


def read_curve(path: str, base: str | None) -> list[tuple[float, float]]:
    text = read_text(path, base)
    points = []
    for line in (text or "").splitlines()[1:]:
        cells = line.split("\t")
        try:
            points.append((float(cells[0]), float(cells[1])))
        except (IndexError, ValueError):
            continue
    return points


def load_noise() -> tuple[dict, list]:
    """(stage -> metric -> {"std": ..}, seeds) from the workspace bench/SEEDS.json; empty without it."""
    seeds = read_json(SEEDS, None)
    if not isinstance(seeds, dict):
        return {}, []
    return seeds.get("stages") or {}, seeds.get("seeds") or []


# ---------------------------------------------------------------- the noise rule
def noise_verdict(change: float | None, std: float | None) -> str:
    """'no change', 'within noise', 'outside noise' or 'noise unknown' (|change| <= 2 x std is within)."""
    if change is None:
        return ""
    if change == 0:
        return "no change"
    if std is None or not isinstance(std, (int, float)) or math.isnan(std):
        return "noise unknown"
    return "within noise" if abs(change) <= 2 * std else "outside noise"


def number(row: dict | None, key: str) -> float | None:
    value = row.get(key) if isinstance(row, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare(stages: list[str], base_rows: dict, new_rows: dict, columns: list, noise: dict,
            emphasise: bool = True) -> list[dict]:
    """One dict per (stage, metric): base, new, change (raw units), verdict and the cells to show.
    `emphasise` puts 'outside noise' in bold (not for timing, which never counts as a change)."""
    out = []
    for stage in stages:
        for key, title, show_value, show_change in columns:
            base, new = number(base_rows.get(stage), key), number(new_rows.get(stage), key)
            change = new - base if base is not None and new is not None else None
            std = number((noise.get(stage) or {}).get(key), "std")
            verdict = noise_verdict(change, std)
            if change is None:
                change_cell = DASH
            elif change == 0:
                change_cell = "0 (no change)"
            else:
                mark = "**outside noise**" if verdict == "outside noise" and emphasise else verdict
                limit = f", 2σ {show_change(2 * std)[1:]}" if std is not None else ""
                change_cell = f"{show_change(change)} ({mark}{limit})"
            out.append({"stage": stage, "metric": key, "title": title, "base": base, "new": new,
                        "change": change, "std": std, "verdict": verdict,
                        "base_cell": DASH if base is None else show_value(base),
                        "new_cell": DASH if new is None else show_value(new),
                        "change_cell": change_cell})
    return out


def table(stages: list[str], cells: list[dict], columns: list, suffix: str = "") -> str:
    header = ["stage"]
    for _, title, *_ in columns:
        header += [f"{title} base", f"{title} new", f"{title} change{suffix}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(c["stage"], c["metric"]): c for c in cells}
    for stage in stages:
        row = [f"`{stage}`"]
        for key, *_ in columns:
            c = by_key[(stage, key)]
            row += [c["base_cell"], c["new_cell"], c["change_cell"]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def ordered_stages(*row_sets: dict) -> list[str]:
    seen: list[str] = []
    for rows in row_sets:
        seen += [s for s in rows if s not in seen]
    return seen


# ---------------------------------------------------------------- dvc diffs
def dvc(*args: str) -> tuple[str, str]:
    """(stdout, warnings) of `dvc ARGS`; a failure is reported in the text, not raised."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    warnings = result.stderr.strip()
    if result.returncode != 0:
        last = warnings.splitlines()[-1] if warnings else f"exit {result.returncode}"
        return f"_`dvc {' '.join(args)}` failed: {last}_\n", ""
    text = result.stdout.strip()
    if not text or (text.startswith("|") and not md_table_rows(text)):  # nothing, or a header alone
        return "_No changes._\n", warnings
    return text + "\n", warnings


def md_table_rows(text: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.strip().startswith("|")]
    return [r for r in rows[2:]] if len(rows) > 2 else []  # past the header and the rule


# ---------------------------------------------------------------- plots
def plot_curves(base: str, out: Path) -> bool:
    curves = {stage: (read_curve(path, base), read_curve(path, None)) for stage, path in CURVES.items()}
    if not any(b or n for b, n in curves.values()):
        return False
    fig, axes = plt.subplots(1, len(curves), figsize=(12, 3.6), sharey=True)
    for ax, (stage, (b, n)) in zip(axes, curves.items()):
        if b:
            ax.plot(*zip(*b), "o--", color="tab:gray", label=f"base ({base})")
        if n:
            ax.plot(*zip(*n), "o-", color="tab:blue", label="new (workspace)")
        if not b and not n:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(stage)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if b or n:
            ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("validation macro-F1")
    fig.suptitle("Validation macro-F1 per epoch: base vs new")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def plot_tradeoff(base: str, sides: dict, out: Path) -> bool:
    """Macro-F1 against size and against p50 latency per stage; base hollow, new filled."""
    if not any(rows for rows, _ in sides.values()):
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    styles = {"base": dict(marker="o", facecolors="none", edgecolors="tab:gray", s=70, zorder=3),
              "new": dict(marker="o", color="tab:blue", s=45, zorder=4)}
    for ax, key, scale, which in ((left, "size_bytes", 1e-6, 0), (right, "latency_ms_p50", 1.0, 1)):
        placed: dict[str, dict[str, tuple[float, float]]] = {}
        for side, rows in sides.items():
            summary, source = rows[0], rows[which]
            points = {s: (number(source.get(s), key), number(summary.get(s), "macro_f1")) for s in summary}
            points = {s: (x * scale, y) for s, (x, y) in points.items() if x is not None and y is not None}
            placed[side] = points
            if points:
                label = f"base ({base})" if side == "base" else "new (workspace)"
                ax.scatter([p[0] for p in points.values()], [p[1] for p in points.values()], label=label,
                           **styles[side])
        for stage, (x, y) in placed.get("new", {}).items():
            if stage in placed.get("base", {}):  # a thin line from each stage's base point to its new one
                bx, by = placed["base"][stage]
                ax.plot([bx, x], [by, y], color="tab:gray", lw=0.8, alpha=0.6, zorder=2)
        labels = placed.get("new") or placed.get("base") or {}
        right_most = max((x for x, _ in labels.values()), default=None)
        for stage, (x, y) in labels.items():  # the right-most label goes left of its point, inside the axes
            left_of = x == right_most and len(labels) > 1
            ax.annotate(stage, (x, y), textcoords="offset points", xytext=(-6 if left_of else 6, 4), fontsize=8,
                        ha="right" if left_of else "left")
        ax.margins(x=0.12, y=0.12)
    left.set_xscale("log")
    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("size on disk (MB, log scale)")
    left.set_title("macro-F1 against size")
    right.set_xlabel("p50 latency, batch 1 (ms)")
    right.set_title(f"macro-F1 against p50 latency ({TIMING_LABEL})", fontsize=10)
    for ax in (left, right):
        ax.set_ylabel("test macro-F1")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- the report
def build(base: str, plots_dir: Path, plots_ref: str, dvc_plots: bool = True) -> str:
    if git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").returncode != 0:
        sys.exit(f"report.py: {base!r} is not a git revision here")
    base_sha = git("rev-parse", "--short", f"{base}^{{commit}}").stdout.strip()
    head_sha = git("rev-parse", "--short", "HEAD").stdout.strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())

    base_summary, base_timing = stage_rows(base)
    new_summary, new_timing = stage_rows(None)
    noise, seeds = load_noise()
    quality_stages = ordered_stages(new_summary, base_summary)
    timing_stages = ordered_stages(new_timing, base_timing, new_summary, base_summary)
    quality = compare(quality_stages, base_summary, new_summary, QUALITY, noise)
    timing = compare(timing_stages, base_timing, new_timing, TIMING, noise, emphasise=False)

    outside = [c for c in quality if c["verdict"] == "outside noise"]
    unknown = [c for c in quality if c["verdict"] == "noise unknown"]
    within = [c for c in quality if c["verdict"] == "within noise"]
    if outside:
        verdict = (f"**{len(outside)} quality/size change(s) outside seed noise:** "
                   + ", ".join(f"`{c['stage']}` {c['title'].split(' (')[0]} {c['change_cell'].split(' (')[0]}" for c in outside) + ".")
    elif unknown:
        verdict = (f"{len(unknown)} quality/size change(s) with noise unknown (no std in {SEEDS}); "
                   "none known to be outside noise.")
    elif within:
        verdict = f"All {len(within)} quality/size change(s) are within seed noise."
    else:
        verdict = "**No change in quality or size.**"
    timing_moved = sum(1 for c in timing if c["change"])

    seeds_text = f"seeds {', '.join(map(str, seeds))}" if seeds else "the seeds"
    rule = (f"Noise rule: a change is *within noise* when |change| ≤ 2 × std of that metric for that stage "
            f"over {seeds_text} in `{SEEDS}`, else *outside noise*; no `{SEEDS}` or no std for it: "
            "*noise unknown*." + ("" if noise else f" (`{SEEDS}` is absent: every change is noise unknown.)"))

    parts = [f"# Pipeline review: workspace against `{base}`\n",
             f"Base `{base}`" + (f" ({base_sha})" if base_sha != base else "") + f"; new: the workspace (HEAD {head_sha}"
             + (", with uncommitted changes" if dirty else "") + "). Test split.\n",
             verdict + (f" Timing changed in {timing_moved} cell(s) ({TIMING_LABEL}; not counted)."
                        if timing_moved else "") + "\n",
             rule + "\n",
             "## Quality and size per stage\n",
             table(quality_stages, quality, QUALITY) if quality_stages else "_no stage rows in either side_\n",
             f"Size is bytes on disk / 10⁶. Rows from `{SUMMARY}` `stages`.\n",
             f"## Timing per stage ({TIMING_LABEL})\n",
             f"_Timing figures are noisy and machine-dependent: shown for reference, never counted as a "
             f"change._ From `{SPEED}` where a side has it, else from `{SUMMARY}`.\n",
             table(timing_stages, timing, TIMING, suffix=" (timing: noisy)") if timing_stages else "_no timing rows_\n"]

    metrics_md, metrics_warn = dvc("metrics", "diff", base, "--md")
    params_md, params_warn = dvc("params", "diff", base, "--md")
    changed = [r for r in md_table_rows(metrics_md) if len(r) >= 2]
    n_timing = sum(1 for r in changed if is_timing(r[1]))
    n_params = len(md_table_rows(params_md))
    warn = "\n".join(f"> {w}" for w in (metrics_warn + "\n" + params_warn).strip().splitlines() if w.strip())
    parts += ["## Full DVC diffs\n",
              f"<details><summary>dvc metrics diff: {len(changed) - n_timing} non-timing and {n_timing} timing "
              f"metric(s) changed; dvc params diff: {n_params} param(s) changed</summary>\n",
              f"Timing rows (latency, throughput, speedup, seconds) below are {TIMING_LABEL}.\n",
              f"### `dvc metrics diff {base} --md`\n", metrics_md,
              f"### `dvc params diff {base} --md`\n", params_md]
    if warn:
        parts.append("DVC warnings:\n\n" + warn + "\n")
    parts.append("</details>\n")

    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):
        old.unlink()
    parts.append("## Plots\n")
    if plot_curves(base, plots_dir / "val_macro_f1.png"):
        parts.append(f"![Validation macro-F1 per epoch, base vs new]({plots_ref}/val_macro_f1.png)\n")
    else:
        parts.append("_no validation curves on either side_\n")
    sides = {"base": (base_summary, base_timing), "new": (new_summary, new_timing)}
    if plot_tradeoff(base, sides, plots_dir / "tradeoff.png"):
        parts.append(f"![Macro-F1 against size and p50 latency per stage, base vs new]({plots_ref}/tradeoff.png)\n")
    else:
        parts.append("_no stage rows on either side_\n")
    if dvc_plots:
        text, _ = dvc("plots", "diff", base, "-o", "plots_diff")
        ok = "failed" not in text
        parts.append("Every plot declared in dvc.yaml, interactive: "
                     + (f"`dvc plots diff {base} -o plots_diff` wrote `plots_diff/index.html` (local, not uploaded)."
                        if ok else text.strip()) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", default="HEAD", help="git revision to compare against")
    parser.add_argument("--out", "-o", help="write the report here (default: stdout); plots go beside it")
    parser.add_argument("--skip-dvc-plots", action="store_true", help="do not render plots_diff/index.html")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else None
    plots_dir = (out.parent if out else Path(".")) / PLOTS_DIR
    report = build(args.base, plots_dir, PLOTS_DIR, dvc_plots=not args.skip_dvc_plots)
    if out:
        out.write_text(report, encoding="utf-8")
    else:
        sys.stdout.write(report)


if __name__ == "__main__":
    main()
