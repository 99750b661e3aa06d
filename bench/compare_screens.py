"""Screens against their default runs, paired by teacher (not a test).

A screen (`bench.bench_frontier --only L1_H96 --set KEY=VALUE`, run inside a finished run's directory) reruns
distill, prune and quantize on that run's teacher with other params. This pairs each screen with the default run
it was made in, checks that both used the same teacher (the teacher's val macro-F1 must be equal to the last
digit), and writes, per dataset, the final model's val macro-F1 default -> screen for every seed, the mean +- std
(n - 1) of the paired changes, whether they are outside seed noise (run_bench.outside_noise), and the default
rule: mean final val up on every dataset, outside noise on at least one, three seeds per dataset. Val only: a
screen never scores test.

    python -m bench.compare_screens \\
        --pair cyberbully bench/chain_default_cyberbully_seed42_amd.json bench/screen_alpha1_cyberbully_seed42_amd.json \\
        --pair hatespeech . bench/screen_alpha1_hatespeech_seed42_amd.json --out bench/compare_alpha1_screens_amd

The default side is a run_bench record holding that dataset's run (its val scores; in a record with several, as
bench/RESULTS.json, the run with the screen's teacher), or a pipeline directory whose metrics/ hold them (the
committed `dvc repro`: `.`). Writes OUT.json and OUT.md."""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import yaml

from banglacompress.data import CORPUS_FILE

from .run_bench import DATASETS, fmt, outside_noise, stats

SEEDS_FOR_A_DEFAULT = 3  # the rule every default change was held to (docs/experiments.md)
PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"
SHAPE_KEYS = ("layers", "hidden", "heads", "ffn")


def default_run(dataset: str, base: Path, teacher: float | None = None) -> dict:
    """{seed, teacher, final, cpu, source} of the default run: from a pipeline directory, or from a run_bench record.
    A record with several runs of the dataset (bench/RESULTS.json) gives the one whose teacher val macro-F1 is
    `teacher`, the screen's: the pairing is by teacher, so a seed cannot be matched to another seed's run."""
    if base.is_dir():
        metrics = {s: json.loads((base / "metrics" / f"{s}.json").read_text(encoding="utf-8"))
                   for s in ("train_teacher", "quantize")}
        params = yaml.safe_load((base / "params.yaml").read_text(encoding="utf-8"))
        return {"seed": params["seed"], "teacher": metrics["train_teacher"]["val_macro_f1_tuned"],
                "final": metrics["quantize"]["val_macro_f1"], "cpu": None, "source": f"{base}/metrics"}
    record = json.loads(base.read_text(encoding="utf-8"))
    runs = record["datasets"].get(dataset, {}).get("runs", [])
    if not runs:
        raise ValueError(f"{base}: holds 0 {dataset} runs")
    if any("val" not in run for run in runs):
        raise ValueError(f"{base}: a {dataset} run has no val scores (a record from before run_bench kept them)")
    if len(runs) > 1:
        matches = [run for run in runs if run["val"]["teacher"] == teacher]
        if len(matches) != 1:
            raise ValueError(f"{base}: {len(matches) or 'none'} of its {len(runs)} {dataset} runs has the screen's "
                             f"teacher (val macro-F1 {teacher}); run the screen in one of their directories")
        runs = matches
    run = runs[0]
    return {"seed": run["seed"], **run["val"], "cpu": run.get("cpu", record["machine"]["cpu"]), "source": str(base)}


@functools.cache
def default_shape() -> dict:
    """student.scratch of the repo's params.yaml: the shape make bench's default runs distilled into (read once,
    not once per screen)."""
    params = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    return {k: params["student"]["scratch"][k] for k in SHAPE_KEYS}


def screen_run(path: Path, shape: dict | None = None) -> dict:
    """A screen's val scores and its change: --set overrides, another --corpus, and a student shape other than
    `shape` (default: params.yaml's student.scratch), each part of the change."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    if len(saved["rows"]) != 1:
        raise ValueError(f"{path}: {len(saved['rows'])} candidates; a screen is one (--only L1_H96)")
    row = saved["rows"][0]
    # Another transfer set (bench_frontier --corpus) is part of the change, like a --set override.
    corpus = {"--corpus": saved["corpus"]} if saved.get("corpus", CORPUS_FILE) != CORPUS_FILE else {}
    # So is another student shape (bench_frontier --shape): without it a shape screen would read as no change.
    shape = default_shape() if shape is None else shape
    resized = {f"student.scratch.{k}": row[k] for k in SHAPE_KEYS if k in row and row[k] != shape[k]}
    return {"teacher": row["teacher_val_macro_f1"], "student": row["val_macro_f1_student"],
            "pruned": row["val_macro_f1_pruned"], "final": row["val_macro_f1_final"],
            "overrides": {**saved["overrides"], **corpus, **resized}, "cpu": saved["machine"]["cpu"],
            "source": str(path)}


def pair(dataset: str, base: Path, screen: Path) -> dict:
    if dataset not in DATASETS:
        raise ValueError(f"{dataset}: not a make bench dataset ({', '.join(DATASETS)})")
    s = screen_run(screen)
    b = default_run(dataset, base, s["teacher"])
    if b["teacher"] != s["teacher"]:
        raise ValueError(f"{screen} was not made on {base}'s teacher (teacher val macro-F1 {s['teacher']:.6f} "
                         f"against {b['teacher']:.6f}); run the screen in that run's directory")
    if b["cpu"] not in (None, s["cpu"]):
        raise ValueError(f"{dataset} seed {b['seed']}: the default ran on {b['cpu']}, the screen on {s['cpu']}; "
                         "float kernels differ across CPU types, so the pair would not be paired")
    return {"dataset": dataset, "seed": b["seed"], "base": b, "screen": s, "change": s["final"] - b["final"]}


def compare(pairs: list[dict]) -> dict:
    overrides = {json.dumps(p["screen"]["overrides"], sort_keys=True) for p in pairs}
    if len(overrides) != 1:
        raise ValueError(f"the screens changed different params ({' vs '.join(sorted(overrides))}); "
                         "compare one change at a time")
    # A run is a dataset, a seed and a CPU type: the same seed on another CPU type trains another teacher (float
    # kernels differ), so it counts as one more seed, as cross-machine differences are read (README).
    seen = set()
    for p in pairs:
        run = (p["dataset"], p["seed"], p["screen"]["cpu"])
        if run in seen:
            raise ValueError(f"{p['dataset']} seed {p['seed']} on {run[2]} is given twice")
        seen.add(run)
    datasets = {}
    for name in [n for n in DATASETS if any(p["dataset"] == n for p in pairs)]:
        runs = sorted((p for p in pairs if p["dataset"] == name), key=lambda p: (p["screen"]["cpu"], p["seed"]))
        changes = [p["change"] for p in runs]
        datasets[name] = {"runs": runs, "change": stats(changes),
                          "outside_noise": outside_noise(changes) if len(changes) > 1 else None}
    missing = [n for n in DATASETS if len(datasets.get(n, {"runs": []})["runs"]) < SEEDS_FOR_A_DEFAULT]
    falls = [n for n, d in datasets.items() if d["change"]["mean"] <= 0]
    so_far = f"; so far the mean falls on {', '.join(falls)}" if falls else ""
    verdict = (f"not decided: fewer than {SEEDS_FOR_A_DEFAULT} seeds on {', '.join(missing)}{so_far}" if missing else
               f"fails: the mean falls on {', '.join(falls)}" if falls else
               "met" if any(d["outside_noise"] for d in datasets.values()) else "fails: no dataset outside noise")
    return {"overrides": json.loads(overrides.pop()), "datasets": datasets, "rule": verdict}


def render(saved: dict) -> str:
    what = ", ".join(f"`{k}={v}`" for k, v in saved["overrides"].items())
    lines = ["# Screens against their default runs, paired by teacher", "", f"Command: `{saved['command']}`", "",
             f"Change: {what}. Each screen reran distill, prune and quantize on its default run's teacher (equal "
             "teacher val macro-F1 checked). Val macro-F1 only, thresholds tuned on val; test is not read. A change "
             "is outside seed noise when every seed agrees on its sign and its mean is more than 2 std (n − 1) "
             "from zero.", "",
             "| dataset | seed | CPU (both sides) | teacher | student | pruned | final, default → screen | change |",
             "|---|---|---|---|---|---|---|---:|"]
    for name, d in saved["datasets"].items():
        for p in d["runs"]:
            s = p["screen"]
            lines.append(f"| {name} | {p['seed']} | {s['cpu']} | {fmt(s['teacher'])} | {fmt(s['student'])} | {fmt(s['pruned'])} "
                         f"| {fmt(p['base']['final'])} → {fmt(s['final'])} | {p['change']:+.4f} |")
    lines += ["", "| dataset | seeds | final val change, mean ± std | outside noise |", "|---|---|---|---|"]
    for name, d in saved["datasets"].items():
        c = d["change"]
        verdict = "– (one seed)" if d["outside_noise"] is None else "yes" if d["outside_noise"] else "no"
        lines.append(f"| {name} | {len(d['runs'])} | {c['mean']:+.4f} ± {c['std']:.4f} | {verdict} |")
    lines += ["", f"Default rule (mean final val up on every dataset, outside noise on at least one, "
                  f"{SEEDS_FOR_A_DEFAULT} seeds each): **{saved['rule']}**."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", nargs=3, action="append", required=True, metavar=("DATASET", "DEFAULT", "SCREEN"),
                    help="a make bench dataset, its default run (run_bench record or pipeline dir) and the screen "
                         "made in that run's directory (bench_frontier OUT.json); repeatable")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    try:
        saved = {"command": " ".join(["python -m bench.compare_screens", *sys.argv[1:]]),
                 **compare([pair(d, Path(b), Path(s)) for d, b, s in args.pair])}
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"compare_screens: {e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(render(saved), encoding="utf-8")
    print(render(saved), end="")


if __name__ == "__main__":
    main()
