"""A benchmark variant against the default, paired run by run (not a test).

Reads run_bench results (OUT.json files, any number per side, e.g. one per seed) for the base (usually the default
params) and the new setting (a `run_bench --set` variant), pairs their runs by dataset and seed (same split, same
initialisation seed, CPU type), and writes one table: per run the val and test macro-F1 of the teacher and of the final
model in each, the final model's test gap to the TF-IDF baseline of the same run (what make bench's goal judges),
their change (new - base), and over the seeds the mean +- std (n - 1) of each change and whether
it is outside seed noise (run_bench.outside_noise). The decision is made on val; test is only reported. Stage
wall times (pretraining, teacher fine-tuning, distillation, the whole pipeline) come with it, since a default must
fit the 30-minute budget, and the final model's size and e2e p50 latency (each measured within its own run).

    python -m bench.compare_bench --base bench/work/default_RESULTS_seed4[234].json \\
        --new bench/work/wide/RESULTS_seed4[234].json --out bench/compare_wide_teacher_cyberbully

Writes OUT.json and OUT.md."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .run_bench import PIPELINE, fmt, outside_noise, stats

MODELS = ("teacher", "final")
STAGES = ("pretrain", "train_teacher", "distill")


def load_runs(paths: list[Path]) -> tuple[dict, list[dict]]:
    """{(dataset, seed): run} over the files of one side, and their headers (command, overrides, machine).
    A run given twice, or one recorded before run records kept val scores, is an error."""
    runs, headers = {}, []
    for path in paths:
        saved = json.loads(path.read_text(encoding="utf-8"))
        headers.append({"file": str(path), "command": saved.get("command"), "overrides": saved.get("overrides", {}),
                        "cpu": saved["machine"]["cpu"]})
        for name, d in saved["datasets"].items():
            for run in d["runs"]:
                if (name, run["seed"]) in runs:
                    raise ValueError(f"{path}: {name} seed {run['seed']} is given twice on one side")
                if "val" not in run:
                    raise ValueError(f"{path}: {name} seed {run['seed']} has no val scores (a record from before "
                                     "run_bench kept them); run it again")
                runs[name, run["seed"]] = run
    return runs, headers


def scores(run: dict) -> dict:
    rows = run["result"]["rows"]
    out = {f"val_{m}": run["val"][m] for m in MODELS}
    out.update({f"test_{m}": rows[m]["macro_f1"] for m in MODELS})
    out["test_tfidf"] = rows["tfidf_logreg"]["macro_f1"]
    out["test_final_minus_tfidf"] = out["test_final"] - out["test_tfidf"]  # the goal's gap, within the run
    out.update({f"seconds_{s}": run["stages"][s]["seconds"] for s in STAGES})
    out["seconds_pipeline"] = sum(run["stages"][s]["seconds"] for s in PIPELINE)
    out["final_size_bytes"] = rows["final"]["size_bytes"]
    out["final_e2e_ms_p50"] = rows["final"]["e2e_ms_p50"]
    return out


def compare(base: dict, new: dict) -> dict:
    """Per dataset: the paired runs and, per score, base / new / change statistics over the seeds."""
    if set(base) != set(new):
        only = lambda a, b: ", ".join(f"{n} seed {s}" for n, s in sorted(set(a) - set(b))) or "none"  # noqa: E731
        raise ValueError(f"the two sides must hold the same runs: only in --base: {only(base, new)}; "
                         f"only in --new: {only(new, base)}")
    out = {}
    for name in sorted({n for n, _ in base}):
        seeds = sorted(s for n, s in base if n == name)
        for s in seeds:
            if base[name, s]["result"]["test_rows"] != new[name, s]["result"]["test_rows"]:
                raise ValueError(f"{name} seed {s}: the two runs have different test splits")
            # float kernels differ across CPU types (README, Reproducibility): a pair across two is not paired,
            # and its stage times are not comparable
            if base[name, s].get("cpu") != new[name, s].get("cpu"):
                raise ValueError(f"{name} seed {s}: the two runs were made on other CPU types "
                                 f"({base[name, s].get('cpu')} and {new[name, s].get('cpu')}); run both on one")
        pairs = [(scores(base[name, s]), scores(new[name, s])) for s in seeds]
        # a reused stage's seconds were measured in the run it was taken from, not in this one (run_bench
        # reused_stage): its time, and the pipeline's sum, are shown but not judged
        reused = {st for s in seeds for run in (base[name, s], new[name, s])
                  for st, took in run["stages"].items() if took.get("reused")}
        untimed = {f"seconds_{st}" for st in reused} | ({"seconds_pipeline"} if reused else set())
        summary = {}
        for key in pairs[0][0]:
            changes = [n[key] - b[key] for b, n in pairs]
            summary[key] = {"base": stats([b[key] for b, _ in pairs]), "new": stats([n[key] for _, n in pairs]),
                            "change": stats(changes),
                            "outside_noise": None if key in untimed else outside_noise(changes)}
        out[name] = {"seeds": seeds, "runs": [{"seed": s, "base": b, "new": n} for s, (b, n) in zip(seeds, pairs)],
                     "summary": summary}
    return out


def render(saved: dict) -> str:
    lines = ["# A benchmark variant against the default, paired run by run", "",
             f"Command: `{saved['command']}`", ""]
    for side in ("base", "new"):
        overrides = {k: v for h in saved[side] for k, v in h["overrides"].items()}
        what = ", ".join(f"`{k}={json.dumps(v, ensure_ascii=False)}`" for k, v in overrides.items()) or "params.yaml"
        lines.append(f"- **{side}**: {what} ({', '.join(h['file'] for h in saved[side])})")
    lines += ["", "Each pair of runs has the same dataset and seed: the same split, initialisation seed and batch "
              "order. Val macro-F1 (thresholds tuned on val) decides; test is scored once per model and only "
              "reported. A change is outside seed noise when every seed agrees on its sign and its mean is more "
              "than 2 std (n − 1) from zero. Times are wall seconds of each stage on 2 cores; size and latency are "
              "each measured within its own run."]
    for name, d in saved["datasets"].items():
        lines += ["", f"## {name}, seeds {', '.join(map(str, d['seeds']))}", "",
                  "| seed | " + " | ".join(f"{k} base → new (change)" for k in ("val_teacher", "val_final",
                                                                                "test_final")) + " |",
                  "|---|---|---|---|"]
        for run in d["runs"]:
            b, n = run["base"], run["new"]
            lines.append(f"| {run['seed']} | " + " | ".join(
                f"{fmt(b[k])} → {fmt(n[k])} ({n[k] - b[k]:+.4f})" for k in ("val_teacher", "val_final", "test_final"))
                + " |")
        lines += ["", "| over the seeds | base | new | change (paired) | outside noise |", "|---|---|---|---|---|"]
        one = len(d["seeds"]) == 1  # no spread to judge a change against: a screen, not a result
        for key, s in d["summary"].items():
            digits = {"val": 4, "test": 4, "seconds": 1, "final_size": 0}.get(key.split("_")[0], 3)
            digits = 0 if key.endswith("bytes") else digits
            pm = lambda x, sign="": f"{x['mean']:{sign},.{digits}f} ± {x['std']:,.{digits}f}"  # noqa: E731
            verdict = ("– (one seed)" if one else "– (a stage reused: timed in another run)"
                       if s["outside_noise"] is None else "yes" if s["outside_noise"] else "no")
            lines.append(f"| {key} | {pm(s['base'])} | {pm(s['new'])} | {pm(s['change'], '+')} | {verdict} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, nargs="+", required=True, help="run_bench OUT.json files of the base")
    ap.add_argument("--new", type=Path, nargs="+", required=True, help="run_bench OUT.json files of the variant")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    ap.add_argument("--screen", action="store_true",
                    help="pair only the runs --new holds (a screen of a few runs against a whole make bench); "
                         "each of them must be in --base")
    args = ap.parse_args()
    try:
        (base, base_headers), (new, new_headers) = load_runs(args.base), load_runs(args.new)
        if args.screen:
            base = {key: run for key, run in base.items() if key in new}
        datasets = compare(base, new)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"compare_bench: {e}")
    saved = {"command": "python -m bench.compare_bench " + " ".join(sys.argv[1:]), "base": base_headers,
             "new": new_headers, "datasets": datasets}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(render(saved), encoding="utf-8")
    print(f"compare_bench: wrote {args.out}.json / .md")


if __name__ == "__main__":
    main()
