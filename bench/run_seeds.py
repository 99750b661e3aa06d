"""`make seeds`: the seed noise of the default pipeline, the yardstick every F1 difference is read against.

Runs the default pipeline (every stage script, params.yaml as committed, in a scratch copy of the project
under bench/work/seeds/<run>) once per seed, where the seed changes the split, the initialisation and the
batch order; then once more per seed with the split held fixed (data.split_seed), so that the spread of
the training alone is known too. Writes bench/SEEDS.json and bench/SEEDS.md: mean, standard deviation
(n - 1) and min-max of every stage row's test macro-F1, size, compression, batch-1 latency and speedup.
`make report` marks a change as outside the noise when it exceeds 2 std of its row and metric.

    python -m bench.run_seeds                          # seeds 42 43 44; split fixed at 42 (5 runs, ~45 min)
    python -m bench.run_seeds --seeds 42 43 --fixed-split-seed 42 --render-only"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


from banglacompress.config import load_params
from bench.run_bench import PIPELINE, ROOT, machine, make_workdir, run_stage, stats

QUALITY = ("macro_f1", "size_bytes", "compression")  # metrics/summary.json: reproducible to the byte
# metrics/speed.json: machine noise on top of the seed's (every timing `make report` marks against the noise)
TIMING = ("e2e_ms_p50", "latency_ms_p50", "speedup", "speedup_vs_teacher_onnx_int8")


def run_once(name: str, params: dict, work: Path) -> dict:
    """One default pipeline in its own scratch copy; its summary, speed and stage wall times."""
    path = work / name
    make_workdir(path, params)
    seconds = {stage: run_stage(path, stage)["seconds"] for stage in PIPELINE}
    return collect(path, seconds)


def collect(path: Path, seconds: dict | None = None) -> dict:
    """The result of a finished run directory (its params, metrics and stage wall times)."""
    params = load_params(path / "params.yaml")
    if seconds is None:  # from the stage logs run_stage left ("[stage] done in 12.3s")
        seconds = {}
        for stage in PIPELINE:
            log = (path / "logs" / f"{stage}.log").read_text(encoding="utf-8")
            done = [line for line in log.splitlines() if line.startswith(f"[{stage}] done in ")]
            seconds[stage] = float(done[-1].split("done in ")[1].rstrip("s")) if done else float("nan")
    name = path.name
    summary = json.loads((path / "metrics/summary.json").read_text(encoding="utf-8"))
    speed = json.loads((path / "metrics/speed.json").read_text(encoding="utf-8"))
    rows = {row: {**{k: summary["stages"][row][k] for k in QUALITY},
                  **{k: speed["stages"][row][k] for k in TIMING}} for row in summary["stages"]}
    return {"name": name, "seed": params["seed"], "split_seed": params["data"].get("split_seed"),
            "stage_seconds": seconds, "rows": rows}


def spread(runs: list[dict]) -> dict:
    """{row: {metric: stats}} over the runs."""
    return {row: {metric: stats([run["rows"][row][metric] for run in runs]) for metric in (*QUALITY, *TIMING)}
            for row in runs[0]["rows"]}


def markdown(result: dict) -> str:
    lines = ["# Seed noise of the default pipeline", "",
             f"Command: `{result['command']}`. Machine: {result['machine'].get('cpu', '?')}, "
             f"{result['machine'].get('cpus', '?')} CPUs, torch {result['machine'].get('torch', '?')}. "
             f"Dataset: `{result['dataset']}`. Each run is the default `params.yaml` in a scratch copy, every stage "
             "script in order; timings are from each run's evaluate stage (interleaved in one process, "
             "batch 1), so they carry machine noise on top of the seed's.", ""]
    for key, title, seeds in (("stages", "The seed changes the split, initialisation and batch order", result["seeds"]),
                              ("fixed_split", f"Split held fixed (data.split_seed={result['fixed_split_seed']}); "
                                              "the seed changes initialisation and batch order",
                               result["fixed_split_seeds"])):
        lines += [f"## {title}: seeds {seeds}", "",
                  "| row | test macro-F1 mean ± std (min–max) | size bytes (min–max) | compression | "
                  "e2e p50 ms, batch 1 | forward p50 ms | e2e speedup vs teacher | e2e speedup vs teacher in ORT "
                  "INT8 |", "|---|---|---|---|---|---|---|---|"]
        for row, m in result[key].items():
            f1, size, comp = (m[k] for k in ("macro_f1", "size_bytes", "compression"))

            def timing(k, m=m):  # runs from before a timing key existed have none
                t = m.get(k)
                return "–" if t is None else f"{t['mean']:.2f} ± {t['std']:.2f} ({t['min']:.2f}–{t['max']:.2f})"
            lines.append(f"| {row} | {f1['mean']:.4f} ± {f1['std']:.4f} ({f1['min']:.4f}–{f1['max']:.4f}) | "
                         f"{size['mean']:,.0f} ({size['min']:,.0f}–{size['max']:,.0f}) | "
                         f"{comp['mean']:.2f} ± {comp['std']:.2f} | " + " | ".join(timing(k) for k in TIMING) + " |")
        lines.append("")
    lines += ["Per run (test macro-F1 of the final row, stage wall seconds): " + "; ".join(
        f"{r['name']} {r['rows'][list(r['rows'])[-1]]['macro_f1']:.4f}, {sum(r['stage_seconds'].values()):.0f} s"
        for r in result["runs"]) + ".", "",
        "Read a difference in test macro-F1 as real only when it is larger than about 2 std of the rows "
        "compared (this is the rule `make report` applies); smaller ones are noise.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--fixed-split-seed", type=int, default=42,
                    help="also run every other seed with the split of this one (0 = skip)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "seeds")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "SEEDS")
    ap.add_argument("--render-only", action="store_true", help="rewrite OUT.md from OUT.json; runs nothing")
    ap.add_argument("--collect", action="store_true",
                    help="write OUT from the runs already finished under --work (e.g. after an interrupted run)")
    args = ap.parse_args()
    if args.render_only:
        result = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
        return
    base = load_params(ROOT / "params.yaml")
    data = Path(base["data"]["path"])
    if not (ROOT / data).exists() and not data.exists():
        sys.exit(f"bench: {data} not found; run `make data` first")
    base["data"]["path"] = str((ROOT / data).resolve())
    command = "make seeds" if os.environ.get("MAKELEVEL") else "python -m bench.run_seeds " + " ".join(sys.argv[1:])
    if args.collect:  # the runs were made earlier (by make seeds, normally); this only re-reads them
        command = f"the runs under {args.work.relative_to(ROOT) if args.work.is_relative_to(ROOT) else args.work}, " \
                  f"collected by {command}"
    plan = [(f"seed{s}", s, None) for s in args.seeds]
    if args.fixed_split_seed:
        plan += [(f"seed{s}_split{args.fixed_split_seed}", s, args.fixed_split_seed) for s in args.seeds
                 if s != args.fixed_split_seed]
    runs, start = [], time.perf_counter()
    for name, seed, split_seed in plan:
        if args.collect:
            if (args.work / name / "metrics/export.json").exists():
                runs.append(collect(args.work / name))
            continue
        params = {**base, "seed": seed, "data": {**base["data"], "split_seed": split_seed}}
        runs.append(run_once(name, params, args.work))
        print(f"[seeds] {name} done ({(time.perf_counter() - start) / 60:.1f} min so far)", flush=True)
    varied = [r for r in runs if r["split_seed"] is None]
    fixed = [r for r in runs if r["split_seed"] is not None or r["seed"] == args.fixed_split_seed]
    result = {"command": command, "machine": machine(), "dataset": Path(base["data"]["path"]).name,
              "seeds": [r["seed"] for r in varied], "fixed_split_seed": args.fixed_split_seed,
              "fixed_split_seeds": [r["seed"] for r in fixed], "stages": spread(varied),
              "fixed_split": spread(fixed) if len(fixed) > 1 else {}, "runs": runs,
              # --collect: the runs' own stage wall times, not the seconds collecting took
              "minutes": (sum(sum(r["stage_seconds"].values()) for r in runs) if args.collect
                          else time.perf_counter() - start) / 60}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
