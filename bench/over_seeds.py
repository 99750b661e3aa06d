"""The distillation, pruning and quantization benchmarks over several seeds: mean ± std per row.

Each benchmark script (bench_distill, bench_prune, bench_quant) compares methods on ONE pipeline run: its
teacher, student or pruned model and its splits. This runs that script unchanged inside each finished run
of `make seeds` (bench/work/seeds/seed42, seed43, seed44: the seed there changes the split, the
initialisation and the batch order), then writes one table with, per row, the mean ± std (n - 1) of val and
test macro-F1 over the runs, and the paired change against the benchmark's reference row (no_kd, the
unpruned student, the FP32 pruned model): the change is taken within each run, so the split's own noise
cancels. A change counts as outside the noise when |mean| > 2 std of the per-run changes and every run agrees
on its sign. Sizes and timings are those of the first run (sizes do not depend on the seed; timings are one
interleaved measurement, labelled as such).

    python -m bench.over_seeds distill                 # after `make seeds`; ~20 min on 2 cores
    python -m bench.over_seeds prune quant
    python -m bench.over_seeds distill --runs bench/work/seeds/seed42    # one run now, the rest later:
    python -m bench.over_seeds distill --reuse                         # reuses seed42's result
    python -m bench.over_seeds distill --only no_kd kd_v2 kd_corpus --runs bench/work/hatespeech/seed4{2,3,4} \
        --out bench/distill_transfer                                   # the runs of a make bench dataset

Writes bench/<name>_results.json and .md, or --out's (the per-run results are kept in the json under `per_run`)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from banglacompress.config import load_params
from bench import bench_distill, bench_prune, bench_quant
from bench.run_bench import ROOT, outside_noise, stats

SEEDS_WORK = ROOT / "bench" / "work" / "seeds"


@dataclass(frozen=True)
class Bench:
    module: object    # the single-run benchmark: its markdown() renders one run's full table
    ref: str          # the row every other row is compared with, within each run
    val: str          # val macro-F1 key in that benchmark's rows
    test: str         # test macro-F1 key
    label: str        # the column header of the row names


BENCHES = {
    "distill": Bench(bench_distill, ref="no_kd", val="val_macro_f1", test="test_macro_f1", label="student"),
    "prune": Bench(bench_prune, ref="student", val="val_macro_f1_tuned", test="test_macro_f1", label="pruned"),
    "quant": Bench(bench_quant, ref="pruned_fp32", val="val_macro_f1", test="macro_f1", label="variant"),
}


def run_in(run_dir: Path, name: str, out: Path, reuse: bool = False, only: list[str] | None = None) -> dict:
    """The benchmark script, unchanged, with the run directory as its working directory: it reads that run's
    params.yaml (seed, max_length), models/ and data/prepared, as it reads the repo's own by default.
    `reuse`: take the result this made before for the same run, if it finished after the run did. `only`: the
    benchmark's own --only (a subset of its rows)."""
    script = ROOT / "bench" / f"bench_{name}.py"
    done = out.with_suffix(".json")
    if reuse and done.exists() and done.stat().st_mtime > (run_dir / "metrics" / "export.json").stat().st_mtime:
        print(f"[over_seeds] {name} in {run_dir}: reusing {done}", file=sys.stderr, flush=True)
        return json.loads(done.read_text(encoding="utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"[over_seeds] {name} in {run_dir} ...", file=sys.stderr, flush=True)
    log = out.with_suffix(".log")
    with open(log, "w", encoding="utf-8") as f:
        command = [sys.executable, str(script), "--out", str(out), *(["--only", *only] if only else [])]
        code = subprocess.run(command, cwd=run_dir, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode
    if code != 0:
        sys.exit(f"over_seeds: bench_{name}.py failed in {run_dir} (exit {code}); see {log}")
    return json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))


def summarize(bench: Bench, per_run: dict[str, dict]) -> dict:
    """{row: {val, test, test_change, val_change, outside_noise}} over the runs; rows absent from a run
    (refused by the stage, say) are summarised over the runs that have them, and say how many."""
    runs = list(per_run.values())
    names = [n for n in runs[0]["rows"] if not runs[0]["rows"][n].get("alias_of")]
    out = {}
    for name in names:
        have = [r["rows"] for r in runs if name in r["rows"] and bench.test in r["rows"][name]]
        row = {"runs": len(have), "val": stats([r[name][bench.val] for r in have]),
               "test": stats([r[name][bench.test] for r in have])}
        if name != bench.ref:
            paired = [r for r in have if bench.ref in r]
            test_change = [r[name][bench.test] - r[bench.ref][bench.test] for r in paired]
            row["test_change"] = stats(test_change)
            row["val_change"] = stats([r[name][bench.val] - r[bench.ref][bench.val] for r in paired])
            for split in ("val", "test"):
                row[f"{split}_change_outside_noise"] = outside_noise(row[f"{split}_change"]["values"])
        out[name] = row
    return out


def bench_for(name: str, ref: str | None) -> Bench:
    """The benchmark, with another reference row if given (the current default's row, say)."""
    return replace(BENCHES[name], ref=ref) if ref else BENCHES[name]


def markdown(name: str, result: dict) -> str:
    bench = bench_for(name, result.get("ref"))
    runs = result["runs"]
    lines = [f"# {name} benchmark over {len(runs)} seeds", "",
             f"Command: `{result['command']}`. Runs: {', '.join(f'`{r}`' for r in runs)} (finished pipeline runs, "
             "`make seeds` or `make bench`: the seed changes the split, the initialisation and the batch order); seeds "
             f"{result['seeds']}. Per row: mean ± std (n - 1) over the runs, and the change against "
             f"`{bench.ref}` taken within each run (paired, so the split's own noise cancels). **Outside noise**: "
             "|mean change| > 2 std of the per-run changes and every run agrees on its sign. Choices are made on "
             "val; test is reported only." + (f" Rows run: {', '.join(result['only'])} (`--only`; the benchmark's "
                                               "other rows were left out for time)." if result.get("only") else ""), "",
             f"| {bench.label} | runs | val macro-F1 | test macro-F1 | test min–max | val change vs {bench.ref} | "
             f"test change vs {bench.ref} | outside noise: val / test |", "|---|---:|---|---|---|---|---|---|"]
    for row, s in result["summary"].items():
        v, t = s["val"], s["test"]
        if row == bench.ref:
            change = ["–", "–", "(reference)"]
        else:
            vc, tc = s["val_change"], s["test_change"]
            change = [f"{vc['mean']:+.4f} ± {vc['std']:.4f}", f"{tc['mean']:+.4f} ± {tc['std']:.4f}",
                      " / ".join("**yes**" if s[f"{k}_change_outside_noise"] else "no" for k in ("val", "test"))]
        lines.append(f"| {row} | {s['runs']} | {v['mean']:.4f} ± {v['std']:.4f} | {t['mean']:.4f} ± {t['std']:.4f} | "
                     f"{t['min']:.4f}–{t['max']:.4f} | " + " | ".join(change) + " |")
    if result.get("note"):
        lines += ["", f"Note: {result['note']}"]
    first = runs[0]
    lines += ["", f"## The first run in full (`{first}`): sizes, and timings from one interleaved measurement", "",
              "Sizes do not depend on the seed. The timings are one measurement on a shared 2-core machine: read "
              "ratios, not absolute times, and take the repeated figures from `bench/SPEED.md`.", "",
              bench.module.markdown(result["per_run"][first])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benches", nargs="+", choices=sorted(BENCHES))
    ap.add_argument("--runs", type=Path, nargs="+", default=[SEEDS_WORK / f"seed{s}" for s in (42, 43, 44)],
                    help="finished pipeline runs (default: make seeds' seed42, seed43, seed44)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json; runs nothing")
    ap.add_argument("--only", nargs="+", help="passed to the benchmark script: a subset of its rows")
    ap.add_argument("--note", help="a sentence printed under the table and kept in the json (why rows are missing, "
                                   "say); with --render-only it is added to the existing result")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a run's result from an earlier call (e.g. one started while make seeds still ran)")
    ap.add_argument("--ref", help="the row every other is compared with (default: the benchmark's: no_kd, student, "
                                   "pruned_fp32); with --render-only it recomputes the changes")
    ap.add_argument("--out", type=Path, help="with one benchmark: write OUT.json and OUT.md (default "
                                             "bench/<name>_results), its per-run results under bench/work/over_seeds/<OUT's name>")
    args = ap.parse_args()
    if args.out and len(args.benches) != 1:
        sys.exit("over_seeds: --out names one result: give one benchmark with it")
    for name in args.benches:
        out = args.out.resolve() if args.out else ROOT / "bench" / f"{name}_results"
        if args.render_only:  # the summary is recomputed from the per-run results (pure arithmetic)
            result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
            if args.ref:
                result["ref"] = args.ref
            result["summary"] = summarize(bench_for(name, result.get("ref")), result["per_run"])
            if args.note:
                result["note"] = args.note
            out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
        else:
            missing = [str(r) for r in args.runs if not (r / "metrics" / "export.json").exists()]
            if missing:
                sys.exit(f"over_seeds: no finished pipeline run in {', '.join(missing)}: run `make seeds` first")
            work = ROOT / "bench" / "work" / "over_seeds" / (out.name if args.out else name)
            per_run = {r.name: run_in(r.resolve(), name, work / r.name, args.reuse, args.only) for r in args.runs}
            seeds = [load_params(r / "params.yaml")["seed"] for r in args.runs]
            result = {"command": "python -m bench.over_seeds " + " ".join(sys.argv[1:]), "runs": list(per_run),
                      "seeds": seeds, "only": args.only, "note": args.note,
                      "ref": args.ref, "summary": summarize(bench_for(name, args.ref), per_run), "per_run": per_run}
            out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(markdown(name, result), encoding="utf-8")
        print(markdown(name, result))


if __name__ == "__main__":
    main()
